#!/usr/bin/env python3
"""SentencePiece BPE -> Hugging Face tokenizer.json, the way transformers'
convert_slow_tokenizer.LlamaConverter does it (run with /usr/bin/python3:
Debian's python3-sentencepiece).

    sp_to_tokenizer_json.py train PREFIX [VOCAB]   train a tiny BPE model (PREFIX.model) on a built-in
                                                   text, with Llama 2's trainer options (byte_fallback,
                                                   identity normalization, dummy prefix, split digits)
    sp_to_tokenizer_json.py convert MODEL OUTDIR [--metaspace]
                                                   write OUTDIR/tokenizer.json + tokenizer_config.json:
                                                   legacy form (Prepend + Replace normalizers, as Llama 2
                                                   and TinyLlama ship) or, with --metaspace, the
                                                   Metaspace(prepend_scheme=first) pre-tokenizer form
    sp_to_tokenizer_json.py encode MODEL FILE...   sentencepiece's own ids (no bos), one JSON array per
                                                   FILE (read as UTF-8)
    sp_to_tokenizer_json.py pieces MODEL           one JSON line per piece: [piece, score, type]
                                                   (type as the model proto and GGUF number them:
                                                   1 normal, 2 unknown, 3 control, 4 user, 5 unused, 6 byte)

The converter follows LlamaConverter: vocabulary = <unk>, <s>, </s> then the
model's pieces with their scores; merges from SentencePieceExtractor.extract
(every split of a piece into two pieces of the vocabulary, ordered by the
piece's score, highest first, ties in vocabulary order); BPE with
unk_token, fuse_unk and byte_fallback; decoder Replace(U+2581 -> " "),
ByteFallback, Fuse, Strip(" ", 1, 0); post-processor "<s> $A".
"""
import json
import os
import sys

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb2

SPACE = "\u2581"

TEXT = """The quick brown fox jumps over the lazy dog. It's a truth universally acknowledged that a model
in possession of a good vocabulary must be in want of a tokenizer. We'll see; they're here, you've seen,
I'm sure, he'd say. Numbers: 1234567890, 3.14159, 2024-01-01, 42 apples and 7 oranges.
Café, naïve, résumé, Ångström, Straße, ﬁnance, ½ cup. Привет мир. Γειά σου κόσμε.
日本語のテキストと中文的文本。 한국어 텍스트. Emoji: 🙂 👍🏽 ❤️.
    def tokenize(text):
        return [t for t in text.split()]

Memory-frugal inference keeps weights mapped read-only and never copies them; the compiler folds
constants as views. Tokens are counted as tokens, not words. Once upon a time, in a land far away,
there lived a small model that wanted to be fast and small at once.
"""


def corpus():
    lines = []
    words = TEXT.split()
    for k in range(60):
        lines.append(TEXT.splitlines()[k % len(TEXT.splitlines())])
        lines.append(" ".join(words[(k * 7 + j * 3) % len(words)] for j in range(12)))
    return "\n".join(lines) + "\n"


def train(prefix, vocab):
    path = prefix + ".txt"
    with open(path, "w", encoding="utf-8") as f:
        f.write(corpus())
    spm.SentencePieceTrainer.train(
        input=path, model_prefix=prefix, model_type="bpe", vocab_size=vocab, byte_fallback=True,
        character_coverage=1.0, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)


def extract_merges(sp, vocab_scores):
    # transformers' SentencePieceExtractor.extract(vocab_scores)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    scores = dict(vocab_scores)
    merges = []
    for merge, score in scores.items():
        local = []
        for index in range(1, len(merge)):
            left, right = merge[:index], merge[index:]
            if left in vocab and right in vocab:
                local.append((left, right, score))
        local = sorted(local, key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges = sorted(merges, key=lambda v: v[2], reverse=True)
    return [[a, b] for a, b, _ in merges]


def convert(model, out, metaspace):
    sp = spm.SentencePieceProcessor(model_file=model)
    proto = pb2.ModelProto()
    proto.ParseFromString(open(model, "rb").read())
    assert proto.trainer_spec.model_type == 2, "not a BPE model"
    vocab_scores = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)]
    vocab_scores += [(p.piece, p.score) for p in proto.pieces[3:]]
    bpe_vocab = {w: i for i, (w, _) in enumerate(vocab_scores)}
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": decoder,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": bpe_vocab, "merges": extract_merges(sp, vocab_scores)}}
    if metaspace:
        tok["normalizer"] = None
        tok["pre_tokenizer"] = {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first",
                                "split": False}
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", "legacy": not metaspace, "clean_up_tokenization_spaces": False}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False)


def encode(model, files):
    sp = spm.SentencePieceProcessor(model_file=model)
    for f in files:
        text = open(f, "rb").read().decode("utf-8", errors="replace")
        print(json.dumps(sp.encode(text)))


def pieces(model):
    proto = pb2.ModelProto()
    proto.ParseFromString(open(model, "rb").read())
    for p in proto.pieces:
        print(json.dumps([p.piece, p.score, int(p.type)], ensure_ascii=False))


def main():
    cmd = sys.argv[1]
    if cmd == "train":
        train(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 700)
    elif cmd == "convert":
        convert(sys.argv[2], sys.argv[3], "--metaspace" in sys.argv[4:])
    elif cmd == "pieces":
        pieces(sys.argv[2])
    elif cmd == "encode":
        encode(sys.argv[2], sys.argv[3:])
    else:
        sys.exit("usage: sp_to_tokenizer_json.py train|convert|encode ...")


if __name__ == "__main__":
    main()
