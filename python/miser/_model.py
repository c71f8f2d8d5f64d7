"""Models and sessions: miser's runtime in this process.

A :class:`Model` is a checkpoint opened the way ``miser generate`` opens it
(weights mmapped read-only, tokenizer, compiled plan); a :class:`Session`
is one sequence's state (KV cache, activation arena, thread pool). Native
calls release the GIL (ctypes drops it for every foreign call), so two
threads may generate on two sessions at once.
"""
from __future__ import annotations

import _thread
import _weakref
import codecs
import ctypes
import os
import time
from ctypes import POINTER, byref, c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_size_t, c_uint64, c_void_p
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 MB)

# Only cheap modules at import time (`import miser` adds <= 5 MB RSS):
# typing, dataclasses, threading and queue are imported where used
# or only for type checkers.
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator, List, Optional, Sequence, Union
    PathLike = Union[str, "os.PathLike[str]"]
    Prompt = Union[str, bytes, Sequence[int]]

from . import _lib
from ._errors import ClosedError, InvalidInputError, error_for

_MISER_TOKENIZE_SPECIAL_AS_TEXT = 1


def _check(st: int) -> None:
    if st:
        raise error_for(st, _lib.error_message())


class Timings:
    """Seconds of one generation, as ``miser generate --json`` reports them:
    ``prefill_s`` (prompt evaluation up to the first token, = ``ttft_s``),
    ``decode_s`` (after the first token), ``ttft_s`` (time to first token),
    ``decode_tok_s`` ((tokens - 1) / decode_s; 0 with fewer than two tokens)."""
    __slots__ = ("prefill_s", "decode_s", "ttft_s", "decode_tok_s")

    def __init__(self, prefill_s: float, decode_s: float, ttft_s: float, decode_tok_s: float):
        self.prefill_s, self.decode_s, self.ttft_s, self.decode_tok_s = prefill_s, decode_s, ttft_s, decode_tok_s

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.decode_s

    def __repr__(self) -> str:
        return (f"Timings(prefill_s={self.prefill_s:.6f}, decode_s={self.decode_s:.6f}, ttft_s={self.ttft_s:.6f}, "
                f"decode_tok_s={self.decode_tok_s:.2f})")


class Generation:
    """What :meth:`Model.generate` returns: ``text`` (cut before a stop
    string, if one matched), ``ids`` (the generated token ids, including the
    one that completed a stop string), ``prompt_ids``, ``stop_reason``
    ("eos", "max_new_tokens", "max_length", "capacity" or "stop"),
    ``timings`` (:class:`Timings`) and ``data``, the raw bytes of ``ids``
    (``text`` is their UTF-8 decoding, U+FFFD for invalid sequences)."""
    __slots__ = ("text", "ids", "prompt_ids", "stop_reason", "timings", "data")

    def __init__(self, text: str, ids: "List[int]", prompt_ids: "List[int]", stop_reason: str, timings: Timings,
                 data: bytes = b""):
        self.text, self.ids, self.prompt_ids, self.stop_reason = text, ids, prompt_ids, stop_reason
        self.timings, self.data = timings, data

    def __repr__(self) -> str:
        return (f"Generation(text={self.text!r}, ids={self.ids!r}, stop_reason={self.stop_reason!r}, "
                f"timings={self.timings!r})")


class _Assembler:
    """Token bytes in, text out: holds back a UTF-8 sequence split across
    tokens until it is complete (invalid bytes become U+FFFD, as
    ``bytes.decode("utf-8", "replace")`` does for the whole text), and the
    tail that could still start a stop string. Both generate and stream use
    it, so their texts are the same by construction."""

    def __init__(self, stop: Sequence[str]):
        self.dec = codecs.getincrementaldecoder("utf-8")("replace")
        self.stop = [s for s in stop if s]
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.text = ""        # decoded so far (including held-back text)
        self.emitted = 0      # characters of self.text handed out
        self.stopped = False
        self.chunks: List[bytes] = []

    def feed(self, b: bytes) -> str:
        """Add one token's bytes; returns the text now safe to show."""
        self.chunks.append(b)
        self.text += self.dec.decode(b)
        if self.stop:
            lo = max(0, self.emitted - self.hold)
            cut = -1
            for s in self.stop:
                i = self.text.find(s, lo)
                if i >= 0 and (cut < 0 or i < cut):
                    cut = i
            if cut >= 0:
                self.stopped = True
                self.text = self.text[:cut]
                return self._take(len(self.text))
            return self._take(max(self.emitted, len(self.text) - self.hold))
        return self._take(len(self.text))

    def finish(self) -> str:
        if not self.stopped:
            self.text += self.dec.decode(b"", final=True)
        return self._take(len(self.text))

    def _take(self, upto: int) -> str:
        piece = self.text[self.emitted:upto]
        self.emitted = max(self.emitted, upto)
        return piece


