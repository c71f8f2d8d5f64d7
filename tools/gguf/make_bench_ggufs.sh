#!/bin/sh
# The GGUF files of issue 15's benchmark (docs/gguf.md, "Benchmark"): a GPT-2
# medium-shaped and a SmolLM2-360M-shaped synthetic checkpoint (miser synth,
# seed 1, f32, ~1.4 GB each), converted by the peers' GGUF writers
# (tools/peers/to_gguf.py, to_gguf_llama.py) to f32 and f16, then rewritten by
# tools/gguf/quantize_gguf.py to q8_0, q4_0 (gguf-py's quantizers, which are
# llama.cpp's) and q4_k_m (Q4_K with Q6_K for attn_v, ffn_down and the
# embeddings / head, as llama.cpp's Q4_K_M mix). Files that exist are kept.
#
#   tools/gguf/make_bench_ggufs.sh OUTDIR [MISER]      (MISER: default build/miser)
#
# Then: build/miser-bench e2e --gguf "$(ls OUTDIR/*.{q4_0,q4_k_m,q8_0,f16}.gguf | paste -sd,)" --runs 5
set -e
out=${1:?usage: make_bench_ggufs.sh OUTDIR [MISER]}
miser=${2:-build/miser}
here=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3
mkdir -p "$out"
[ -f "$out/gpt2-medium/model.safetensors" ] ||
    "$miser" synth --shape medium --seed 1 --out "$out/gpt2-medium" --quiet
[ -f "$out/smollm2-360m/model.safetensors" ] ||
    "$miser" synth --arch llama --shape smollm2-360m --seed 1 --out "$out/smollm2-360m" --quiet
for m in gpt2-medium smollm2-360m; do
    conv=to_gguf.py
    [ "$m" = smollm2-360m ] && conv=to_gguf_llama.py
    for p in f32 f16; do
        [ -f "$out/$m.$p.gguf" ] || $py "$here/peers/$conv" --model "$out/$m" --out "$out/$m.$p.gguf" --precision $p
    done
    for t in q8_0 q4_0 q4_k_m; do
        [ -f "$out/$m.$t.gguf" ] || $py "$here/gguf/quantize_gguf.py" "$out/$m.f32.gguf" "$out/$m.$t.gguf" $t
    done
done
ls -la "$out"/*.gguf
