#!/usr/bin/env node
// Reference encoder for miser's tokenizer.json tests: the pure-JS Hugging Face
// tokenizers (npm @huggingface/tokenizers, in tools/node_modules).
//   node tools/hf_tokref.js [--config tokenizer_config.json] [--no-special] TOKENIZER_JSON FILE...
// prints one JSON array of ids per FILE (one per line). Each FILE's bytes are
// decoded as UTF-8 with replacement (WHATWG: each maximal invalid subpart is
// U+FFFD), as miser does. --no-special: add_special_tokens = false.
//   node tools/hf_tokref.js --decode TOKENIZER_JSON IDS_JSON_FILE...
// prints, for each file (a JSON array of ids), two lines: its decoded text as
// a JSON string, then the same with skip_special_tokens.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, 'node_modules', '@huggingface', 'tokenizers'));

const args = process.argv.slice(2);
let config = {}, addSpecial = true, decode = false;
while (args.length && args[0].startsWith('--')) {
  const a = args.shift();
  if (a === '--config') config = JSON.parse(fs.readFileSync(args.shift(), 'utf8'));
  else if (a === '--no-special') addSpecial = false;
  else if (a === '--decode') decode = true;
  else { console.error(`hf_tokref.js: unknown option ${a}`); process.exit(2); }
}
const tj = JSON.parse(fs.readFileSync(args.shift(), 'utf8'));
const tok = new Tokenizer(tj, config);
const out = [];
if (decode) {
  for (const f of args) {
    const ids = JSON.parse(fs.readFileSync(f, 'utf8'));
    for (const skip of [false, true])
      out.push(JSON.stringify(ids.length ? tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false }) : ''));
  }
} else {
  for (const f of args) {
    const text = fs.readFileSync(f).toString('utf8');
    out.push(JSON.stringify(tok.encode(text, { add_special_tokens: addSpecial }).ids));
  }
}
process.stdout.write(out.join('\n') + '\n');
