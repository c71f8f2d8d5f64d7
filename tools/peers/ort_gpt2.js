#!/usr/bin/env node
// ONNX Runtime peer for `miser compare`: GPT-2 greedy generation with a KV
// cache on onnxruntime-node's CPU execution provider.
//
// Follows the common contract in tools/peers/README.md. Before 0_INITIAL the
// checkpoint is exported (once, cached) by export_onnx.py into the Keras-style
// einsum graph with past/present key-value tensors; weights are external data
// (model.onnx.data beside the model). The session is created with all graph
// optimisations on, as a default ORT user gets them. Each step feeds the
// previous step's present tensors back as past tensors (the Node binding
// copies them in and out: part of this runtime's cost as Node users see it).
'use strict';

const path = require('path');
const pc = require('./peer_common');

const PROG = 'ort_gpt2';
const PRECISIONS = ['f32'];

async function main() {
  const { args, p1, p2, n1, n2 } = pc.parseArgs(PROG,
    'ONNX Runtime (onnxruntime-node, CPU) GPT-2 peer runtime.', PRECISIONS);
  const cfg = pc.readConfig(args.model);
  pc.checkFits(cfg, [[p1, n1], [p2, n2]]);
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    throw new pc.PeerError('onnxruntime-node is not installed in tools/peers/node_modules; install it with `make peers`',
      pc.EXIT_NOT_INSTALLED);
  }
  const outDir = pc.cachePath(args.cacheDir, args.model, `onnx-${args.precision}-v1`);
  const convertS = pc.convert(PROG, 'export_onnx.py', ['--model', args.model, '--out', outDir], outDir);
  const modelPath = path.join(outDir, 'model.onnx');

  const L = cfg.n_layer;
  const H = cfg.n_head;
  const D = cfg.n_embd / cfg.n_head;

  const stages = new pc.Stages();
  stages.mark(0);
  const t0 = pc.now();
  const session = await ort.InferenceSession.create(modelPath, {
    executionProviders: ['cpu'],
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const loadS = pc.now() - t0;
  stages.mark(1);

  const i64 = (ids) => new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]);

  async function generate(prompt, nNew) {
    const feeds = {};
    const empty = new Float32Array(0);
    for (let l = 0; l < L; l++) {
      feeds[`past_key_${l}`] = new ort.Tensor('float32', empty, [1, 0, H, D]);
      feeds[`past_value_${l}`] = new ort.Tensor('float32', empty, [1, 0, H, D]);
    }
    const out = [];
    let ids = prompt;
    let pos = 0;
    let ttft = 0;
    const start = pc.now();
    for (let i = 0; i < nNew; i++) {
      feeds.input_ids = i64(ids);
      feeds.position_ids = i64(ids.map((_, j) => pos + j));
      const r = await session.run(feeds);
      const logits = r.logits.data;
      let best = 0;
      for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
      out.push(best);
      if (i === 0) ttft = pc.now() - start;
      for (let l = 0; l < L; l++) {
        feeds[`past_key_${l}`] = r[`present_key_${l}`];
        feeds[`past_value_${l}`] = r[`present_value_${l}`];
      }
      pos += ids.length;
      ids = [best];
    }
    return [out, pc.now() - start, ttft];
  }

  stages.mark(2);
  const [ids1, s1, ttft1] = await generate(p1, n1);
  stages.mark(3, { seconds: s1.toFixed(6), tokens: ids1.length, ttft_s: ttft1.toFixed(6) });
  const [ids2, s2, ttft2] = await generate(p2, n2);
  stages.mark(4, { seconds: s2.toFixed(6), tokens: ids2.length, ttft_s: ttft2.toFixed(6) });
  const ortVersion = pc.pkgVersion('onnxruntime-node') || 'unknown';
  const result = {
    runtime: 'onnxruntime',
    version: `onnxruntime-node ${ortVersion} (CPU EP, einsum graph, external data)`,
    precision: args.precision,
    threads: args.threads,
    load_s: Math.round(loadS * 1e6) / 1e6,
    convert_s: Math.round(convertS * 1e6) / 1e6,
    first: pc.runResult(p1, ids1, s1, ttft1),
    second: pc.runResult(p2, ids2, s2, ttft2),
    peak_rss_mb: pc.peakRssMb(),
  };
  stages.mark(5);
  result.stages = stages.records;
  if (args.jsonOut) pc.writeJsonAtomic(args.jsonOut, result);
  await session.release();
  return 0;
}

pc.runMain(PROG, main);
