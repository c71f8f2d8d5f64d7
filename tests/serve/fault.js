#!/usr/bin/env node
// A bounded fault test of miser serve, loopback only: STREAMS concurrent
// streaming completions mixed with malformed requests, oversized bodies and
// clients that disconnect mid-stream (half of them with a TCP reset). Then:
//  - every accepted stream ended with `data: [DONE]` and the greedy text it
//    should have (the text `miser generate` gives alone, passed in), every
//    malformed request got its 400 and every oversized body its 413 (or the
//    connection closed while we were still sending);
//  - every completion request is accounted for on /metrics: the deltas of
//    miser_requests_total ok + cancelled + rejected equal the completion
//    requests sent (warm-up, streams, disconnects, the last check), and no
//    request ended in "error" or "timeout";
//  - no active sequence, an empty queue and no KV held
//    (miser_kv_blocks_used when the engine has a paged pool, else
//    miser_kv_positions_used) once the server has freed what the disconnects
//    left (bounded wait);
//  - with "pid": RssAnon of the server (/proc/PID/status) back within
//    rss_slack_kb (default 1024) of its idle figure, read after a warm-up
//    that ran as many requests at once as the server has slots (so every
//    slot's KV rows and activations were touched once) and a short settle;
//    both figures are printed;
//  - the server still answers a completion and /health.
//   node tests/serve/fault.js BASE_URL EXPECT_JSON
// EXPECT_JSON: {"prompt", "max_tokens", "text"} (greedy, ignore_eos), and
// optionally "streams" (default 64), "disconnects" (16), "malformed" (16),
// "oversized" (4), "pid", "rss_slack_kb" (1024), "settle_ms" (3000).
// Prints "ok ..." with the figures (exit 0) or the failures (exit 1).
// Everything has a timeout; the whole run is bounded by 60 s.
'use strict';
const fs = require('fs');
const http = require('http');
const net = require('net');

const [base, expectJson] = process.argv.slice(2);
const expect = JSON.parse(expectJson);
const url = new URL(base);
const port = Number(url.port), host = url.hostname;
if (host !== '127.0.0.1') { console.log('loopback only'); process.exit(1); }
const STREAMS = expect.streams ?? 64, MALFORMED = expect.malformed ?? 16, DISCONNECTS = expect.disconnects ?? 16;
const OVERSIZED = expect.oversized ?? 4, PID = expect.pid, SLACK_KB = expect.rss_slack_kb ?? 1024;
const SETTLE_MS = expect.settle_ms ?? 3000;
const failures = [];
const deadline = setTimeout(() => { console.log('timeout; failures so far:\n' + failures.join('\n')); process.exit(1); }, 60000);
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

function post(path, body, headers = {}) {
  return new Promise((resolve) => {
    const req = http.request({ host, port, path, method: 'POST', agent, headers: { 'Content-Type': 'application/json', ...headers }, timeout: 30000 },
      (res) => { let d = ''; res.setEncoding('utf8'); res.on('data', (c) => d += c); res.on('end', () => resolve({ status: res.statusCode, body: d })); res.on('error', () => resolve({ status: -1, body: d })); });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: -1, body: String(e) }));
    req.end(body);
  });
}

