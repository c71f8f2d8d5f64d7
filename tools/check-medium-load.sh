#!/bin/sh
# Load a GPT-2-medium-shaped f32 checkpoint (C=1024, H=16, L=24, V=50257,
# n_ctx=1024; ~1.4 GB) and report the process's RssAnon/RssFile before and
# after miser_model_open, then after touching every weight page. Fails when
# opening grows anonymous memory by 16 MB or more: the loader must keep only
# its tensor table on the heap, with the weights in the read-only mapping.
#   tools/check-medium-load.sh [DIR]   (default /tmp/miser-medium-f32; the
#   checkpoint is generated there with `miser synth` when missing and kept
#   for the next run; it is never written inside the repository)
set -eu
cd "$(dirname "$0")/.."
dir=${1:-/tmp/miser-medium-f32}
make -s build/libmiser.a build/miser >/dev/null
if [ ! -f "$dir/config.json" ]; then
  echo "check-medium-load: generating $dir"
  build/miser synth --out "$dir" --shape medium --dtype f32 --seed 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/load.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "miser/alloc.h"
#include "miser/model.h"

static void rss(const char *when, long *anon_out)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long anon = -1, file = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "RssAnon:", 8)) anon = atol(line + 8);
        if (!strncmp(line, "RssFile:", 8)) file = atol(line + 8);
    }
    if (f) fclose(f);
    printf("%-28s RssAnon %8.1f MB   RssFile %8.1f MB\n", when, anon / 1024.0, file / 1024.0);
    if (anon_out) *anon_out = anon;
}

int main(int argc, char **argv)
{
    long a0, a1;
    rss("before miser_model_open", &a0);
    miser_model *m;
    if (miser_model_open(argv[1], &m)) {
        fprintf(stderr, "open failed: %s\n", miser_error_message());
        return 2;
    }
    rss("after miser_model_open", &a1);
    printf("heap (miser allocator)       %8.1f KB in %zu tensors; mapped %.1f MB\n",
           miser_mem_total().current / 1024.0, miser_model_tensor_count(m),
           miser_model_mapped_bytes(m) / 1048576.0);
    volatile unsigned char sink = 0;
    for (size_t i = 0; i < miser_model_tensor_count(m); i++) {
        const miser_tensor_info *t = miser_model_tensor_at(m, i);
        for (uint64_t b = 0; b < t->nbytes; b += 4096) sink ^= ((const unsigned char *)t->data)[b];
    }
    rss("after touching every weight", NULL);
    miser_model_free(m);
    rss("after miser_model_free", NULL);
    printf("anonymous growth from open: %.1f MB (limit 16 MB)\n", (a1 - a0) / 1024.0);
    return a1 - a0 < 16 * 1024 ? 0 : 1;
}
C
cc -std=c11 -O2 -Iinclude -o "$work/load" "$work/load.c" build/libmiser.a -lcjson -lutf8proc -lm -ldl -pthread
"$work/load" "$dir"
