"""Errors are exceptions carrying the library's message, one class per
status; closed objects raise instead of crashing; a missing library names
every place it was looked for."""
import os
import shutil
import subprocess
import sys

import pytest

import miser

from conftest import REPO, TINY


def test_bad_paths(tmp_path):
    with pytest.raises(miser.MiserIOError) as e:
        miser.Model(str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(e.value) and e.value.status == 2
    assert isinstance(e.value, OSError) and isinstance(e.value, miser.MiserError)
    bad = tmp_path / "trunc"
    bad.mkdir()
    shutil.copy(os.path.join(TINY, "config.json"), bad / "config.json")
    with open(os.path.join(TINY, "model.safetensors"), "rb") as f:
        (bad / "model.safetensors").write_bytes(f.read(100000))
    with pytest.raises(miser.FormatError) as e:
        miser.Model(str(bad))
    assert "model.safetensors" in str(e.value)


def test_bad_options():
    with pytest.raises(miser.RangeError, match="context"):
        miser.Model(TINY, ctx=4096)
    with pytest.raises(miser.InvalidInputError, match="precision"):
        miser.Model(TINY, precision="f8")
    with pytest.raises(miser.InvalidInputError):
        miser.Model(TINY, threads=0)


def test_bad_prompts(tiny):
    with pytest.raises(miser.InvalidInputError, match="UTF-8"):
        tiny.generate(b"ab\xff\xfe")
    with pytest.raises(miser.InvalidInputError, match="UTF-8"):
        list(tiny.stream(b"\xc3"))
    with pytest.raises(miser.InvalidInputError, match="Unicode"):
        tiny.generate("\udc80")
    with pytest.raises(miser.InvalidInputError, match="context"):
        tiny.generate("hello " * 200)
    with pytest.raises(miser.InvalidInputError, match="empty"):
        tiny.generate("")
    with pytest.raises(miser.InvalidInputError, match="vocabulary"):
        tiny.generate([1, 50257])
    with pytest.raises(miser.InvalidInputError):
        tiny.generate("Hello", max_new_tokens=0)
    with pytest.raises(miser.InvalidInputError):
        tiny.generate("Hello", temperature=-1)
    with pytest.raises(miser.RangeError, match="50300"):
        tiny.detokenize([1, 50300])


def test_session_errors(tiny):
    with tiny.session(capacity=8) as s:
        with pytest.raises(miser.RangeError):
            s.eval(list(range(9)))  # more than the cache holds
        with pytest.raises(miser.RangeError):
            s.eval([60000])
        with pytest.raises(miser.InvalidInputError):
            s.eval([])
    with pytest.raises(miser.RangeError):
        tiny.session(capacity=129)


def test_closed_objects():
    m = miser.Model(TINY, threads=1)
    s = m.session()
    s2 = m.session()
    s2.close()
    with pytest.raises(miser.ClosedError):
        s2.eval([1])
    m.close()
    assert m.closed and s.closed  # closing a model closes its sessions
    for call in (lambda: m.generate("Hi"), lambda: m.tokenize("Hi"), lambda: m.detokenize([1]), m.session,
                 lambda: s.eval([1]), lambda: s.generate([1]), s.reset, lambda: s.position,
                 lambda: list(m.stream("Hi"))):
        with pytest.raises(miser.ClosedError):
            call()
    m.close()
    s.close()  # idempotent


def test_library_not_found_lists_places(tmp_path):
    env = dict(os.environ, MISER_LIBRARY=str(tmp_path / "libnope.so"),
               PYTHONPATH=os.path.join(REPO, "python"))
    code = ("import miser\n"
            "try:\n    miser.Model('x')\n"
            "except miser.LibraryNotFoundError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    msg = r.stdout.decode()
    assert "libnope.so ($MISER_LIBRARY): no such file" in msg and "MISER_LIBRARY" in msg


def test_python_m_miser_forwards(cli):
    r = subprocess.run([sys.executable, "-m", "miser", "detokenize", "15496", "995"], capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "Hello world"
    r = subprocess.run([sys.executable, "-m", "miser", "generate"], capture_output=True, timeout=60)
    assert r.returncode == 2  # the CLI's own exit code for a bad command line
