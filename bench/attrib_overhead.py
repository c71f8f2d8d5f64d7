#!/usr/bin/python3
"""Attribution benchmark: `miser profile --attribute` beside heaptrack.

Not a unit test (docs/attribution.md quotes its figures). For each workload it
runs, RUNS times each and interleaved (so a slow spell of the shared machine
falls on every tool):
  plain      the command alone under /usr/bin/time
  miser      miser profile --attribute --no-hwm-reset -- /usr/bin/time CMD
             (the inner time measures the command itself; the outer one the
             whole invocation, symbolisation after the run included)
  heaptrack  /usr/bin/time heaptrack -o FILE CMD (heaptrack interprets while
             the command runs)
and prints medians: the command's wall time and the max RSS, and the whole
invocation's. It then prints the top consumers at the peak from both tools
for the last run, and, for miser's naive pipeline, the share of the compile
stage's growth under src/passes/fold_constants.c.

Workloads: miser generate --pipeline naive and default; PyTorch from Python
(tools/peers/torch_gpt2.py), `python3 -c 'import torch'` alone (~600,000
distinct stacks: the stack tables' sizing case) and ONNX Runtime from node
(tools/peers/ort_gpt2.js), on the same checkpoint. With each workload's
medians it prints the 1-minute load average before and after it and, per
traced process, the distinct stacks and how many allocations were truncated,
overflowed or left untracked (all 0 when the tables were big enough).

For a quiet-machine rerun: BUILD=build python3 bench/attrib_overhead.py --runs 5

usage: bench/attrib_overhead.py [--model DIR] [--runs N] [--medium] [--only NAME,...]
  --model DIR   a GPT-2 checkpoint (default: `miser synth --shape small` in
                ~/.cache/miser/attrib-bench/small)
  --medium      also profile the naive pipeline on a GPT-2-medium-shaped
                checkpoint (the study's case; ~1.4 GB written once)
"""
import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BUILD", os.path.join(ROOT, "build"))
MISER = os.path.join(BUILD, "miser")
CACHE = os.path.expanduser("~/.cache/miser/attrib-bench")


def synth(shape):
    d = os.path.join(CACHE, shape)
    if not os.path.exists(os.path.join(d, "config.json")):
        subprocess.run([MISER, "synth", "--out", d, "--shape", shape, "--quiet"], check=True)
    return d


def timed(cmd, tfile, env=None):
    """Run under /usr/bin/time -f '%e %M' writing to tfile; (wall s, maxrss MiB)."""
    r = subprocess.run(["/usr/bin/time", "-o", tfile, "-f", "%e %M"] + cmd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, env=env)
    if r.returncode != 0:
        sys.stderr.write(r.stderr.decode(errors="replace")[-2000:])
        raise SystemExit("failed: %s" % " ".join(cmd))
    with open(tfile) as f:
        last = f.read().strip().splitlines()[-1].split()
    return float(last[0]), float(last[1]) / 1024.0


def fold_share(prof, stage="compile"):
    for s in prof["stages"]:
        if s["name"] != stage or "attribution" not in s:
            continue
        extra = s["attribution_peak_bytes"] - s["attribution_start_bytes"]
        fold = 0
        for e in s["attribution"]:
            if e["kind"] == "mmap-file":
                continue
            if any("passes/fold_constants.c" in (f.get("file") or "") for f in e["frames"]):
                fold += e["bytes"] - e["start_bytes"]
        return fold, extra
    return None, None


SKIP = ("malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign", "operator new", "alloc_impl",
        "miser_malloc", "miser_calloc", "miser_aligned_alloc")


def first_interesting(stack):
    for f in stack:
        if f.startswith(SKIP) or f.startswith(("_Znwm", "_Znam")):
            continue
        return f
    return stack[0] if stack else "?"


def miser_top(prof, n=5):
    """Heap consumers at the stage with the largest attributed peak."""
    best = max((s for s in prof["stages"] if "attribution" in s), key=lambda s: s["attribution_peak_bytes"])
    agg = collections.Counter()
    for e in best["attribution"]:
        if e["kind"] == "heap":
            agg[first_interesting(e["stack"])] += e["bytes"]
    return best["name"], best["attribution_peak_bytes"], agg.most_common(n)