class _Live:
    """Guards a native handle: calls hold a use count, close() waits for
    them and then frees, and any use after close raises ClosedError."""

    def __init__(self, what: str):
        self._what = what
        self._mu = _thread.allocate_lock()
        self._uses = 0
        self._closed = False

    def enter(self) -> None:
        with self._mu:
            if self._closed:
                raise ClosedError(f"this {self._what} is closed")
            self._uses += 1

    def leave(self) -> None:
        with self._mu:
            self._uses -= 1

    def close(self) -> bool:
        """Mark closed and wait for running calls; True the first time."""
        with self._mu:
            if self._closed:
                return False
            self._closed = True
        while True:  # closing while another thread is inside a call is rare: poll
            with self._mu:
                if not self._uses:
                    return True
            time.sleep(0.001)

    @property
    def closed(self) -> bool:
        return self._closed


class _Use:
    __slots__ = ("live",)

    def __init__(self, live: _Live):
        self.live = live

    def __enter__(self) -> None:
        self.live.enter()

    def __exit__(self, *exc: Any) -> None:
        self.live.leave()


def _ids_array(ids: Iterable[int]) -> "ctypes.Array[c_int32]":
    lst = [int(i) for i in ids]
    for i in lst:
        if not -2**31 <= i < 2**31:
            raise error_for(6, f"token id {i} does not fit in 32 bits")
    return (c_int32 * len(lst))(*lst) if lst else (c_int32 * 1)()


