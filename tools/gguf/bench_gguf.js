#!/usr/bin/env node
// llama.cpp's decode speed on a GGUF file, for the figures of docs/gguf.md:
// greedy decoding of N tokens after the prompt ids on T threads (node-llama-cpp,
// prebuilt CPU build), prints {"prefill_s", "decode_s", "decode_tok_s"}.
//   node bench_gguf.js FILE.gguf IDS N THREADS
'use strict';
const path = require('path');
async function main() {
  const [file, idsArg, nArg, thArg] = process.argv.slice(2);
  const nlc = await import(path.join(__dirname, '..', 'peers', 'node_modules', 'node-llama-cpp', 'dist', 'index.js'));
  const th = parseInt(thArg, 10), n = parseInt(nArg, 10);
  const llama = await nlc.getLlama({ gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true,
    progressLogs: false, logLevel: nlc.LlamaLogLevel.error, maxThreads: th });
  const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
  const ids = idsArg.split(',').map((x) => parseInt(x, 10));
  const ctx = await model.createContext({ contextSize: ids.length + n + 8, batchSize: ids.length, threads: th });
  const seq = ctx.getSequence();
  let t0 = process.hrtime.bigint(), t1 = 0n, k = 0;
  for await (const tok of seq.evaluate(ids, { temperature: 0, yieldEogToken: true })) {
    void tok;
    if (++k === 1) t1 = process.hrtime.bigint();
    if (k >= n) break;
  }
  const t2 = process.hrtime.bigint();
  const pre = Number(t1 - t0) / 1e9, dec = Number(t2 - t1) / 1e9;
  console.log(JSON.stringify({ prefill_s: pre, decode_s: dec, decode_tok_s: (n - 1) / dec }));
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
}
main().catch((e) => { console.error(String(e)); process.exit(1); });
