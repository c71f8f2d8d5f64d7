#!/usr/bin/env node
// Renders miser's reports in a real browser (Debian's /usr/bin/chromium,
// headless, driven by puppeteer-core from tools/node_modules) at 1400 px and
// checks what was rendered, not the markup:
//   - no Markdown syntax in the visible text (**, back-ticks, |---|, "## "),
//     no double-escaped entities, no small figure printed as "0.00";
//   - nothing wider than the page: the document does not scroll sideways and
//     every element (tables included) lies inside the viewport or inside a
//     container that scrolls;
//   - every timeline has tick values on both axes and axis titles with units;
//   - stage labels' rendered boxes do not overlap one another and stay inside
//     their SVG; x tick values do not overlap either;
//   - a file given with --icicle (a `miser profile --attribute --html` page)
//     renders the attribution icicle: an SVG in section#attribution with
//     visible rects and frame labels, inside the page.
// A full-page screenshot and the rendered DOM of each file are kept in --out.
//
// usage: node tests/browser/report_check.js --out DIR [--width PX] [--icicle FILE.html] FILE.html|FILE.svg ...
// (--width: the viewport, 1400 px by default)
// exit: 0 all checks passed, 1 a check failed, 2 bad usage, 3 no browser.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const repo = path.resolve(__dirname, '..', '..');
let puppeteer;
try {
  puppeteer = require(path.join(repo, 'tools', 'node_modules', 'puppeteer-core'));
} catch (e) {
  console.error('report_check: puppeteer-core is not installed in tools/node_modules: ' + e.message);
  process.exit(3);
}

let WIDTH = 1400;
const HEIGHT = 900;
const CHROMIUM = process.env.MISER_CHROMIUM || '/usr/bin/chromium';

function usage(msg) {
  if (msg) console.error('report_check: ' + msg);
  console.error('usage: node tests/browser/report_check.js --out DIR [--width PX] [--icicle FILE.html] FILE.html|FILE.svg ...');
  process.exit(2);
}

const args = process.argv.slice(2);
let outDir = null;
const files = [];
const icicleFiles = new Set(); // files that must render the attribution icicle
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--out') {
    outDir = args[++i];
    if (!outDir) usage('--out needs a directory');
  } else if (args[i] === '--width') {
    WIDTH = parseInt(args[++i], 10);
    if (!(WIDTH >= 320 && WIDTH <= 4000)) usage('--width takes 320..4000 (px)');
  } else if (args[i] === '--icicle') {
    const f = args[++i];
    if (!f) usage('--icicle needs a file');
    files.push(f);
    icicleFiles.add(f);
  } else if (args[i].startsWith('-')) usage('unknown option ' + args[i]);
  else files.push(args[i]);
}
if (!outDir || !files.length) usage();
for (const f of files) if (!fs.existsSync(f)) usage('no such file: ' + f);
fs.mkdirSync(outDir, {recursive: true});

const failures = [];
function check(file, ok, what) {
  if (ok) console.log('ok   ' + path.basename(file) + ': ' + what);
  else {
    console.log('FAIL ' + path.basename(file) + ': ' + what);
    failures.push(path.basename(file) + ': ' + what);
  }
}

