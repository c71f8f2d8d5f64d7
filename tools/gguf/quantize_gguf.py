#!/usr/bin/python3
"""Rewrite an f32 GGUF file with its 2-D weights in another ggml type, for
miser's tests (tests/test_gguf.c): llama.cpp and miser then run the same
quantised file.

  quantize_gguf.py IN.gguf OUT.gguf TYPE      TYPE: f16 q8_0 q4_0 q4_k q6_k q4_k_m

Metadata is copied as is. 2-D tensors other than position_embd take TYPE
(q4_k_m: q4_K, with attn_v, ffn_down and output/token_embd in q6_K, as
llama.cpp's Q4_K_M mix); a row length the type's block does not divide
falls back to q8_0 (32) or f16. Q4_0 and Q8_0 blocks come from gguf-py's
quants module (llama.cpp's reference quantizers); gguf-py has no Q4_K/Q6_K
quantizer, so they are made here in ggml's block layout (block_q4_K:
f16 d, dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles;
block_q6_K: ql[128], qh[64], int8 scales[16], f16 d) with a plain
min/max rule, and every block is checked by decoding it with gguf-py's
dequantize (the decoder llama.cpp's Python tools use) before it is written.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "peers"))
from to_gguf import import_gguf  # noqa: E402

import numpy as np  # noqa: E402

gguf = import_gguf()
Q = gguf.GGMLQuantizationType


def q4_k(x):
    """x: [rows, K] f32, K % 256 == 0 -> uint8 [rows, K / 256 * 144]"""
    r, k = x.shape
    b = x.reshape(-1, 8, 32).astype(np.float32)
    lo = np.minimum(b.min(axis=2), 0)
    hi = b.max(axis=2)
    scale = (hi - lo) / 15.0
    mn = -lo
    d = scale.max(axis=1) / 63.0
    dm = mn.max(axis=1) / 63.0
    d16, dm16 = d.astype(np.float16), dm.astype(np.float16)
    df, dmf = d16.astype(np.float32), dm16.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df[:, None] > 0, np.rint(scale / df[:, None]), 0).clip(0, 63).astype(np.uint8)
        m = np.where(dmf[:, None] > 0, np.rint(mn / dmf[:, None]), 0).clip(0, 63).astype(np.uint8)
        step = (df[:, None] * sc.astype(np.float32))
        off = (dmf[:, None] * m.astype(np.float32))
        q = np.where(step[:, :, None] > 0, np.rint((b + off[:, :, None]) / step[:, :, None]), 0).clip(0, 15)
    q = q.astype(np.uint8)
    nb = b.shape[0]
    scales = np.zeros((nb, 12), np.uint8)
    for j in range(4):
        scales[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
        scales[:, j + 4] = (m[:, j] & 63) | ((m[:, j + 4] >> 4) << 6)
        scales[:, j + 8] = (sc[:, j + 4] & 0xF) | ((m[:, j + 4] & 0xF) << 4)
    qs = np.zeros((nb, 128), np.uint8)
    for p in range(4):
        qs[:, 32 * p:32 * p + 32] = q[:, 2 * p, :] | (q[:, 2 * p + 1, :] << 4)
    out = np.concatenate([d16.view(np.uint8).reshape(nb, 2), dm16.view(np.uint8).reshape(nb, 2), scales, qs], axis=1)
    return out.reshape(r, -1)


def q6_k(x):
    r, k = x.shape
    b = x.reshape(-1, 16, 16).astype(np.float32)
    amax = np.abs(b).max(axis=2)
    s = amax / 31.0
    d = np.abs(s).max(axis=1) / 127.0
    d16 = d.astype(np.float16)
    df = d16.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df[:, None] > 0, np.rint(s / df[:, None]), 0).clip(-128, 127).astype(np.int8)
        step = df[:, None] * sc.astype(np.float32)
        q = np.where(step[:, :, None] != 0, np.rint(b / step[:, :, None]), 0).clip(-32, 31)
    q = (q + 32).astype(np.uint8).reshape(-1, 256)
    nb = q.shape[0]
    ql = np.zeros((nb, 128), np.uint8)
    qh = np.zeros((nb, 64), np.uint8)
    for h in range(2):
        q1, q2, q3, q4 = (q[:, 128 * h + 32 * i:128 * h + 32 * i + 32] for i in range(4))
        ql[:, 64 * h:64 * h + 32] = (q1 & 0xF) | ((q3 & 0xF) << 4)
        ql[:, 64 * h + 32:64 * h + 64] = (q2 & 0xF) | ((q4 & 0xF) << 4)
        qh[:, 32 * h:32 * h + 32] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6)
    out = np.concatenate([ql, qh, sc.view(np.uint8).reshape(nb, 16), d16.view(np.uint8).reshape(nb, 2)], axis=1)
    return out.reshape(r, -1)


def pick(name, shape, want):
    """ggml type for a tensor of numpy shape [rows, K]"""
    if len(shape) != 2 or name == "position_embd.weight":
        return Q.F32
    k = shape[-1]
    t = want
    if want == "q4_k_m":
        t = "q6_k" if any(s in name for s in ("attn_v", "ffn_down", "output.weight")) or name == "token_embd.weight" else "q4_k"
    qt = {"f16": Q.F16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0, "q4_k": Q.Q4_K, "q6_k": Q.Q6_K}[t]
    bs = gguf.GGML_QUANT_SIZES[qt][0]
    if k % bs:
        qt = Q.Q8_0 if k % 32 == 0 else Q.F16
    return qt


def encode(a, qt):
    if qt == Q.F32:
        return a.astype(np.float32)
    if qt == Q.F16:
        return a.astype(np.float16)
    if qt in (Q.Q4_0, Q.Q8_0):
        return gguf.quants.quantize(a, qt)
    data = q4_k(a) if qt == Q.Q4_K else q6_k(a)
    back = gguf.quants.dequantize(data, qt)
    if back.shape != a.shape or not np.all(np.isfinite(back)):
        raise SystemExit(f"quantize_gguf: internal: {qt.name} blocks do not decode to the tensor's shape")
    err = np.abs(back - a).max() / max(np.abs(a).max(), 1e-30)
    if err > 0.2:
        raise SystemExit(f"quantize_gguf: internal: {qt.name} relative error {err:.3f}")
    return data


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    src, dst, want = sys.argv[1:]
    rd = gguf.GGUFReader(src)
    arch = bytes(rd.fields["general.architecture"].parts[-1]).decode()
    w = gguf.GGUFWriter(dst + ".tmp", arch)
    for name, f in rd.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.alignment"):
            continue
        vt = f.types[0]
        val = f.contents()
        sub = f.types[1] if vt == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, val, vt, sub_type=sub)
    for t in rd.tensors:
        if t.tensor_type != Q.F32:
            raise SystemExit(f"quantize_gguf: {src}: tensor {t.name} is {t.tensor_type.name}, expected F32")
        a = np.asarray(t.data, dtype=np.float32).reshape([int(x) for x in reversed(t.shape)])
        qt = pick(t.name, a.shape, want)
        data = encode(a, qt)
        w.add_tensor(t.name, data, raw_dtype=qt if qt not in (Q.F32, Q.F16) else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(dst + ".tmp", dst)


if __name__ == "__main__":
    main()
