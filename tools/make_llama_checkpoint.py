#!/usr/bin/python3
"""Write a randomised Llama-family checkpoint directory (config.json + safetensors).

An independent reference for miser's tests: numpy only, no miser code. The
safetensors files are written by hand from the format's definition, as
tools/make_checkpoint.py does (its writer is reused), with Hugging Face's
LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM key names and
PyTorch Linear layouts ([out_features, in_features]).

Usage:
  /usr/bin/python3 tools/make_llama_checkpoint.py --out DIR
      [--family llama|mistral|qwen2] [--layers 2] [--hidden 64] [--heads 4]
      [--kv-heads N] [--head-dim N] [--inner 160] [--vocab 300] [--ctx 128]
      [--dtype f32|f16|bf16] [--seed 0] [--std 0.02] [--eps 1e-5]
      [--theta 10000] [--rope-scaling none|linear:F|llama3:F,LOW,HIGH,ORIG]
      [--tied | --untied] [--bias] [--shards N] [--config-extra JSON]

  --kv-heads     num_key_value_heads (default: --heads, i.e. multi-head attention)
  --head-dim     store "head_dim" in config.json (default: hidden / heads, not stored)
  --tied         tie_word_embeddings true (no lm_head.weight); --untied stores lm_head
  --bias         Q/K/V biases (qwen2 always has them; llama: attention_bias, which
                 also gives o_proj a bias)
  --config-extra a JSON object merged into config.json (for refusal tests)
  --tokenizer-json  also write a byte-level BPE tokenizer.json (GPT-2's byte
                 alphabet, ids 0-255, then merges of letter pairs up to --vocab)

Weights: N(0, std) matrices (o_proj and down_proj scaled by 1/sqrt(2*layers)),
embeddings N(0, 1) * std * 25 so logits spread, RMSNorm weights 1 + N(0, 0.1),
biases N(0, 0.1). Tensors are stored in name order (as safetensors' own
serializer writes them), split round-robin over --shards files.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_checkpoint import encode, write_safetensors  # noqa: E402


def llama_tensors(a, rng):
    C, F, L, V = a.hidden, a.inner, a.layers, a.vocab
    H, KV = a.heads, a.kv_heads or a.heads
    D = a.head_dim or C // H
    s = a.std
    t = {}

    def normal(shape, std):
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    bias = a.bias or a.family == "qwen2"
    o_bias = a.bias and a.family != "qwen2"
    t["model.embed_tokens.weight"] = normal((V, C), s * 25)
    proj = s / np.sqrt(2.0 * L)
    for l in range(L):
        p = "model.layers.%d." % l
        t[p + "input_layernorm.weight"] = 1.0 + normal((C,), 0.1)
        t[p + "self_attn.q_proj.weight"] = normal((H * D, C), s * 4)
        t[p + "self_attn.k_proj.weight"] = normal((KV * D, C), s * 4)
        t[p + "self_attn.v_proj.weight"] = normal((KV * D, C), s * 4)
        if bias:
            t[p + "self_attn.q_proj.bias"] = normal((H * D,), 0.1)
            t[p + "self_attn.k_proj.bias"] = normal((KV * D,), 0.1)
            t[p + "self_attn.v_proj.bias"] = normal((KV * D,), 0.1)
        t[p + "self_attn.o_proj.weight"] = normal((C, H * D), proj * 4)
        if o_bias:
            t[p + "self_attn.o_proj.bias"] = normal((C,), 0.1)
        t[p + "post_attention_layernorm.weight"] = 1.0 + normal((C,), 0.1)
        t[p + "mlp.gate_proj.weight"] = normal((F, C), s * 4)
        t[p + "mlp.up_proj.weight"] = normal((F, C), s * 4)
        t[p + "mlp.down_proj.weight"] = normal((C, F), proj * 4)
    t["model.norm.weight"] = 1.0 + normal((C,), 0.1)
    if not a.tied:
        t["lm_head.weight"] = normal((V, C), s * 4)
    return t


def config(a):
    arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}[a.family]
    cfg = {
        "model_type": a.family,
        "architectures": [arch],
        "hidden_size": a.hidden,
        "intermediate_size": a.inner,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads or a.heads,
        "vocab_size": a.vocab,
        "max_position_embeddings": a.ctx,
        "rms_norm_eps": a.eps,
        "rope_theta": a.theta,
        "hidden_act": "silu",
        "tie_word_embeddings": bool(a.tied),
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}[a.dtype],
        "miser_test_seed": a.seed,
    }
    if a.family == "llama":
        cfg["attention_bias"] = bool(a.bias)
        cfg["mlp_bias"] = False
    if a.family == "mistral":
        cfg["sliding_window"] = None
    if a.family == "qwen2":
        cfg["use_sliding_window"] = False
        cfg["sliding_window"] = a.ctx
    if a.head_dim:
        cfg["head_dim"] = a.head_dim
    if a.rope_scaling != "none":
        kind, _, args = a.rope_scaling.partition(":")
        vals = [float(x) for x in args.split(",")] if args else []
        if kind == "linear":
            cfg["rope_scaling"] = {"rope_type": "linear", "factor": vals[0]}
        elif kind == "llama3":
            cfg["rope_scaling"] = {"rope_type": "llama3", "factor": vals[0], "low_freq_factor": vals[1],
                                   "high_freq_factor": vals[2], "original_max_position_embeddings": int(vals[3])}
        else:
            raise SystemExit("--rope-scaling: unknown kind %r" % kind)
    if a.config_extra:
        cfg.update(json.loads(a.config_extra))
    return cfg


def bytes_to_unicode():
    """GPT-2's printable stand-ins for the 256 byte values."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_tokenizer(path, n_vocab):
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = []
    letters = "etaoinshrdlucmfwyp"
    for a in letters:
        for b in letters:
            if len(vocab) >= n_vocab:
                break
            vocab[a + b] = len(vocab)
            merges.append(a + " " + b)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
           "pre_tokenizer": byte_level, "post_processor": None, "decoder": byte_level,
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                     "merges": merges}}
    with open(path, "w") as f:
        json.dump(tok, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--family", choices=["llama", "mistral", "qwen2"], default="llama")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=0)
    ap.add_argument("--head-dim", type=int, default=0)
    ap.add_argument("--inner", type=int, default=160)
    ap.add_argument("--vocab", type=int, default=300)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--eps", type=float, default=1e-5)
    ap.add_argument("--theta", type=float, default=10000.0)
    ap.add_argument("--rope-scaling", default="none")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--tied", dest="tied", action="store_true")
    g.add_argument("--untied", dest="tied", action="store_false")
    ap.set_defaults(tied=True)
    ap.add_argument("--bias", action="store_true")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--config-extra", default="")
    ap.add_argument("--tokenizer-json", action="store_true")
    a = ap.parse_args()
    if a.shards < 1:
        ap.error("--shards must be >= 1")
    if a.bias and a.family == "mistral":
        ap.error("--bias: Mistral's projections have no biases")
    rng = np.random.default_rng(a.seed)
    tensors = llama_tensors(a, rng)
    entries = []
    for name in sorted(tensors):
        dt, data = encode(tensors[name], a.dtype)
        entries.append((name, dt, tensors[name].shape, data))
    os.makedirs(a.out, exist_ok=True)
    meta = {"format": "pt", "source": "miser tools/make_llama_checkpoint.py seed=%d" % a.seed}
    if a.shards == 1:
        write_safetensors(os.path.join(a.out, "model.safetensors"), entries, meta)
    else:
        weight_map, total = {}, 0
        for i in range(a.shards):
            grp = entries[i::a.shards]
            fn = "model-%05d-of-%05d.safetensors" % (i + 1, a.shards)
            total += write_safetensors(os.path.join(a.out, fn), grp, meta)
            for n, _, _, _ in grp:
                weight_map[n] = fn
        with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    if a.tokenizer_json:
        if a.vocab < 256:
            ap.error("--tokenizer-json needs --vocab >= 256")
        write_tokenizer(os.path.join(a.out, "tokenizer.json"), a.vocab)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config(a), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
