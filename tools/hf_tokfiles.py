#!/usr/bin/env python3
"""Writes byte-level BPE tokenizer.json files for miser's tests, built from
GPT-2's vocabulary (data/gpt2/encoder.json + vocab.bpe) with the
pre-tokenizer, added tokens and post-processor configurations that GPT-2,
Llama 3 and Qwen2 publish (field for field as in their tokenizer.json).

    tools/hf_tokfiles.py VARIANT OUTDIR     VARIANT: gpt2 | gpt2split | llama3 | qwen2 | smollm2 | smollm2split

smollm2 is SmolLM2's pre-tokenizer (Digits with individual_digits, then
ByteLevel with its regex). gpt2split (smollm2split) is gpt2 (smollm2) with the ByteLevel regex written as a Split pre-tokenizer
(ByteLevel use_regex=false after it): the same tokenizer under the Rust
crate, used where the JavaScript reference's ByteLevel differs from it (its
built-in regex uses JavaScript's \\s, which takes U+FEFF and not U+0085).
Writes OUTDIR/tokenizer.json and OUTDIR/tokenizer_config.json.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def added(id_, content, special=True, normalized=False, lstrip=False, rstrip=False):
    return {"id": id_, "content": content, "single_word": False, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def bytelevel(use_regex, add_prefix_space=False):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}


def split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


def main():
    variant, out = sys.argv[1], sys.argv[2]
    vocab = json.load(open(os.path.join(ROOT, "data/gpt2/encoder.json"), encoding="utf-8"))
    merges = [l for l in open(os.path.join(ROOT, "data/gpt2/vocab.bpe"), encoding="utf-8").read().split("\n")
              if l and not l.startswith("#version")]
    n = len(vocab)
    tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
           "pre_tokenizer": None, "post_processor": None, "decoder": {"type": "ByteLevel", "add_prefix_space": True,
                                                                      "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                     "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                     "merges": merges}}
    cfg = {"add_prefix_space": False, "clean_up_tokenization_spaces": False}
    if variant in ("gpt2", "gpt2split"):
        tok["added_tokens"] = [added(50256, "<|endoftext|>", normalized=True)]
        tok["pre_tokenizer"] = bytelevel(True)
        if variant == "gpt2split":
            tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [split(GPT2_RE), bytelevel(False)]}
        tok["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                                 "use_regex": True}
        cfg.update({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"})
    elif variant in ("llama3", "qwen2"):
        # ids past GPT-2's vocabulary, as Llama 3's 128000+ and Qwen2's 151643+
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                    "<|eot_id|>", "<|reserved_special_token_0|>", "<|im_start|>", "<|im_end|>"]
        tok["added_tokens"] = [added(50256, "<|endoftext|>")]
        tok["added_tokens"] += [added(n + k, s) for k, s in enumerate(specials)]
        # a non-special added token, and RoBERTa-style strip flags
        tok["added_tokens"] += [added(n + 8, "<tool>", special=False),
                                added(n + 9, "<mask>", lstrip=True),
                                added(n + 10, "[SEP]", rstrip=True)]
        tok["model"]["ignore_merges"] = variant == "llama3"
        regex = LLAMA3_RE if variant == "llama3" else QWEN2_RE
        tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [split(regex), bytelevel(False)]}
        if variant == "llama3":
            bos = "<|begin_of_text|>"
            tok["post_processor"] = {"type": "Sequence", "processors": [
                {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
                {"type": "TemplateProcessing",
                 "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                 "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                          {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                 "special_tokens": {bos: {"id": bos, "ids": [n], "tokens": [bos]}}}]}
            cfg.update({"bos_token": bos, "eos_token": "<|end_of_text|>"})
        else:
            tok["normalizer"] = {"type": "NFC"}
            tok["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                                     "use_regex": False}
            cfg.update({"bos_token": None, "eos_token": "<|im_end|>"})
    elif variant in ("smollm2", "smollm2split"):
        tok["added_tokens"] = [added(50256, "<|endoftext|>"), added(n, "<|im_start|>"), added(n + 1, "<|im_end|>")]
        digits = {"type": "Digits", "individual_digits": True}
        if variant == "smollm2":
            steps = [digits, bytelevel(True)]
        else:
            steps = [digits, split(GPT2_RE), bytelevel(False)]
        tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": steps}
        tok["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                                 "use_regex": True}
        cfg.update({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"})
    else:
        sys.exit("unknown variant " + variant)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
