#!/usr/bin/python3
"""Write a randomised GPT-2 checkpoint directory (config.json + safetensors).

An independent reference for miser's tests: numpy only, no miser code. The
safetensors files are written by hand from the format's definition (8-byte
little-endian header length, JSON header padded with spaces to a multiple of 8,
raw little-endian data), so miser's reader is checked against a second writer.

Usage:
  /usr/bin/python3 tools/make_checkpoint.py --out DIR
      [--layers 2] [--embd 64] [--heads 4] [--vocab 1000] [--ctx 64] [--inner N]
      [--dtype f32|f16|bf16] [--seed 0] [--std 0.02] [--eps 1e-5]
      [--prefix | --no-prefix] [--attn-bias] [--lm-head] [--extra]
      [--shards N] [--drop NAME ...] [--dump DIR]

  --prefix       store keys as "transformer.<name>" (GPT2LMHeadModel.save_pretrained)
  --attn-bias    also store h.N.attn.bias (F32 [1,1,ctx,ctx] causal mask) and
                 h.N.attn.masked_bias (F32 scalar), as old checkpoints do
  --lm-head      also store lm_head.weight (a copy of wte, as an untied save would)
  --extra        also store an unknown tensor "miser_test.unknown" (I32 [3]) and a
                 BOOL buffer "miser_test.flags" [4]
  --shards N     split into model-0000i-of-0000N.safetensors + model.safetensors.index.json
  --drop NAME    leave out a tensor (canonical name, e.g. h.1.mlp.c_fc.bias); repeatable
  --dump DIR     also write each tensor's stored bytes to DIR/<canonical name>.bin
                 (exactly the bytes in the safetensors data section)

Weights are N(0, std) (c_proj weights scaled by 1/sqrt(2*layers) as in GPT-2),
wpe N(0, std/2), LayerNorm weights 1 + N(0, 0.1), biases N(0, std). Tensors are
written in a shuffled order so readers cannot rely on file order.
"""
import argparse
import json
import os
import sys

import numpy as np


def to_bf16_bits(a):
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def encode(a, dtype):
    """Return (safetensors dtype string, little-endian bytes) of array a."""
    if dtype == "f32":
        return "F32", np.ascontiguousarray(a, dtype="<f4").tobytes()
    if dtype == "f16":
        return "F16", np.ascontiguousarray(a, dtype="<f2").tobytes()
    if dtype == "bf16":
        return "BF16", to_bf16_bits(a).astype("<u2").tobytes()
    raise ValueError(dtype)


def gpt2_tensors(a, rng):
    C, F, L, V, T = a.embd, a.inner or 4 * a.embd, a.layers, a.vocab, a.ctx
    s = a.std
    t = {}

    def normal(shape, std):
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    t["wte.weight"] = normal((V, C), s)
    t["wpe.weight"] = normal((T, C), s / 2)
    proj = s / np.sqrt(2.0 * L)
    for l in range(L):
        p = "h.%d." % l
        t[p + "ln_1.weight"] = 1.0 + normal((C,), 0.1)
        t[p + "ln_1.bias"] = normal((C,), s)
        t[p + "attn.c_attn.weight"] = normal((C, 3 * C), s)
        t[p + "attn.c_attn.bias"] = normal((3 * C,), s)
        t[p + "attn.c_proj.weight"] = normal((C, C), proj)
        t[p + "attn.c_proj.bias"] = normal((C,), s)
        t[p + "ln_2.weight"] = 1.0 + normal((C,), 0.1)
        t[p + "ln_2.bias"] = normal((C,), s)
        t[p + "mlp.c_fc.weight"] = normal((C, F), s)
        t[p + "mlp.c_fc.bias"] = normal((F,), s)
        t[p + "mlp.c_proj.weight"] = normal((F, C), proj)
        t[p + "mlp.c_proj.bias"] = normal((C,), s)
    t["ln_f.weight"] = 1.0 + normal((C,), 0.1)
    t["ln_f.bias"] = normal((C,), s)
    return t


