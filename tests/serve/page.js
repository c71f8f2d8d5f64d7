#!/usr/bin/env node
// The page at GET / of miser serve, in a real browser: Debian's chromium,
// headless, driven by puppeteer-core (tools/node_modules). It loads /,
// submits a prompt, and checks that the streamed text arrives (equal to
// what the API returns for the same greedy request) and that the chart
// drew points from /metrics.
//   node tests/serve/page.js BASE_URL PROFILE_DIR
// Prints "ok" (exit 0) or what failed (exit 1). Bounded by timeouts.
'use strict';
const path = require('path');
const http = require('http');
const root = path.resolve(__dirname, '..', '..');
const puppeteer = require(path.join(root, 'tools', 'node_modules', 'puppeteer-core'));

const [base, profile] = process.argv.slice(2);
const kill = setTimeout(() => { console.log('timeout'); process.exit(1); }, 50000);

function api(body) {
  return new Promise((resolve, reject) => {
    const u = new URL(base + '/v1/completions');
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', timeout: 5000,
                               headers: { 'Content-Type': 'application/json' } },
      (res) => { let d = ''; res.on('data', (c) => d += c); res.on('end', () => resolve(JSON.parse(d))); });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

(async () => {
  const prompt = 'The quick brown fox', max = 12;
  const want = (await api({ prompt, max_tokens: max, temperature: 0 })).choices[0].text;
  const browser = await puppeteer.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    userDataDir: profile,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--user-data-dir=' + profile],
  });
  const failures = [];
  try {
    const page = await browser.newPage();
    const external = [];
    page.on('request', (r) => { if (!r.url().startsWith(base)) external.push(r.url()); });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const resp = await page.goto(base + '/', { waitUntil: 'load', timeout: 10000 });
    if (resp.status() !== 200) failures.push('GET / status ' + resp.status());
    await page.$eval('#prompt', (el, p) => { el.value = p; }, prompt);
    await page.$eval('#max', (el, m) => { el.value = String(m); }, max);
    await page.$eval('#temp', (el) => { el.value = '0'; });
    await page.click('#go');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'done', { timeout: 20000 });
    const got = await page.$eval('#out', (el) => el.textContent);
    if (got !== want) failures.push('streamed text ' + JSON.stringify(got) + ' != ' + JSON.stringify(want));
    await page.waitForFunction(() => window.miserChart && window.miserChart.points >= 3 && window.miserChart.series >= 3, { timeout: 20000 });
    const pts = await page.$eval('#chart', (el) => Number(el.dataset.points));
    if (!(pts >= 3)) failures.push('chart points ' + pts);
    // the canvas has ink: some pixel is not transparent
    const ink = await page.$eval('#chart', (c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;
    });
    if (ink < 100) failures.push('chart has ' + ink + ' painted pixels');
    const legend = await page.$eval('#legend', (el) => el.textContent);
    if (!/kv/.test(legend) || !/tok_s/.test(legend)) failures.push('legend ' + JSON.stringify(legend));
    if (external.length) failures.push('external requests: ' + external.join(' '));
    if (errors.length) failures.push('page errors: ' + errors.join(' | '));
  } finally {
    await browser.close();
  }
  clearTimeout(kill);
  if (failures.length) { console.log(failures.join('\n')); process.exit(1); }
  console.log('ok');
})().catch((e) => { console.log('exception: ' + (e && e.stack || e)); process.exit(1); });
