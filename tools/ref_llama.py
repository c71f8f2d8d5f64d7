#!/usr/bin/python3
"""Reference Llama-family forward pass in numpy float64, independent of miser.

Written from the semantics of Hugging Face transformers' modeling_llama.py
(LlamaRMSNorm, LlamaRotaryEmbedding + modeling_rope_utils' default / linear /
llama3 inverse frequencies, apply_rotary_pos_emb with rotate_half, repeat_kv,
eager attention with a causal mask, LlamaMLP) — also Mistral and Qwen2, which
differ only in biases and defaults. Reads the checkpoint with tools/ref_gpt2.py's
own safetensors parser (F32, F16, BF16; single file or sharded index). No KV
cache: every step recomputes the whole sequence.

Usage:
  /usr/bin/python3 tools/ref_llama.py --model DIR --ids 1,5,7 [--steps N]
      [--logits none|last|all] [--top K]

Output (one JSON object on stdout), as tools/ref_gpt2.py:
  {"ids": [...], "greedy": [N ids], "margins": [top-1 minus top-2 logit at each
   greedy step], "last_logits": [V floats], "n_vocab": V, "n_ctx": T}
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_gpt2 import load  # noqa: E402  (safetensors reader, shards)


def rms_norm(x, w, eps):
    var = (x * x).mean(-1, keepdims=True)
    return w * (x / np.sqrt(var + eps))


def inv_freq(cfg, dim):
    base = cfg.get("rope_theta", 10000.0)
    f = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "linear":
        f = f / rs["factor"]
    elif kind == "llama3":
        factor = rs["factor"]
        low, high = rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
        old = rs.get("original_max_position_embeddings", 8192)
        low_wl, high_wl = old / low, old / high
        wl = 2 * math.pi / f
        out = np.where(wl > low_wl, f / factor, f)
        smooth = (old / wl - low) / (high - low)
        smoothed = (1 - smooth) * out / factor + smooth * out
        medium = ~(wl < high_wl) & ~(wl > low_wl)
        f = np.where(medium, smoothed, out)
    elif kind != "default":
        raise SystemExit("rope_scaling type %r not in the reference" % kind)
    return f


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def forward(cfg, w, ids):
    """Logits [T, V] for token ids [T]."""
    C, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    D = cfg.get("head_dim") or C // H
    eps = cfg.get("rms_norm_eps", 1e-6)
    T = len(ids)
    x = w["model.embed_tokens.weight"][ids]
    freqs = np.outer(np.arange(T, dtype=np.float64), inv_freq(cfg, D))
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb), np.sin(emb)  # [T, D]
    mask = np.triu(np.ones((T, T), dtype=bool), 1)

    # biases as the config declares them (Hugging Face builds nn.Linear with
    # bias=config.attention_bias; Qwen2 always has Q/K/V biases, no o_proj bias)
    qwen2 = cfg.get("model_type") == "qwen2"
    attn_bias = bool(cfg.get("attention_bias", False)) and not qwen2

    def lin(h, name, bias=False):
        y = h @ w[name + ".weight"].T
        if bias:
            y = y + w[name + ".bias"]
        return y

    for l in range(L):
        p = "model.layers.%d." % l
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        qkv_bias = qwen2 or attn_bias
        q = lin(h, p + "self_attn.q_proj", qkv_bias).reshape(T, H, D).transpose(1, 0, 2)
        k = lin(h, p + "self_attn.k_proj", qkv_bias).reshape(T, KV, D).transpose(1, 0, 2)
        v = lin(h, p + "self_attn.v_proj", qkv_bias).reshape(T, KV, D).transpose(1, 0, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = H // KV  # repeat_kv: query head h uses KV head h // rep
        k = np.repeat(k, rep, axis=0)
        v = np.repeat(v, rep, axis=0)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(D)
        s = np.where(mask, -np.inf, s)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(T, H * D)
        x = x + lin(a, p + "self_attn.o_proj", attn_bias)
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = lin(h, p + "mlp.gate_proj")
        u = lin(h, p + "mlp.up_proj")
        x = x + lin(g / (1.0 + np.exp(-g)) * u, p + "mlp.down_proj")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return x @ head.T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--steps", type=int, default=0)
    ap.add_argument("--logits", choices=["none", "last", "all"], default="last")
    ap.add_argument("--top", type=int, default=0)
    a = ap.parse_args()
    cfg, w = load(a.model)
    ids = [int(t) for t in a.ids.split(",") if t.strip()]
    if not ids:
        ap.error("--ids is empty")
    V = cfg["vocab_size"]
    if any(t < 0 or t >= V for t in ids):
        ap.error("token id outside the vocabulary (%d)" % V)
    logits = forward(cfg, w, ids)
    out = {"ids": ids, "n_vocab": V, "n_ctx": cfg["max_position_embeddings"]}
    last = logits[-1]
    if a.logits == "last":
        out["last_logits"] = last.tolist()
    elif a.logits == "all":
        out["all_logits"] = logits.tolist()
    if a.top:
        order = np.argsort(-last, kind="stable")[:a.top]
        out["top"] = {"ids": order.tolist(), "vals": last[order].tolist()}
    seq, greedy, margins = list(ids), [], []
    step_logits = last
    for i in range(a.steps):
        order = np.argsort(-step_logits, kind="stable")
        greedy.append(int(order[0]))
        margins.append(float(step_logits[order[0]] - step_logits[order[1]]))
        seq.append(int(order[0]))
        if i + 1 < a.steps:
            step_logits = forward(cfg, w, seq)[-1]
    out["greedy"] = greedy
    out["margins"] = margins
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