def write_safetensors(path, entries, metadata):
    """entries: list of (stored name, dtype string, shape, bytes)."""
    header = {"__metadata__": metadata}
    off = 0
    for name, dt, shape, data in entries:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for _, _, _, data in entries:
            f.write(data)
    os.replace(tmp, path)
    return off


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embd", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--ctx", type=int, default=64)
    ap.add_argument("--inner", type=int, default=0, help="MLP width (default: config null = 4*embd)")
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--eps", type=float, default=1e-5)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--prefix", dest="prefix", action="store_true")
    g.add_argument("--no-prefix", dest="prefix", action="store_false")
    ap.set_defaults(prefix=False)
    ap.add_argument("--attn-bias", action="store_true")
    ap.add_argument("--lm-head", action="store_true")
    ap.add_argument("--extra", action="store_true")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--drop", action="append", default=[])
    ap.add_argument("--dump")
    a = ap.parse_args()
    if a.shards < 1:
        ap.error("--shards must be >= 1")

    rng = np.random.default_rng(a.seed)
    tensors = gpt2_tensors(a, rng)
    for d in a.drop:
        if d not in tensors:
            ap.error("--drop: no tensor %r" % d)
        del tensors[d]

    entries = []  # (canonical, stored, dtype, shape, bytes)
    for name, arr in tensors.items():
        dt, data = encode(arr, a.dtype)
        entries.append((name, dt, arr.shape, data))
    if a.lm_head and "wte.weight" in tensors:
        dt, data = encode(tensors["wte.weight"], a.dtype)
        entries.append(("lm_head.weight", dt, tensors["wte.weight"].shape, data))
    if a.attn_bias:
        mask = np.tril(np.ones((a.ctx, a.ctx), dtype=np.float32)).reshape(1, 1, a.ctx, a.ctx)
        for l in range(a.layers):
            entries.append(("h.%d.attn.bias" % l, "F32", mask.shape, mask.astype("<f4").tobytes()))
            entries.append(("h.%d.attn.masked_bias" % l, "F32", (), np.array(-1e4, "<f4").tobytes()))
    if a.extra:
        entries.append(("miser_test.unknown", "I32", (3,), np.array([1, 2, 3], "<i4").tobytes()))
        entries.append(("miser_test.flags", "BOOL", (4,), bytes([1, 0, 1, 1])))

    order = rng.permutation(len(entries))
    entries = [entries[i] for i in order]

    def stored(name):
        # lm_head is outside the transformer module in GPT2LMHeadModel.
        return "transformer." + name if a.prefix and name != "lm_head.weight" else name

    os.makedirs(a.out, exist_ok=True)
    cfg = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "activation_function": "gelu_new",
        "n_embd": a.embd,
        "n_head": a.heads,
        "n_layer": a.layers,
        "n_positions": a.ctx,
        "n_ctx": a.ctx,
        "n_inner": a.inner or None,
        "vocab_size": a.vocab,
        "layer_norm_epsilon": a.eps,
        "tie_word_embeddings": True,
        "miser_test_seed": a.seed,
    }
    if a.vocab > 50256:
        cfg["bos_token_id"] = cfg["eos_token_id"] = 50256
    meta = {"format": "pt", "source": "miser tools/make_checkpoint.py seed=%d" % a.seed}
    if a.shards == 1:
        write_safetensors(os.path.join(a.out, "model.safetensors"),
                          [(stored(n), dt, sh, d) for n, dt, sh, d in entries], meta)
    else:
        groups = [entries[i::a.shards] for i in range(a.shards)]
        weight_map, total = {}, 0
        for i, grp in enumerate(groups):
            fn = "model-%05d-of-%05d.safetensors" % (i + 1, a.shards)
            total += write_safetensors(os.path.join(a.out, fn),
                                       [(stored(n), dt, sh, d) for n, dt, sh, d in grp], meta)
            for n, _, _, _ in grp:
                weight_map[stored(n)] = fn
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    if a.dump:
        os.makedirs(a.dump, exist_ok=True)
        for n, _, _, d in entries:
            with open(os.path.join(a.dump, n + ".bin"), "wb") as f:
                f.write(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
