"""Generation, tokenization and logits through the binding, checked against
the Hugging Face references stored with tests/data/hf-tiny-a (computed by
transformers in float64) and against the `miser` command's own output."""
import codecs
import json
import os

import numpy as np
import pytest

import miser
from miser._model import _Assembler

from conftest import TINY, run_cli

codecs.register_error("miser-test-per-byte", lambda e: ("\ufffd" * (e.end - e.start), e.end))


def test_library_is_reported():
    p = miser.library_path()
    assert os.path.isfile(p) and p.endswith(".so")
    assert miser.library_reason()
    assert miser.library_version() == miser.__version__


def test_tokenize_matches_hf(tiny, reference):
    for p in reference["prompts"]:
        assert tiny.tokenize(p["prompt"]) == p["ids"], p["prompt"]
        assert tiny.detokenize(p["ids"]) == p["prompt"]


def test_tokenize_matches_cli(tiny):
    text = "Hello world, naïve café 😀 <|endoftext|> ok"
    r = run_cli("tokenize", "-", input=text.encode())
    assert r.returncode == 0, r.stderr
    cli_ids = [int(x) for x in r.stdout.split()]
    assert tiny.tokenize(text) == cli_ids
    assert 50256 in cli_ids and 50256 not in tiny.tokenize(text, special_as_text=True)


def test_bytes_roundtrip(tiny):
    raw = b"\xff\xfe ok \xe2\x82"  # not UTF-8: the tokenizer keeps every byte
    assert tiny.detokenize_bytes(tiny.tokenize(raw)) == raw
    assert tiny.detokenize(tiny.tokenize(raw)) == raw.decode("utf-8", "replace")


def test_greedy_matches_hf(tiny, reference):
    for p in reference["prompts"]:
        g = tiny.generate(p["prompt"], max_new_tokens=20, ignore_eos=True)
        assert g.ids == p["greedy20"], p["prompt"]
        assert g.text == p["greedy20_text"], p["prompt"]
        assert g.prompt_ids == p["ids"]
        assert g.stop_reason == "max_new_tokens"
        assert g.timings.prefill_s > 0 and g.timings.decode_s > 0 and g.timings.decode_tok_s > 0


@pytest.mark.parametrize("opts", [
    {},
    {"temperature": 0.9, "top_k": 40, "seed": 7},
    {"temperature": 1.2, "top_p": 0.9, "seed": 123},
])
def test_generate_matches_cli(tiny, opts):
    args = ["generate", "--model", TINY, "--prompt", "In 1912, the", "--max-new-tokens", "30", "--json",
            "--threads", "1"]
    kw = {}
    for k, v in opts.items():
        args += ["--" + k.replace("_", "-"), str(v)]
        kw[k] = v
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    ref = json.loads(r.stdout)
    g = tiny.generate("In 1912, the", max_new_tokens=30, **kw)
    assert g.prompt_ids == ref["prompt_ids"]
    assert g.ids == ref["generated_ids"]
    # The CLI's JSON writes one U+FFFD per invalid byte; the binding decodes
    # as Python and Hugging Face do (one per maximal invalid subpart).
    assert g.data.decode("utf-8", "miser-test-per-byte") == ref["text"]
    assert g.text == g.data.decode("utf-8", "replace")
    assert g.stop_reason == ref["stop_reason"]


def test_token_ids_prompt_and_max_length(tiny, reference):
    p = reference["prompts"][1]
    g = tiny.generate(p["ids"], max_length=len(p["ids"]) + 7)
    assert g.ids == p["greedy20"][:7] and g.stop_reason == "max_length"


def test_stream_reassembles(tiny, reference):
    for p in reference["prompts"]:
        pieces = list(tiny.stream(p["prompt"], max_new_tokens=20, ignore_eos=True))
        assert "".join(pieces) == p["greedy20_text"]
        assert all(pieces)
    # sampled, longer, several stop at eos or not: same text both ways
    kw = dict(max_new_tokens=30, temperature=1.0, top_k=0, seed=5)
    assert "".join(tiny.stream("naïve café 😀", **kw)) == tiny.generate("naïve café 😀", **kw).text


def test_stream_holds_back_split_utf8():
    a = _Assembler([])
    euro = "€".encode()
    assert a.feed(b"x" + euro[:1]) == "x"
    assert a.feed(euro[1:2]) == ""
    assert a.feed(euro[2:]) == "€"
    assert a.feed(b"\xff") == "\ufffd"  # an invalid byte is not held back
    assert a.finish() == ""
    b = _Assembler([])
    assert b.feed(euro[:2]) == "" and b.finish() == "\ufffd"  # truncated at the end, as bytes.decode


def test_stop_strings(tiny, reference):
    p = reference["prompts"][0]
    full = p["greedy20_text"]
    stop = "phans"
    g = tiny.generate(p["prompt"], max_new_tokens=20, stop=[stop, "never-there"])
    assert g.text == full[:full.index(stop)]
    assert g.stop_reason == "stop"
    assert len(g.ids) < 20 and g.ids == p["greedy20"][:len(g.ids)]
    assert tiny.detokenize(g.ids).startswith(g.text + stop)
    assert "".join(tiny.stream(p["prompt"], max_new_tokens=20, stop=stop)) == g.text


def test_eval_logits_match_hf_without_copy(tiny, reference):
    hf = np.fromfile(os.path.join(TINY, "hello_last_logits.f32"), dtype="<f4")
    with tiny.session() as s:
        a = s.eval([15496])
        assert a.dtype == np.float32 and a.shape == (tiny.n_vocab,) and not a.flags.writeable
        np.testing.assert_allclose(a, hf, atol=2e-4)
        top = reference["prompts"][0]["last_logits_top10"]["ids"]
        assert list(np.argsort(-a)[:3]) == top[:3]
        addr = a.ctypes.data
        b = s.eval([32043])  # the next step: the same buffer, overwritten (no copy was made)
        assert b.ctypes.data == addr and s.position == 2
        s.reset()
        assert s.position == 0
        np.testing.assert_allclose(s.eval([15496]), hf, atol=2e-4)


def test_session_continues_like_one_generation(tiny, reference):
    p = reference["prompts"][1]
    with tiny.session() as s:
        g1 = s.generate(p["ids"], max_new_tokens=5, ignore_eos=True)
        assert g1.ids == p["greedy20"][:5]
        # feed the last generated token (generate never feeds back its last one) and go on
        g2 = s.generate(g1.ids[-1:], max_new_tokens=5, ignore_eos=True)
        assert g2.ids == p["greedy20"][5:10]
