#!/usr/bin/python3
"""Check every installed peer adapter against Hugging Face's greedy tokens.

Runs each adapter of `miser compare` (tools/peers/README.md) on a checkpoint
whose folder holds a reference.json with Hugging Face's greedy ids (default:
tests/data/hf-tiny-a, greedy20 of 4 prompts computed by transformers in
float64), two prompts per run (--prompt-ids + --prompt2-ids), and compares:
  - the generated ids with greedy20 (f32 must match exactly; reduced
    precisions are reported as the length of the matching prefix),
  - stdout: exactly the study's six stage lines, in order, in its format,
  - the JSON result's fields (runtime, precision, threads, ids, prompt_len,
    seconds, ttft_s, decode_tok_s).
An adapter whose runtime is not installed (exit 3) is reported as skipped.
Ends with the line "N passed, N failed, N skipped"; exits 1 when an f32
check failed.

  check_peers.py [--model DIR] [--only torch,ort,llamacpp] [--threads N]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
STAGE_RE = re.compile(r"^\[STAGE\] (\S+): (\d+\.\d\d) MB \(swap: (\d+\.\d\d) MB\) - (.+)$")
STAGES = ["0_INITIAL", "1_MODEL_LOADED", "2_BEFORE_INFERENCE", "3_FIRST_INFERENCE",
          "4_SECOND_INFERENCE", "5_FINAL"]

ADAPTERS = {
    "torch": (["/usr/bin/python3", os.path.join(HERE, "torch_gpt2.py")], ["f32", "bf16"]),
    "ort": (["node", os.path.join(HERE, "ort_gpt2.js")], ["f32"]),
    "llamacpp": (["node", os.path.join(HERE, "llamacpp_gpt2.js")], ["f32", "f16", "q8_0"]),
}


def prefix_len(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def check_run(name, precision, cmd, pa, pb, n_new, threads, cache_dir):
    """Run one adapter on two prompts; returns (status, [messages]) with status in ok/fail/skip."""
    with tempfile.TemporaryDirectory() as td:
        out = os.path.join(td, "result.json")
        argv = cmd + ["--model", ARGS.model, "--prompt-ids", ",".join(map(str, pa["ids"])),
                      "--prompt2-ids", " ".join(map(str, pb["ids"])), "--max-new-tokens", str(n_new),
                      "--threads", str(threads), "--precision", precision, "--json-out", out,
                      "--cache-dir", cache_dir]
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
        if r.returncode == 3:
            return "skip", [r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "not installed"]
        if r.returncode != 0:
            return "fail", [f"exit {r.returncode}: {r.stderr.strip()[-300:]}"]
        msgs, bad = [], False
        lines = r.stdout.splitlines()
        names = []
        for line in lines:
            m = STAGE_RE.match(line)
            if not m:
                msgs.append(f"stdout line is not a stage line: {line!r}")
                bad = True
            else:
                names.append(m.group(1))
        if names != STAGES:
            msgs.append(f"stage lines {names}, expected {STAGES}")
            bad = True
        try:
            with open(out) as f:
                res = json.load(f)
        except (OSError, ValueError) as e:
            return "fail", msgs + [f"no JSON result: {e}"]
        for k in ("runtime", "version", "precision", "threads", "load_s", "first", "second"):
            if k not in res:
                msgs.append(f"JSON lacks {k!r}")
                bad = True
        if res.get("precision") != precision or res.get("threads") != threads:
            msgs.append(f"JSON precision/threads {res.get('precision')}/{res.get('threads')}")
            bad = True
        for key, p in (("first", pa), ("second", pb)):
            run = res.get(key, {})
            for k in ("ids", "prompt_len", "seconds", "ttft_s", "decode_tok_s"):
                if k not in run:
                    msgs.append(f"JSON {key} lacks {k!r}")
                    bad = True
            ids, want = run.get("ids", []), p["greedy20"][:n_new]
            if run.get("prompt_len") != len(p["ids"]):
                msgs.append(f"{key}: prompt_len {run.get('prompt_len')}, expected {len(p['ids'])}")
                bad = True
            if not (0 < run.get("ttft_s", 0) <= run.get("seconds", 0)):
                msgs.append(f"{key}: ttft_s {run.get('ttft_s')} not within seconds {run.get('seconds')}")
                bad = True
            k = prefix_len(ids, want)
            if ids == want:
                msgs.append(f"{p['prompt']!r}: {len(want)}/{len(want)} ids match HF")
            else:
                msgs.append(f"{p['prompt']!r}: first {k}/{len(want)} ids match HF (got {ids[k:k + 3]}..., "
                            f"HF {want[k:k + 3]}...)")
                if precision == "f32":
                    bad = True
        return ("fail" if bad else "ok"), msgs


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "tests", "data", "hf-tiny-a"))
    ap.add_argument("--only", default=",".join(ADAPTERS), help="adapters to check: " + ",".join(ADAPTERS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=20)
    ARGS = ap.parse_args()
    with open(os.path.join(ARGS.model, "reference.json")) as f:
        prompts = json.load(f)["prompts"]
    passed = failed = skipped = 0
    with tempfile.TemporaryDirectory() as cache:
        for name in ARGS.only.split(","):
            cmd, precisions = ADAPTERS[name]
            for prec in precisions:
                for i in range(0, len(prompts), 2):
                    pa, pb = prompts[i], prompts[min(i + 1, len(prompts) - 1)]
                    status, msgs = check_run(name, prec, cmd, pa, pb, ARGS.new_tokens, ARGS.threads, cache)
                    tag = {"ok": "PASS", "fail": "FAIL", "skip": "SKIP"}[status]
                    print(f"{tag} {name} {prec}: " + "; ".join(msgs), flush=True)
                    if status == "skip":
                        skipped += 1
                        break
                    if status == "ok":
                        passed += 1
                    else:
                        failed += 1
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
