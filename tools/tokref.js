#!/usr/bin/env node
// Reference GPT-2 tokenizer for miser's tests: the JavaScript encoder of the
// npm package gpt-3-encoder (installed in tools/node_modules by tools/deps.sh test).
//   node tools/tokref.js [FILE...]           one JSON array of ids per file, one per line
//   node tools/tokref.js < FILE              the same for stdin
//   node tools/tokref.js --pieces [FILE...]  the pre-tokenizer's pieces (JSON array of strings)
//   node tools/tokref.js --classes           one letter per code point 0..0x10FFFF:
//                                            L (\p{L}), N (\p{N}), S (\s), O (other)
// Input must be valid UTF-8 (it is decoded to a JavaScript string; invalid bytes
// would become U+FFFD). The reference treats "<|endoftext|>" as plain text.
'use strict';
const fs = require('fs');
const path = require('path');
const { encode } = require(path.join(__dirname, 'node_modules', 'gpt-3-encoder'));

// The same expression as gpt-3-encoder's Encoder.js.
const pat = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

let args = process.argv.slice(2);
let mode = 'ids';
if (args[0] === '--pieces' || args[0] === '--classes') mode = args.shift().slice(2);

if (mode === 'classes') {
  const out = Buffer.alloc(0x110000);
  for (let cp = 0; cp < 0x110000; cp++) {
    const c = String.fromCodePoint(cp);
    out[cp] = (/\p{L}/u.test(c) ? 'L' : /\p{N}/u.test(c) ? 'N' : /\s/u.test(c) ? 'S' : 'O').charCodeAt(0);
  }
  process.stdout.write(out);
} else {
  const inputs = args.length ? args : ['-'];
  const out = [];
  for (const f of inputs) {
    const text = (f === '-' ? fs.readFileSync(0) : fs.readFileSync(f)).toString('utf8');
    const r = mode === 'pieces' ? Array.from(text.matchAll(pat)).map(m => m[0]) : encode(text);
    out.push(JSON.stringify(r));
  }
  process.stdout.write(out.join('\n') + '\n');
}