// Everything measured inside the page, returned as plain data.
function measure(viewportWidth) {
  const vw = viewportWidth;
  const out = {};
  const root = document.documentElement;
  out.isHtml = !!document.body;
  out.scrollWidth = Math.max(root.scrollWidth, document.body ? document.body.scrollWidth : 0);
  out.text = document.body ? document.body.innerText : '';
  // Elements wider than the page, outside any scrolling container.
  const scrolls = (el) => {
    const s = getComputedStyle(el);
    return el !== root && el !== document.body && ['auto', 'scroll', 'hidden'].includes(s.overflowX);
  };
  const inScroll = (el) => {
    for (let a = el.parentElement; a; a = a.parentElement) if (scrolls(a)) return a;
    return null;
  };
  out.overflowing = [];
  for (const el of document.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (!r.width && !r.height) continue;
    if (r.left >= -0.5 && r.right <= vw + 0.5) continue;
    const c = inScroll(el);
    if (c) {
      const cr = c.getBoundingClientRect();
      if (cr.left >= -0.5 && cr.right <= vw + 0.5) continue;
    }
    out.overflowing.push(el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined ? '.' + el.className : '') +
                         ' [' + Math.round(r.left) + ', ' + Math.round(r.right) + ']');
  }
  out.tables = [...document.querySelectorAll('table')].map((t) => {
    const r = t.getBoundingClientRect();
    const c = inScroll(t);
    const cr = c ? c.getBoundingClientRect() : null;
    return {left: r.left, right: r.right, inViewport: r.left >= -0.5 && r.right <= vw + 0.5,
            container: cr ? {left: cr.left, right: cr.right} : null};
  });
  const box = (e) => {
    const r = e.getBoundingClientRect();
    return {l: r.left, r: r.right, t: r.top, b: r.bottom, text: e.textContent};
  };
  out.svgs = [...document.querySelectorAll('svg')].map((svg) => {
    const r = svg.getBoundingClientRect();
    return {
      box: {l: r.left, r: r.right, t: r.top, b: r.bottom},
      timelines: [...svg.querySelectorAll('g.timeline')].map((g) => ({
        xticks: [...g.querySelectorAll('text.tick-x')].map(box),
        yticks: [...g.querySelectorAll('text.tick-y')].map(box),
        axisTitles: [...g.querySelectorAll('text.axis-title')].map((e) => e.textContent),
        labels: [...g.querySelectorAll('text.stage-label')].map((e) => {
          // The box of the visible text only (the <title> child renders nothing).
          const b = box(e);
          b.text = [...e.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join('');
          return b;
        }),
        stageKey: [...g.querySelectorAll('text.stage-key')].map((e) => e.textContent),
        series: [...g.querySelectorAll('path.series')].map((e) => e.getAttribute('d')),
      })),
    };
  });
  // The attribution icicle(s) of a profile page (attrib_report.c's SVG).
  out.icicles = [...document.querySelectorAll('section#attribution svg')].map((svg) => {
    const r = svg.getBoundingClientRect();
    const rects = [...svg.querySelectorAll('g.n rect')].filter((e) => {
      const b = e.getBoundingClientRect();
      return b.width > 0 && b.height > 0;
    });
    const labels = [...svg.querySelectorAll('g.n text')].filter((e) => {
      const b = e.getBoundingClientRect();
      return b.width > 0 && e.textContent.trim().length > 0;
    }).map((e) => e.textContent.trim());
    return {l: r.left, r: r.right, w: r.width, h: r.height, rects: rects.length, labels};
  });
  return out;
}

function overlap(a, b) {
  return a.l < b.r - 0.25 && b.l < a.r - 0.25 && a.t < b.b - 0.25 && b.t < a.b - 0.25;
}

