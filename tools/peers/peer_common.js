// Shared pieces of the Node peer adapters for `miser compare` (ort_gpt2.js,
// llamacpp_gpt2.js): the common command-line contract (tools/peers/README.md),
// the study's stage lines, the conversion cache (same key as peer_common.py),
// running a converter before 0_INITIAL, and atomic JSON output.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const { spawnSync } = require('child_process');
const v8 = require('v8');
const vm = require('vm');

// The study collected garbage before each reading; expose V8's collector.
v8.setFlagsFromString('--expose-gc');
const collectGarbage = vm.runInNewContext('gc');

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
const EXIT_NOT_INSTALLED = 3;
const EXIT_UNSUPPORTED = 4;
const PYTHON = '/usr/bin/python3';
const HERE = __dirname;

const STAGES = [
  ['0_INITIAL', 'Initial state'],
  ['1_MODEL_LOADED', 'After loading model'],
  ['2_BEFORE_INFERENCE', 'Before first inference'],
  ['3_FIRST_INFERENCE', 'After first inference'],
  ['4_SECOND_INFERENCE', 'After second inference'],
  ['5_FINAL', 'Final state'],
];

class PeerError extends Error {
  constructor(msg, code = EXIT_FAILURE) {
    super(msg);
    this.code = code;
  }
}

// Run an async main; any failure becomes one stderr line and the contract's exit code.
function runMain(prog, fn) {
  fn().then(
    (rc) => { process.exitCode = rc || 0; },
    (e) => {
      const code = e instanceof PeerError ? e.code : EXIT_FAILURE;
      const msg = String((e && e.message) || e).split('\n')[0];
      process.stderr.write(`${prog}: ${e instanceof PeerError ? '' : 'error: '}${msg}\n`);
      process.exit(code);
    });
}

function parseIds(text, what) {
  const parts = String(text).replace(/,/g, ' ').split(/\s+/).filter((s) => s.length);
  if (!parts.length) throw new PeerError(`${what}: no token ids in '${text}'`, EXIT_USAGE);
  return parts.map((p) => {
    if (!/^\d+$/.test(p)) throw new PeerError(`${what}: not a list of non-negative integers: '${text}'`, EXIT_USAGE);
    return Number(p);
  });
}

function usage(prog, description, precisions) {
  return `usage: ${prog} --model DIR --prompt-ids "15496" [--prompt2-ids "14402"]
          (--max-length 10 | --max-new-tokens N) [--threads N]
          [--precision ${precisions.join('|')}] [--json-out FILE] [--cache-dir DIR]
${description}
See tools/peers/README.md for the contract (stage lines, JSON result, exit codes).
`;
}

