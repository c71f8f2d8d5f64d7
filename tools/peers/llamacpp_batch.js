#!/usr/bin/env node
// llama.cpp generating several sequences in one context, for `miser-bench
// serve` (bench/bench_serve.c): node-llama-cpp's prebuilt llama.cpp (CPU) on
// a GGUF written from the same checkpoint (to_gguf.py for GPT-2,
// to_gguf_llama.py for the Llama family, cached under the names
// llamacpp_gpt2.js / llamacpp_llama.js use), greedy, end-of-text not stopping
// generation.
// For each count K in --streams, K sequences of one context (created once
// with the largest K, each sequence its own prompt + new-token cells) are
// evaluated at once: node-llama-cpp gathers the pending tokens of every
// sequence into one llama_decode batch per step, which is llama.cpp's
// continuous batching. Every token's arrival is timestamped as it is yielded,
// on one clock per run, so the benchmark computes the same figures (decode
// tok/s, inter-token latency, time to first token) as it does for miser serve.
//
//   node tools/peers/llamacpp_batch.js --model DIR --precision f32 --threads 2 --streams 1,16
//        --max-new-tokens 128 --prompt-ids "1,2,3;4,5,6;..." --json-out FILE [--cache-dir DIR]
// --prompt-ids: one prompt per sequence, ';' between prompts (fewer prompts
// than sequences: reused in turn). The result (--json-out, atomic):
// {"version", "precision", "threads", "context_size",
//  "runs": [{"streams": K, "recs": [{"t_send": s, "times": [s...], "tokens": n}]}]}
// Exit codes as the peers' contract (tools/peers/README.md): 0, 1 failure,
// 2 usage, 3 not installed, 4 unsupported precision.
'use strict';

const pc = require('./peer_common');

const PROG = 'llamacpp_batch';
const PRECISIONS = ['f32', 'f16', 'q8_0'];

function parse(argv) {
  const a = { threads: 2, precision: 'f32', streams: '1,16', maxNewTokens: '128' };
  const valued = { '--model': 'model', '--precision': 'precision', '--threads': 'threads', '--streams': 'streams',
    '--max-new-tokens': 'maxNewTokens', '--prompt-ids': 'promptIds', '--json-out': 'jsonOut', '--cache-dir': 'cacheDir' };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '-h' || k === '--help') {
      process.stdout.write('usage: llamacpp_batch --model DIR --prompt-ids "IDS;IDS;..." [--streams 1,16]\n'
        + '         [--max-new-tokens 128] [--threads 2] [--precision f32|f16|q8_0] [--json-out FILE] [--cache-dir DIR]\n'
        + 'llama.cpp (node-llama-cpp) generating K sequences in one context at once, every token timestamped.\n');
      process.exit(0);
    }
    if (!(k in valued)) throw new pc.PeerError(`unknown option '${k}' (see --help)`, pc.EXIT_USAGE);
    if (i + 1 >= argv.length) throw new pc.PeerError(`option '${k}' needs a value`, pc.EXIT_USAGE);
    a[valued[k]] = argv[++i];
  }
  if (!a.model) throw new pc.PeerError('--model is required', pc.EXIT_USAGE);
  if (!a.promptIds) throw new pc.PeerError('--prompt-ids is required', pc.EXIT_USAGE);
  if (!PRECISIONS.includes(a.precision)) {
    throw new pc.PeerError(`precision '${a.precision}' is not supported (${PRECISIONS.join(', ')})`, pc.EXIT_UNSUPPORTED);
  }
  const int = (v, what, lo) => {
    if (!/^\d+$/.test(String(v)) || Number(v) < lo) throw new pc.PeerError(`${what}: expected an integer >= ${lo}, got '${v}'`, pc.EXIT_USAGE);
    return Number(v);
  };
  a.threads = int(a.threads, '--threads', 1);
  a.maxNewTokens = int(a.maxNewTokens, '--max-new-tokens', 1);
  a.streams = String(a.streams).split(',').map((s) => int(s, '--streams', 1));
  a.prompts = String(a.promptIds).split(';').map((p) => p.split(',').filter((x) => x.length).map((x) => int(x, '--prompt-ids', 0)));
  if (a.prompts.some((p) => !p.length)) throw new pc.PeerError('--prompt-ids: an empty prompt', pc.EXIT_USAGE);
  return a;
}

