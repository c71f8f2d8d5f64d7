"""The lifecycle memory profiler from Python (src/profiler/inproc.c).

:class:`Profiler` measures this process stage by stage: at each mark a
snapshot (RSS split into anonymous and file-backed pages, swap, miser's
allocator by category) and the *exact* peak of the interval it closes (the
kernel's high-water mark VmHWM, reset through /proc/self/clear_refs at every
mark), with an optional sampler thread for a timeline. :func:`stage` is the
study's ``record_stage`` replacement: one call prints the ``[STAGE]`` line,
marks a running Profiler, and sends a synchronous marker to ``miser
profile`` when the process runs under it.
"""
from __future__ import annotations

import _thread
import os
import sys
from ctypes import byref, c_size_t, c_void_p, string_at
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 MB)

if TYPE_CHECKING:  # hints only (import cost)
    from typing import Any, Dict, List, Optional

from . import _lib
from ._errors import ClosedError, InvalidInputError, MiserError, error_for

_active_lock = _thread.allocate_lock()
_active: Optional["Profiler"] = None

_EXT_FORMATS = {".json": "json", ".md": "md", ".markdown": "md", ".svg": "svg", ".html": "html", ".htm": "html",
                ".csv": "csv", ".txt": "table"}


def _check(st: int) -> None:
    if st:
        raise error_for(st, _lib.error_message())


def _quote(v: Any) -> str:
    """A marker value (docs/profiler.md): bare, or quoted with \\" \\\\ \\n \\t."""
    s = str(v)
    if s and not any(c in s for c in ' "\\\n\t'):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def _data_string(data: Dict[str, Any]) -> str:
    parts = []
    for k, v in data.items():
        if not k or not (k[0].isalpha() or k[0] == "_") or not all(c.isalnum() or c in "_." for c in k) \
                or not k.isascii() or k == "desc":
            raise InvalidInputError(f"bad stage data key {k!r} (a letter or _, then letters, digits, _ or .)")
        parts.append(f"{k}={_quote(v)}")
    return " ".join(parts)


class Profiler:
    """Exact stage peaks for the code between its start and stop.

    ``sample_interval_ms`` > 0 also runs a sampler thread (a timeline, and
    the peak a poller of that interval would have seen, kept beside the
    exact one). ``pss`` reads smaps_rollup at each mark (costly on big
    processes); ``gpu`` asks NVML; ``exact=False`` disables the
    high-water-mark reset (peaks are then sampled, as the study's were).

    Use it as a context manager::

        with miser.Profiler(sample_interval_ms=20) as prof:
            prof.stage("0_INITIAL", "start")
            model = load()
            prof.stage("1_MODEL_LOADED", "weights loaded")
        report = prof.report()          # the `miser profile --json` schema
        prof.save("run.html")           # json, md, svg, html, csv, table

    Only one Profiler may run in a process at a time (the high-water mark
    is per process)."""

    def __init__(self, sample_interval_ms: float = 0.0, pss: bool = False, gpu: bool = False, exact: bool = True):
        self.sample_interval_ms = float(sample_interval_ms)
        self.pss, self.gpu, self.exact = bool(pss), bool(gpu), bool(exact)
        self._h: Optional[int] = None      # miser_profiler * while running
        self._prof: Optional[int] = None   # miser_profile * after stop
        self._finalizer: Any = None
        self._lock = _thread.allocate_lock()

    # -- running --
    def start(self) -> "Profiler":
        """Start measuring (resets the high-water mark and the allocator peaks)."""
        global _active
        L = _lib.lib()
        with _active_lock:
            if self._h is not None or self._prof is not None:
                raise InvalidInputError("this Profiler was already started (make a new one)")
            if _active is not None:
                raise InvalidInputError("another miser.Profiler is running in this process")
            h = c_void_p()
            _check(L.miser_capi_profiler_start(self.sample_interval_ms, int(self.pss), int(self.gpu),
                                               0 if self.exact else 1, byref(h)))
            self._h = h.value
            self._finalizer = _Finalizer(self, L, h.value)
            _active = self
        return self

    def stage(self, name: str, description: str = "", **data: Any) -> None:
        """Mark a stage: snapshot now and the exact peak since the previous
        mark. ``name``: 1-63 characters of ``A-Z a-z 0-9 _ . : -``. Keyword
        data is kept with the record (``tokens=``, ``seconds=``, ``ttft_s=``
        and ``text=`` feed the study's metrics, docs/profiler.md)."""
        L = _lib.lib()
        ds = _data_string(data)
        with self._lock:
            if self._h is None:
                raise ClosedError("this Profiler is not running (use it inside `with` or after start())")
            _check(L.miser_profiler_stage_data(self._h, name.encode("utf-8"), description.encode("utf-8"),
                                               ds.encode("utf-8") if ds else None))

    def stop(self) -> None:
        """Stop measuring (adds the closing "end" record). Idempotent."""
        global _active
        L = _lib.lib()
        with self._lock:
            if self._h is None:
                return
            h, self._h = self._h, None
            self._finalizer.running = None
            out = c_void_p()
            st = L.miser_profiler_stop(h, byref(out))  # frees the profiler whatever happens
            with _active_lock:
                if _active is self:
                    _active = None
            _check(st)
            self._prof = out.value
            self._finalizer.profile = out.value

    @property
    def running(self) -> bool:
        return self._h is not None

    def __enter__(self) -> "Profiler":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- results --
    def _profile(self) -> int:
        if self._prof is None:
            if self._h is not None:
                raise InvalidInputError("the profile is ready once the Profiler has stopped (after `with`)")
            raise ClosedError("this Profiler has no profile (never started, or closed)")
        return self._prof

    def render(self, format: str = "json") -> str:
        """The report as text, written by the profiler's own writers:
        "json" (schema miser-profile), "md", "svg", "html", "csv", "table"."""
        L = _lib.lib()
        with self._lock:
            p = self._profile()
            out = c_void_p()
            n = c_size_t()
            _check(L.miser_capi_profile_render(p, format.encode(), byref(out), byref(n)))
            try:
                return string_at(out.value, n.value).decode("utf-8", "replace")
            finally:
                L.miser_free(out)

    def report(self) -> Dict[str, Any]:
        """The profile as a dict in the JSON schema of ``miser profile --json``
        (docs/profiler.md: stages, timeline, warnings, metrics)."""
        import json
        return json.loads(self.render("json"))

    @property
    def stages(self) -> List[Dict[str, Any]]:
        """The stage records of :meth:`report` (KiB figures; None where unknown)."""
        return self.report()["stages"]

    def save(self, path: str, format: Optional[str] = None) -> None:
        """Write the report to ``path`` atomically (temporary file + rename);
        the format comes from the extension unless given."""
        if format is None:
            format = _EXT_FORMATS.get(os.path.splitext(path)[1].lower())
            if format is None:
                raise InvalidInputError(f"cannot tell the report format of {path!r} (give format=)")
        L = _lib.lib()
        with self._lock:
            _check(L.miser_capi_profile_save(self._profile(), format.encode(), os.fsencode(path)))

    def close(self) -> None:
        """Stop if running and free the profile."""
        self.stop()
        with self._lock:
            if self._prof is not None:
                self._prof = None
                self._finalizer.release_profile()