// Parse the contract's options. Returns {args, p1, p2, n1, n2}.
function parseArgs(prog, description, precisions, argv = process.argv.slice(2)) {
  const a = { threads: os.availableParallelism ? os.availableParallelism() : os.cpus().length, precision: 'f32' };
  const valued = { '--model': 'model', '--prompt-ids': 'promptIds', '--prompt2-ids': 'prompt2Ids',
    '--max-length': 'maxLength', '--max-new-tokens': 'maxNewTokens', '--threads': 'threads',
    '--precision': 'precision', '--json-out': 'jsonOut', '--cache-dir': 'cacheDir' };
  for (let i = 0; i < argv.length; i++) {
    let key = argv[i];
    let val;
    if (key === '-h' || key === '--help') {
      process.stdout.write(usage(prog, description, precisions));
      process.exit(0);
    }
    const eq = key.indexOf('=');
    if (key.startsWith('--') && eq > 0) { val = key.slice(eq + 1); key = key.slice(0, eq); }
    if (!(key in valued)) throw new PeerError(`unknown option '${key}' (see --help)`, EXIT_USAGE);
    if (val === undefined) {
      if (i + 1 >= argv.length) throw new PeerError(`option '${key}' needs a value`, EXIT_USAGE);
      val = argv[++i];
    }
    a[valued[key]] = val;
  }
  if (!a.model) throw new PeerError('--model is required (see --help)', EXIT_USAGE);
  if (!a.promptIds) throw new PeerError('--prompt-ids is required (see --help)', EXIT_USAGE);
  if ((a.maxLength === undefined) === (a.maxNewTokens === undefined)) {
    throw new PeerError('give exactly one of --max-length and --max-new-tokens', EXIT_USAGE);
  }
  const int = (v, what) => {
    if (!/^\d+$/.test(String(v))) throw new PeerError(`${what}: not a non-negative integer: '${v}'`, EXIT_USAGE);
    return Number(v);
  };
  a.threads = int(a.threads, '--threads');
  if (a.threads < 1) throw new PeerError('--threads must be at least 1', EXIT_USAGE);
  if (!precisions.includes(a.precision)) {
    throw new PeerError(`precision '${a.precision}' is not supported by this runtime (supported: ${precisions.join(', ')})`,
      EXIT_UNSUPPORTED);
  }
  if (a.jsonOut) {
    const d = path.dirname(path.resolve(a.jsonOut));
    try {
      fs.accessSync(d, fs.constants.W_OK | fs.constants.X_OK);
    } catch (e) {
      throw new PeerError(`${a.jsonOut}: directory ${d} is missing or not writable`, EXIT_USAGE);
    }
  }
  const p1 = parseIds(a.promptIds, '--prompt-ids');
  const p2 = a.prompt2Ids !== undefined ? parseIds(a.prompt2Ids, '--prompt2-ids') : p1.slice();
  let n1, n2;
  if (a.maxNewTokens !== undefined) {
    n1 = n2 = int(a.maxNewTokens, '--max-new-tokens');
    if (n1 < 1) throw new PeerError('--max-new-tokens must be at least 1', EXIT_USAGE);
  } else {
    const m = int(a.maxLength, '--max-length');
    n1 = m - p1.length;
    n2 = m - p2.length;
    if (Math.min(n1, n2) < 1) throw new PeerError(`--max-length ${m} leaves no room after the prompt`, EXIT_USAGE);
  }
  return { args: a, p1, p2, n1, n2 };
}

function readConfig(modelDir) {
  const p = path.join(modelDir, 'config.json');
  let cfg;
  try {
    cfg = JSON.parse(fs.readFileSync(p, 'utf8'));
  } catch (e) {
    throw new PeerError(`${p}: ${e.code ? e.code : 'not JSON: ' + e.message}`);
  }
  const c = {
    n_embd: cfg.n_embd, n_head: cfg.n_head, n_layer: cfg.n_layer,
    n_ctx: cfg.n_positions !== undefined ? cfg.n_positions : cfg.n_ctx, vocab_size: cfg.vocab_size,
  };
  for (const [k, v] of Object.entries(c)) {
    if (!Number.isInteger(v) || v < 1) throw new PeerError(`${p}: missing or bad GPT-2 field '${k}'`);
  }
  return c;
}

// Check the prompts and lengths against the model before anything is loaded.
function checkFits(cfg, prompts) {
  for (const [p, n] of prompts) {
    if (p.length + n > cfg.n_ctx) {
      throw new PeerError(`prompt (${p.length}) + new tokens (${n}) exceed the context (${cfg.n_ctx})`, EXIT_USAGE);
    }
    const mx = Math.max(...p);
    if (mx >= cfg.vocab_size) throw new PeerError(`token id ${mx} is outside the vocabulary (${cfg.vocab_size})`, EXIT_USAGE);
  }
}

