#!/usr/bin/env node
// llama.cpp peer for Llama-family checkpoints: greedy generation through
// node-llama-cpp's prebuilt llama.cpp (CPU), on the given token ids; the
// counterpart of llamacpp_gpt2.js (same contract, tools/peers/README.md) for
// LlamaForCausalLM / MistralForCausalLM directories, used by miser's tests
// (tests/test_llama.c) and benchmarks.
//
// Before 0_INITIAL the checkpoint is converted (once, cached) to GGUF by
// to_gguf_llama.py (llama architecture, Q/K rows permuted as llama.cpp's
// converter does) in the asked precision (f32, f16, q8_0). node-llama-cpp is told never to build or
// download anything: it uses the prebuilt binaries of
// @node-llama-cpp/linux-x64 or fails. The model is loaded with llama.cpp's
// defaults (mmap: weights stay file-backed page cache). The context (KV cache
// sized to the longest prompt + new tokens) is created after 1_MODEL_LOADED,
// before 2_BEFORE_INFERENCE. Decoding is greedy (temperature 0) and does not
// stop at end-of-text, like the other adapters; the second generate starts
// from a cleared KV cache.
'use strict';

const pc = require('./peer_common');

const PROG = 'llamacpp_llama';
const PRECISIONS = ['f32', 'f16', 'q8_0'];

// The fields checkFits needs, from a Llama-family config.json.
function readLlamaConfig(modelDir) {
  const fs = require('fs');
  const path = require('path');
  const p = path.join(modelDir, 'config.json');
  let cfg;
  try {
    cfg = JSON.parse(fs.readFileSync(p, 'utf8'));
  } catch (e) {
    throw new pc.PeerError(`${p}: ${e.code ? e.code : 'not JSON: ' + e.message}`);
  }
  const c = { n_ctx: cfg.max_position_embeddings, vocab_size: cfg.vocab_size, n_layer: cfg.num_hidden_layers };
  for (const [k, v] of Object.entries(c)) {
    if (!Number.isInteger(v) || v < 1) throw new pc.PeerError(`${p}: missing or bad Llama field for '${k}'`);
  }
  return c;
}

async function main() {
  const { args, p1, p2, n1, n2 } = pc.parseArgs(PROG,
    'llama.cpp (node-llama-cpp, prebuilt CPU binaries) Llama-family peer runtime.', PRECISIONS);
  const cfg = readLlamaConfig(args.model);
  pc.checkFits(cfg, [[p1, n1], [p2, n2]]);
  // No source download or build, ever: only the prebuilt binary package.
  process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = 'true';
  let nlc;
  try {
    if (!pc.pkgVersion('@node-llama-cpp/linux-x64')) throw new Error('no prebuilt binaries');
    nlc = await import('node-llama-cpp');
  } catch (e) {
    throw new pc.PeerError('node-llama-cpp with @node-llama-cpp/linux-x64 is not installed in tools/peers/node_modules; '
      + 'install it with `make peers`', pc.EXIT_NOT_INSTALLED);
  }
  const gguf = pc.cachePath(args.cacheDir, args.model, `llama-${args.precision}-v1.gguf`);
  const convertS = pc.convert(PROG, 'to_gguf_llama.py',
    ['--model', args.model, '--out', gguf, '--precision', args.precision], gguf);

  let llama;
  try {
    llama = await nlc.getLlama({
      gpu: false,
      build: 'never',
      usePrebuiltBinaries: true,
      skipDownload: true,
      progressLogs: false,
      logLevel: nlc.LlamaLogLevel.error,
      maxThreads: args.threads,
    });
  } catch (e) {
    throw new pc.PeerError(`node-llama-cpp found no usable prebuilt llama.cpp (${String(e.message).split('\n')[0]}); `
      + 'reinstall with `make peers`', pc.EXIT_NOT_INSTALLED);
  }

  const stages = new pc.Stages();
  stages.mark(0);
  const t0 = pc.now();
  const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
  const loadS = pc.now() - t0;
  stages.mark(1);
  const need = Math.max(p1.length + n1, p2.length + n2);
  const context = await model.createContext({
    contextSize: need,
    batchSize: Math.max(p1.length, p2.length),
    threads: args.threads,
    sequences: 1,
  });
  const sequence = context.getSequence();

  async function generate(prompt, nNew) {
    await sequence.clearHistory();
    const out = [];
    let ttft = 0;
    const start = pc.now();
    for await (const tok of sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
      out.push(tok);
      if (out.length === 1) ttft = pc.now() - start;
      if (out.length >= nNew) break;
    }
    const seconds = pc.now() - start;
    if (out.length !== nNew) throw new pc.PeerError(`llama.cpp stopped after ${out.length} of ${nNew} tokens`);
    return [out, seconds, ttft];
  }

  stages.mark(2);
  const [ids1, s1, ttft1] = await generate(p1, n1);
  stages.mark(3, { seconds: s1.toFixed(6), tokens: ids1.length, ttft_s: ttft1.toFixed(6) });
  const [ids2, s2, ttft2] = await generate(p2, n2);
  stages.mark(4, { seconds: s2.toFixed(6), tokens: ids2.length, ttft_s: ttft2.toFixed(6) });
  let version = `node-llama-cpp ${pc.pkgVersion('node-llama-cpp')}`;
  const rel = llama.llamaCppRelease;
  if (rel && rel.release) version += ` (llama.cpp ${rel.release}, CPU)`;
  const result = {
    runtime: 'llama.cpp',
    version,
    precision: args.precision,
    threads: args.threads,
    load_s: Math.round(loadS * 1e6) / 1e6,
    convert_s: Math.round(convertS * 1e6) / 1e6,
    context_size: context.contextSize,
    first: pc.runResult(p1, ids1, s1, ttft1),
    second: pc.runResult(p2, ids2, s2, ttft2),
    peak_rss_mb: pc.peakRssMb(),
  };
  stages.mark(5);
  result.stages = stages.records;
  if (args.jsonOut) pc.writeJsonAtomic(args.jsonOut, result);
  await context.dispose();
  await model.dispose();
  await llama.dispose();
  return 0;
}

pc.runMain(PROG, main);
