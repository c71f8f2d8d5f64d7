#!/bin/sh
# Runs libFuzzer targets for `make fuzz`: tools/fuzz.sh DIR SECONDS JOBS NAME...
# Each DIR/NAME runs SECONDS on its own corpus (DIR/NAME-corpus, plus the
# seeds in tests/fuzz/seeds/NAME when there are any), JOBS targets at a time
# (each target is one process: on 2 cores two run in the time of one).
# A target's output goes to DIR/NAME.log; its last line is printed when it
# ends. Exit 1 when any target found a crash, a leak or a hang (-timeout=60:
# one input running a minute), after printing the end of that target's log.
set -u
[ $# -ge 4 ] || { echo "usage: tools/fuzz.sh DIR SECONDS JOBS NAME..." >&2; exit 2; }
dir=$1 secs=$2 jobs=$3
shift 3
for n in "$@"; do
    [ -x "$dir/$n" ] || { echo "tools/fuzz.sh: $dir/$n: no such fuzz target (build it with make fuzz)" >&2; exit 2; }
done
one() {
    n=$1
    mkdir -p "$dir/$n-corpus"
    seeds=
    [ -d "tests/fuzz/seeds/$n" ] && seeds="tests/fuzz/seeds/$n"
    echo "fuzzing $n for ${secs}s"
    if "$dir/$n" -max_total_time="$secs" -timeout=60 -print_final_stats=0 "$dir/$n-corpus" $seeds \
        2>"$dir/$n.log"; then
        echo "$n: $(tail -1 "$dir/$n.log")"
    else
        echo "$n: FAILED ($dir/$n.log):"
        tail -40 "$dir/$n.log"
        return 1
    fi
}
fail=0 running=0 pids=
for n in "$@"; do
    one "$n" &
    pids="$pids $!"
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        for p in $pids; do wait "$p" || fail=1; done
        pids= running=0
    fi
done
for p in $pids; do wait "$p" || fail=1; done
[ "$fail" = 0 ] || { echo "make fuzz: a target failed (see above)"; exit 1; }