class _Finalizer:
    """Frees the native profiler/profile when the Profiler is collected."""

    def __init__(self, owner: Profiler, L: Any, running: int):
        import weakref  # at start(), not at import
        self.L, self.running, self.profile = L, running, None
        self._f = weakref.finalize(owner, self._free)

    def _free(self) -> None:
        global _active
        if self.running:
            self.L.miser_profiler_free(self.running)
            self.running = None
            with _active_lock:
                _active = None
        self.release_profile()

    def release_profile(self) -> None:
        if self.profile:
            self.L.miser_profile_free(self.profile)
            self.profile = None


def active_profiler() -> Optional[Profiler]:
    """The Profiler running in this process, if any."""
    return _active


def _status_mb() -> "tuple[float, float]":
    rss = swap = 0.0
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1]) / 1024.0
                elif line.startswith(b"VmSwap:"):
                    swap = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return rss, swap


def stage(name: str, description: str = "", *, echo: bool = True, **data: Any) -> None:
    """The study's ``record_stage``, measured properly, in one call:

    - marks the running :class:`Profiler` of this process, if any (exact
      peak of the interval, allocator categories);
    - prints ``[STAGE] NAME: RSS MB (swap: S MB) - description`` (RSS and
      swap as psutil reports them, in MiB) and flushes stdout, unless
      ``echo=False``;
    - under ``miser profile``, writes a marker line on ``$MISER_MARKER_FD``
      with ``ack=1`` and waits for the watcher's acknowledgement, so the
      out-of-process snapshot is taken exactly here (docs/profiler.md).

    Keyword data (``tokens=9, seconds=1.2, text=...``) goes with the mark."""
    ds = _data_string(data)
    if not (1 <= len(name) <= 63) or not all(c.isascii() and (c.isalnum() or c in "_.:-") for c in name):
        raise InvalidInputError(f"bad stage name {name!r} (1-63 of A-Z a-z 0-9 _ . : -)")
    prof = _active
    if prof is not None:
        try:
            prof.stage(name, description, **data)
        except ClosedError:
            pass  # stopped meanwhile
    if echo:
        rss, swap = _status_mb()
        line = f"[STAGE] {name}: {rss:.2f} MB (swap: {swap:.2f} MB)" + (f" - {description}" if description else "")
        sys.stdout.write(line.replace("\n", " ") + "\n")
        sys.stdout.flush()
    fd = os.environ.get("MISER_MARKER_FD")
    if fd:
        parts = ["stage", name]
        if description:
            parts.append("desc=" + _quote(description))
        if ds:
            parts.append(ds)
        ack = os.environ.get("MISER_MARKER_ACK_FD")
        if ack:
            parts.append("ack=1")
        msg = (" ".join(parts) + "\n").encode("utf-8")
        try:
            os.write(int(fd), msg)
            if ack:
                os.read(int(ack), 1)
        except (OSError, ValueError) as e:
            raise MiserError(f"cannot send the stage marker on MISER_MARKER_FD={fd}: {e}") from None
