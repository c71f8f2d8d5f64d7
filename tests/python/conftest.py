"""Shared fixtures of the Python binding's tests (run by `make test-python`:
PYTHONPATH=python, MISER_LIBRARY and MISER_BIN pointing at the build)."""
import json
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "tests", "data", "hf-tiny-a")


def cli_path():
    import miser.__main__ as mm
    exe = mm.find_binary()
    assert exe, "no miser binary: set MISER_BIN or build it"
    return exe


@pytest.fixture(scope="session")
def cli():
    return cli_path()


@pytest.fixture(scope="session")
def reference():
    with open(os.path.join(TINY, "reference.json")) as f:
        return json.load(f)


@pytest.fixture(scope="session")
def tiny():
    import miser
    m = miser.Model(TINY, threads=1)
    yield m
    m.close()


def run_cli(*args, input=None):
    r = subprocess.run([cli_path(), *args], input=input, capture_output=True, timeout=60)
    return r


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory, cli):
    """A synthetic checkpoint with a long context (slow enough to interrupt)."""
    d = tmp_path_factory.mktemp("synth")
    r = subprocess.run([cli, "synth", "--out", str(d), "--layers", "2", "--embd", "256", "--heads", "4",
                        "--ctx", "2048", "--quiet"], capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    return str(d)
