"""miser from Python: GPT-2-family inference with the memory miser promises,
and the lifecycle memory profiler, in-process, over libmiser.so (ctypes, no
compiler needed). See docs/python.md.

    import miser
    m = miser.Model("tests/data/hf-tiny-a")
    g = m.generate("Hello", max_new_tokens=20)
    print(g.text, g.ids, g.stop_reason, g.timings.decode_tok_s)
    for piece in m.stream("Once upon a time", max_new_tokens=40):
        print(piece, end="", flush=True)

    with miser.Profiler(sample_interval_ms=20) as prof:
        miser.stage("0_INITIAL", "start")
        ...
    print(prof.report()["stages"])

The library is loaded on first use (``import miser`` alone loads nothing
native); :func:`library_path` says which file was loaded.
"""
from __future__ import annotations

from ._errors import (ClosedError, FormatError, InternalError, InvalidInputError, LibraryNotFoundError, MiserError,
                      MiserIOError, OutOfMemoryError, RangeError, UnsupportedError)
from ._lib import library_path, library_reason
from ._model import Generation, Model, Session, Timings
from ._profiler import Profiler, active_profiler, stage

__version__ = "0.1.0"

__all__ = [
    "Model", "Session", "Generation", "Timings", "Profiler", "stage", "active_profiler",
    "library_path", "library_reason", "library_version", "default_threads",
    "MiserError", "OutOfMemoryError", "MiserIOError", "FormatError", "InvalidInputError", "UnsupportedError",
    "RangeError", "InternalError", "ClosedError", "LibraryNotFoundError",
]


def library_version() -> str:
    """The version of the libmiser.so in use (e.g. "0.1.0")."""
    from ._lib import lib
    return lib().miser_capi_library_version().decode()


def default_threads() -> int:
    """The worker threads a Model uses when ``threads`` is not given (the CPUs available)."""
    from ._lib import lib
    return int(lib().miser_capi_default_threads())
