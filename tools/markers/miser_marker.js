// miser_marker.js: stage markers for `miser profile` from Node.js.
// Under `miser profile`, $MISER_MARKER_FD names a pipe; marker() writes one line
// "stage NAME key=value ..." (docs/profiler.md) and waits on $MISER_MARKER_ACK_FD
// until miser has taken its snapshot. Outside the profiler it does nothing.
//   const { marker } = require('./miser_marker');
//   marker('1_MODEL_LOADED', 'weights loaded', { tokens: 9 });
'use strict';
const fs = require('fs');

function q(v) {
  const s = String(v);
  if (s && !/[ "\\\n\t]/.test(s)) return s;
  return '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\t/g, '\\t') + '"';
}

function marker(name, desc, data) {
  const fd = process.env.MISER_MARKER_FD;
  if (!fd) return;
  const parts = ['stage', name];
  if (desc !== undefined && desc !== null) parts.push('desc=' + q(desc));
  for (const [k, v] of Object.entries(data || {})) parts.push(k + '=' + q(v));
  const ack = process.env.MISER_MARKER_ACK_FD;
  if (ack) parts.push('ack=1');
  fs.writeSync(Number(fd), parts.join(' ') + '\n');
  if (ack) {
    try {
      fs.readSync(Number(ack), Buffer.alloc(1), 0, 1, null);
    } catch (e) {
      if (e.code !== 'EOF') throw e;
    }
  }
}

module.exports = { marker };
