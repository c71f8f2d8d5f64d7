#!/usr/bin/python3
"""Benchmarks of the Python binding (not tests: figures, not pass/fail).

1. What ``import miser`` adds to a bare interpreter: VmRSS and RssAnon of a
   fresh ``python3 -c`` before and after the import (target <= 5 MB), and
   after the library itself is loaded (``miser.library_path()``).
2. Decode speed through Python against the CLI on the same checkpoint:
   ``Model.generate`` in this process vs ``miser generate --json`` (its
   ``decode_tok_s``), in interleaved rounds (the order alternates each
   round), medians over rounds (target: Python within 3 % of the CLI).

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
    py, cl = [], []
    cmd = [cli, "generate", "--model", model, "--prompt", a.prompt, "--max-new-tokens", str(a.tokens),
           "--ignore-eos", "--json", "--threads", str(threads)]

    def run_cli():
        out = subprocess.run(cmd, capture_output=True, check=True)
        cl.append(json.loads(out.stdout)["timings"]["decode_tok_s"])

    def run_py():
        g = m.generate(a.prompt, max_new_tokens=a.tokens, ignore_eos=True)
        py.append(g.timings.decode_tok_s)

    for r in range(a.rounds):
        for f in ((run_cli, run_py) if r % 2 == 0 else (run_py, run_cli)):
            f()
    res = dict(imp, model=model, threads=threads, tokens=a.tokens, rounds=a.rounds,
               python_decode_tok_s=statistics.median(py), cli_decode_tok_s=statistics.median(cl),
               python_rounds=py, cli_rounds=cl, library=miser.library_path())
    res["python_vs_cli"] = res["python_decode_tok_s"] / res["cli_decode_tok_s"]
    if a.json:
        print(json.dumps(res))
        return
    print(f"import miser: +{res['import_rss_mb']:.2f} MB RSS (+{res['import_anon_mb']:.2f} MB anon) on a bare "
          f"interpreter of {res['bare_rss_mb']:.2f} MB (target <= 5 MB); with libmiser.so loaded: "
          f"+{res['load_rss_mb']:.2f} MB RSS (+{res['load_anon_mb']:.2f} MB anon)")
    print(f"decode, {model}, {a.tokens} tokens, {threads} threads, {a.rounds} interleaved rounds (medians):")
    print(f"  python Model.generate  {res['python_decode_tok_s']:8.2f} tok/s  rounds: "
          + " ".join(f"{x:.1f}" for x in py))
    print(f"  miser generate (CLI)   {res['cli_decode_tok_s']:8.2f} tok/s  rounds: "
          + " ".join(f"{x:.1f}" for x in cl))
    print(f"  python / CLI = {res['python_vs_cli']:.3f} (target >= 0.97)")


if __name__ == "__main__":
    main()
