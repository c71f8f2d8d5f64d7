#!/bin/sh
# Memory budgets (issue 17): the cost of --allow-paging. Runs `miser generate`
# on MODEL inside a memory cgroup (v1 memory.limit_in_bytes, else v2
# memory.max; needs root) limited to FRACTION of the weights' size (default
# 0.5), and without a limit, after dropping the weights from the page cache
# each time; prints tok/s and major page faults of both.
# usage: bench/budget_paging.sh MISER MODEL [FRACTION] [NEW_TOKENS]
set -eu
MISER=$1; MODEL=$2; FRAC=${3:-0.5}; NEW=${4:-64}
W=$(stat -c %s "$MODEL/model.safetensors")
LIMIT=$(python3 -c "print(int($W * $FRAC))")
CG=/sys/fs/cgroup/memory/miser-budget-paging-$$
V=1
if ! mkdir "$CG" 2>/dev/null; then
  V=2; CG=/sys/fs/cgroup/miser-budget-paging-$$
  mkdir "$CG" || { echo "no writable memory cgroup: not run"; exit 0; }
fi
if [ $V = 1 ]; then echo "$LIMIT" > "$CG/memory.limit_in_bytes"; else echo "$LIMIT" > "$CG/memory.max"; fi
drop() { python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" "$MODEL/model.safetensors"; }
run() { # $1: label, $2: 1 = inside the cgroup
  drop
  J=$(mktemp)
  if [ "$2" = 1 ]; then
    sh -c "echo \$\$ > $CG/cgroup.procs; exec '$MISER' profile --json '$J.p' --format none -- '$MISER' generate --model '$MODEL' --prompt Hello --ignore-eos --max-new-tokens $NEW --threads 2 --json --memory-budget $LIMIT --allow-paging" > "$J" 2>/dev/null
  else
    "$MISER" profile --json "$J.p" --format none -- "$MISER" generate --model "$MODEL" --prompt Hello --ignore-eos --max-new-tokens $NEW --threads 2 --json > "$J"
  fi
  python3 - "$1" "$J" "$J.p" <<'PY'
import json, sys
g = json.load(open(sys.argv[2])); p = json.load(open(sys.argv[3]))
st = p["stages"]; last = st[-1]
print(f"| {sys.argv[1]} | {g['timings']['decode_tok_s']:.1f} | {last.get('majflt')} | {max(s['peak_rss_kb'] for s in st)/1024:.1f} |")
PY
  rm -f "$J" "$J.p"
}
echo "weights $((W / 1048576)) MB, limit $((LIMIT / 1048576)) MB ($FRAC of the weights)"
echo "| run | decode tok/s | major faults | peak RSS MB |"
echo "|---|---|---|---|"
run "no limit" 0
run "cgroup at $FRAC x weights, --allow-paging" 1
rmdir "$CG"