def heaptrack_top(path, n=5):
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as fl:
        subprocess.run(["heaptrack_print", "-f", path, "--print-peaks", "0", "--print-allocators", "0",
                        "--print-temporary", "0", "--print-leaks", "0", "--flamegraph-cost-type", "peak",
                        "-F", fl.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        agg = collections.Counter()
        total = 0
        for line in open(fl.name):
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, v = line.rpartition(" ")
            frames = [f for f in stack.split(";") if f]
            frames.reverse()  # innermost first, as miser prints
            b = int(v)
            total += b
            agg[first_interesting(frames)] += b
    return total, agg.most_common(n)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--medium", action="store_true")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    model = a.model or synth("small")
    gen = [MISER, "generate", "--model", model, "--prompt", "Hello", "--max-new-tokens", "9", "--threads", "2"]
    work = collections.OrderedDict([
        ("miser-naive", gen + ["--pipeline", "naive"]),
        ("miser-default", gen + ["--pipeline", "default"]),
        ("pytorch", ["/usr/bin/python3", os.path.join(ROOT, "tools/peers/torch_gpt2.py"), "--model", model,
                     "--prompt-ids", "15496", "--max-length", "10", "--threads", "2"]),
        ("torch-import", ["/usr/bin/python3", "-c", "import torch"]),
        ("onnxruntime", ["node", os.path.join(ROOT, "tools/peers/ort_gpt2.js"), "--model", model,
                         "--prompt-ids", "15496", "--max-length", "10", "--threads", "2"]),
    ])
    if a.only:
        work = collections.OrderedDict((k, v) for k, v in work.items() if k in a.only.split(","))
    tmp = tempfile.mkdtemp(prefix="miser-attrib-bench-")
    t_in, t_out = os.path.join(tmp, "in"), os.path.join(tmp, "out")
    res = {}
    last = {}
    for name, cmd in work.items():
        load0 = os.getloadavg()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm caches, conversions
        r = collections.defaultdict(list)
        for i in range(a.runs):
            w, m = timed(cmd, t_in)
            r["plain_wall"].append(w)
            r["plain_rss"].append(m)
            pj = os.path.join(tmp, name + ".json")
            tw, tm = timed([MISER, "profile", "--attribute", "--no-hwm-reset", "--format", "none", "--json", pj,
                            "--", "/usr/bin/time", "-o", t_in, "-f", "%e %M"] + cmd, t_out)
            with open(t_in) as f:
                iw, im = f.read().split()[-2:]
            r["miser_wall"].append(float(iw))
            r["miser_rss"].append(float(im) / 1024)
            r["miser_total_wall"].append(tw)
            r["miser_total_rss"].append(tm)
            hf = os.path.join(tmp, name + ".heaptrack")
            for old in os.listdir(tmp):
                if old.startswith(name + ".heaptrack"):
                    os.unlink(os.path.join(tmp, old))
            hw, hm = timed(["heaptrack", "-o", hf] + cmd, t_out)
            r["heaptrack_total_wall"].append(hw)
            r["heaptrack_total_rss"].append(hm)
            last[name] = (pj, [os.path.join(tmp, x) for x in os.listdir(tmp) if x.startswith(name + ".heaptrack")])
        res[name] = {k: statistics.median(v) for k, v in r.items()}
        res[name]["load"] = (load0[0], os.getloadavg()[0])
        prof = json.load(open(last[name][0]))
        res[name]["tables"] = [(p["exe"].rsplit("/", 1)[-1], p["stacks"], p["stack_truncated"], p["stack_overflow"],
                                p["table_overflow"]) for p in prof["attribution"]["processes"] if p["calls"]]
        print("%-14s plain %6.2f s %7.1f MB | miser: command %6.2f s %7.1f MB, whole %6.2f s max %7.1f MB | "
              "heaptrack whole %6.2f s max %7.1f MB" % (
                  name, res[name]["plain_wall"], res[name]["plain_rss"], res[name]["miser_wall"],
                  res[name]["miser_rss"], res[name]["miser_total_wall"], res[name]["miser_total_rss"],
                  res[name]["heaptrack_total_wall"], res[name]["heaptrack_total_rss"]), flush=True)
    print("\nmedians of %d runs, interleaved (plain, miser, heaptrack; repeated); overhead = tool - plain" % a.runs)
    for name, m in res.items():
        print("  %s: 1-minute load average %.2f before, %.2f after; stacks (truncated, overflowed, untracked) %s" % (
            name, m["load"][0], m["load"][1], ", ".join("%s %d (%d, %d, %d)" % t for t in m["tables"])))
    print("| workload | plain s | plain MB | miser cmd +s | miser cmd +MB | miser whole +s | miser max +MB | "
          "heaptrack whole +s | heaptrack max +MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, m in res.items():
        print("| %s | %.2f | %.1f | %+.2f | %+.1f | %+.2f | %+.1f | %+.2f | %+.1f |" % (
            name, m["plain_wall"], m["plain_rss"], m["miser_wall"] - m["plain_wall"], m["miser_rss"] - m["plain_rss"],
            m["miser_total_wall"] - m["plain_wall"], m["miser_total_rss"] - m["plain_rss"],
            m["heaptrack_total_wall"] - m["plain_wall"], m["heaptrack_total_rss"] - m["plain_rss"]))
    print("\ntop heap consumers at the peak (first frame that is not an allocator):")
    for name, (pj, hfiles) in last.items():
        prof = json.load(open(pj))
        st, pk, top = miser_top(prof)
        print("%s\n  miser (stage %s, %.1f MB attributed):" % (name, st, pk / 2**20))
        for f, b in top:
            print("    %9.2f MB  %s" % (b / 2**20, f))
        if hfiles:
            tot, htop = heaptrack_top(hfiles[0])
            print("  heaptrack (whole-run heap peak, %.1f MB):" % (tot / 2**20))
            for f, b in htop:
                print("    %9.2f MB  %s" % (b / 2**20, f))
        if name == "miser-naive" or name == "miser-default":
            fold, extra = fold_share(prof)
            if extra:
                print("  compile stage: %.1f of %.1f MB growth (%.1f %%) under fold_constants.c" % (
                    fold / 2**20, extra / 2**20, 100.0 * fold / extra))
    if a.medium:
        med = synth("medium")
        pj = os.path.join(tmp, "medium-naive.json")
        w, m = timed([MISER, "profile", "--attribute", "--format", "none", "--json", pj, "--", MISER, "generate",
                      "--model", med, "--prompt", "Hello", "--max-new-tokens", "9", "--pipeline", "naive"], t_out)
        fold, extra = fold_share(json.load(open(pj)))
        print("\nGPT-2 medium, naive pipeline: compile stage grew %.1f MB at its peak, %.1f MB (%.1f %%) under "
              "fold_constants.c (%.1f s, whole run)" % (extra / 2**20, fold / 2**20, 100.0 * fold / extra, w))
        pj = os.path.join(tmp, "medium-default.json")
        timed([MISER, "profile", "--attribute", "--format", "none", "--json", pj, "--", MISER, "generate",
               "--model", med, "--prompt", "Hello", "--max-new-tokens", "9"], t_out)
        fold, extra = fold_share(json.load(open(pj)))
        print("GPT-2 medium, default pipeline: compile stage grew %.1f MB, %.1f MB under fold_constants.c" % (
            extra / 2**20, fold / 2**20))
    # unwinders on -O2 code without frame pointers
    ub = os.path.join(tmp, "unwind_bench")
    subprocess.run(["cc", "-O2", "-fomit-frame-pointer", "-o", ub, os.path.join(ROOT, "tests/attrib/unwind_bench.c"),
                    "-lunwind"], check=True)
    print("\nunwinders (a %d-frame chain of -O2 code without frame pointers):" % 30)
    sys.stdout.flush()
    subprocess.run([ub], check=True)


if __name__ == "__main__":
    main()
