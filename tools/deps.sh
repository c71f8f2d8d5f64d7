#!/bin/sh
# Install what miser needs on Debian, only what is missing.
#   tools/deps.sh         build + run dependencies (cJSON, utf8proc, PCRE2,
#                         libmicrohttpd, libunwind, libdw)
#   tools/deps.sh test    also what the test suite needs (Criterion, clang for
#                         fuzzing, numpy / pytest / psutil / sentencepiece for
#                         references and the Python package, chromium for the
#                         browser tests, SIMDe for the emulated AVX-512 kernel
#                         tests, node + the npm references pinned in
#                         tools/package.json)
# Each need is "package:probe": the Debian package is installed only when the
# probe (a command on PATH, or an absolute file path) is missing, so tools that
# came from elsewhere (e.g. a NodeSource node with its own npm) are respected.
set -e
cd "$(dirname "$0")/.."
needs="make:make gcc:gcc pkg-config:pkg-config libcjson-dev:/usr/include/cjson/cJSON.h
libutf8proc-dev:/usr/include/utf8proc.h libpcre2-dev:/usr/include/pcre2.h
libmicrohttpd-dev:/usr/include/microhttpd.h libunwind-dev:/usr/include/x86_64-linux-gnu/libunwind.h
libdw-dev:/usr/include/elfutils/libdw.h"
if [ "${1:-}" = test ]; then
  needs="$needs libcriterion-dev:/usr/include/criterion/criterion.h clang:clang
libclang-rt-14-dev:/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a
python3:/usr/bin/python3 python3-numpy:/usr/lib/python3/dist-packages/numpy/__init__.py
nodejs:node npm:npm python3-pytest:/usr/lib/python3/dist-packages/pytest/__init__.py
python3-psutil:/usr/lib/python3/dist-packages/psutil/__init__.py
python3-sentencepiece:/usr/lib/python3/dist-packages/sentencepiece/__init__.py
python3-venv:/usr/lib/python3.11/venv/__init__.py python3-wheel:/usr/lib/python3/dist-packages/wheel/__init__.py
chromium:/usr/bin/chromium curl:curl libsimde-dev:/usr/include/simde/x86/avx512.h g++:g++ binutils:c++filt"
fi
missing=
for need in $needs; do
  pkg=${need%%:*}
  probe=${need#*:}
  case "$probe" in
    /*) [ -e "$probe" ] && continue ;;
    *) command -v "$probe" >/dev/null 2>&1 && continue ;;
  esac
  missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "deps: installing Debian packages:$missing"
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
npm_ok=1
for m in gpt-3-encoder @huggingface/tokenizers puppeteer-core openai; do
  [ -f "tools/node_modules/$m/package.json" ] || npm_ok=0
done
if [ "${1:-}" = test ] && [ "$npm_ok" = 0 ]; then
  echo "deps: installing npm packages from tools/package.json (test references: gpt-3-encoder, @huggingface/tokenizers, puppeteer-core, openai)"
  (cd tools && npm ci --no-audit --no-fund --silent >/dev/null 2>&1 || npm install --no-audit --no-fund --silent >/dev/null)
fi
echo "deps: ok"
