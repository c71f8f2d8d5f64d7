"""Finding and loading libmiser.so, and the ctypes prototypes of the C API.

The binding is ctypes in ABI mode: nothing is compiled when the package is
installed, and every call goes to the same library functions the `miser`
command uses (include/miser/capi.h and the public headers it builds on).

The library is looked up once, on first use, in this order:

1. ``$MISER_LIBRARY`` -- an explicit path always wins (an override that a
   bundled copy silently beat would be a trap);
2. ``libmiser.so`` next to this package's files (a packager may place a copy
   or a symlink there; ``pip install ./python`` does not, so the wheel stays
   pure Python);
3. the source tree's ``build/libmiser.so`` when the package is imported from
   the repository (``PYTHONPATH=python`` after ``make``);
4. where ``make install`` puts it: ``<prefix>/lib`` for the interpreter's
   prefixes, ``/usr/local/lib``, ``/usr/lib``, and the dynamic loader's
   cache (``ctypes.util.find_library("miser")``, i.e. ldconfig's paths).

:func:`library_path` says which file was loaded; when none can be, one
:class:`LibraryNotFoundError` lists every place tried and why each failed.
"""
from __future__ import annotations

import _thread
import ctypes
import os
import sys
from ctypes import (CFUNCTYPE, POINTER, c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_size_t,
                    c_uint64, c_void_p)
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 MB)

if TYPE_CHECKING:  # hints only (import cost)
    from typing import List, Optional, Tuple

from ._errors import LibraryNotFoundError

#: The C API version (MISER_CAPI_VERSION in include/miser/capi.h) this binding is written for.
CAPI_VERSION = 2

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_ROOT = os.path.dirname(os.path.dirname(_PKG_DIR))

TOKEN_FN = CFUNCTYPE(c_int, c_void_p, c_int32)

_lock = _thread.allocate_lock()
_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[str] = None
_lib_reason: str = ""


def _candidates() -> List[Tuple[str, str]]:
    """(path, why this place) in lookup order."""
    out: List[Tuple[str, str]] = []
    env = os.environ.get("MISER_LIBRARY")
    if env:
        out.append((env, "$MISER_LIBRARY"))
    out.append((os.path.join(_PKG_DIR, "libmiser.so"), "next to the package"))
    if os.path.isfile(os.path.join(_REPO_ROOT, "Makefile")) and os.path.isdir(os.path.join(_REPO_ROOT, "src")):
        out.append((os.path.join(_REPO_ROOT, "build", "libmiser.so"), "the source tree's build"))
    seen = set()
    for prefix in (sys.prefix, sys.base_prefix, "/usr/local", "/usr"):
        d = os.path.join(prefix, "lib")
        if d not in seen:
            seen.add(d)
            out.append((os.path.join(d, "libmiser.so"), "make install (PREFIX/lib)"))
    return out


def _load() -> ctypes.CDLL:
    global _lib, _lib_path, _lib_reason
    with _lock:
        if _lib is not None:
            return _lib
        tried: List[str] = []
        explicit = os.environ.get("MISER_LIBRARY")
        for path, why in _candidates():
            if not os.path.exists(path):
                tried.append(f"{path} ({why}): no such file")
                if why == "$MISER_LIBRARY":
                    break  # an explicit path that is wrong is an error, not a hint
                continue
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                tried.append(f"{path} ({why}): {e}")
                if why == "$MISER_LIBRARY":
                    break
                continue
            _setup(lib, path)
            _lib, _lib_path, _lib_reason = lib, os.path.realpath(path), why
            return lib
        if not explicit:
            from ctypes import util  # ~4 MB of RSS: only when the fixed places failed
            name = util.find_library("miser")
            if name:
                try:
                    lib = ctypes.CDLL(name)
                    _setup(lib, name)
                    _lib, _lib_path, _lib_reason = lib, name, "the dynamic loader's cache (ldconfig)"
                    return lib
                except OSError as e:
                    tried.append(f"{name} (ldconfig): {e}")
            else:
                tried.append("ldconfig cache: no libmiser")
        raise LibraryNotFoundError(
            "cannot load libmiser.so; tried: " + "; ".join(tried) +
            ". Build it with `make` in the repository, or set MISER_LIBRARY to its path.")


def lib() -> ctypes.CDLL:
    """The loaded library (loading it on first call)."""
    return _lib if _lib is not None else _load()


def library_path() -> str:
    """The path of the libmiser.so in use (loads it if not yet loaded)."""
    lib()
    assert _lib_path is not None
    return _lib_path


