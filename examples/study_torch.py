#!/usr/bin/python3
"""The study's scenario in Python, on PyTorch and on miser, both measured by
miser.Profiler, with the study's own measurement (a thread polling psutil
RSS every 20 ms) running beside it.

GPT-2 text generation stage by stage, as the published Keras study ran it:
0_INITIAL (framework imported), 1_MODEL_LOADED, 2_BEFORE_INFERENCE,
3_FIRST_INFERENCE (generate("Hello", max_length=10): compile + first run),
4_SECOND_INFERENCE (generate("Test", max_length=10): steady state), 5_FINAL.
Each runtime runs in its own process (so one's memory never counts for the
other); the table shows, per stage, RSS at the mark split into anonymous
and file-backed pages, the exact peak of the interval (kernel high-water
mark) and the peak the 20 ms psutil poller saw, then the study's metrics
beside the corrected ones.

PyTorch runs the repository's own GPT-2 in plain torch ops
(tools/peers/torch_gpt2.py, OwnGPT2: Debian has no transformers) over the
same safetensors checkpoint miser maps, its weights read into
process-owned tensors as a PyTorch checkpoint load does. Without --model a
GPT-2-shaped checkpoint with deterministic random weights is written once
with ``miser synth --shape SHAPE`` (default medium, the study's model).

    PYTHONPATH=python examples/study_torch.py [--model DIR | --shape medium]
        [--runtimes torch,miser] [--threads N] [--json OUT.json]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "python"))
sys.path.insert(0, os.path.join(REPO, "tools", "peers"))

PROMPTS = (("Hello", "generate('Hello', max_length=10)"), ("Test", "generate('Test', max_length=10)"))
MAX_LENGTH = 10


class Poller:
    """The study's record_stage measurement: psutil RSS every 20 ms."""

    def __init__(self, interval_s=0.02):
        import psutil
        self.proc = psutil.Process()
        self.interval_s = interval_s
        self.max = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.done.is_set():
            rss = self.proc.memory_info().rss
            with self.lock:
                self.max = max(self.max, rss)
            time.sleep(self.interval_s)

    def window(self):
        """The highest RSS polled since the previous call (bytes)."""
        rss = self.proc.memory_info().rss  # the study also read RSS at each stage
        with self.lock:
            m, self.max = max(self.max, rss), 0
        return m


def child(runtime, model_dir, threads, out_path):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import miser
    if runtime == "torch":
        import torch  # the framework is imported before 0_INITIAL, as in the study
        torch.set_num_threads(threads)
    polled = {}
    poller = Poller()

    def mark(name, desc, **data):
        polled[name] = poller.window()
        miser.stage(name, desc, **data)

    with miser.Profiler(sample_interval_ms=20) as prof:
        mark("0_INITIAL", "Initial state")
        if runtime == "torch":
            import peer_common as pc
            from torch_gpt2 import OwnGPT2
            with torch.inference_mode():
                cfg, st = pc.open_checkpoint(model_dir)
                model = OwnGPT2(torch, cfg, st, torch.float32)
                del st
            tok = miser.Model(os.path.join(REPO, "tests", "data", "hf-tiny-a"), threads=1)  # the GPT-2 tokenizer

            def generate(prompt):
                ids = tok.tokenize(prompt)
                with torch.inference_mode():
                    out, secs, ttft = model.generate(ids, MAX_LENGTH - len(ids))
                return tok.detokenize(out), len(out), secs, ttft
        else:
            model = miser.Model(model_dir, threads=threads)

            def generate(prompt):
                t0 = time.perf_counter()
                g = model.generate(prompt, max_length=MAX_LENGTH, ignore_eos=True)
                return g.text, len(g.ids), time.perf_counter() - t0, g.timings.ttft_s
        mark("1_MODEL_LOADED", "After loading model")
        mark("2_BEFORE_INFERENCE", "Before first inference")
        runs = []
        for (prompt, desc), name in zip(PROMPTS, ("3_FIRST_INFERENCE", "4_SECOND_INFERENCE")):
            text, n, secs, ttft = generate(prompt)
            runs.append({"prompt": prompt, "text": text, "tokens": n, "seconds": secs, "ttft_s": ttft})
            mark(name, desc, tokens=n, seconds=f"{secs:.6f}", ttft_s=f"{ttft:.6f}", text=prompt + text)
        mark("5_FINAL", "Final state")
    poller.done.set()
    with open(out_path, "w") as f:
        json.dump({"runtime": runtime, "report": prof.report(), "polled_bytes": polled, "runs": runs}, f)


