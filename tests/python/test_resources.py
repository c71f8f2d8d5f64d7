"""Native memory, threads, the GIL and Ctrl-C: no leak over 1,000
create/free cycles (RssAnon flat), two threads on two sessions give the
sequential results, native generation runs without the GIL, SIGINT stops a
generation between tokens; and the package installs with pip, offline."""
import gc
import os
import shutil
import signal
import subprocess
import threading
import time
import venv

import pytest

import miser

from conftest import REPO, TINY


def rss_anon_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    pytest.skip("no RssAnon in /proc/self/status")


def test_no_leak_over_1000_cycles(tiny):
    def cycle(i):
        with tiny.session(capacity=16) as s:
            s.eval([15496, 995])
        s2 = tiny.session(capacity=16)  # freed by collection, not close()
        del s2
        tiny.detokenize(tiny.tokenize("Hello world"))
        if i % 4 == 0:
            tiny.generate("Hi", max_new_tokens=3)
        with miser.Profiler() as p:
            p.stage("a")
        p.report()
        p.close()
        try:
            tiny.generate(b"\xff")
        except miser.InvalidInputError:
            pass

    for i in range(100):
        cycle(i)
    gc.collect()
    before = rss_anon_kb()
    for i in range(1000):
        cycle(i)
    gc.collect()
    grown = rss_anon_kb() - before
    assert grown < 2048, f"RssAnon grew by {grown} KiB over 1,000 cycles"


def test_no_leak_over_model_cycles():
    def cycle():
        m = miser.Model(TINY, threads=1)
        m.generate("Hi", max_new_tokens=2)
        m.close()
        miser.Model(TINY, threads=1)  # collected without close()
        try:
            miser.Model("/nonexistent")
        except miser.MiserIOError:
            pass

    for _ in range(5):
        cycle()
    gc.collect()
    before = rss_anon_kb()
    for _ in range(30):
        cycle()
    gc.collect()
    grown = rss_anon_kb() - before
    assert grown < 2048, f"RssAnon grew by {grown} KiB over 30 model cycles"


def test_two_threads_two_sessions_equal_sequential(tiny):
    jobs = [("Hello", dict(max_new_tokens=40, ignore_eos=True)),
            ("The quick brown fox", dict(max_new_tokens=20, temperature=0.8, top_k=50, seed=3, ignore_eos=True)),
            ("In 1912, the", dict(max_new_tokens=20, temperature=1.0, top_p=0.9, seed=9, ignore_eos=True)),
            ("naïve café 😀", dict(max_new_tokens=40, ignore_eos=True))]
    sequential = [[tiny.generate(p, **kw).ids for p, kw in jobs] for _ in range(2)]
    results = [None, None]
    errors = []

    def worker(k):
        try:
            with tiny.session() as s:
                out = []
                for p, kw in jobs:
                    s.reset()
                    out.append(s.generate(p, **kw).ids)
                results[k] = out
        except BaseException as e:  # reported below
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    assert results[0] == sequential[0] and results[1] == sequential[1]


def test_one_session_two_threads_is_refused(synth_dir):
    m = miser.Model(synth_dir, threads=1)
    s = m.session()
    t = threading.Thread(target=lambda: s.generate("Hello", max_new_tokens=30, ignore_eos=True))
    t.start()
    time.sleep(0.05)
    with pytest.raises(miser.InvalidInputError, match="in use"):
        s.eval([1])
    t.join()
    m.close()


def test_generation_releases_the_gil(synth_dir):
    m = miser.Model(synth_dir, threads=1)
    span = {}

    def worker():
        span["t0"] = time.perf_counter()
        m.generate("Hello", max_new_tokens=40, ignore_eos=True)
        span["t1"] = time.perf_counter()

    t = threading.Thread(target=worker)
    stamps = []
    t.start()
    while t.is_alive():
        stamps.append(time.perf_counter())  # pure Python: runs only while this thread holds the GIL
    t.join()
    m.close()
    during = [x for x in stamps if span["t0"] <= x <= span["t1"]]
    dur = span["t1"] - span["t0"]
    gaps = [b - a for a, b in zip(during, during[1:])]
    assert dur > 0.1 and during, "the generation was too short to tell"
    # Holding the GIL for the native call would stop this loop for the whole call.
    assert max(gaps) < 0.5 * dur, f"the main thread stalled {max(gaps):.3f} s of a {dur:.3f} s generation"


def _interrupt_after(seconds):
    pid = os.getpid()
    t = threading.Timer(seconds, lambda: os.kill(pid, signal.SIGINT))
    t.start()
    return t


def test_ctrl_c_stops_generate_between_tokens(synth_dir):
    m = miser.Model(synth_dir, threads=1)
    full = 1500  # many seconds of tokens
    t0 = time.perf_counter()
    timer = _interrupt_after(0.2)
    with pytest.raises(KeyboardInterrupt):
        m.generate("Hello", max_new_tokens=full, ignore_eos=True)
    took = time.perf_counter() - t0
    timer.join()
    assert took < 2.0, f"SIGINT took {took:.2f} s to stop the generation"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # left alone
    assert len(m.generate("Hello", max_new_tokens=3, ignore_eos=True).ids) == 3  # still usable
    # streaming: the iterator stops its worker and raises
    t0 = time.perf_counter()
    timer = _interrupt_after(0.2)
    pieces = []
    with pytest.raises(KeyboardInterrupt):
        for p in m.stream("Hello", max_new_tokens=full, ignore_eos=True):
            pieces.append(p)
    timer.join()
    assert time.perf_counter() - t0 < 2.0 and pieces
    assert not [t for t in threading.enumerate() if t.name == "miser-stream"]
    m.close()


@pytest.mark.pip_install
def test_pip_install_offline(tmp_path):
    """`pip install --no-build-isolation --no-index ./python` into a venv that
    sees the system packages, then import from the venv (a few seconds)."""
    vdir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(vdir)
    py = str(vdir / "bin" / "python")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the repository
    shutil.copytree(os.path.join(REPO, "python"), src,
                    ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-index",
                        "--disable-pip-version-check", str(src)],
                       capture_output=True, env=env, timeout=120, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    env["MISER_LIBRARY"] = miser.library_path()
    code = ("import miser, os\n"
            "assert os.path.dirname(miser.__file__).startswith(%r), miser.__file__\n"
            "m = miser.Model(%r, threads=1)\n"
            "print(miser.library_reason(), m.generate('Hello', max_new_tokens=3).ids)\n") % (str(vdir), TINY)
    r = subprocess.run([py, "-c", code], capture_output=True, env=env, timeout=60, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().strip() == "$MISER_LIBRARY [32043, 28144, 28144]"
