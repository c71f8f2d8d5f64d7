#!/usr/bin/env node
// miser serve, driven by the official `openai` npm package (tools/node_modules,
// pinned in tools/package.json): completions streaming and not, chat when the
// server has a template, and errors seen as the package's APIError classes.
//   node tests/serve/openai_client.js BASE_URL API_KEY EXPECT_JSON
// EXPECT_JSON: {"prompt": ..., "max_tokens": N, "text": the greedy text the
// caller got from an independent run, "chat": bool}. Prints "ok" and exits 0,
// or prints what differed and exits 1. Every call has a timeout.
'use strict';
const path = require('path');
const root = path.resolve(__dirname, '..', '..');
const { OpenAI, APIError, BadRequestError, AuthenticationError } = require(path.join(root, 'tools', 'node_modules', 'openai'));

const [base, key, expectJson] = process.argv.slice(2);
const expect = JSON.parse(expectJson);
const client = new OpenAI({ apiKey: key, baseURL: base + '/v1', timeout: 30000, maxRetries: 0 });
const failures = [];
function check(cond, what) { if (!cond) failures.push(what); }

async function expectError(fn, status, cls, param, what) {
  try {
    await fn();
    failures.push(what + ': no error');
  } catch (e) {
    check(e instanceof APIError, what + ': not an APIError: ' + e);
    check(e instanceof cls, what + ': not a ' + cls.name + ' (' + (e && e.constructor && e.constructor.name) + ')');
    check(e.status === status, what + ': status ' + e.status + ' != ' + status);
    if (param !== undefined) check(e.param === param, what + ": param '" + e.param + "' != '" + param + "'");
    check(e.error && typeof e.error.message === 'string' && e.error.message.length > 0, what + ': no message');
  }
}

(async () => {
  const models = await client.models.list();
  check(models.data.length === 1 && typeof models.data[0].id === 'string', 'models.list');

  const req = { model: models.data[0].id, prompt: expect.prompt, max_tokens: expect.max_tokens, temperature: 0, ignore_eos: true };
  const c = await client.completions.create(req);
  check(c.choices.length === 1, 'one choice');
  check(c.choices[0].text === expect.text, 'completion text ' + JSON.stringify(c.choices[0].text) + ' != ' + JSON.stringify(expect.text));
  check(c.choices[0].finish_reason === 'length', 'finish_reason ' + c.choices[0].finish_reason);
  check(c.usage && c.usage.completion_tokens === expect.max_tokens && c.usage.prompt_tokens > 0 &&
        c.usage.total_tokens === c.usage.prompt_tokens + c.usage.completion_tokens, 'usage ' + JSON.stringify(c.usage));
  check(c.object === 'text_completion', 'object');

  const stream = await client.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const ch of stream) {
    chunks++;
    if (ch.usage) usage = ch.usage;
    if (ch.choices.length) { text += ch.choices[0].text; if (ch.choices[0].finish_reason) finish = ch.choices[0].finish_reason; }
  }
  check(text === expect.text, 'streamed text ' + JSON.stringify(text));
  check(finish === 'length', 'streamed finish_reason ' + finish);
  check(chunks >= 3, 'chunks ' + chunks);
  check(usage && usage.completion_tokens === expect.max_tokens, 'streamed usage ' + JSON.stringify(usage));

  // stop strings: the text ends before the first occurrence, finish_reason "stop"
  if (expect.stop) {
    const s = await client.completions.create({ ...req, stop: [expect.stop] });
    const cut = expect.text.indexOf(expect.stop);
    check(s.choices[0].text === expect.text.slice(0, cut), 'stop text ' + JSON.stringify(s.choices[0].text));
    check(s.choices[0].finish_reason === 'stop', 'stop finish_reason ' + s.choices[0].finish_reason);
    const ss = await client.completions.create({ ...req, stop: expect.stop, stream: true });
    let st = '';
    for await (const ch of ss) if (ch.choices.length) st += ch.choices[0].text;
    check(st === expect.text.slice(0, cut), 'streamed stop text ' + JSON.stringify(st));
  }

  await expectError(() => client.completions.create({ ...req, max_tokens: 0 }), 400, BadRequestError, 'max_tokens', 'max_tokens 0');
  await expectError(() => client.completions.create({ ...req, n: 2 }), 400, BadRequestError, 'n', 'n 2');
  await expectError(() => client.completions.create({ ...req, temperature: -0.5 }), 400, BadRequestError, 'temperature', 'temperature < 0');
  await expectError(() => client.completions.create({ ...req, stream: true, max_tokens: -3 }), 400, BadRequestError, 'max_tokens', 'stream max_tokens < 0');
  const bad = new OpenAI({ apiKey: key + 'x', baseURL: base + '/v1', timeout: 30000, maxRetries: 0 });
  await expectError(() => bad.completions.create(req), 401, AuthenticationError, undefined, 'wrong key');

  const msgs = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello' }];
  if (expect.chat) {
    const r = await client.chat.completions.create({ model: req.model, messages: msgs, max_tokens: 8, temperature: 0, ignore_eos: true });
    check(r.object === 'chat.completion' && r.choices[0].message.role === 'assistant', 'chat shape');
    check(r.choices[0].message.content === expect.chat_text, 'chat text ' + JSON.stringify(r.choices[0].message.content) +
          ' != ' + JSON.stringify(expect.chat_text));
    const cs = await client.chat.completions.create({ model: req.model, messages: msgs, max_tokens: 8, temperature: 0,
                                                       ignore_eos: true, stream: true });
    let t = '', role = null, fin = null;
    for await (const ch of cs) {
      if (!ch.choices.length) continue;
      const d = ch.choices[0].delta;
      if (d.role) role = d.role;
      if (d.content) t += d.content;
      if (ch.choices[0].finish_reason) fin = ch.choices[0].finish_reason;
    }
    check(role === 'assistant' && t === expect.chat_text && fin === r.choices[0].finish_reason, 'chat stream ' + JSON.stringify(t));
  } else {
    await expectError(() => client.chat.completions.create({ model: req.model, messages: msgs }), 400, BadRequestError,
                      'messages', 'chat without a template');
  }
  if (failures.length) { console.log(failures.join('\n')); process.exit(1); }
  console.log('ok');
})().catch((e) => { console.log('exception: ' + (e && e.stack || e)); process.exit(1); });
