#!/usr/bin/env node
// A bounded fault test of miser serve, loopback only: STREAMS concurrent
// streaming completions mixed with malformed requests, oversized bodies and
// clients that disconnect mid-stream. Then: every accepted stream ended with
// `data: [DONE]` and the greedy text it should have, every malformed request
// got its 4xx, the server still answers, and /metrics shows no active
// sequences and an empty queue.
//   node tests/serve/fault.js BASE_URL EXPECT_JSON
// EXPECT_JSON: {"prompt", "max_tokens", "text"} (greedy, ignore_eos).
// Prints "ok" (exit 0) or the failures (exit 1). Everything has a timeout.
'use strict';
const http = require('http');
const net = require('net');

const [base, expectJson] = process.argv.slice(2);
const expect = JSON.parse(expectJson);
const url = new URL(base);
const port = Number(url.port), host = url.hostname;
if (host !== '127.0.0.1') { console.log('loopback only'); process.exit(1); }
const STREAMS = 24, MALFORMED = 12, DISCONNECTS = 12, OVERSIZED = 4;
const failures = [];
const deadline = setTimeout(() => { console.log('timeout; failures so far:\n' + failures.join('\n')); process.exit(1); }, 40000);

function post(path, body, headers = {}) {
  return new Promise((resolve) => {
    const req = http.request({ host, port, path, method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, timeout: 30000 },
      (res) => { let d = ''; res.setEncoding('utf8'); res.on('data', (c) => d += c); res.on('end', () => resolve({ status: res.statusCode, body: d })); res.on('error', () => resolve({ status: -1, body: d })); });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: -1, body: String(e) }));
    req.end(body);
  });
}

function get(path) {
  return new Promise((resolve) => {
    http.get({ host, port, path, timeout: 5000 }, (res) => { let d = ''; res.on('data', (c) => d += c); res.on('end', () => resolve({ status: res.statusCode, body: d })); })
      .on('error', (e) => resolve({ status: -1, body: String(e) }));
  });
}

const good = JSON.stringify({ prompt: expect.prompt, max_tokens: expect.max_tokens, temperature: 0, ignore_eos: true, stream: true });

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
    s.setTimeout(5000, () => { s.destroy(); resolve(); });
    s.on('connect', () => s.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ' +
                                  Buffer.byteLength(body) + '\r\n\r\n' + body));
    s.once('data', () => { if (i % 2) s.resetAndDestroy(); else s.destroy(); resolve(); });
    s.on('error', () => resolve());
  });
}

const malformed = [
  ['{"prompt": "x",', 400], ['[1,2,3]', 400], ['{"prompt": 3}', 400], ['{"prompt":"x","max_tokens":0}', 400],
  ['{"prompt":"x","temperature":-1}', 400], ['{"prompt":"x","n":3}', 400], ['', 400], ['{"prompt":"x","stop":[1]}', 400],
  ['\u0000\u0001garbage', 400], ['{"prompt":"x","top_p":7}', 400], ['{"prompt":[99999999]}', 400], ['{"prompt":"x","stream":"yes"}', 400],
];

(async () => {
  const jobs = [];
  for (let i = 0; i < STREAMS; i++) jobs.push(stream(i));
  for (let i = 0; i < MALFORMED; i++) {
    const [b, want] = malformed[i % malformed.length];
    jobs.push(post('/v1/completions', b).then((r) => { if (r.status !== want) failures.push('malformed ' + JSON.stringify(b) + ': ' + r.status); }));
  }
  for (let i = 0; i < DISCONNECTS; i++) jobs.push(disconnect(i));
  for (let i = 0; i < OVERSIZED; i++)
    jobs.push(post('/v1/completions', '{"prompt":"' + 'a'.repeat(2 << 20) + '"}').then((r) => {
      if (r.status !== 413 && r.status !== -1) failures.push('oversized: ' + r.status); // -1: the server closed while we were still sending
    }));
  const results = await Promise.all(jobs);
  const accepted = results.filter((x) => x === 'ok').length;
  if (accepted < 8) failures.push('only ' + accepted + ' streams accepted');
  // the server frees cancelled sequences at its next step: wait (bounded) for 0
  let active = -1, queued = -1;
  for (let t = 0; t < 250; t++) {
    const m = (await get('/metrics')).body;
    active = Number((/^miser_active_sequences (\S+)$/m.exec(m) || [])[1]);
    queued = Number((/^miser_queue_depth (\S+)$/m.exec(m) || [])[1]);
    if (active === 0 && queued === 0) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  if (active !== 0 || queued !== 0) failures.push('after the load: active ' + active + ', queued ' + queued);
  const after = await post('/v1/completions', JSON.stringify({ prompt: expect.prompt, max_tokens: expect.max_tokens, temperature: 0, ignore_eos: true }));
  if (after.status !== 200 || JSON.parse(after.body).choices[0].text !== expect.text) failures.push('after: ' + after.status + ' ' + after.body);
  const m = (await get('/metrics')).body;
  const cancelled = Number((/^miser_requests_total\{outcome="cancelled"\} (\S+)$/m.exec(m) || [])[1]);
  if (!(cancelled >= 1)) failures.push('no cancelled requests counted');
  clearTimeout(deadline);
  if (failures.length) { console.log(failures.join('\n')); process.exit(1); }
  console.log('ok accepted=' + accepted + ' cancelled=' + cancelled);
})().catch((e) => { console.log('exception: ' + (e && e.stack || e)); process.exit(1); });