def library_reason() -> str:
    """Which rule of the lookup order found the library (e.g. "$MISER_LIBRARY")."""
    lib()
    return _lib_reason


def _fn(lib: ctypes.CDLL, name: str, restype, *argtypes) -> None:
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


def _setup(lib: ctypes.CDLL, path: str) -> None:
    try:
        lib.miser_capi_version.restype = c_int
        lib.miser_capi_version.argtypes = []
        v = lib.miser_capi_version()
    except AttributeError:
        raise LibraryNotFoundError(f"{path} has no miser_capi_version: a libmiser older than this binding "
                                   f"(rebuild it with `make`)") from None
    if v != CAPI_VERSION:
        raise LibraryNotFoundError(f"{path} implements C API version {v}, this binding needs {CAPI_VERSION}")
    st = c_int  # miser_status
    P = c_void_p
    _fn(lib, "miser_capi_library_version", c_char_p)
    _fn(lib, "miser_capi_default_threads", c_int)
    _fn(lib, "miser_status_str", c_char_p, c_int)
    _fn(lib, "miser_error_message", c_char_p)
    _fn(lib, "miser_error_clear", None)
    _fn(lib, "miser_free", None, P)
    # model
    _fn(lib, "miser_llm_open", st, c_char_p, c_char_p, c_int, c_int64, POINTER(P))
    _fn(lib, "miser_llm_free", None, P)
    _fn(lib, "miser_llm_tokenizer", P, P)
    _fn(lib, "miser_llm_weights_dir", c_char_p, P)
    _fn(lib, "miser_llm_note", c_char_p, P)
    _fn(lib, "miser_llm_threads", c_int, P)
    _fn(lib, "miser_llm_max_context", c_int64, P)
    _fn(lib, "miser_llm_n_vocab", c_int64, P)
    _fn(lib, "miser_llm_eos", c_int32, P)
    _fn(lib, "miser_llm_load_seconds", c_double, P)
    _fn(lib, "miser_llm_compile_seconds", c_double, P)
    _fn(lib, "miser_llm_session", st, P, c_int64, c_int, POINTER(P))
    _fn(lib, "miser_llm_session_footprint", st, P, c_int64, c_int, POINTER(c_uint64), POINTER(c_uint64),
        POINTER(c_uint64), POINTER(c_uint64), POINTER(c_char_p))
    _fn(lib, "miser_llm_generate", st, P, POINTER(c_int32), c_int64, c_int64, c_int64, c_double, c_int, c_double,
        c_uint64, c_int32, TOKEN_FN, P, POINTER(c_int), POINTER(POINTER(c_int32)), POINTER(c_int64), POINTER(c_double),
        POINTER(c_double), POINTER(c_char_p))
    # tokenizer
    _fn(lib, "miser_tokenizer_encode", st, P, c_char_p, c_size_t, ctypes.c_uint, POINTER(POINTER(c_int32)),
        POINTER(c_size_t))
    _fn(lib, "miser_tokenizer_decode", st, P, POINTER(c_int32), c_size_t, POINTER(c_void_p), POINTER(c_size_t))
    _fn(lib, "miser_tokenizer_token_bytes", c_void_p, P, c_int32, POINTER(c_size_t))
    _fn(lib, "miser_tokenizer_vocab_size", c_int32, P)
    # session
    _fn(lib, "miser_session_free", None, P)
    _fn(lib, "miser_session_reset", None, P)
    _fn(lib, "miser_session_position", c_int64, P)
    _fn(lib, "miser_session_capacity", c_int64, P)
    _fn(lib, "miser_session_eval", st, P, POINTER(c_int32), c_int64, POINTER(POINTER(c_float)))
    # profiler
    _fn(lib, "miser_capi_profiler_start", st, c_double, c_int, c_int, c_int, POINTER(P))
    _fn(lib, "miser_profiler_stage_data", st, P, c_char_p, c_char_p, c_char_p)
    _fn(lib, "miser_profiler_stop", st, P, POINTER(P))
    _fn(lib, "miser_profiler_free", None, P)
    _fn(lib, "miser_profile_free", None, P)
    _fn(lib, "miser_profile_peak_method", c_char_p, P)
    _fn(lib, "miser_capi_profile_render", st, P, c_char_p, POINTER(c_void_p), POINTER(c_size_t))
    _fn(lib, "miser_capi_profile_save", st, P, c_char_p, c_char_p)
    _fn(lib, "miser_profile_load_json", st, c_char_p, POINTER(P))


def error_message() -> str:
    """The calling thread's last library message ("" when none)."""
    m = lib().miser_error_message()
    return m.decode("utf-8", "replace") if m else ""
