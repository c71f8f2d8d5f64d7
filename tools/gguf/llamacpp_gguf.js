#!/usr/bin/env node
// llama.cpp (node-llama-cpp's prebuilt CPU build) on a GGUF file as it is:
// the independent reference of tests/test_gguf.c. No conversion, no cache.
//   node llamacpp_gguf.js --model F.gguf [--prompt-ids 1,2,3 --max-new-tokens N]
//                         [--tokenize FILE.json] [--vocab-only 1] --json-out OUT.json
//   node llamacpp_gguf.js --models A.gguf,B.gguf,... [same options]   (results in A.gguf.lc.json, ...)
// --prompt-ids: greedy decoding (temperature 0, not stopping at end-of-text)
// of N tokens after the prompt ids -> "ids". --tokenize: a JSON array of
// strings, each encoded by llama.cpp's own tokenizer (model.tokenize(text),
// special tokens not parsed, no bos added) -> "tokens": an array of id
// arrays. Exit 0 ok, 5 when node-llama-cpp is not installed, 1 otherwise.
'use strict';

const fs = require('fs');
const path = require('path');

function fail(msg, code) {
  process.stderr.write(`llamacpp_gguf: ${msg}\n`);
  process.exit(code);
}

async function main() {
  const a = process.argv.slice(2);
  const opt = {};
  for (let i = 0; i < a.length; i += 2) {
    if (!a[i].startsWith('--') || i + 1 >= a.length) fail(`bad argument ${a[i]}`, 2);
    opt[a[i].slice(2)] = a[i + 1];
  }
  if (!opt.models && (!opt.model || !opt['json-out'])) fail('--model and --json-out (or --models) are required', 2);
  process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD = 'true';
  let nlc;
  try {
    nlc = await import(path.join(__dirname, '..', 'peers', 'node_modules', 'node-llama-cpp', 'dist', 'index.js'));
  } catch (e) {
    fail(`node-llama-cpp is not installed (make peers): ${e.message.split('\n')[0]}`, 5);
  }
  const llama = await nlc.getLlama({
    gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: false,
    logLevel: nlc.LlamaLogLevel.error, maxThreads: 1,
  });
  // --models A,B,...: each file in turn in this one process, results in FILE.lc.json
  const jobs = opt.models ? opt.models.split(',').map((m) => [m, m + '.lc.json']) : [[opt.model, opt['json-out']]];
  for (const [modelPath, jsonOut] of jobs) {
    const model = await llama.loadModel({ modelPath: modelPath, gpuLayers: 0, vocabOnly: opt['vocab-only'] === '1' });
    const out = {};
    if (opt.tokenize) {
      const strings = JSON.parse(fs.readFileSync(opt.tokenize, 'utf8'));
      out.tokens = strings.map((s) => Array.from(model.tokenize(s, false)));
    }
    if (opt['prompt-ids']) {
      const prompt = opt['prompt-ids'].split(',').map((x) => parseInt(x, 10));
      const n = parseInt(opt['max-new-tokens'] || '20', 10);
      const context = await model.createContext({ contextSize: prompt.length + n + 8, batchSize: prompt.length,
        threads: 1, sequences: 1 });
      const seq = context.getSequence();
      const ids = [];
      for await (const tok of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
        ids.push(tok);
        if (ids.length >= n) break;
      }
      out.ids = ids;
      await context.dispose();
    }
    fs.writeFileSync(jsonOut, JSON.stringify(out));
    await model.dispose();
  }
  await llama.dispose();
}

main().catch((e) => fail(String(e && e.stack || e).split('\n').slice(0, 3).join(' | '), 1));
