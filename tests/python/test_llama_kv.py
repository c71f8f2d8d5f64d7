"""The KV cache's dtype through the binding (Session(kv_f16=...)), on a small
Llama-family checkpoint written by tools/make_llama_checkpoint.py (whose
family default is an f16 cache) and on the GPT-2 tiny reference (f32).

References, not our own numbers: the last-position logits against
tools/ref_llama.py (a float64 numpy forward in Hugging Face's convention,
no KV cache at all) — within 1e-4 relative L2 with an f32 cache, as
tests/test_llama.c holds the C path, and within 5e-4 with the default f16
one; the KV bytes against 2 x layers x capacity x KV heads x head size x
element size computed here from config.json."""
import json
import os
import subprocess

import numpy as np
import pytest

import miser

from conftest import REPO, TINY

PROMPT = [1, 17, 42, 99, 7, 250, 3, 64, 128, 5, 77]
TOOLS = os.path.join(REPO, "tools")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("llama") / "gqa")
    r = subprocess.run(["/usr/bin/python3", os.path.join(TOOLS, "make_llama_checkpoint.py"), "--out", d,
                        "--hidden", "64", "--heads", "4", "--kv-heads", "2", "--untied", "--seed", "23"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return d


@pytest.fixture(scope="module")
def numpy_logits(llama_dir):
    r = subprocess.run(["/usr/bin/python3", os.path.join(TOOLS, "ref_llama.py"), "--model", llama_dir, "--ids",
                        ",".join(map(str, PROMPT)), "--steps", "1", "--logits", "last"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return np.array(json.loads(r.stdout)["last_logits"], dtype=np.float64)


def kv_elems_per_position(path):
    """2 x layers x KV heads x head size, from config.json (Llama or GPT-2 keys)."""
    with open(os.path.join(path, "config.json")) as f:
        c = json.load(f)
    layers = c.get("num_hidden_layers", c.get("n_layer"))
    heads = c.get("num_attention_heads", c.get("n_head"))
    hidden = c.get("hidden_size", c.get("n_embd"))
    return 2 * layers * c.get("num_key_value_heads", heads) * c.get("head_dim", hidden // heads)


def rel_l2(a, ref):
    return float(np.linalg.norm(a.astype(np.float64) - ref) / np.linalg.norm(ref))


def test_llama_f32_kv_matches_numpy(llama_dir, numpy_logits):
    per_pos = kv_elems_per_position(llama_dir)
    with miser.Model(llama_dir, threads=1) as m:
        cap = 32
        got = {}
        for kv_f16, dtype, size, tol in [(False, "f32", 4, 1e-4), (None, "f16", 2, 5e-4), (True, "f16", 2, 5e-4)]:
            with m.session(cap, kv_f16=kv_f16) as s:
                assert s.kv_dtype == dtype, kv_f16
                assert s.kv_bytes == per_pos * cap * size, kv_f16
                assert s.footprint["kv"] == s.kv_bytes and s.footprint["arena"] > 0
                lg = s.eval(PROMPT).copy()
                assert lg.shape == numpy_logits.shape
                err = rel_l2(lg, numpy_logits)
                assert err < tol, f"kv_f16={kv_f16}: relative L2 {err:.3g} >= {tol}"
                got[kv_f16] = (err, lg)
        # forcing f32 really changes the cache the logits come from: an f16
        # cache rounds every K/V element (2^-11 relative), an f32 one does not
        assert not np.array_equal(got[False][1], got[None][1])
        assert np.array_equal(got[None][1], got[True][1])
        # miser.Session directly, as the docs show it
        with miser.Session(m, cap, kv_f16=False) as s:
            assert s.kv_dtype == "f32" and s.kv_bytes == per_pos * cap * 4


def test_gpt2_default_is_f32_and_f16_halves_it(tiny):
    per_pos = kv_elems_per_position(TINY)
    with tiny.session(16) as s:
        assert s.kv_dtype == "f32" and s.kv_bytes == per_pos * 16 * 4
    with tiny.session(16, kv_f16=True) as s:
        assert s.kv_dtype == "f16" and s.kv_bytes == per_pos * 16 * 2
    with tiny.session(16, kv_f16=False) as s:
        assert s.kv_dtype == "f32"


def test_kv_f16_must_be_a_bool(tiny):
    for bad in ("f32", 1, 0.5):
        with pytest.raises(miser.InvalidInputError):
            tiny.session(4, kv_f16=bad)
    with pytest.raises(miser.RangeError):
        tiny.session(tiny.ctx + 1, kv_f16=False)
