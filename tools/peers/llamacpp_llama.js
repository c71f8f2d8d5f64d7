#!/usr/bin/env node
// llama.cpp peer for Llama-family checkpoints: greedy generation through
// node-llama-cpp's prebuilt llama.cpp (CPU), on the given token ids; the
// counterpart of llamacpp_gpt2.js (same contract, tools/peers/README.md) for
// LlamaForCausalLM / MistralForCausalLM directories, used by miser's tests
// (tests/test_llama.c) and benchmarks.
//
// The run itself is llamacpp_common.js; the checkpoint is converted (once,
// cached) to GGUF by to_gguf_llama.py (llama architecture, Q/K rows permuted as
// llama.cpp's converter does).
'use strict';

const pc = require('./peer_common');
const { runLlamaCppPeer } = require('./llamacpp_common');

const PROG = 'llamacpp_llama';

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

pc.runMain(PROG, () => runLlamaCppPeer({
  prog: PROG,
  description: 'llama.cpp (node-llama-cpp, prebuilt CPU binaries) Llama-family peer runtime.',
  readConfig: readLlamaConfig,
  ggufPrefix: 'llama',
  converter: 'to_gguf_llama.py',
}));