async function main() {
  const a = parse(process.argv.slice(2));
  // the family picks the converter, as llamacpp_gpt2.js / llamacpp_llama.js do
  const fs = require('fs');
  const path = require('path');
  let raw = {};
  try { raw = JSON.parse(fs.readFileSync(path.join(a.model, 'config.json'), 'utf8')); } catch (e) { /* readConfig says why */ }
  const llamaFamily = ['llama', 'mistral', 'qwen2'].includes(raw.model_type);
  const cfg = llamaFamily ? { n_ctx: raw.max_position_embeddings, vocab_size: raw.vocab_size } : pc.readConfig(a.model);
  if (llamaFamily && !(Number.isInteger(cfg.n_ctx) && Number.isInteger(cfg.vocab_size))) {
    throw new pc.PeerError(`${a.model}/config.json: missing max_position_embeddings or vocab_size`);
  }
  const longest = Math.max(...a.prompts.map((p) => p.length));
  pc.checkFits(cfg, a.prompts.map((p) => [p, a.maxNewTokens]));
  process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = 'true';
  let nlc;
  try {
    if (!pc.pkgVersion('@node-llama-cpp/linux-x64')) throw new Error('no prebuilt binaries');
    nlc = await import('node-llama-cpp');
  } catch (e) {
    throw new pc.PeerError('node-llama-cpp with @node-llama-cpp/linux-x64 is not installed in tools/peers/node_modules; '
      + 'install it with `make peers`', pc.EXIT_NOT_INSTALLED);
  }
  const gguf = pc.cachePath(a.cacheDir, a.model, `${llamaFamily ? 'llama' : 'gpt2'}-${a.precision}-v1.gguf`);
  pc.convert(PROG, llamaFamily ? 'to_gguf_llama.py' : 'to_gguf.py',
    ['--model', a.model, '--out', gguf, '--precision', a.precision], gguf);
  const llama = await nlc.getLlama({
    gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: false,
    logLevel: nlc.LlamaLogLevel.error, maxThreads: a.threads,
  });
  const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
  const maxK = Math.max(...a.streams);
  const context = await model.createContext({
    contextSize: longest + a.maxNewTokens, // per sequence
    sequences: maxK,
    threads: a.threads,
  });
  const seqs = [];
  for (let i = 0; i < maxK; i++) seqs.push(context.getSequence());
  const runs = [];
  for (const K of a.streams) {
    for (let i = 0; i < K; i++) await seqs[i].clearHistory();
    const t0 = pc.now();
    const one = async (i) => {
      const prompt = a.prompts[i % a.prompts.length];
      const rec = { t_send: pc.now() - t0, times: [], tokens: 0 };
      for await (const tok of seqs[i].evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
        void tok;
        rec.times.push(pc.now() - t0);
        if (++rec.tokens >= a.maxNewTokens) break;
      }
      if (rec.tokens !== a.maxNewTokens) throw new pc.PeerError(`sequence ${i}: llama.cpp stopped after ${rec.tokens} of ${a.maxNewTokens} tokens`);
      return rec;
    };
    const recs = await Promise.all(Array.from({ length: K }, (_, i) => one(i)));
    runs.push({ streams: K, recs });
  }
  let version = `node-llama-cpp ${pc.pkgVersion('node-llama-cpp')}`;
  const rel = llama.llamaCppRelease;
  if (rel && rel.release) version += ` (llama.cpp ${rel.release}, CPU)`;
  const result = { version, precision: a.precision, threads: a.threads, context_size: context.contextSize, runs };
  if (a.jsonOut) pc.writeJsonAtomic(a.jsonOut, result);
  else process.stdout.write(JSON.stringify(result) + '\n');
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  return 0;
}

pc.runMain(PROG, main);
