"""``python -m miser ARGS...`` runs the ``miser`` command with ARGS.

The binary is looked up as ``$MISER_BIN``, then next to the library in use
(``build/miser`` beside ``build/libmiser.so``, ``PREFIX/bin/miser`` beside
``PREFIX/lib/libmiser.so``), then on ``PATH``. The exit status is the
command's; ``--where`` prints the binary's path instead."""
from __future__ import annotations

import os
import shutil
import sys
from typing import List, Optional


def find_binary() -> Optional[str]:
    env = os.environ.get("MISER_BIN")
    if env:
        return env
    try:
        from ._lib import library_path
        d = os.path.dirname(library_path())
        for cand in (os.path.join(d, "miser"), os.path.join(os.path.dirname(d), "bin", "miser")):
            if os.path.isfile(cand) and os.access(cand, os.X_OK):
                return cand
    except Exception:
        pass  # no library: PATH may still have the binary
    return shutil.which("miser")


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    exe = find_binary()
    if args[:1] == ["--where"]:
        if not exe:
            print("python -m miser: no miser binary found", file=sys.stderr)
            return 1
        print(exe)
        return 0
    if not exe:
        print("python -m miser: cannot find the miser binary (set MISER_BIN, build it with `make`, "
              "or put it on PATH)", file=sys.stderr)
        return 1
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(exe, [exe] + args)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
