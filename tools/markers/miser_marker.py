"""miser_marker.py: stage markers for `miser profile` from Python.

Under `miser profile`, $MISER_MARKER_FD names a pipe; marker() writes one line
"stage NAME key=value ..." (docs/profiler.md) and waits on $MISER_MARKER_ACK_FD
until miser has taken its snapshot. Outside the profiler it does nothing.
    from miser_marker import marker
    marker("3_FIRST_INFERENCE", "generate('Hello')", tokens=9, seconds=1.25, text=out)
"""
import os


def _q(v):
    s = str(v)
    if s and all(c not in s for c in ' "\\\n\t'):
        return s
    return '"' + s.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n').replace('\t', '\\t') + '"'


def marker(name, desc=None, **data):
    fd = os.environ.get("MISER_MARKER_FD")
    if not fd:
        return
    parts = ["stage", name]
    if desc is not None:
        parts.append("desc=" + _q(desc))
    parts += ["%s=%s" % (k, _q(v)) for k, v in data.items()]
    ack = os.environ.get("MISER_MARKER_ACK_FD")
    if ack:
        parts.append("ack=1")
    os.write(int(fd), (" ".join(parts) + "\n").encode())
    if ack:
        os.read(int(ack), 1)
