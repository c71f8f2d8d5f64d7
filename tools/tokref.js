#!/usr/bin/env node
// Reference GPT-2 tokenizer for miser's tests: the JavaScript encoder of the
// npm package gpt-3-encoder (installed in tools/node_modules by tools/deps.sh test).
//   node tools/tokref.js [FILE...]    one JSON array of ids per file, one per line
//   node tools/tokref.js < FILE       the same for stdin
// Input must be valid UTF-8 (it is decoded to a JavaScript string; invalid bytes
// would become U+FFFD). The reference treats "<|endoftext|>" as plain text.
'use strict';
const fs = require('fs');
const path = require('path');
const { encode } = require(path.join(__dirname, 'node_modules', 'gpt-3-encoder'));

const files = process.argv.slice(2);
const inputs = files.length ? files : ['-'];
const out = [];
for (const f of inputs) {
  const buf = f === '-' ? fs.readFileSync(0) : fs.readFileSync(f);
  out.push(JSON.stringify(encode(buf.toString('utf8'))));
}
process.stdout.write(out.join('\n') + '\n');
