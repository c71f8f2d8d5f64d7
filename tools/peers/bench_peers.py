#!/usr/bin/python3
"""Decode and prefill speed and peak RSS of each peer adapter (medians of N runs).

For each adapter (tools/peers/README.md) on a checkpoint:
  decode:  1-token prompt, --max-new-tokens 128 -> decode_tok_s
  prefill: 128-token prompt, --max-new-tokens 1  -> prefill_tok_s = 128 / ttft_s
Each run does two generates (the adapters' contract); the figures are the
second, warm generate's, with the first's beside them. Peak RSS is the
adapter's VmHWM (its JSON peak_rss_mb) in the decode run. The 1-minute load
average before each run is printed: on a shared machine it explains outliers.
Conversions are done (and cached) before timing.

  bench_peers.py --model DIR [--threads 1,2] [--runs 3] [--only torch,ort,llamacpp:f32]
                 [--json-summary FILE]

--json-summary writes the medians as a JSON list of objects (adapter,
precision, threads, version, decode_tok_s, prefill_tok_s, their *_first_tok_s,
peak_rss_mb, load_s), which
`miser-bench e2e` reads to print its side-by-side table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CMDS = {
    "torch": ["/usr/bin/python3", os.path.join(HERE, "torch_gpt2.py")],
    "ort": ["node", os.path.join(HERE, "ort_gpt2.js")],
    "llamacpp": ["node", os.path.join(HERE, "llamacpp_gpt2.js")],
    "llamacpp_llama": ["node", os.path.join(HERE, "llamacpp_llama.js")],  # Llama-family checkpoints
}


def run(cmd, args, out):
    r = subprocess.run(cmd + args + ["--json-out", out], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-300:]}")
    with open(out) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", default="2", help="a thread count or a comma-separated list")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--only", default="torch,ort,llamacpp",
                    help="adapters, each optionally :precision (llamacpp:q8_0)")
    ap.add_argument("--cache-dir")
    ap.add_argument("--json-summary", help="write the medians here as JSON")
    a = ap.parse_args()
    try:
        thread_list = [int(t) for t in a.threads.split(",")]
        if any(t < 1 for t in thread_list):
            raise ValueError
    except ValueError:
        ap.error(f"--threads: expected positive integers separated by commas, got '{a.threads}'")
    specs = []
    for spec in a.only.split(","):
        name, _, prec = spec.partition(":")
        if name not in CMDS:
            ap.error(f"--only: unknown adapter '{name}' (known: {', '.join(CMDS)})")
        specs.append((name, prec or "f32"))
    long_prompt = ",".join(str(1000 + i) for i in range(a.tokens))
    rows = []
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "r.json")
        for threads, (name, prec) in [(t, sp) for t in thread_list for sp in specs]:
            base = ["--model", a.model, "--threads", str(threads), "--precision", prec]
            if a.cache_dir:
                base += ["--cache-dir", a.cache_dir]
            run(CMDS[name], base + ["--prompt-ids", "15496", "--max-new-tokens", "2"], out)  # convert
            dec, dec1, pre, pre1, peak, load = [], [], [], [], [], []
            for i in range(a.runs):
                la = os.getloadavg()[0]
                d = run(CMDS[name], base + ["--prompt-ids", "15496", "--max-new-tokens", str(a.tokens)], out)
                p = run(CMDS[name], base + ["--prompt-ids", long_prompt, "--max-new-tokens", "1"], out)
                dec.append(d["second"]["decode_tok_s"])
                dec1.append(d["first"]["decode_tok_s"])
                pre.append(p["second"]["prefill_tok_s"])
                pre1.append(p["first"]["prefill_tok_s"])
                peak.append(d["peak_rss_mb"])
                load.append(d["load_s"])
                print(f"{name}:{prec} {threads} thr run {i + 1}: load {la:.1f}  decode {dec[-1]:.2f} tok/s (first {dec1[-1]:.2f})"
                      f"  prefill {pre[-1]:.1f} tok/s (first {pre1[-1]:.1f})  peak {peak[-1]:.0f} MB"
                      f"  load_s {load[-1]:.2f}", flush=True)
            med = statistics.median
            rows.append({"adapter": name, "precision": prec, "threads": threads, "version": d["version"],
                         "decode_tok_s": med(dec), "decode_first_tok_s": med(dec1), "prefill_tok_s": med(pre),
                         "prefill_first_tok_s": med(pre1), "peak_rss_mb": med(peak), "load_s": med(load)})
    print(f"\nmedians of {a.runs} runs, decode: 1-token prompt + {a.tokens} new; prefill: {a.tokens}-token prompt")
    print("| adapter | threads | version | decode tok/s (warm / first) | prefill tok/s (warm / first) | peak RSS MB "
          "| load s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['adapter']}:{r['precision']} | {r['threads']} | {r['version']} "
              f"| {r['decode_tok_s']:.2f} / {r['decode_first_tok_s']:.2f} "
              f"| {r['prefill_tok_s']:.1f} / {r['prefill_first_tok_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['load_s']:.2f} |")
    if a.json_summary:
        tmp = a.json_summary + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rows, f)
        os.replace(tmp, a.json_summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