class Model:
    """A checkpoint, ready to generate.

    ``path``: a Hugging Face checkpoint directory (config.json +
    model.safetensors: GPT-2 or the Llama family; tokenizer.json, or
    vocab.json + merges.txt, optional). ``precision``: None (as stored), "f32",
    "f16", "bf16", "q8_0", "q4_0" or "q4_k" (converted once into miser's cache and mmapped, as
    ``miser generate --precision``). ``threads``: worker threads (None: the
    CPUs available, as the CLI). ``ctx``: the longest sequence a session of
    this model may hold (None: the model's n_ctx); it bounds the plan's
    worst case, so a smaller ctx means less memory.

    Free the native memory with :meth:`close` (or ``with Model(...) as m``);
    a collected Model frees it too. Closing a model closes its sessions.
    Errors: :class:`~miser.MiserIOError` (missing or unreadable file),
    :class:`~miser.FormatError` (malformed checkpoint),
    :class:`~miser.RangeError` (ctx larger than n_ctx, bad config values),
    :class:`~miser.InvalidInputError` (unknown precision), ...
    """

    def __init__(self, path: PathLike, precision: Optional[str] = None, threads: Optional[int] = None,
                 ctx: Optional[int] = None):
        self._live = _Live("model")
        self._h: Optional[int] = None
        self._sessions: "dict[int, Any]" = {}  # id -> weak reference to each open session
        L = _lib.lib()
        self._L = L
        p = os.fspath(path)
        if threads is not None and int(threads) < 1:
            raise InvalidInputError(f"threads must be at least 1 (got {threads})")
        if ctx is not None and int(ctx) < 1:
            raise InvalidInputError(f"ctx must be at least 1 (got {ctx})")
        h = c_void_p()
        _check(L.miser_llm_open(os.fsencode(p), precision.encode() if precision else None,
                                int(threads or 0), int(ctx or 0), byref(h)))
        self._h = h.value
        self.path: str = p
        self.precision: Optional[str] = precision
        self._tok = L.miser_llm_tokenizer(self._h)
        self.weights_dir: str = os.fsdecode(L.miser_llm_weights_dir(self._h))
        #: the precision conversion's one-line remark ("" when none)
        self.note: str = L.miser_llm_note(self._h).decode("utf-8", "replace")
        self.threads: int = L.miser_llm_threads(self._h)
        self.ctx: int = L.miser_llm_max_context(self._h)
        self.n_vocab: int = L.miser_llm_n_vocab(self._h)
        eos = L.miser_llm_eos(self._h)
        self.eos_token_id: Optional[int] = eos if eos >= 0 else None
        self.load_seconds: float = L.miser_llm_load_seconds(self._h)
        self.compile_seconds: float = L.miser_llm_compile_seconds(self._h)

    # -- lifetime --
    def close(self) -> None:
        """Free the native memory (sessions first). Idempotent."""
        for r in list(self._sessions.values()):
            s = r()
            if s is not None:
                s.close()
        if self._live.close() and self._h:
            h, self._h = self._h, None
            self._L.miser_llm_free(h)

    def __del__(self) -> None:
        # Collected: sessions hold a reference to their model, so none is left.
        h = getattr(self, "_h", None)
        if h:
            self._h = None
            self._L.miser_llm_free(h)

    @property
    def closed(self) -> bool:
        return self._live.closed

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"ctx={self.ctx} threads={self.threads}"
        return f"<miser.Model {self.path!r} {state}>"

    def _use(self) -> _Use:
        return _Use(self._live)

    # -- tokenizer --
    def tokenize(self, text: Union[str, bytes], special_as_text: bool = False) -> List[int]:
        """Token ids of ``text`` (GPT-2 byte-level BPE). A str is encoded as
        UTF-8 (lone surrogates are :class:`~miser.InvalidInputError`); bytes
        are tokenized as they are, whatever they hold (the tokenizer's
        contract: ``detokenize_bytes(tokenize(b)) == b``).
        ``<|endoftext|>`` in the text is the special token unless
        ``special_as_text``."""
        data = _to_bytes(text, "text")
        with self._use():
            ids = POINTER(c_int32)()
            n = c_size_t()
            _check(self._L.miser_tokenizer_encode(self._tok, data, len(data),
                                                  _MISER_TOKENIZE_SPECIAL_AS_TEXT if special_as_text else 0,
                                                  byref(ids), byref(n)))
            try:
                return ids[:n.value]
            finally:
                self._L.miser_free(ids)

    def detokenize_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of ``ids`` (an id outside the vocabulary is :class:`~miser.RangeError`)."""
        lst = [int(i) for i in ids]
        arr = _ids_array(lst)
        n = len(lst)
        with self._use():
            out = c_void_p()
            ln = c_size_t()
            _check(self._L.miser_tokenizer_decode(self._tok, arr, n, byref(out), byref(ln)))
            try:
                return ctypes.string_at(out.value, ln.value) if ln.value else b""
            finally:
                self._L.miser_free(out)

    def detokenize(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; bytes that are not valid UTF-8 become U+FFFD
        (as Hugging Face's ``decode`` does)."""
        return self.detokenize_bytes(ids).decode("utf-8", "replace")

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token."""
        with self._use():
            return self._token_bytes(int(token))

    def _token_bytes(self, token: int) -> bytes:
        n = c_size_t()
        p = self._L.miser_tokenizer_token_bytes(self._tok, token, byref(n))
        if not p:
            raise error_for(6, f"token {token} is outside the vocabulary of {self.n_vocab}")
        return ctypes.string_at(p, n.value)

    # -- sessions and generation --
    def session(self, capacity: Optional[int] = None, kv_f16: Optional[bool] = None) -> "Session":
        """A new session: ``capacity`` positions of KV cache (None: ctx);
        ``kv_f16`` as :class:`Session` (None: the architecture's default)."""
        return Session(self, capacity, kv_f16)

    def _prompt_ids(self, prompt: Prompt, special_as_text: bool) -> List[int]:
        if isinstance(prompt, (str, bytes, bytearray, memoryview)):
            data = _to_bytes(prompt, "prompt")
            try:
                data.decode("utf-8", "strict")
            except UnicodeDecodeError as e:
                raise InvalidInputError(f"the prompt is not valid UTF-8 ({e.reason} at byte {e.start})") from None
            ids = self.tokenize(data, special_as_text)
        else:
            ids = [int(i) for i in prompt]
            for i in ids:
                if not 0 <= i < self.n_vocab:
                    raise InvalidInputError(f"prompt token {i} is outside the model's vocabulary of {self.n_vocab}")
        if not ids:
            raise InvalidInputError("the prompt is empty: give at least one token of text")
        if len(ids) > self.ctx:
            raise InvalidInputError(f"the prompt has {len(ids)} tokens, more than the model's context of {self.ctx}")
        return ids

    def generate(self, prompt: Prompt, max_new_tokens: Optional[int] = None, *, max_length: Optional[int] = None,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 stop: Union[None, str, Sequence[str]] = None, ignore_eos: bool = False,
                 special_as_text: bool = False) -> Generation:
        """Generate after ``prompt`` (text, UTF-8 bytes or token ids) in a
        fresh session sized as ``miser generate`` sizes it, and return a
        :class:`Generation`.

        The options are ``miser generate``'s: ``max_new_tokens`` (default 50
        unless ``max_length``), ``max_length`` (prompt included, as Keras),
        ``temperature`` (0: greedy), ``top_k`` (0: off), ``top_p`` (1: off),
        ``seed``; generation stops at ``<|endoftext|>`` unless ``ignore_eos``.
        ``stop``: a string or strings that end generation when the text
        contains one (the text is cut before it, stop_reason "stop").

        The GIL is released while tokens are computed (no Python runs per
        token unless ``stop`` is given). Called on the main thread, the
        tokens are computed on a worker thread while this one waits, so
        Ctrl-C stops the generation after the current token (a cancel flag
        the C loop reads): the native call returns and frees what it
        allocated, then KeyboardInterrupt is raised. A prompt that is not UTF-8, empty, or
        longer than ctx is :class:`~miser.InvalidInputError`."""
        ids = self._prompt_ids(prompt, special_as_text)
        max_new = _max_new(max_new_tokens, max_length)
        with self.session(self._capacity(len(ids), max_new, max_length)) as s:
            return s._generate(ids, max_new, max_length, temperature, top_k, top_p, seed, stop, ignore_eos)

    def stream(self, prompt: Prompt, max_new_tokens: Optional[int] = None, *, max_length: Optional[int] = None,
               temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
               stop: Union[None, str, Sequence[str]] = None, ignore_eos: bool = False,
               special_as_text: bool = False) -> Iterator[str]:
        """Like :meth:`generate`, but yields the text as it is decoded: one
        piece per token, except that a UTF-8 character split across tokens
        is held back until complete (and, with ``stop``, text that could be
        the start of a stop string). ``"".join(stream(...))`` equals
        ``generate(...).text``. The tokens are computed on a worker thread;
        closing the iterator early (or Ctrl-C while it waits) stops the
        generation after the current token."""
        ids = self._prompt_ids(prompt, special_as_text)
        max_new = _max_new(max_new_tokens, max_length)
        s = self.session(self._capacity(len(ids), max_new, max_length))
        try:
            yield from s._stream(ids, max_new, max_length, temperature, top_k, top_p, seed, stop, ignore_eos)
        finally:
            s.close()

    def _capacity(self, n_prompt: int, max_new: int, max_length: Optional[int]) -> int:
        # as cmd_generate.c: prompt + new tokens, bounded by max_length and the context
        want = n_prompt + (max_new if max_new else self.ctx)
        if max_length and max_length < want:
            want = max(max_length, n_prompt)
        return min(want, self.ctx)


def _to_bytes(text: Union[str, bytes, bytearray, memoryview], what: str) -> bytes:
    if isinstance(text, str):
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise InvalidInputError(f"the {what} is not valid Unicode ({e.reason} at character {e.start})") from None
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    raise TypeError(f"{what} must be str or bytes, not {type(text).__name__}")


def _max_new(max_new_tokens: Optional[int], max_length: Optional[int]) -> int:
    if max_length is not None and int(max_length) < 1:
        raise InvalidInputError(f"max_length must be at least 1 (got {max_length})")
    if max_new_tokens is None:
        return 0 if max_length else 50
    if int(max_new_tokens) < 1:
        raise InvalidInputError(f"max_new_tokens must be at least 1 (got {max_new_tokens})")
    return int(max_new_tokens)


def _stops(stop: Union[None, str, Sequence[str]]) -> List[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    return [str(s) for s in stop]


class Session:
    """One sequence's state over a :class:`Model`: KV cache, activation
    arena, thread pool. Use a session from one thread at a time; different
    sessions may run on different threads at once.

    :meth:`eval` feeds tokens and returns the last position's logits;
    :meth:`generate` continues the sequence. Close it (or use ``with``) to
    free its native memory; it is also freed when collected or when its
    model is closed.

    ``kv_f16`` picks the KV cache's dtype, as the C API's kv_f16 and the
    CLI's ``--kv-f16`` / ``--kv-f32``: None the architecture's default (f16
    for the Llama family, f32 for GPT-2), True f16, False f32. The session
    reports what it got: ``kv_dtype`` ("f16" or "f32"), ``kv_bytes`` (its
    KV cache, 2 x layers x capacity x KV heads x head size x 2 or 4 bytes)
    and ``footprint`` (every native buffer by kind, in bytes, from
    ``miser_llm_session_footprint``: the computation the session is sized
    with)."""

    def __init__(self, model: Model, capacity: Optional[int] = None, kv_f16: Optional[bool] = None):
        self._live = _Live("session")
        self.model = model
        if capacity is not None and int(capacity) < 1:
            raise InvalidInputError(f"capacity must be at least 1 (got {capacity})")
        if kv_f16 is not None and not isinstance(kv_f16, bool):
            raise InvalidInputError(f"kv_f16 must be None, True or False (got {kv_f16!r})")
        kv = 0 if kv_f16 is None else (1 if kv_f16 else -1)  # the C API's > 0 f16, < 0 f32, 0 the default
        L = model._L
        self._L = L
        with model._use():
            h = c_void_p()
            kvb, arena, scratch, other, dt = c_uint64(), c_uint64(), c_uint64(), c_uint64(), c_char_p()
            _check(L.miser_llm_session_footprint(model._h, int(capacity or 0), kv, byref(kvb), byref(arena),
                                                 byref(scratch), byref(other), byref(dt)))
            _check(L.miser_llm_session(model._h, int(capacity or 0), kv, byref(h)))
        self._h = h.value
        #: the KV cache's dtype: "f16" or "f32"
        self.kv_dtype: str = dt.value.decode()
        #: bytes of KV cache this session holds
        self.kv_bytes: int = kvb.value
        #: the session's native buffers by kind, in bytes
        self.footprint: "dict[str, int]" = {"kv": kvb.value, "arena": arena.value, "scratch": scratch.value,
                                             "other": other.value}
        self._lock = _thread.allocate_lock()
        model._sessions[id(self)] = _weakref.ref(self)
        self.capacity: int = L.miser_session_capacity(self._h)

    def close(self) -> None:
        """Free the native memory. Idempotent."""
        if self._live.close() and self._h:
            h, self._h = self._h, None
            self.model._sessions.pop(id(self), None)
            self._L.miser_session_free(h)

    def __del__(self) -> None:
        h = getattr(self, "_h", None)
        if h:
            self._h = None
            self._L.miser_session_free(h)
            sessions = getattr(self.model, "_sessions", None)
            if sessions is not None:
                sessions.pop(id(self), None)

    @property
    def closed(self) -> bool:
        return self._live.closed

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<miser.Session {'closed' if self.closed else f'{self.position}/{self.capacity}'}>"

    def _enter(self) -> None:
        self._live.enter()
        if not self._lock.acquire(blocking=False):
            self._live.leave()
            raise InvalidInputError("this session is in use by another call (use one session per thread)")

    def _leave(self) -> None:
        self._lock.release()
        self._live.leave()

    @property
    def position(self) -> int:
        """Tokens held (the next token's position)."""
        self._live.enter()
        try:
            return self._L.miser_session_position(self._h)
        finally:
            self._live.leave()

    def reset(self) -> None:
        """Forget the sequence (keeps every buffer)."""
        self._enter()
        try:
            self._L.miser_session_reset(self._h)
        finally:
            self._leave()

    def eval(self, ids: Sequence[int]) -> Any:
        """Feed ``ids`` after the tokens already held and return the last
        position's logits (``n_vocab`` float32).

        With NumPy present this is a read-only ``numpy.ndarray`` over the
        session's own buffer, not a copy: it is valid only until the next
        call on this session (eval, generate, reset, close) — copy it
        (``.copy()``) to keep it. Without NumPy it is a ``memoryview`` of
        format "f" with the same rule. Errors: :class:`~miser.RangeError`
        when the cache would overflow or an id is outside the vocabulary."""
        lst = [int(i) for i in ids]
        arr = _ids_array(lst)
        n = len(lst)
        if n < 1:
            raise InvalidInputError("eval needs at least one token")
        self._enter()
        try:
            out = POINTER(c_float)()
            _check(self._L.miser_session_eval(self._h, arr, n, byref(out)))
            buf = (c_float * self.model.n_vocab).from_address(ctypes.addressof(out.contents))
            buf._miser_owner = self  # type: ignore[attr-defined]  # keeps the session alive with the view
        finally:
            self._leave()
        try:
            import numpy as np
        except ImportError:
            return memoryview(buf).cast("B").cast("f")
        a = np.frombuffer(buf, dtype=np.float32)
        a.flags.writeable = False
        return a

    def generate(self, prompt: Prompt, max_new_tokens: Optional[int] = None, *, max_length: Optional[int] = None,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 stop: Union[None, str, Sequence[str]] = None, ignore_eos: bool = False,
                 special_as_text: bool = False) -> Generation:
        """:meth:`Model.generate` continuing this session's sequence (the
        prompt is fed after the tokens already held; ``max_length`` counts
        from the session's start)."""
        ids = self.model._prompt_ids(prompt, special_as_text)
        return self._generate(ids, _max_new(max_new_tokens, max_length), max_length, temperature, top_k, top_p, seed,
                              stop, ignore_eos)

    def stream(self, prompt: Prompt, max_new_tokens: Optional[int] = None, *, max_length: Optional[int] = None,
               temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
               stop: Union[None, str, Sequence[str]] = None, ignore_eos: bool = False,
               special_as_text: bool = False) -> Iterator[str]:
        """:meth:`Model.stream` continuing this session's sequence."""
        ids = self.model._prompt_ids(prompt, special_as_text)
        return self._stream(ids, _max_new(max_new_tokens, max_length), max_length, temperature, top_k, top_p, seed,
                            stop, ignore_eos)

    # The native generation: the token callback feeds `asm` and returns
    # non-zero to stop (a stop string matched, or `cancel` was set).
    def _native(self, ids: List[int], max_new: int, max_length: Optional[int], temperature: float, top_k: int,
                top_p: float, seed: int, stop: Sequence[str], ignore_eos: bool, asm: _Assembler,
                on_piece: Any, cancel: "c_int") -> Generation:
        if temperature < 0 or not 0 <= top_p <= 1 or top_k < 0:
            raise InvalidInputError("temperature must be >= 0, top_k >= 0 and 0 <= top_p <= 1")
        m = self.model
        errors: List[BaseException] = []

        def on_token(_user: Any, tok: int) -> int:
            try:
                piece = asm.feed(m._token_bytes(tok))
                if piece and on_piece is not None:
                    on_piece(piece)
                return 1 if asm.stopped else 0
            except BaseException as e:  # never let an exception cross the C frame
                errors.append(e)
                return 1

        # Without stop strings or a consumer, no callback at all: the whole
        # generation then runs without the GIL (a callback needs it back
        # once per token) and the text is assembled from the ids
        # afterwards, through the same _Assembler. `cancel` is read by C
        # after each token.
        need_cb = bool(stop) or on_piece is not None
        cb = _lib.TOKEN_FN(on_token) if need_cb else _lib.TOKEN_FN()
        arr = _ids_array(ids)
        out = POINTER(c_int32)()
        n = c_int64()
        pre, dec = c_double(), c_double()
        why = c_char_p()
        eos = -1 if ignore_eos or m.eos_token_id is None else m.eos_token_id
        self._enter()
        try:
            with m._use():
                st = self._L.miser_llm_generate(self._h, arr, len(ids), max_new, int(max_length or 0),
                                                float(temperature), int(top_k), float(top_p),
                                                int(seed) & 0xFFFFFFFFFFFFFFFF, eos, cb, None, byref(cancel),
                                                byref(out), byref(n),
                                                byref(pre), byref(dec), byref(why))
                msg = _lib.error_message() if st else ""
        finally:
            self._leave()
        if st:
            raise error_for(st, msg)
        try:
            gen_ids = out[:n.value]
        finally:
            self._L.miser_free(out)
        if errors:
            raise errors[0]
        if not need_cb:
            with m._use():
                for tok in gen_ids:
                    asm.feed(m._token_bytes(tok))
        tail = asm.finish()
        if tail and on_piece is not None:
            on_piece(tail)
        reason = why.value.decode() if why.value else ""
        if asm.stopped:
            reason = "stop"
        k = len(gen_ids)
        t = Timings(pre.value, dec.value, pre.value, (k - 1) / dec.value if k > 1 and dec.value > 0 else 0.0)
        return Generation(asm.text, gen_ids, list(ids), reason, t, b"".join(asm.chunks))

    def _generate(self, ids: List[int], max_new: int, max_length: Optional[int], temperature: float, top_k: int,
                  top_p: float, seed: int, stop: Union[None, str, Sequence[str]], ignore_eos: bool) -> Generation:
        import threading
        stops = _stops(stop)
        cancel = c_int(0)
        asm = _Assembler(stops)
        if threading.current_thread() is not threading.main_thread():
            return self._native(ids, max_new, max_length, temperature, top_k, top_p, seed, stops, ignore_eos, asm,
                                None, cancel)
        # Ctrl-C between tokens: on the main thread the tokens are computed
        # on a worker while this thread waits in join(), where Python
        # delivers KeyboardInterrupt; then the C side's cancel flag is set,
        # the generation stops after the current token, the native call
        # returns and frees what it allocated, and the interrupt goes on.
        box: "dict[str, Any]" = {}

        def work() -> None:
            try:
                box["g"] = self._native(ids, max_new, max_length, temperature, top_k, top_p, seed, stops,
                                        ignore_eos, asm, None, cancel)
            except BaseException as e:  # re-raised on the calling thread
                box["e"] = e

        t = threading.Thread(target=work, name="miser-generate", daemon=True)
        t.start()
        try:
            t.join()
        except BaseException:
            cancel.value = 1
            while t.is_alive():
                try:
                    t.join()
                except KeyboardInterrupt:  # a second Ctrl-C while the current token finishes
                    pass
            raise
        if "e" in box:
            raise box["e"]
        return box["g"]

    def _stream(self, ids: List[int], max_new: int, max_length: Optional[int], temperature: float, top_k: int,
                top_p: float, seed: int, stop: Union[None, str, Sequence[str]], ignore_eos: bool) -> Iterator[str]:
        import queue
        import threading
        stops = _stops(stop)
        cancel = c_int(0)
        asm = _Assembler(stops)
        q: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        done = object()

        def work() -> None:
            try:
                self._native(ids, max_new, max_length, temperature, top_k, top_p, seed, stops, ignore_eos, asm,
                             q.put, cancel)
                q.put(done)
            except BaseException as e:
                q.put(e)

        t = threading.Thread(target=work, name="miser-stream", daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.value = 1
            while t.is_alive():
                try:
                    t.join()
                except KeyboardInterrupt:  # a second Ctrl-C while the current token finishes
                    pass