def mb(kb):
    return "-" if kb is None else f"{kb / 1024:.1f}"


def table(results):
    lines = []
    hdr = (f"{'runtime':8} {'stage':20} {'RSS':>9} {'anon':>9} {'file':>9} {'exact peak':>11} "
           f"{'psutil 20ms':>11} {'missed':>8}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for r in results:
        for s in r["report"]["stages"]:
            if s["implicit"]:
                continue
            polled = r["polled_bytes"].get(s["name"])
            pk = polled // 1024 if polled is not None else None
            missed = (s["peak_rss_kb"] - pk) if pk is not None else None
            lines.append(f"{r['runtime']:8} {s['name']:20} {mb(s['rss_kb']):>9} {mb(s['anon_kb']):>9} "
                         f"{mb(s['file_kb']):>9} {mb(s['peak_rss_kb']):>11} {mb(pk):>11} {mb(missed):>8}")
    lines.append("(MB = MiB; exact peak: VmHWM after a clear_refs reset at the previous mark; "
                 "psutil 20ms: the study's poller over the same interval; missed = exact - polled)")
    lines.append("")
    keys = [("model_loading_mb", "study", "model loading (RSS delta)"),
            ("compilation_mb", "study", "compilation (RSS delta 2->3)"),
            ("peak_ram_mb", "study", "peak RAM, polled - initial"),
            ("total_growth_mb", "study", "total growth"),
            ("first_inference_s", "study", "first inference (s)"),
            ("second_inference_s", "study", "second inference (s)"),
            ("peak_growth_mb", "corrected", "peak growth, exact - initial"),
            ("peak_rss_mb", "corrected", "peak RSS, exact"),
            ("model_loading_anon_mb", "corrected", "model loading, anon"),
            ("model_loading_file_mb", "corrected", "model loading, file-backed"),
            ("compile_peak_mb", "corrected", "compile peak (exact 2->3 - rss 2)"),
            ("decode_tok_s", "corrected", "decode tok/s (first)")]
    hdr = f"{'metric':38}" + "".join(f"{r['runtime']:>12}" for r in results)
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for k, group, label in keys:
        cells = []
        for r in results:
            v = r["report"]["metrics"][group].get(k)
            cells.append(f"{v:12.2f}" if isinstance(v, (int, float)) else f"{'-':>12}")
        lines.append(f"{label + ' [' + group + ']':38}" + "".join(cells))
    # the psutil poller's whole-run peak (what the study's peak_ram_mb would be from this poller)
    cells = []
    for r in results:
        init = r["report"]["stages"][0]["rss_kb"] / 1024
        cells.append(f"{max(r['polled_bytes'].values()) / 2**20 - init:12.2f}")
    lines.append(f"{'peak growth, psutil 20 ms - initial':38}" + "".join(cells))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description="The study's scenario on PyTorch and miser, measured by miser.Profiler")
    ap.add_argument("--model", help="GPT-2 checkpoint directory (default: a synthetic one of --shape)")
    ap.add_argument("--shape", default="medium")
    ap.add_argument("--runtimes", default="torch,miser")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="write every runtime's report and polled peaks here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    import miser
    threads = a.threads or miser.default_threads()
    if a.child:
        child(a.child, a.model, threads, a.out)
        return
    model = a.model
    if not model:
        from miser.__main__ import find_binary
        model = os.path.join(tempfile.gettempdir(), f"miser-study-{a.shape}")
        if not os.path.isfile(os.path.join(model, "config.json")):
            print(f"writing a GPT-2 {a.shape} checkpoint with synthetic weights into {model} ...", file=sys.stderr)
            subprocess.run([find_binary(), "synth", "--out", model, "--shape", a.shape, "--quiet"], check=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for rt in a.runtimes.split(","):
            out = os.path.join(tmp, rt + ".json")
            print(f"--- {rt} ({model}, {threads} threads)", flush=True)
            subprocess.run([sys.executable, "-u", os.path.abspath(__file__), "--child", rt, "--model", model,
                            "--threads", str(threads), "--out", out], check=True)
            with open(out) as f:
                results.append(json.load(f))
    print()
    print(table(results))
    for r in results:
        for run in r["runs"]:
            print(f"{r['runtime']}: {run['prompt']!r} -> {run['text']!r} ({run['tokens']} tokens, "
                  f"{run['seconds']:.3f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
