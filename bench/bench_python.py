#!/usr/bin/python3
"""Benchmarks of the Python binding (not tests: figures, not pass/fail).

1. What ``import miser`` adds to a bare interpreter: VmRSS and RssAnon of a
   fresh ``python3 -c`` before and after the import (target <= 5 MB), and
   after the library itself is loaded (``miser.library_path()``).
2. Decode speed through Python against the CLI on the same checkpoint, in
   interleaved rounds (the order rotates each round), medians over rounds
   (target: Python within 3 % of the CLI). Like for like: each round runs
   ``miser generate --json`` (its ``decode_tok_s``) and a fresh
   ``python3`` that opens the Model and generates once (the same work in a
   new process); a third figure is ``Model.generate`` repeated in this
   long-lived process (a warm process: its freed arena is reused).

    PYTHONPATH=python MISER_LIBRARY=build/libmiser.so bench/bench_python.py \\
        [--model DIR | --shape small] [--rounds 7] [--tokens 64] [--threads N]

Without --model a synthetic checkpoint of --shape is written once with
``miser synth`` under $TMPDIR.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))

import miser  # noqa: E402
from miser.__main__ import find_binary  # noqa: E402

PROBE = r"""
import sys
def st():
    d = {}
    for l in open('/proc/self/status'):
        k, _, v = l.partition(':')
        if k in ('VmRSS', 'RssAnon'):
            d[k] = int(v.split()[0])
    return d
a = st()
import miser
b = st()
miser.library_path()
c = st()
print(a['VmRSS'], a['RssAnon'], b['VmRSS'], b['RssAnon'], c['VmRSS'], c['RssAnon'])
"""


def import_cost(runs):
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"))
    rows = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-S", "-c", PROBE], capture_output=True, env=env, check=True)
        rows.append([int(x) for x in out.stdout.split()])
    med = [statistics.median(r[i] for r in rows) for i in range(6)]
    return {"import_rss_mb": (med[2] - med[0]) / 1024, "import_anon_mb": (med[3] - med[1]) / 1024,
            "load_rss_mb": (med[4] - med[0]) / 1024, "load_anon_mb": (med[5] - med[1]) / 1024,
            "bare_rss_mb": med[0] / 1024}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--shape", default="small")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    a = ap.parse_args()
    cli = find_binary()
    if not cli:
        sys.exit("bench_python: no miser binary (set MISER_BIN)")
    model = a.model
    if not model:
        model = os.path.join(tempfile.gettempdir(), f"miser-bench-python-{a.shape}")
        if not os.path.isfile(os.path.join(model, "config.json")):
            subprocess.run([cli, "synth", "--out", model, "--shape", a.shape, "--quiet"], check=True)
    threads = a.threads or miser.default_threads()

    imp = import_cost(9)
    m = miser.Model(model, threads=threads)
    m.generate(a.prompt, max_new_tokens=4, ignore_eos=True)  # warm the page cache and the code
    py, cl, pyproc = [], [], []
    cmd = [cli, "generate", "--model", model, "--prompt", a.prompt, "--max-new-tokens", str(a.tokens),
           "--ignore-eos", "--json", "--threads", str(threads)]

    def run_cli():
        out = subprocess.run(cmd, capture_output=True, check=True)
        cl.append(json.loads(out.stdout)["timings"]["decode_tok_s"])

    def run_py():
        g = m.generate(a.prompt, max_new_tokens=a.tokens, ignore_eos=True)
        py.append(g.timings.decode_tok_s)

    code = ("import miser, sys\n"
            "m = miser.Model(sys.argv[1], threads=int(sys.argv[2]))\n"
            "print(m.generate(sys.argv[3], max_new_tokens=int(sys.argv[4]), ignore_eos=True).timings.decode_tok_s)\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"), MISER_LIBRARY=miser.library_path())

    def run_pyproc():
        out = subprocess.run([sys.executable, "-c", code, model, str(threads), a.prompt, str(a.tokens)],
                             capture_output=True, check=True, env=env)
        pyproc.append(float(out.stdout))

    order = [run_cli, run_pyproc, run_py]
    for r in range(a.rounds):
        for f in order[r % 3:] + order[:r % 3]:
            f()
    res = dict(imp, model=model, threads=threads, tokens=a.tokens, rounds=a.rounds,
               python_process_decode_tok_s=statistics.median(pyproc), cli_decode_tok_s=statistics.median(cl),
               python_warm_decode_tok_s=statistics.median(py), python_process_rounds=pyproc, cli_rounds=cl,
               python_warm_rounds=py, library=miser.library_path())
    res["python_vs_cli"] = res["python_process_decode_tok_s"] / res["cli_decode_tok_s"]
    # Each round's runs are adjacent in time: their ratio cancels most of a
    # slow spell of a shared machine, so its median is the steadier figure.
    res["python_vs_cli_paired"] = statistics.median(p / c for p, c in zip(pyproc, cl))
    res["warm_vs_cli_paired"] = statistics.median(p / c for p, c in zip(py, cl))
    if a.json:
        print(json.dumps(res))
        return
    print(f"import miser: +{res['import_rss_mb']:.2f} MB RSS (+{res['import_anon_mb']:.2f} MB anon) on a bare "
          f"interpreter of {res['bare_rss_mb']:.2f} MB (target <= 5 MB); with libmiser.so loaded: "
          f"+{res['load_rss_mb']:.2f} MB RSS (+{res['load_anon_mb']:.2f} MB anon)")
    print(f"decode, {model}, {a.tokens} tokens, {threads} threads, {a.rounds} interleaved rounds (medians):")
    print(f"  miser generate (CLI)              {res['cli_decode_tok_s']:8.2f} tok/s  rounds: "
          + " ".join(f"{x:.2f}" for x in cl))
    print(f"  python3: Model + generate, fresh  {res['python_process_decode_tok_s']:8.2f} tok/s  rounds: "
          + " ".join(f"{x:.2f}" for x in pyproc))
    print(f"  Model.generate, warm process      {res['python_warm_decode_tok_s']:8.2f} tok/s  rounds: "
          + " ".join(f"{x:.2f}" for x in py))
    print(f"  python (fresh process) / CLI = {res['python_vs_cli']:.3f} of medians, "
          f"{res['python_vs_cli_paired']:.3f} median of per-round ratios (target >= 0.97); "
          f"warm process / CLI = {res['warm_vs_cli_paired']:.3f} (per-round)")


if __name__ == "__main__":
    main()
