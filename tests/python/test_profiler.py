"""miser.Profiler and miser.stage: exact peaks against what a study-style
psutil poller sees, the report schema against `miser profile --json`, the
writers, and the marker pipe under `miser profile`."""
import ctypes
import json
import mmap
import os
import random
import subprocess
import sys
import threading
import time

import psutil
import pytest

import miser


SPIKE = 48 << 20


def spike(live_s=0.002):
    """48 MB of anonymous memory, written (so resident), for a few ms.
    Returns how long it was fully resident (end of the fill to the end of
    the unmap), which CPU contention can stretch.

    Transparent huge pages are asked for (madvise) so the fill takes a few
    ms instead of tens; ctypes.memset releases the GIL, so a polling thread
    runs when its timer says, as it would beside native code."""
    mm = mmap.mmap(-1, SPIKE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            mm.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
    c = ctypes.c_char.from_buffer(mm)
    ctypes.memset(ctypes.addressof(c), 1, SPIKE)
    t0 = time.perf_counter()
    time.sleep(live_s)
    del c
    mm.close()
    return time.perf_counter() - t0


class PsutilSampler:
    """The study's measurement: a thread polling psutil RSS every 20 ms."""

    def __init__(self, interval=0.02):
        self.proc = psutil.Process()
        self.interval = interval
        self.max = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            rss = self.proc.memory_info().rss
            with self.lock:
                self.max = max(self.max, rss)
            time.sleep(self.interval)

    def window(self):
        with self.lock:
            m, self.max = self.max, 0
        return m


def test_exact_peak_catches_short_spike_psutil_misses_it():
    """The exact peak must see every spike; the study's 20 ms poller, in the
    same process over the same intervals, must miss most of those that
    really lived only a few ms (on an overloaded machine a spike can be
    stretched past the poll interval: such trials count for the exact peak
    only)."""
    want, short_max = 10, 0.006
    rnd = random.Random(1)
    trials = []  # (polled max KiB, fully-resident seconds)
    spike()  # the first huge-page fault may compact memory: not part of the trials
    sampler = PsutilSampler()
    sampler.t.start()
    try:
        with miser.Profiler() as prof:
            for i in range(4 * want):
                time.sleep(rnd.uniform(0.0, 0.02))  # a random phase against the poller
                prof.stage(f"before_{i}")
                sampler.window()
                live = spike()
                time.sleep(0.003)
                trials.append((sampler.window() // 1024, live))  # the poller's maximum in the interval
                prof.stage(f"after_{i}")
                if sum(1 for _, t in trials if t <= short_max) >= want:
                    break
    finally:
        sampler.stop.set()
        sampler.t.join()
    stages = {s["name"]: s for s in prof.report()["stages"]}
    full = 0.95 * SPIKE / 1024
    short = polled_hits = 0
    for i, (polled, live) in enumerate(trials):
        base = stages[f"before_{i}"]["rss_kb"]
        after = stages[f"after_{i}"]
        assert after["peak_exact"]
        assert after["peak_rss_kb"] - base >= full, f"trial {i}: the exact peak missed the spike"
        if live <= short_max:
            short += 1
            polled_hits += polled - base >= full
    if short < want // 2:
        pytest.skip(f"only {short} of {len(trials)} spikes stayed under {short_max * 1e3:.0f} ms (machine overloaded)")
    assert polled_hits <= short // 2, f"the 20 ms poller saw {polled_hits} of {short} short spikes"


def test_report_schema_is_miser_profile_json(cli, tmp_path):
    out = tmp_path / "cmd.json"
    r = subprocess.run([cli, "profile", "--format", "none", "--json", str(out), "--", sys.executable, "-c", "pass"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    cmd = json.loads(out.read_text())
    with miser.Profiler(sample_interval_ms=5) as prof:
        miser.stage("0_INITIAL", "start", echo=False, tokens=3, text="a b")
        time.sleep(0.1)
    rep = prof.report()
    assert rep["schema"] == cmd["schema"] == "miser-profile" and rep["version"] == cmd["version"]
    assert rep["mode"] == "in-process" and cmd["mode"] == "command"
    assert set(rep) == set(cmd)
    st = rep["stages"][0]
    assert set(st) - {"alloc"} == set(cmd["stages"][0]) - {"alloc"}
    assert "alloc" in st and "total" in st["alloc"]
    assert st["name"] == "0_INITIAL" and st["description"] == "start"
    assert st["data"] == {"tokens": "3", "text": "a b"}
    assert rep["stages"][-1]["implicit"] and rep["timeline"]["rows"]
    assert set(rep["metrics"]) == set(cmd["metrics"])


def test_writers(tmp_path):
    with miser.Profiler(sample_interval_ms=2) as prof:
        prof.stage("0_INITIAL", "start")
        b = bytearray(8 << 20)
        time.sleep(0.02)
        prof.stage("1_MODEL_LOADED", "8 MB <&>")
        del b
    assert prof.render("md").lstrip().startswith("#")
    svg = prof.render("svg")
    assert svg.lstrip().startswith(("<svg", "<?xml")) and svg.rstrip().endswith("</svg>")
    html = prof.render("html")
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "8 MB &lt;&amp;&gt;" in html
    assert "1_MODEL_LOADED" in prof.render("table")
    for ext in ("json", "md", "svg", "html", "csv"):
        p = tmp_path / f"r.{ext}"
        prof.save(str(p))
        assert p.stat().st_size > 100
    assert json.loads((tmp_path / "r.json").read_text())["schema"] == "miser-profile"
    with pytest.raises(miser.InvalidInputError):
        prof.render("pdf")
    with pytest.raises(miser.MiserIOError):
        prof.save("/nonexistent-dir/r.json")


def test_profiler_misuse():
    p = miser.Profiler()
    with pytest.raises(miser.ClosedError):
        p.stage("x")
    with pytest.raises(miser.ClosedError):
        p.report()
    with p:
        with pytest.raises(miser.InvalidInputError):
            miser.Profiler().start()  # one at a time per process
        with pytest.raises(miser.InvalidInputError):
            p.stage("bad name")
        with pytest.raises(miser.InvalidInputError):
            p.report()  # only once stopped
    p.close()
    with pytest.raises(miser.ClosedError):
        p.report()


def test_stage_line_and_marker_under_miser_profile(cli, tmp_path):
    script = tmp_path / "study.py"
    script.write_text(
        "import ctypes, mmap, sys, time\n"
        "sys.path.insert(0, %r)\n"
        "from test_profiler import spike\n"
        "import miser\n"
        "miser.stage('0_INITIAL', 'start')\n"
        "spike()\n"
        "miser.stage('1_MODEL_LOADED', 'spiked', tokens=9)\n" % os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "p.json"
    r = subprocess.run([cli, "profile", "--format", "none", "--interval", "0", "--json", str(out), "--",
                        sys.executable, str(script)], capture_output=True, timeout=60, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("[STAGE] 0_INITIAL: ") and lines[0].endswith(" MB) - start")
    assert lines[1].startswith("[STAGE] 1_MODEL_LOADED: ")
    prof = json.loads(out.read_text())
    names = [s["name"] for s in prof["stages"] if not s["implicit"]]
    assert names == ["0_INITIAL", "1_MODEL_LOADED"]  # the [STAGE] line and the pipe marker are one stage
    s0, s1 = prof["stages"][0], prof["stages"][1]
    assert s1["data"]["tokens"] == "9"
    assert s1["peak_exact"] and s1["peak_rss_kb"] - s0["rss_kb"] >= 0.95 * SPIKE / 1024
