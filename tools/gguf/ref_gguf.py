#!/usr/bin/python3
"""numpy float64 forward of a GGUF file's weights, independent of miser: the
reference of tests/test_gguf.c. Tensors are decoded with gguf-py's
dequantize (llama.cpp's Python decoder of its block formats), renamed and
laid out back into Hugging Face's convention (GPT-2 Conv1D weights
transposed back, llama attn_q / attn_k rows un-permuted: the inverse of
convert_hf_to_gguf's permute), then tools/ref_gpt2.py / tools/ref_llama.py
run the forward pass.

  ref_gguf.py --model F.gguf --ids 1,2,3 [--steps N]

Prints JSON: "greedy" (N ids), "margins" (top-1 minus top-2 logit at each
step), "last_logits" (the prompt's last position), "n_vocab".
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "peers"))
sys.path.insert(0, os.path.join(HERE, ".."))
from to_gguf import import_gguf  # noqa: E402
import ref_gpt2  # noqa: E402
import ref_llama  # noqa: E402

import numpy as np  # noqa: E402

gguf = import_gguf()


def kv(rd, key, default=None):
    f = rd.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


def load(path):
    rd = gguf.GGUFReader(path)
    arch = kv(rd, "general.architecture")
    t = {}
    for x in rd.tensors:
        a = gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float64)
        t[x.name] = a.reshape([int(s) for s in reversed(x.shape)])
    L = kv(rd, f"{arch}.block_count")
    C = kv(rd, f"{arch}.embedding_length")
    H = kv(rd, f"{arch}.attention.head_count")
    V = t["token_embd.weight"].shape[0]
    w = {}
    if arch == "gpt2":
        cfg = {"n_embd": C, "n_head": H, "n_layer": L, "vocab_size": V,
               "layer_norm_epsilon": kv(rd, "gpt2.attention.layer_norm_epsilon", 1e-5)}
        w["wte.weight"], w["wpe.weight"] = t["token_embd.weight"], t["position_embd.weight"]
        w["ln_f.weight"], w["ln_f.bias"] = t["output_norm.weight"], t["output_norm.bias"]
        m = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj", "ffn_norm": "ln_2",
             "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
        for i in range(L):
            for g, h in m.items():
                wt = t[f"blk.{i}.{g}.weight"]
                w[f"h.{i}.{h}.weight"] = wt.T if wt.ndim == 2 else wt
                w[f"h.{i}.{h}.bias"] = t[f"blk.{i}.{g}.bias"]
        return "gpt2", cfg, w, V
    KV = kv(rd, f"{arch}.attention.head_count_kv", H)
    D = kv(rd, f"{arch}.attention.key_length", C // H)
    cfg = {"hidden_size": C, "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV,
           "head_dim": D, "rms_norm_eps": kv(rd, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5),
           "rope_theta": kv(rd, f"{arch}.rope.freq_base", 10000.0), "vocab_size": V,
           "tie_word_embeddings": "output.weight" not in t, "model_type": "qwen2" if arch == "qwen2" else "llama"}
    if kv(rd, f"{arch}.rope.scaling.type") == "linear":
        cfg["rope_scaling"] = {"type": "linear", "factor": kv(rd, f"{arch}.rope.scaling.factor")}

    def unpermute(a, n):  # inverse of convert_hf_to_gguf's LlamaModel.permute
        return a.reshape(n, a.shape[0] // n // 2, 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)

    w["model.embed_tokens.weight"] = t["token_embd.weight"]
    w["model.norm.weight"] = t["output_norm.weight"]
    if "output.weight" in t:
        w["lm_head.weight"] = t["output.weight"]
    m = {"attn_norm.weight": "input_layernorm.weight", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
         "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
         "ffn_norm.weight": "post_attention_layernorm.weight", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj"}
    for i in range(L):
        for g, h in m.items():
            if g.endswith(".weight"):
                w[f"model.layers.{i}.{h}"] = t[f"blk.{i}.{g}"]
                continue
            a = t[f"blk.{i}.{g}.weight"]
            if arch != "qwen2" and g in ("attn_q", "attn_k"):
                a = unpermute(a, H if g == "attn_q" else KV)
            w[f"model.layers.{i}.{h}.weight"] = a
            if f"blk.{i}.{g}.bias" in t:
                w[f"model.layers.{i}.{h}.bias"] = t[f"blk.{i}.{g}.bias"]
    return "llama", cfg, w, V


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a file, or several separated by commas: each result in FILE.ref.json")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--steps", type=int, default=0)
    a = ap.parse_args()
    models = a.model.split(",")
    for path in models:
        out = run(path, a)
        if len(models) == 1:
            json.dump(out, sys.stdout)
            sys.stdout.write("\n")
        else:
            with open(path + ".ref.json", "w") as f:
                json.dump(out, f)


def run(path, a):
    kind, cfg, w, V = load(path)
    fwd = ref_gpt2.forward if kind == "gpt2" else ref_llama.forward
    seq = [int(x) for x in a.ids.split(",")]
    logits = fwd(cfg, w, seq)[-1]
    out = {"n_vocab": V, "last_logits": logits.tolist(), "greedy": [], "margins": []}
    for i in range(a.steps):
        o = np.argsort(-logits, kind="stable")
        out["greedy"].append(int(o[0]))
        out["margins"].append(float(logits[o[0]] - logits[o[1]]))
        seq.append(int(o[0]))
        if i + 1 < a.steps:
            logits = fwd(cfg, w, seq)[-1]
    return out


if __name__ == "__main__":
    main()
