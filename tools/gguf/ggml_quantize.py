#!/usr/bin/python3
"""Quantise float32 values with llama.cpp's own reference quantizers, for
miser's tests (tests/test_quant_convert.c): the independent reference for
the converted-weights cache's Q4_0 / Q4_K / Q6_K blocks.

  ggml_quantize.py TYPE IN.f32 OUT.bin      TYPE: q4_0 q4_k q6_k q8_0
  ggml_quantize.py --check                  exit 0 when the library loads

IN.f32 is raw little-endian float32 (a multiple of the type's block);
OUT.bin receives the blocks. The functions are quantize_row_<type>_ref from
libggml-base.so, the ggml library node-llama-cpp ships prebuilt
(tools/peers/node_modules/@node-llama-cpp/<platform>/bins/<platform>/;
MISER_GGML_BASE overrides the path), called through ctypes: the same C
llama-quantize runs. Q4_0 is also checked against gguf-py's
quants.quantize (its numpy port of quantize_row_q4_0_ref) when
--gguf-py is given (exit 4 when they differ other than in the sign of a
zero scale, which a block of -0.0 values gets: -0 in C, +0 in numpy). Exit 2 without the library (the test then skips).
"""
import ctypes
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "..", "peers", "node_modules")
BLOCK = {"q4_0": (32, 18), "q4_k": (256, 144), "q6_k": (256, 210), "q8_0": (32, 34)}
FN = {"q4_0": "quantize_row_q4_0_ref", "q4_k": "quantize_row_q4_K_ref", "q6_k": "quantize_row_q6_K_ref",
      "q8_0": "quantize_row_q8_0_ref"}


def find_lib():
    env = os.environ.get("MISER_GGML_BASE")
    if env:
        return env if os.path.exists(env) else None
    hits = sorted(glob.glob(os.path.join(PEERS, "@node-llama-cpp", "*", "bins", "*", "libggml-base.so")))
    return hits[0] if hits else None


def load():
    path = find_lib()
    if not path:
        return None
    lib = ctypes.CDLL(path)
    for f in FN.values():
        fn = getattr(lib, f)
        fn.restype = None
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    return lib


def main(argv):
    lib = load()
    if lib is None:
        print("ggml_quantize: libggml-base.so not found (make peers)", file=sys.stderr)
        return 2
    if argv[1:2] == ["--check"]:
        return 0
    gguf_py = "--gguf-py" in argv
    args = [a for a in argv[1:] if a != "--gguf-py"]
    if len(args) != 3 or args[0] not in BLOCK:
        print(__doc__, file=sys.stderr)
        return 2
    typ, src, dst = args
    data = open(src, "rb").read()
    n = len(data) // 4
    bl, bb = BLOCK[typ]
    if n % bl or len(data) % 4:
        print("ggml_quantize: %s: %d values is not whole %s blocks" % (src, n, typ), file=sys.stderr)
        return 3
    xin = ctypes.create_string_buffer(data, len(data))
    out = ctypes.create_string_buffer(n // bl * bb)
    getattr(lib, FN[typ])(xin, out, n)
    blob = out.raw
    if gguf_py and typ in ("q4_0", "q8_0"):
        sys.path.insert(0, os.path.join(HERE, "..", "peers"))
        from to_gguf import import_gguf
        import numpy as np
        gguf = import_gguf()
        qt = gguf.GGMLQuantizationType.Q4_0 if typ == "q4_0" else gguf.GGMLQuantizationType.Q8_0
        x = np.frombuffer(data, dtype=np.float32).reshape(-1, bl)
        py = np.frombuffer(gguf.quants.quantize(x, qt).tobytes(), np.uint8).reshape(-1, bb)
        c = np.frombuffer(blob, np.uint8).reshape(-1, bb)
        # the one known difference: a block of -0.0 values, where C's d =
        # -0.0 / -8 is -0 (f16 0x8000) and numpy's argmax picks +0 / -0 the
        # other way; both decode to zeros
        zero_d = (c[:, :2].view(np.uint16)[:, 0] & 0x7fff) == 0
        same_rest = np.all(py[:, 2:] == c[:, 2:], axis=1)
        bad = np.any(py != c, axis=1) & ~(zero_d & same_rest & ((py[:, :2].view(np.uint16)[:, 0] & 0x7fff) == 0))
        if bad.any():
            print("ggml_quantize: gguf-py's %s quantizer and llama.cpp's differ in block %d" % (typ, int(np.argmax(bad))),
                  file=sys.stderr)
            return 4
    with open(dst, "wb") as f:
        f.write(blob)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
