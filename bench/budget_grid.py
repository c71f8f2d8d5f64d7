#!/usr/bin/env python3
"""Memory-budget grid (issue 17): `miser plan`'s predicted peak RSS and RssAnon
against the profiler's exact peaks of `miser generate` runs.

For each (model, precision, context) the converted cache is made first (an
unmeasured run), then `miser profile --json -- miser generate --max-length
CTX` is run with a prompt of `a a a ...` (one token each with the GPT-2
vocabulary the synthetic checkpoints use): at least min(64, CTX-1) tokens,
so the prompt's chunk fills the planned arena (max_batch 64), and at most 64
decoded tokens (--ignore-eos): the rest of the context is prefilled, so the
KV cache is written to CTX-1 positions. Measured: the whole-run exact peak
(the max of the interval peaks, VmHWM after clear_refs) and RssAnon at the
peak = peak - RssFile then. A run has two phases (docs/budgets.md, "Two
phases"): when the peak is in the `load` or `compile` interval it is the
load's high-water (released right before the `compile` mark), and RssFile
is the `compile` mark's; else it is the run's, and RssFile is the largest
the marks and the timeline saw (file pages only grow: the kernels' code
is faulted in as they first run). Prints a Markdown table; exit 1 when a
row misses the issue's bounds (peak +-3 %, RssAnon +-2 MB). The cache is
a fresh one ($MISER_CACHE_DIR in a temp dir), so each converted
precision's first run converts: its exact peak against `plan`'s
convert_peak_bytes is a second table (+-3 %).

usage: bench/budget_grid.py MISER_BIN SPEC...   SPEC = label:dir:prec1,prec2:ctx1,ctx2
       (a ctx of 0 is the model's maximum)
env:   THREADS (default 2), DECODE (most decoded tokens per row, default 64)
"""
import json, os, subprocess, sys, tempfile

def run(args, **kw):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

def main():
    miser = sys.argv[1]
    threads = os.environ.get("THREADS", "2")
    decode = int(os.environ.get("DECODE", "64"))
    tmp = tempfile.mkdtemp(prefix="miser-budget-grid-")
    # a fresh cache: each precision's first run converts, and is measured too
    os.environ["MISER_CACHE_DIR"] = os.path.join(tmp, "cache")
    conv = []
    print("| model | precision | ctx | prompt | peak in (predicted/measured) | predicted peak MB | measured peak MB | error | predicted anon MB | measured anon MB | anon error MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    bad = 0
    for spec in sys.argv[2:]:
        label, d, precs, ctxs = spec.split(":")
        n_ctx = json.loads(run([miser, "plan", "--model", d, "--ctx", "1", "--parallel", "1", "--threads", threads,
                                "--json"]).stdout)["n_ctx"]
        for prec in precs.split(","):
            gen = [miser, "generate", "--model", d, "--ignore-eos", "--threads", threads, "--precision", prec]
            pj = os.path.join(tmp, "c.json")
            run([miser, "profile", "--json", pj, "--format", "none", "--"] + gen +
                ["--prompt", "a", "--max-new-tokens", "1"])  # makes the cache
            cp = json.loads(run([miser, "plan", "--model", d, "--ctx", "1", "--parallel", "1", "--threads", threads,
                                 "--json"]).stdout)["convert_peak_bytes"].get(prec)
            if cp:
                cpeak = max(s["peak_rss_kb"] for s in json.load(open(pj))["stages"]) * 1024
                conv.append((label, prec, cp, cpeak))
            for ctx in ctxs.split(","):
                ctx = int(ctx) or n_ctx
                plan = json.loads(run([miser, "plan", "--model", d, "--ctx", str(ctx), "--parallel", "1",
                                       "--threads", threads, "--json"]).stdout)
                row = [r for r in plan["rows"] if r["precision"] == prec][0]
                n_prompt = max(min(64, ctx - 1), ctx - decode)
                prompt = "a" + " a" * (n_prompt - 1)
                pj = os.path.join(tmp, "p.json")
                run([miser, "profile", "--json", pj, "--format", "none", "--"] + gen +
                    ["--prompt", prompt, "--max-length", str(ctx)])
                prof = json.load(open(pj))
                st = prof["stages"]
                top = max(st, key=lambda s: s["peak_rss_kb"] or 0)
                peak = top["peak_rss_kb"] * 1024
                in_load = top["name"] in ("load", "compile")
                if in_load:
                    file_kb = [s for s in st if s["name"] == "compile"][0]["file_kb"]
                else:
                    fi = prof["timeline"]["columns"].index("file_kb")
                    file_kb = max([s["file_kb"] for s in st if s.get("file_kb") is not None] +
                                  [r[fi] for r in prof["timeline"]["rows"] if r[fi] is not None])
                anon = peak - file_kb * 1024
                e = (row["peak_rss_bytes"] - peak) / peak
                ea = (row["rss_anon_bytes"] - anon) / 2**20
                ok = abs(e) <= 0.03 and abs(ea) <= 2
                bad += not ok
                print(f"| {label} | {prec} | {ctx} | {n_prompt} | {row['peak_phase']}/{'load' if in_load else 'run'} | "
                      f"{row['peak_rss_bytes']/2**20:.1f} | {peak/2**20:.1f} | "
                      f"{e*100:+.1f} % | {row['rss_anon_bytes']/2**20:.1f} | {anon/2**20:.1f} | {ea:+.2f}{'' if ok else ' MISS'} |",
                      flush=True)
    if conv:
        print()
        print("| model | first run converts to | predicted peak MB | measured peak MB | error |")
        print("|---|---|---|---|---|")
        for label, prec, cp, cpeak in conv:
            e = (cp - cpeak) / cpeak
            bad += abs(e) > 0.03
            print(f"| {label} | {prec} | {cp/2**20:.1f} | {cpeak/2**20:.1f} | {e*100:+.1f} %{'' if abs(e) <= 0.03 else ' MISS'} |")
    subprocess.run(["rm", "-rf", tmp])
    sys.exit(1 if bad else 0)

main()
