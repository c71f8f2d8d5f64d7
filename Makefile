# miser — GNU make front door.
#   make                 library (static + shared) and the miser binary
#   make run             the study's benchmark (`miser bench`) on its built-in default
#   make test            unit/integration suite, then the same under ASan+UBSan, then short fuzz runs
#   make test-unit       the suite once, optimised build
#   make test-python     the Python binding's pytest suite (tests/python) over this build
#   make test-sanitize   the suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make test-emu-avx512 the AVX-512 / VNNI kernels on a CPU without them, emulated (SIMDe)
#   make fuzz            libFuzzer targets for FUZZ_SECONDS each (clang)
#   make bench           kernel microbenchmarks and end-to-end figures
#   make peers           install the other runtimes used by `miser compare`
#   make install PREFIX=/usr/local
# Variables: BUILD (output dir), SAN (sanitizer flags), NATIVE=1 adds -march=native,
# JOBS (parallel build jobs, default: the number of cores), FUZZ_SECONDS (default 10; `make test` also builds the emulated AVX-512 kernels, so CI stays near 10 minutes on 2 cores).

BUILD ?= build
PREFIX ?= /usr/local
CC ?= cc
FUZZ_SECONDS ?= 10
# Builds use every core unless told otherwise (`make JOBS=1`); recipes that
# run tests stay sequential, and the Criterion suite sets its own --jobs.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
MAKEFLAGS += -j$(JOBS)

VERSION := 0.1.0
OPT ?= -O2
CFLAGS_NOSAN := -std=c11 -D_GNU_SOURCE -g $(OPT) -Wall -Wextra -Wno-unused-parameter -fPIC \
                -Iinclude -Isrc -pthread
