#!/usr/bin/python3
"""Memory budgets for `miser serve --parallel N` (issue 17): `miser plan`'s
predicted peak RSS and RssAnon against the profiler's exact peak of a serve
process driven by N concurrent requests, each to its full length.

For each (model, precision, ctx): `miser profile --json -- miser serve
--port 0 --parallel N --ctx CTX --engine E`; once it is ready (its stderr
says so), RssFile is read from /proc/PID/status, then N threads each POST
/v1/completions with a prompt of min(64, CTX-1) token ids and max_tokens =
CTX - prompt (ignore_eos, temperature 1: the sampler's 8 bytes per vocabulary
entry are written, as `plan` counts for serve): all N sequences fill their
context at once.
Then RssAnon / RssFile are read again (they do not shrink after the
requests: the KV pool and the arena stay) and serve gets SIGTERM.

Measured: the whole-run exact peak (the profiler's, VmHWM after
clear_refs); RssAnon at that peak; and RssAnon at the end (what the server
keeps while it serves: `plan`'s run_anon_bytes). A serve process has two
phases (docs/budgets.md, "Two phases"): the load, whose high-water (the
tokenizer's and the compile's freed pages, released before the engine
exists) is the peak of a small model, and the run. When the exact peak is
above the end's RSS it was the load's, and RssAnon at it is the peak less
RssFile at ready (file pages only grow; no kernel has run by then); else it
is the end's, peak less RssFile at the end. Prints a Markdown table; exit 1
when a row misses the issue's bounds (peak +-3 %, RssAnon at the peak and
at the end +-2 MB).

usage: bench/budget_serve.py MISER_BIN SPEC...   SPEC = label:dir:prec1,prec2:ctx1,ctx2
env:   THREADS (default 2), PARALLEL (default 4), ENGINE (batch or slots; default: serve's default)
"""
import json, os, re, signal, subprocess, sys, tempfile, threading, time, urllib.request

import psutil

def run(args):
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

def status_kb(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("RssAnon", "RssFile", "VmHWM", "VmRSS"):
            out[k] = int(v.split()[0])
    return out

def measure(miser, d, prec, ctx, par, threads, engine, tmp):
    pj = os.path.join(tmp, "s.json")
    cmd = [miser, "profile", "--json", pj, "--format", "none", "--", miser, "serve", "--model", d, "--port", "0",
           "--parallel", str(par), "--ctx", str(ctx), "--threads", threads, "--precision", prec]
    if engine:
        cmd += ["--engine", engine]
    prof = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # stdout: "listening on http://127.0.0.1:PORT"; stderr: "... ready in ..."
    line = prof.stdout.readline()
    m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
    if not m:
        prof.kill()
        raise SystemExit("serve did not start: " + line + prof.stderr.read())
    port = int(m.group(1))
    log = []
    for line in prof.stderr:
        log.append(line)
        if "ready in" in line:
            break
    else:
        raise SystemExit("serve did not get ready:\n" + "".join(log))
    serve = [c for c in psutil.Process(prof.pid).children() if "serve" in " ".join(c.cmdline())][0]
    ready = status_kb(serve.pid)
    for f in (prof.stdout, prof.stderr):
        threading.Thread(target=lambda f=f: [None for _ in f], daemon=True).start()
    n_prompt = min(64, ctx - 1)
    body = json.dumps({"prompt": [64] + [257] * (n_prompt - 1), "max_tokens": ctx - n_prompt, "ignore_eos": True,
                       "temperature": 1.0}).encode()  # sampling: the sampler's buffers (8 bytes x vocab) are written
    done = []
    def one():
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        r = json.load(urllib.request.urlopen(req, timeout=3600))
        done.append(r["usage"]["completion_tokens"])
    ts = [threading.Thread(target=one) for _ in range(par)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    st = status_kb(serve.pid)
    serve.send_signal(signal.SIGTERM)
    prof.wait(timeout=120)
    stages = json.load(open(pj))["stages"]
    peak = max(s["peak_rss_kb"] for s in stages if s.get("peak_rss_kb")) * 1024
    if len(done) != par or min(done) != ctx - n_prompt:
        raise SystemExit(f"the requests generated {done} tokens, not {par} x {ctx - n_prompt}")
    end_rss = (st["RssAnon"] + st["RssFile"]) * 1024
    in_load = peak > end_rss + (256 << 10)  # beyond what a request's freed buffers leave
    anon_peak = peak - (ready["RssFile"] if in_load else st["RssFile"]) * 1024
    return peak, anon_peak, st["RssAnon"] * 1024, in_load, n_prompt

def main():
    miser = sys.argv[1]
    threads = os.environ.get("THREADS", "2")
    par = int(os.environ.get("PARALLEL", "4"))
    engine = os.environ.get("ENGINE", "")
    tmp = tempfile.mkdtemp(prefix="miser-budget-serve-")
    print("| model | precision | ctx | parallel | engine | peak in (predicted/measured) | predicted peak MB | "
          "measured peak MB | error | predicted anon MB | measured anon MB | anon error MB | "
          "predicted run anon MB | measured end anon MB | error MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    bad = 0
    for spec in sys.argv[2:]:
        label, d, precs, ctxs = spec.split(":")
        for prec in precs.split(","):
            run([miser, "generate", "--model", d, "--prompt", "a", "--max-new-tokens", "1", "--precision", prec])
            for ctx in ctxs.split(","):
                ctx = int(ctx)
                pcmd = [miser, "plan", "--model", d, "--ctx", str(ctx), "--parallel", str(par), "--threads", threads,
                        "--json"]
                if engine:
                    pcmd += ["--engine", engine]
                plan = json.loads(run(pcmd).stdout)
                row = [r for r in plan["rows"] if r["precision"] == prec][0]
                peak, anon, end_anon, in_load, n_prompt = measure(miser, d, prec, ctx, par, threads, engine, tmp)
                e = (row["peak_rss_bytes"] - peak) / peak
                ea = (row["rss_anon_bytes"] - anon) / 2**20
                er = (row["run_anon_bytes"] - end_anon) / 2**20
                ok = abs(e) <= 0.03 and abs(ea) <= 2 and abs(er) <= 2
                bad += not ok
                print(f"| {label} | {prec} | {ctx} | {par} | {row.get('engine', engine or '?')} | "
                      f"{row['peak_phase']}/{'load' if in_load else 'run'} | "
                      f"{row['peak_rss_bytes']/2**20:.1f} | {peak/2**20:.1f} | {e*100:+.1f} % | "
                      f"{row['rss_anon_bytes']/2**20:.1f} | {anon/2**20:.1f} | {ea:+.2f} | "
                      f"{row['run_anon_bytes']/2**20:.1f} | {end_anon/2**20:.1f} | {er:+.2f}{'' if ok else ' MISS'} |",
                      flush=True)
    sys.exit(1 if bad else 0)

main()
