// The llama.cpp peer's run, shared by llamacpp_gpt2.js and llamacpp_llama.js:
// greedy generation through node-llama-cpp's prebuilt llama.cpp (CPU) on the
// given token ids, under the common contract of tools/peers/README.md. Each
// adapter names itself, reads its family's config.json and names the script
// that converts the checkpoint to GGUF (once, cached, in the asked precision:
// f32, f16, q8_0) before 0_INITIAL. node-llama-cpp is told never to build or
// download anything: it uses the prebuilt binaries of
// @node-llama-cpp/linux-x64 or fails. The model is loaded with llama.cpp's
// defaults (mmap: weights stay file-backed page cache). The context (KV cache
// sized to the longest prompt + new tokens) is created after 1_MODEL_LOADED,
// before 2_BEFORE_INFERENCE. Decoding is greedy (temperature 0) and does not
// stop at end-of-text, like the other adapters; the second generate starts
// from a cleared KV cache.
'use strict';

const pc = require('./peer_common');

const PRECISIONS = ['f32', 'f16', 'q8_0'];

// o: { prog, description, readConfig(modelDir) -> {n_ctx, vocab_size, n_layer},
//      ggufPrefix (cache file name), converter (script in tools/peers) }
async function runLlamaCppPeer(o) {
  const { args, p1, p2, n1, n2 } = pc.parseArgs(o.prog, o.description, PRECISIONS);
  // a GGUF file (`miser compare --model F.gguf`) runs as it is: no config.json,
  // no conversion; llama.cpp checks the context and vocabulary itself
  const asIs = args.model.endsWith('.gguf');
  if (!asIs) pc.checkFits(o.readConfig(args.model), [[p1, n1], [p2, n2]]);
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
  const gguf = asIs ? args.model : pc.cachePath(args.cacheDir, args.model, `${o.ggufPrefix}-${args.precision}-v1.gguf`);
  const convertS = asIs ? 0 : pc.convert(o.prog, o.converter,
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
    precision: asIs ? 'as stored' : args.precision,
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


module.exports = { runLlamaCppPeer, PRECISIONS };