ifeq ($(NATIVE),1)
CFLAGS_NOSAN += -march=native
endif
CFLAGS_NOSAN += $(CFLAGS)
CFLAGS_BASE := $(CFLAGS_NOSAN) $(SAN)
# The SIMD kernel files' sanitizer flags: SAN, except in the fuzz build, whose
# targets are parsers: clang's fuzzer + ASan + UBSan instrumentation of the
# intrinsic-heavy kernels took 3 minutes of CI's 10 (kernels_avx512.c alone
# 114 s, 4.5 s without), and the kernels are run under ASan + UBSan by
# `make test-sanitize` anyway.
SIMD_SAN ?= $(SAN)
DEFS := -DMISER_SOURCE_DIR='"$(CURDIR)"' -DMISER_BUILD_DIR='"$(CURDIR)/$(BUILD)"'
LIBS := -lcjson -lutf8proc -lpcre2-8 -lmicrohttpd -ldw -lelf -lm -ldl -pthread
SIMD_FLAGS := -mavx2 -mfma -mf16c
AVX512_FLAGS := $(SIMD_FLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512dq

LIB_C   := $(filter-out src/cli/% src/attrib/%,$(wildcard src/*/*.c))
LIB_S   := $(wildcard src/*/*.S)
CLI_C   := $(wildcard src/cli/*.c)
TEST_C  := $(wildcard tests/*.c)
BENCH_C := $(wildcard bench/*.c)

LIB_O   := $(LIB_C:%.c=$(BUILD)/obj/%.o) $(LIB_S:%.S=$(BUILD)/obj/%.o)
CLI_O   := $(CLI_C:%.c=$(BUILD)/obj/%.o)
TEST_O  := $(TEST_C:%.c=$(BUILD)/obj/%.o)
BENCH_O := $(BENCH_C:%.c=$(BUILD)/obj/%.o)

STATIC := $(BUILD)/libmiser.a
SHARED := $(BUILD)/libmiser.so
BIN    := $(BUILD)/miser
TESTS  := $(BUILD)/miser-tests
BENCH  := $(BUILD)/miser-bench
# The attribution interposer (`miser profile --attribute`): preloaded into
# profiled processes, so never part of libmiser and never sanitized; and the
# known-truth program its tests profile (docs/attribution.md).
ATTRIB := $(BUILD)/libmiser-attrib.so
ATTRIB_TRUTH := $(BUILD)/attrib-truth
ATTRIB_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O2 -Wall -Wextra -Wno-unused-parameter -fPIC -pthread

.PHONY: run all test test-unit test-python test-sanitize test-emu-avx512 fuzz fuzz-bins bench peers install clean sanitize
all: $(STATIC) $(SHARED) $(BIN) $(ATTRIB)

$(BUILD)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_NOSAN) $(SIMD_SAN) $(SIMD_FLAGS) $(DEFS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_NOSAN) $(SIMD_SAN) $(AVX512_FLAGS) $(DEFS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(DEFS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.S
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(DEFS) -MMD -MP -c $< -o $@

$(STATIC): $(LIB_O)
	@rm -f $@
	ar rcs $@ $^

$(SHARED): $(LIB_O)
	$(CC) $(CFLAGS_BASE) -shared -Wl,-soname,libmiser.so.0 -o $@ $^ $(LIBS)

$(BIN): $(CLI_O) $(STATIC)
	$(CC) $(CFLAGS_BASE) -o $@ $(CLI_O) $(STATIC) $(LIBS)

$(ATTRIB): $(wildcard src/attrib/*.c) $(wildcard src/attrib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ATTRIB_CFLAGS) -fvisibility=hidden -shared -o $@ $(filter %.c,$^) -lunwind -ldl

$(ATTRIB_TRUTH): tests/attrib/truth.c
	@mkdir -p $(dir $@)
	$(CC) $(ATTRIB_CFLAGS) -O1 -fno-inline -o $@ $^

$(BUILD)/attrib-own: tests/attrib/own_malloc.c
	@mkdir -p $(dir $@)
	$(CC) $(ATTRIB_CFLAGS) -O1 -o $@ $^

$(TESTS): $(TEST_O) $(STATIC) $(BIN) $(ATTRIB) $(ATTRIB_TRUTH) $(BUILD)/attrib-own
	$(CC) $(CFLAGS_BASE) -o $@ $(TEST_O) $(STATIC) -lcriterion $(LIBS)

# The kernel-level suites alone, linked from the objects they use (the
# emulated AVX-512 check builds just these, not the whole tree).
KTEST_O := $(BUILD)/obj/tests/test_kernels.o $(BUILD)/obj/tests/test_kernels_int.o \
           $(filter $(BUILD)/obj/src/kernels/% $(BUILD)/obj/src/core/% $(BUILD)/obj/src/runtime/threadpool.o,$(LIB_O))
$(BUILD)/miser-kernel-tests: $(KTEST_O)
	$(CC) $(CFLAGS_BASE) -o $@ $(KTEST_O) -lcriterion $(LIBS)

$(BENCH): $(BENCH_O) $(STATIC)
	$(CC) $(CFLAGS_BASE) -o $@ $(BENCH_O) $(STATIC) $(LIBS)

# The suite: Criterion prints its "Synthesis" line, which CI reads.
test-unit: $(TESTS)
	$(TESTS) --jobs 2 $(TEST_ARGS)

test-sanitize:
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	$(MAKE) BUILD=build/sanitize OPT=-O1 SAN='-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined' test-unit \
	  TEST_ARGS='$(TEST_ARGS)'
sanitize: test-sanitize

# The AVX-512 and VNNI kernels where the CPU lacks them (docs/kernels.md,
# "Checking the AVX-512 / VNNI paths without the hardware"): a test-only build
# in EMU_BUILD with MISER_EMULATE_X86, whose AVX-512 / VNNI files include
# src/kernels/emu_x86.h (SIMDe, Debian libsimde-dev) instead of immintrin.h and
# are compiled without -mavx512*, and whose CPU checks report those sets
# present; then the suites that force each set, with MISER_KERNELS=avx512.
# Never installed or shipped. `make test` runs the kernel-level suites, which
# link only the kernels, core and thread pool (miser-kernel-tests).
EMU_BUILD ?= build/emu
EMU_SUITES ?= kernels kernels_int batch gguf llama
test-emu-avx512:
	@test -f /usr/include/simde/x86/avx512.h || { echo "test-emu-avx512: SIMDe headers missing (/usr/include/simde/x86/avx512.h): apt-get install libsimde-dev"; exit 1; }
	@t=miser-tests; case " $(EMU_SUITES) " in *" batch "*|*" gguf "*|*" llama "*) ;; *) t=miser-kernel-tests;; esac; \
	$(MAKE) --no-print-directory BUILD=$(EMU_BUILD) OPT='$(OPT)' SAN='$(SAN)' CFLAGS='$(CFLAGS) -DMISER_EMULATE_X86 -Wno-psabi' \
	  AVX512_FLAGS='$(SIMD_FLAGS)' $(EMU_BUILD)/$$t || exit 1; \
	for s in $(EMU_SUITES); do \
	  echo "test-emu-avx512: $$s/* (AVX-512 / VNNI emulated)"; \
	  MISER_KERNELS=avx512 $(EMU_BUILD)/$$t --jobs 2 --filter "$$s/*" $(TEST_ARGS) || exit 1; \
	done

# The Python binding (python/miser over this build's libmiser.so and miser): Debian's pytest.
test-python: $(SHARED) $(BIN)
	PYTHONPATH=$(CURDIR)/python MISER_LIBRARY=$(abspath $(SHARED)) MISER_BIN=$(abspath $(BIN)) \
	  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python $(PYTEST_ARGS)

test: test-unit
	$(MAKE) test-emu-avx512 EMU_SUITES='kernels kernels_int'
	$(MAKE) test-python
	ASAN_OPTIONS=detect_leaks=1 $(MAKE) test-sanitize
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

FUZZ_C := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_SAN := -fsanitize=address,undefined
# The library is built with clang and fuzzer instrumentation in build/fuzz
# (the normal pattern rules, so SIMD files keep their flags; SIMD_SAN above:
# the kernels without instrumentation), then each target links against it
# (in parallel: the rule below, in that sub-make) and tools/fuzz.sh runs
# JOBS targets at a time, FUZZ_SECONDS each, with -timeout=60: an input that
# hangs fails in a minute, not after libFuzzer's default of 20.
FUZZ_NAMES := $(FUZZ_C:tests/fuzz/%.c=%)
FUZZ_BIN := $(FUZZ_NAMES:%=$(BUILD)/%)
$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(STATIC)
	$(CC) -std=c11 -D_GNU_SOURCE -g -O1 -Iinclude -Isrc $(DEFS) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $< $(STATIC) $(LIBS)
fuzz-bins: $(FUZZ_BIN)
fuzz:
	@if [ -z "$(FUZZ_C)" ]; then echo "no fuzz targets"; exit 0; fi
	$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang OPT=-O1 SAN='-fsanitize=fuzzer-no-link $(FUZZ_SAN)' SIMD_SAN= fuzz-bins
	tools/fuzz.sh build/fuzz $(FUZZ_SECONDS) $(JOBS) $(FUZZ_NAMES)

# The main job on its built-in default: the study's benchmark on a synthetic
# GPT-2-medium-shaped checkpoint (created once in the cache directory).
run: all
	$(BIN) bench $(RUN_ARGS)

bench: $(BENCH) $(BIN)
	$(BENCH) $(BENCH_ARGS)

peers:
	tools/install-peers.sh

$(BUILD)/miser.pc: Makefile
	@mkdir -p $(dir $@)
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: miser\nDescription: memory-frugal GPT-2 inference and lifecycle memory profiler\nVersion: %s\nRequires.private: libcjson libutf8proc libmicrohttpd libdw\nLibs: -L$${libdir} -lmiser\nLibs.private: -lm -ldl -pthread\nCflags: -I$${includedir}\n' '$(PREFIX)' '$(VERSION)' > $@

install: all $(BUILD)/miser.pc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/miser
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/miser
	install -m 644 $(STATIC) $(DESTDIR)$(PREFIX)/lib/libmiser.a
	install -m 755 $(SHARED) $(DESTDIR)$(PREFIX)/lib/libmiser.so.$(VERSION)
	install -m 755 $(ATTRIB) $(DESTDIR)$(PREFIX)/lib/libmiser-attrib.so
	ln -sf libmiser.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libmiser.so.0
	ln -sf libmiser.so.0 $(DESTDIR)$(PREFIX)/lib/libmiser.so
	install -m 644 include/miser/*.h $(DESTDIR)$(PREFIX)/include/miser/
	install -m 644 $(BUILD)/miser.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/miser.pc

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