function get(path) {
  return new Promise((resolve) => {
    http.get({ host, port, path, agent, timeout: 5000 }, (res) => { let d = ''; res.on('data', (c) => d += c); res.on('end', () => resolve({ status: res.statusCode, body: d })); })
      .on('error', (e) => resolve({ status: -1, body: String(e) }));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const metric = (m, name) => {
  const re = new RegExp('^' + name.replace(/[{}"]/g, (c) => '\\' + c) + ' (\\S+)$', 'm');
  const x = re.exec(m);
  return x ? Number(x[1]) : NaN;
};
const outcome = (m, o) => metric(m, 'miser_requests_total{outcome="' + o + '"}');
const rssAnonKb = () => {
  const m = /^RssAnon:\s+(\d+) kB$/m.exec(fs.readFileSync('/proc/' + PID + '/status', 'utf8'));
  return m ? Number(m[1]) : NaN;
};

const good = JSON.stringify({ prompt: expect.prompt, max_tokens: expect.max_tokens, temperature: 0, ignore_eos: true, stream: true });
const plain = JSON.stringify({ prompt: expect.prompt, max_tokens: expect.max_tokens, temperature: 0, ignore_eos: true });

async function stream(i) {
  const r = await post('/v1/completions', good);
  if (r.status === 503) return 'rejected';
  if (r.status !== 200) { failures.push('stream ' + i + ': status ' + r.status); return 'bad'; }
  const events = r.body.split('\n\n');
  if (events.pop() !== '') failures.push('stream ' + i + ': does not end with a blank line');
  if (events[events.length - 1] !== 'data: [DONE]') failures.push('stream ' + i + ': last event ' + events[events.length - 1]);
  let text = '';
  for (const ev of events.slice(0, -1)) {
    if (!ev.startsWith('data: ')) { failures.push('stream ' + i + ': event ' + ev); continue; }
    const j = JSON.parse(ev.slice(6));
    if (j.error) failures.push('stream ' + i + ': error event ' + ev);
    if (j.choices && j.choices.length) text += j.choices[0].text;
  }
  if (text !== expect.text) failures.push('stream ' + i + ': text ' + JSON.stringify(text));
  return 'ok';
}

// A raw socket that sends a streaming request and closes after the first bytes back.
function disconnect(i) {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    const body = JSON.stringify({ prompt: expect.prompt, max_tokens: 100, temperature: 0, ignore_eos: true, stream: true });
    s.setTimeout(10000, () => { failures.push('disconnect ' + i + ': no answer in 10 s'); s.destroy(); resolve(); });
    s.on('connect', () => s.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ' +
                                  Buffer.byteLength(body) + '\r\n\r\n' + body));
    s.once('data', () => { if (i % 2) s.resetAndDestroy(); else s.destroy(); resolve(); });
    s.on('error', (e) => { failures.push('disconnect ' + i + ': ' + e.message); resolve(); });
  });
}

const malformed = [
  ['{"prompt": "x",', 400], ['[1,2,3]', 400], ['{"prompt": 3}', 400], ['{"prompt":"x","max_tokens":0}', 400],
  ['{"prompt":"x","temperature":-1}', 400], ['{"prompt":"x","n":3}', 400], ['', 400], ['{"prompt":"x","stop":[1]}', 400],
  ['\u0000\u0001garbage', 400], ['{"prompt":"x","top_p":7}', 400], ['{"prompt":[99999999]}', 400], ['{"prompt":"x","stream":"yes"}', 400],
];

// Wait (bounded) until nothing is active, queued or holding KV; returns the last /metrics text.
async function drained(what) {
  let m = '', active, queued, kv;
  for (let t = 0; t < 500; t++) {
    m = (await get('/metrics')).body;
    active = metric(m, 'miser_active_sequences');
    queued = metric(m, 'miser_queue_depth');
    kv = metric(m, 'miser_kv_blocks_used');
    if (Number.isNaN(kv)) kv = metric(m, 'miser_kv_positions_used');
    if (active === 0 && queued === 0 && kv === 0) return m;
    await sleep(20);
  }
  failures.push(what + ': active ' + active + ', queued ' + queued + ', KV used ' + kv + ' (after 10 s)');
  return m;
}

(async () => {
  const m0 = (await get('/metrics')).body;
  const slots = metric(m0, 'miser_slots_total') || 1;
  // warm-up: as many requests at once as there are slots
  const warm = await Promise.all(Array.from({ length: slots }, () => post('/v1/completions', plain)));
  for (const w of warm) if (w.status !== 200) failures.push('warm-up: ' + w.status + ' ' + w.body);
  await drained('after the warm-up');
  await sleep(200);
  const idleKb = PID ? rssAnonKb() : NaN;

  const jobs = [], t0 = Date.now();
  for (let i = 0; i < STREAMS; i++) jobs.push(stream(i));
  for (let i = 0; i < MALFORMED; i++) {
    const [b, want] = malformed[i % malformed.length];
    jobs.push(post('/v1/completions', b).then((r) => { if (r.status !== want) failures.push('malformed ' + JSON.stringify(b) + ': ' + r.status); return 'malformed'; }));
  }
  for (let i = 0; i < DISCONNECTS; i++) jobs.push(disconnect(i).then(() => 'disconnect'));
  for (let i = 0; i < OVERSIZED; i++)
    jobs.push(post('/v1/completions', '{"prompt":"' + 'a'.repeat(2 << 20) + '"}').then((r) => {
      if (r.status !== 413 && r.status !== -1) failures.push('oversized: ' + r.status); // -1: the server closed while we were still sending
      return 'oversized';
    }));
  const results = await Promise.all(jobs);
  const loadMs = Date.now() - t0;
  const accepted = results.filter((x) => x === 'ok').length, rejected = results.filter((x) => x === 'rejected').length;
  if (accepted < Math.min(8, STREAMS)) failures.push('only ' + accepted + ' streams accepted');
  // the server frees cancelled sequences at its next step
  await drained('after the load');
  let afterKb = NaN;
  if (PID) { // a short settle: connection threads exit, the scheduler's last step ends
    for (let t = 0; t < SETTLE_MS; t += 100) {
      afterKb = rssAnonKb();
      if (afterKb - idleKb <= SLACK_KB) break;
      await sleep(100);
    }
    if (!(afterKb - idleKb <= SLACK_KB))
      failures.push('RssAnon ' + afterKb + ' kB after the load, idle ' + idleKb + ' kB: +' + (afterKb - idleKb) + ' kB > ' + SLACK_KB + ' kB');
  }
  const after = await post('/v1/completions', plain);
  if (after.status !== 200 || JSON.parse(after.body).choices[0].text !== expect.text) failures.push('after: ' + after.status + ' ' + after.body);
  if ((await get('/health')).status !== 200) failures.push('/health is not 200 after the load');
  const m = await drained('at the end');
  const d = (o) => outcome(m, o) - outcome(m0, o);
  const sent = slots + STREAMS + DISCONNECTS + 1;
  if (d('ok') + d('cancelled') + d('rejected') !== sent)
    failures.push('requests ok ' + d('ok') + ' + cancelled ' + d('cancelled') + ' + rejected ' + d('rejected') + ' != ' + sent + ' sent');
  if (d('error') !== 0 || d('timeout') !== 0) failures.push('requests ended in error: ' + d('error') + ', timeout: ' + d('timeout'));
  if (d('rejected') < rejected) failures.push(rejected + ' streams saw 503 but ' + d('rejected') + ' rejections counted');
  if (!(d('cancelled') >= 1) && DISCONNECTS > 0) failures.push('no cancelled requests counted');
  if (!(d('client_error') >= MALFORMED)) failures.push('client errors counted ' + d('client_error') + ' < ' + MALFORMED);
  clearTimeout(deadline);
  if (failures.length) { console.log(failures.join('\n')); process.exit(1); }
  console.log('ok accepted=' + accepted + ' rejected=' + rejected + ' cancelled=' + d('cancelled') + ' load_ms=' + loadMs +
              (PID ? ' rss_anon_idle_kb=' + idleKb + ' rss_anon_after_kb=' + afterKb : ''));
})().catch((e) => { console.log('exception: ' + (e && e.stack || e)); process.exit(1); });
