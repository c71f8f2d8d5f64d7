#!/usr/bin/python3
"""Reference GPT-2 forward pass in numpy float64, independent of miser.

Reads a Hugging Face style checkpoint directory with its own safetensors
parser (F32, F16, BF16; model.safetensors or a sharded index; keys with or
without "transformer."; extra buffers ignored), runs the full forward pass
(no KV cache: every step recomputes the whole sequence) and prints JSON.

Usage:
  /usr/bin/python3 tools/ref_gpt2.py --model DIR --ids 15496,11,995
      [--steps N] [--logits none|last|all] [--top K] [--logits-out FILE]

Output (one JSON object on stdout):
  {"ids": [...prompt...],
   "greedy": [N ids, argmax each step, lowest id wins a tie],
   "last_logits": [V floats]          (--logits last, the default)
   "all_logits": [[V floats] x T]     (--logits all: every prompt position)
   "top": {"ids": [...], "vals": [...]}  (--top K: K largest last logits)
   "n_vocab": V, "n_ctx": T}
--logits-out FILE writes the prompt's last-position logits as raw
little-endian float32 (V values), like tests/data/hf-tiny-a/hello_last_logits.f32.

GPT-2: pre-LN blocks, LayerNorm eps from config, GELU tanh approximation,
attention scaled by 1/sqrt(head_dim) with a causal mask, learned positions,
Conv1D layout y = x @ W + b with c_attn columns Q|K|V, lm_head tied to wte.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

PREFIX = "transformer."


def read_safetensors(path):
    """Return {stored name: float64 array}; skips dtypes other than F32/F16/BF16/I32."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        buf = raw[base + b:base + end]
        shape = tuple(e["shape"])
        dt = e["dtype"]
        if dt == "F32":
            a = np.frombuffer(buf, dtype="<f4").astype(np.float64)
        elif dt == "F16":
            a = np.frombuffer(buf, dtype="<f2").astype(np.float64)
        elif dt == "BF16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            a = bits.view(np.float32).astype(np.float64)
        else:
            continue
        out[name] = a.reshape(shape)
    return out


def load(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(single):
        files = [single]
    else:
        with open(os.path.join(model_dir, "model.safetensors.index.json")) as f:
            idx = json.load(f)
        files = [os.path.join(model_dir, s) for s in sorted(set(idx["weight_map"].values()))]
    w = {}
    for p in files:
        for k, v in read_safetensors(p).items():
            w[k[len(PREFIX):] if k.startswith(PREFIX) else k] = v
    return cfg, w


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(cfg, w, ids):
    """Logits [T, V] for token ids [T]."""
    C, H, L = cfg["n_embd"], cfg["n_head"], cfg["n_layer"]
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    T = len(ids)
    D = C // H
    x = w["wte.weight"][ids] + w["wpe.weight"][np.arange(T)]
    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    for l in range(L):
        p = "h.%d." % l
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
        q = q.reshape(T, H, D).transpose(1, 0, 2)
        k = k.reshape(T, H, D).transpose(1, 0, 2)
        v = v.reshape(T, H, D).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(D)
        s = np.where(mask, -np.inf, s)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(T, C)
        x = x + a @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
        h = gelu(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], eps)
    return x @ w["wte.weight"].T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--steps", type=int, default=0, help="greedy continuation length")
    ap.add_argument("--logits", choices=["none", "last", "all"], default="last")
    ap.add_argument("--top", type=int, default=0)
    ap.add_argument("--logits-out")
    a = ap.parse_args()

    cfg, w = load(a.model)
    ids = [int(t) for t in a.ids.split(",") if t.strip()]
    if not ids:
        ap.error("--ids is empty")
    n_ctx = cfg.get("n_positions", cfg.get("n_ctx"))
    V = cfg["vocab_size"]
    if any(t < 0 or t >= V for t in ids):
        ap.error("token id outside the vocabulary (%d)" % V)
    if len(ids) + max(a.steps - 1, 0) > n_ctx:
        ap.error("prompt + steps exceed the context (%d)" % n_ctx)

    logits = forward(cfg, w, ids)
    out = {"ids": ids, "n_vocab": V, "n_ctx": n_ctx}
    last = logits[-1]
    if a.logits == "last":
        out["last_logits"] = last.tolist()
    elif a.logits == "all":
        out["all_logits"] = logits.tolist()
    if a.top:
        order = np.argsort(-last, kind="stable")[:a.top]
        out["top"] = {"ids": order.tolist(), "vals": last[order].tolist()}
    if a.logits_out:
        last.astype("<f4").tofile(a.logits_out)

    seq, greedy = list(ids), []
    step_logits = last
    for i in range(a.steps):
        nxt = int(np.argmax(step_logits))
        greedy.append(nxt)
        seq.append(nxt)
        if i + 1 < a.steps:
            step_logits = forward(cfg, w, seq)[-1]
    out["greedy"] = greedy
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