function checkFile(file, m) {
  if (m.isHtml) {
    const t = m.text;
    check(file, !t.includes('**'), 'no ** in the visible text');
    check(file, !t.includes('`'), 'no back-ticks in the visible text');
    check(file, !/\|\s*:?-{3,}/.test(t), 'no |---| table syntax in the visible text');
    check(file, !/^#{1,6} /m.test(t), 'no "## " headings in the visible text');
    check(file, !/&(lt|gt|amp|quot|#\d+);/.test(t), 'no double-escaped entities in the visible text');
    const zero = t.match(/(^|[^\d.])0\.0+(?![\d.])/m);
    check(file, !zero, 'no figure printed as 0.00' + (zero ? ' (found "' + zero[0].trim() + '")' : ''));
    check(file, m.tables.length > 0, m.tables.length + ' table(s) rendered');
    m.tables.forEach((tb, i) => {
      const fits = tb.inViewport || (tb.container && tb.container.left >= -0.5 && tb.container.right <= WIDTH + 0.5);
      check(file, fits, 'table ' + (i + 1) + ' [' + Math.round(tb.left) + ', ' + Math.round(tb.right) +
                        '] inside the viewport or a scroll container');
    });
  }
  check(file, m.scrollWidth <= WIDTH, 'page ' + m.scrollWidth + ' px wide, viewport ' + WIDTH + ' px');
  check(file, m.overflowing.length === 0,
        'no element wider than the page' + (m.overflowing.length ? ': ' + m.overflowing.slice(0, 5).join('; ') : ''));
  if (icicleFiles.has(file)) {
    check(file, m.icicles.length > 0, m.icicles.length + ' attribution icicle(s) rendered');
    m.icicles.forEach((ic, k) => {
      const name = 'icicle ' + (k + 1);
      check(file, ic.w > 0 && ic.h > 0 && ic.l >= -0.5 && ic.r <= WIDTH + 0.5,
            name + ': ' + Math.round(ic.w) + 'x' + Math.round(ic.h) + ' px, inside the viewport');
      check(file, ic.rects > 0, name + ': ' + ic.rects + ' frame rects rendered');
      check(file, ic.labels.length > 0, name + ': ' + ic.labels.length + ' frame labels (' +
            ic.labels.slice(0, 6).join(', ') + ')');
    });
  }
  const timelines = m.svgs.flatMap((s) => s.timelines.map((t) => ({svg: s.box, ...t})));
  check(file, timelines.length > 0, timelines.length + ' timeline(s) rendered');
  timelines.forEach((tl, k) => {
    const name = 'timeline ' + (k + 1);
    const xs = tl.xticks.map((b) => parseFloat(b.text)), ys = tl.yticks.map((b) => parseFloat(b.text));
    check(file, xs.length >= 3 && xs.every(isFinite), name + ': ' + xs.length + ' x tick values (' + xs.join(' ') + ')');
    check(file, ys.length >= 3 && ys.every(isFinite), name + ': ' + ys.length + ' y tick values (' + ys.join(' ') + ')');
    check(file, xs.every((v, i) => !i || v > xs[i - 1]) && ys.every((v, i) => !i || v > ys[i - 1]),
          name + ': tick values increase');
    check(file, tl.axisTitles.some((s) => /\((ms|s)\)/.test(s)) && tl.axisTitles.some((s) => /MB/.test(s)),
          name + ': axis titles with units (' + tl.axisTitles.join(' | ') + ')');
    let xo = 0;
    for (let i = 1; i < tl.xticks.length; i++) xo += overlap(tl.xticks[i - 1], tl.xticks[i]);
    check(file, xo === 0, name + ': x tick values do not overlap');
    check(file, tl.series.length > 0 && tl.series.every((d) => /^M[\d.\s-]+(\s*[HV][\d.-]+)*$/.test(d.trim())),
          name + ': series drawn as steps (M, then only H and V)');
    const bad = [];
    for (let i = 0; i < tl.labels.length; i++)
      for (let j = i + 1; j < tl.labels.length; j++)
        if (overlap(tl.labels[i], tl.labels[j])) bad.push(tl.labels[i].text + ' / ' + tl.labels[j].text);
    check(file, tl.labels.length > 0, name + ': ' + tl.labels.length + ' stage labels (' +
          tl.labels.map((l) => l.text).join(', ') + ')' + (tl.stageKey.length ? ', listed: ' + tl.stageKey.length : ''));
    check(file, bad.length === 0, name + ': stage labels do not overlap' + (bad.length ? ': ' + bad.join('; ') : ''));
    const outside = tl.labels.filter((l) => l.l < tl.svg.l - 0.5 || l.r > tl.svg.r + 0.5);
    check(file, outside.length === 0, name + ': stage labels inside the SVG' +
          (outside.length ? ': ' + outside.map((l) => l.text).join(', ') : ''));
  });
}

(async () => {
  if (!fs.existsSync(CHROMIUM)) {
    console.error('report_check: no browser at ' + CHROMIUM);
    process.exit(3);
  }
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'miser-report-check-'));
  let browser;
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync',
             '--user-data-dir=' + userDir],
    });
  } catch (e) {
    console.error('report_check: cannot start ' + CHROMIUM + ': ' + e.message);
    fs.rmSync(userDir, {recursive: true, force: true});
    process.exit(3);
  }
  try {
    const page = await browser.newPage();
    await page.setViewport({width: WIDTH, height: HEIGHT});
    for (const file of files) {
      const abs = path.resolve(file);
      await page.goto('file://' + abs, {waitUntil: 'load', timeout: 30000});
      const m = await page.evaluate(measure, WIDTH);
      checkFile(file, m);
      // report.html -> report.png, bench.svg -> bench-svg.png (an HTML page and an SVG may share a name)
      const stem = path.basename(file).replace(/\.([^.]+)$/, (m, ext) => (/^html?$/i.test(ext) ? '' : '-' + ext));
      const shot = path.join(outDir, stem + '.png');
      await page.screenshot({path: shot, fullPage: true});
      fs.writeFileSync(path.join(outDir, stem + '.dom.html'), await page.content());
      console.log('screenshot: ' + shot);
    }
  } finally {
    await browser.close();
    fs.rmSync(userDir, {recursive: true, force: true});
  }
  if (failures.length) {
    console.log(failures.length + ' check(s) failed');
    process.exit(1);
  }
  console.log('all checks passed');
})().catch((e) => {
  console.error('report_check: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