function procStatusKb() {
  const out = {};
  for (const line of fs.readFileSync('/proc/self/status', 'utf8').split('\n')) {
    const m = /^(VmRSS|VmSwap|VmHWM):\s+(\d+)/.exec(line);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

// Prints the study's stage lines (synchronously, so a watcher sees them at
// the moment they describe); also feeds miser's marker pipe when present.
class Stages {
  constructor() {
    this.records = [];
    // miser's marker pipe (docs/profiler.md): the repo's helper writes the
    // line and waits for miser's acknowledgement, so the mark is exact.
    this.marker = process.env.MISER_MARKER_FD
      ? require(path.join(HERE, '..', 'markers', 'miser_marker.js')).marker : null;
  }

  mark(index, data = {}) {
    const [name, desc] = STAGES[index];
    collectGarbage();
    const st = procStatusKb();
    const rss = (st.VmRSS || 0) / 1024;
    const swap = (st.VmSwap || 0) / 1024;
    fs.writeSync(1, `[STAGE] ${name}: ${rss.toFixed(2)} MB (swap: ${swap.toFixed(2)} MB) - ${desc}\n`);
    this.records.push({ name, rss_mb: Number(rss.toFixed(2)), swap_mb: Number(swap.toFixed(2)) });
    if (this.marker) this.marker(name, desc, data);
  }
}

// Same key as peer_common.model_key: sha256 of the real path and the
// checkpoint files' mtime (ns) and size, first 16 hex digits.
function modelKey(modelDir) {
  const h = crypto.createHash('sha256');
  let real;
  try {
    real = fs.realpathSync(modelDir);
  } catch (e) {
    throw new PeerError(`${modelDir}: ${e.code}`);
  }
  h.update(real);
  for (const name of ['config.json', 'model.safetensors']) {
    let s;
    try {
      s = fs.statSync(path.join(real, name), { bigint: true });
    } catch (e) {
      throw new PeerError(`${path.join(modelDir, name)}: ${e.code}`);
    }
    h.update(`|${name}:${s.mtimeNs}:${s.size}`);
  }
  return h.digest('hex').slice(0, 16);
}

function cachePath(cacheDir, modelDir, name) {
  const root = cacheDir || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'miser', 'peers');
  const d = path.join(root, modelKey(modelDir));
  fs.mkdirSync(d, { recursive: true });
  return path.join(d, name);
}

// Run a Python converter unless its output exists. Its stdout goes to our
// stderr: stdout carries only stage lines. Returns seconds spent (0 if cached).
function convert(prog, script, scriptArgs, out) {
  if (fs.existsSync(out)) {
    process.stderr.write(`${prog}: using cached conversion ${out}\n`);
    return 0;
  }
  if (!fs.existsSync(PYTHON)) {
    throw new PeerError(`${PYTHON} not found (the converters need Debian's python3); install it with \`make peers\``,
      EXIT_NOT_INSTALLED);
  }
  const t0 = process.hrtime.bigint();
  const r = spawnSync(PYTHON, [path.join(HERE, script), ...scriptArgs], { stdio: ['ignore', 2, 'pipe'], encoding: 'utf8' });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.error) throw new PeerError(`cannot run ${script}: ${r.error.message}`);
  if (r.status !== 0) {
    const msg = (r.stderr || '').trim().split('\n').pop() || `${script} exited with ${r.status}`;
    throw new PeerError(msg.replace(/^[^:]*: /, `${script}: `), r.status === EXIT_NOT_INSTALLED ? EXIT_NOT_INSTALLED : EXIT_FAILURE);
  }
  if (r.stderr) process.stderr.write(r.stderr);
  process.stderr.write(`${prog}: conversion took ${s.toFixed(2)} s (before 0_INITIAL)\n`);
  return s;
}

function writeJsonAtomic(file, obj) {
  const tmp = path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.tmp.${process.pid}`);
  try {
    const fd = fs.openSync(tmp, 'w');
    fs.writeSync(fd, JSON.stringify(obj, null, 1) + '\n');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    try { fs.unlinkSync(tmp); } catch (e2) { /* nothing to remove */ }
    throw new PeerError(`${file}: cannot write: ${e.code || e.message}`);
  }
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

function runResult(prompt, ids, seconds, ttft) {
  const n = ids.length;
  const decode = n > 1 && seconds > ttft ? (n - 1) / (seconds - ttft) : null;
  const r6 = (x) => Math.round(x * 1e6) / 1e6;
  const r4 = (x) => Math.round(x * 1e4) / 1e4;
  return {
    ids, prompt_len: prompt.length, new_tokens: n, seconds: r6(seconds), ttft_s: r6(ttft),
    decode_tok_s: decode === null ? null : r4(decode),
    prefill_tok_s: ttft > 0 ? r4(prompt.length / ttft) : null,
  };
}

// Version of a package installed in tools/peers/node_modules, or null.
function pkgVersion(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(HERE, 'node_modules', name, 'package.json'), 'utf8')).version || null;
  } catch (e) {
    return null;
  }
}

function peakRssMb() {
  return Math.round(((procStatusKb().VmHWM || 0) / 1024) * 100) / 100;
}

module.exports = {
  EXIT_FAILURE, EXIT_USAGE, EXIT_NOT_INSTALLED, EXIT_UNSUPPORTED, PeerError, runMain, parseArgs,
  readConfig, checkFits, Stages, cachePath, convert, writeJsonAtomic, now, runResult, peakRssMb, pkgVersion, HERE,
};
