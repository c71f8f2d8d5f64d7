#!/usr/bin/env node
// llama.cpp peer for `miser compare`: GPT-2 greedy generation through
// node-llama-cpp's prebuilt llama.cpp (CPU), on the given token ids.
//
// Follows the common contract in tools/peers/README.md; the run itself is
// llamacpp_common.js. The checkpoint is converted (once, cached) to GGUF by
// to_gguf.py.
'use strict';

const pc = require('./peer_common');
const { runLlamaCppPeer } = require('./llamacpp_common');

const PROG = 'llamacpp_gpt2';

pc.runMain(PROG, () => runLlamaCppPeer({
  prog: PROG,
  description: 'llama.cpp (node-llama-cpp, prebuilt CPU binaries) GPT-2 peer runtime.',
  readConfig: pc.readConfig,
  ggufPrefix: 'gpt2',
  converter: 'to_gguf.py',
}));
