#!/usr/bin/python3
"""Convert a Hugging Face Llama checkpoint to GGUF for llama.cpp (architecture llama).

Used by llamacpp_llama.js (the llama.cpp peer for Llama-family checkpoints)
and by miser's tests (tests/test_llama.c), with the gguf Python package of
the llama.cpp release node-llama-cpp ships (see to_gguf.py). Names, metadata
and the Q/K row permutation follow that release's convert_hf_to_gguf.py
(LlamaModel): llama.cpp's llama graph applies rotary embeddings to adjacent
pairs (rope "normal"), Hugging Face to the two halves of each head
(rotate-half), so the converter reorders the rows of q_proj and k_proj per
head: permute(W, n_head) = W.reshape(n_head, 2, D/2, C).swapaxes(1, 2).
  token_embd [V, C]  blk.N.attn_norm  blk.N.attn_q [H*D, C] (permuted)
  blk.N.attn_k [KV*D, C] (permuted)  blk.N.attn_v  blk.N.attn_output
  blk.N.ffn_norm  blk.N.ffn_gate  blk.N.ffn_up  blk.N.ffn_down
  output_norm  output [V, C] (untied only; tied: llama.cpp uses token_embd)
Q/K/V biases are refused (llama.cpp's qwen2 architecture, not done here), as
are rope_scaling types other than none and linear. With f16 or q8_0 the 2-D
weights take that type (q8_0 needs rows of 32k; else f16), norms stay f32.
Tokenizer metadata: GPT-2's byte-level vocabulary cut or padded to the
checkpoint's vocabulary (as to_gguf.py does): the adapters pass token ids.

  to_gguf_llama.py --model DIR --out FILE.gguf [--precision f32|f16|q8_0]
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import peer_common as pc  # noqa: E402
from to_gguf import import_gguf, load_vocab  # noqa: E402
from ref_gpt2 import load  # noqa: E402  (safetensors reader: shards, F32/F16/BF16)

import numpy as np  # noqa: E402

PROG = "to_gguf_llama"


def permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: rotate-half rows -> adjacent pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def convert(model_dir, out, precision):
    gguf = import_gguf()
    cfg, w = load(model_dir)
    C, L, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads") or H
    D = cfg.get("head_dim") or C // H
    if cfg.get("model_type") == "qwen2" or cfg.get("attention_bias"):
        raise pc.PeerError("Q/K/V biases (qwen2, attention_bias) are not converted", pc.EXIT_UNSUPPORTED)
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind not in ("default", "linear"):
        raise pc.PeerError(f"rope_scaling {kind!r} is not converted", pc.EXIT_UNSUPPORTED)
    Q = gguf.GGMLQuantizationType
    wtype = {"f32": Q.F32, "f16": Q.F16, "q8_0": Q.Q8_0}[precision]
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[precision]

    def tensor(a, quant):
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not quant or a.ndim != 2 or wtype == Q.F32:
            return a, Q.F32
        if wtype == Q.F16 or a.shape[-1] % 32:
            return a.astype(np.float16), Q.F16
        return gguf.quants.quantize(a, Q.Q8_0), Q.Q8_0

    plan = [("token_embd.weight", w["model.embed_tokens.weight"], True)]
    for i in range(L):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        plan += [(b + "attn_norm.weight", w[p + "input_layernorm.weight"], False),
                 (b + "attn_q.weight", permute(w[p + "self_attn.q_proj.weight"], H), True),
                 (b + "attn_k.weight", permute(w[p + "self_attn.k_proj.weight"], KV), True),
                 (b + "attn_v.weight", w[p + "self_attn.v_proj.weight"], True),
                 (b + "attn_output.weight", w[p + "self_attn.o_proj.weight"], True),
                 (b + "ffn_norm.weight", w[p + "post_attention_layernorm.weight"], False),
                 (b + "ffn_gate.weight", w[p + "mlp.gate_proj.weight"], True),
                 (b + "ffn_up.weight", w[p + "mlp.up_proj.weight"], True),
                 (b + "ffn_down.weight", w[p + "mlp.down_proj.weight"], True)]
    plan.append(("output_norm.weight", w["model.norm.weight"], False))
    if not cfg.get("tie_word_embeddings", False):
        plan.append(("output.weight", w["lm_head.weight"], True))

    tokens, merges = load_vocab(model_dir, V)
    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, f".{os.path.basename(out)}.tmp.{os.getpid()}")
    try:
        g = gguf.GGUFWriter(tmp, "llama")
        g.add_name(os.path.basename(os.path.realpath(model_dir)))
        g.add_block_count(L)
        g.add_context_length(cfg["max_position_embeddings"])
        g.add_embedding_length(C)
        g.add_feed_forward_length(cfg["intermediate_size"])
        g.add_head_count(H)
        g.add_head_count_kv(KV)
        g.add_key_length(D)
        g.add_value_length(D)
        g.add_rope_dimension_count(D)
        g.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
        if kind == "linear":
            g.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
            g.add_rope_scaling_factor(float(rs["factor"]))
        g.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
        g.add_vocab_size(V)
        g.add_file_type(ftype)
        g.add_quantization_version(gguf.GGML_QUANT_VERSION)
        g.add_tokenizer_model("gpt2")
        g.add_tokenizer_pre("gpt-2")
        g.add_token_list(tokens)
        toktypes = [gguf.TokenType.NORMAL] * len(tokens)
        for i, t in enumerate(tokens):
            if t.startswith("[PAD") and t.endswith("]"):
                toktypes[i] = gguf.TokenType.USER_DEFINED
        eos = cfg.get("eos_token_id")
        eos = (eos[0] if isinstance(eos, list) else eos) if eos is not None else V - 1
        toktypes[eos] = gguf.TokenType.CONTROL
        g.add_token_types(toktypes)
        g.add_token_merges(merges)
        g.add_bos_token_id(cfg.get("bos_token_id") if cfg.get("bos_token_id") is not None else eos)
        g.add_eos_token_id(eos)
        g.add_add_bos_token(False)
        for name, a, q in plan:
            data, qt = tensor(a, q)
            g.add_tensor(name, data, raw_dtype=qt if qt == Q.Q8_0 else None)
        g.write_header_to_file()
        g.write_kv_data_to_file()
        g.write_tensors_to_file()
        g.close()
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main():
    ap = argparse.ArgumentParser(prog=PROG, description="Convert a HF Llama checkpoint to GGUF (llama.cpp llama)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--precision", choices=("f32", "f16", "q8_0"), default="f32")
    args = ap.parse_args()
    t0 = time.perf_counter()
    convert(args.model, args.out, args.precision)
    print(f"{PROG}: wrote {args.out} ({args.precision}) in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    pc.run_main(PROG, main)
