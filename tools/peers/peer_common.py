"""Shared pieces of the Python peer adapters and converters for `miser compare`.

The common command-line contract (tools/peers/README.md), the study's stage
lines, a small safetensors reader (numpy views on an mmap: Debian has no
python3-safetensors), the GPT-2 config reader, the conversion cache and atomic
JSON output. Standard library + numpy only, so that every adapter can report
"not installed" (exit 3) cleanly when its runtime is missing.
"""
import argparse
import gc
import hashlib
import json
import mmap
import os
import struct
import sys
import time

import numpy as np

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_INSTALLED = 3
EXIT_UNSUPPORTED = 4  # a precision this runtime does not offer

# Bump when a converter's output changes, so stale cached files are not reused.
CONVERTER_VERSION = {"onnx": 1, "gguf": 1}

STAGES = [
    ("0_INITIAL", "Initial state"),
    ("1_MODEL_LOADED", "After loading model"),
    ("2_BEFORE_INFERENCE", "Before first inference"),
    ("3_FIRST_INFERENCE", "After first inference"),
    ("4_SECOND_INFERENCE", "After second inference"),
    ("5_FINAL", "Final state"),
]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class PeerError(Exception):
    """An error reported as one line on stderr with the given exit code."""

    def __init__(self, msg, code=EXIT_FAILURE):
        super().__init__(msg)
        self.code = code


def run_main(prog, fn):
    """Run fn(); turn any failure into one stderr line and the contract's exit code."""
    try:
        rc = fn()
    except PeerError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(e.code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # one line, not a traceback: miser compare shows it as is
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"{prog}: error: {type(e).__name__}: {msg}", file=sys.stderr)
        sys.exit(EXIT_FAILURE)
    sys.exit(rc or 0)


# ---- command line ----

def parse_ids(text, what):
    parts = text.replace(",", " ").split()
    if not parts:
        raise PeerError(f"{what}: no token ids in {text!r}", EXIT_USAGE)
    try:
        ids = [int(p) for p in parts]
    except ValueError:
        raise PeerError(f"{what}: not a list of integers: {text!r}", EXIT_USAGE)
    if any(i < 0 for i in ids):
        raise PeerError(f"{what}: negative token id", EXIT_USAGE)
    return ids


def default_threads():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + exits 2; keep it to one line
        print(f"{self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def make_parser(prog, description, precisions):
    p = _Parser(prog=prog, description=description)
    p.add_argument("--model", required=True, help="Hugging Face GPT-2 checkpoint directory")
    p.add_argument("--prompt-ids", required=True, help='prompt token ids, e.g. "15496" or "1,2,3"')
    p.add_argument("--prompt2-ids", help="second prompt's ids (default: the first prompt again)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--max-length", type=int, help="total length counting the prompt (the study: 10)")
    g.add_argument("--max-new-tokens", type=int, help="tokens to generate after the prompt")
    p.add_argument("--threads", type=int, default=default_threads(), help="compute threads")
    p.add_argument("--precision", default="f32", help="weights precision: " + "|".join(precisions))
    p.add_argument("--json-out", help="write the JSON result here (atomically)")
    p.add_argument("--cache-dir", help="root of the conversion cache (default ~/.cache/miser/peers)")
    return p


def finish_args(args, precisions):
    """Validate parsed args; returns (prompt1, prompt2, new1, new2)."""
    if args.precision not in precisions:
        raise PeerError(f"precision {args.precision!r} is not supported by this runtime "
                        f"(supported: {', '.join(precisions)})", EXIT_UNSUPPORTED)
    if args.threads < 1:
        raise PeerError("--threads must be at least 1", EXIT_USAGE)
    if args.json_out:
        d = os.path.dirname(os.path.abspath(args.json_out))
        if not os.access(d, os.W_OK | os.X_OK):
            raise PeerError(f"{args.json_out}: directory {d} is missing or not writable", EXIT_USAGE)
    p1 = parse_ids(args.prompt_ids, "--prompt-ids")
    p2 = parse_ids(args.prompt2_ids, "--prompt2-ids") if args.prompt2_ids else list(p1)
    if args.max_new_tokens is not None:
        if args.max_new_tokens < 1:
            raise PeerError("--max-new-tokens must be at least 1", EXIT_USAGE)
        n1 = n2 = args.max_new_tokens
    else:
        n1, n2 = args.max_length - len(p1), args.max_length - len(p2)
        if min(n1, n2) < 1:
            raise PeerError(f"--max-length {args.max_length} leaves no room after the prompt", EXIT_USAGE)
    return p1, p2, n1, n2


# ---- stage lines ----

def proc_status_kb(fields=("VmRSS", "VmSwap", "VmHWM")):
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in fields:
                out[key] = int(rest.split()[0])
    return out


class Stages:
    """Prints the study's stage lines; also marks miser's marker pipe when present."""

    def __init__(self):
        self.records = []
        # miser's marker pipe (docs/profiler.md): the repo's helper writes the
        # line and waits for miser's acknowledgement, so the mark is exact.
        self.marker = None
        if os.environ.get("MISER_MARKER_FD"):
            sys.path.insert(0, os.path.join(REPO_ROOT, "tools", "markers"))
            from miser_marker import marker
            self.marker = marker

    def mark(self, index, **data):
        name, desc = STAGES[index]
        gc.collect()  # as the study did before each reading
        st = proc_status_kb()
        rss, swap = st.get("VmRSS", 0) / 1024.0, st.get("VmSwap", 0) / 1024.0
        print(f"[STAGE] {name}: {rss:.2f} MB (swap: {swap:.2f} MB) - {desc}", flush=True)
        self.records.append({"name": name, "rss_mb": round(rss, 2), "swap_mb": round(swap, 2)})
        if self.marker is not None:
            self.marker(name, desc, **data)


# ---- checkpoint ----

def read_config(model_dir):
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except OSError as e:
        raise PeerError(f"{path}: {e.strerror}")
    except ValueError as e:
        raise PeerError(f"{path}: not JSON: {e}")
    try:
        c = {
            "n_embd": int(cfg["n_embd"]),
            "n_head": int(cfg["n_head"]),
            "n_layer": int(cfg["n_layer"]),
            "n_ctx": int(cfg.get("n_positions", cfg.get("n_ctx"))),
            "vocab_size": int(cfg["vocab_size"]),
            "eps": float(cfg.get("layer_norm_epsilon", 1e-5)),
        }
    except (KeyError, TypeError, ValueError) as e:
        raise PeerError(f"{path}: missing or bad GPT-2 field {e}")
    c["n_inner"] = int(cfg.get("n_inner") or 4 * c["n_embd"])
    act = cfg.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        raise PeerError(f"{path}: activation {act!r} is not GPT-2's tanh GELU")
    if c["n_embd"] % c["n_head"]:
        raise PeerError(f"{path}: n_embd {c['n_embd']} is not a multiple of n_head {c['n_head']}")
    return c


_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64,
              "I64": np.int64, "I32": np.int32, "U8": np.uint8, "BOOL": np.bool_}


class SafeTensors:
    """Read-only view of a .safetensors file: tensors are numpy views on one mmap.

    Names are normalised: a leading "transformer." is dropped, and the
    attention mask buffers (attn.bias, attn.masked_bias) are skipped.
    """

    def __init__(self, path):
        self.path = path
        try:
            f = open(path, "rb")
        except OSError as e:
            raise PeerError(f"{path}: {e.strerror}")
        with f:
            head = f.read(8)
            if len(head) != 8:
                raise PeerError(f"{path}: too short for a safetensors header")
            (n,) = struct.unpack("<Q", head)
            size = os.fstat(f.fileno()).st_size
            if n > size - 8 or n > 100 << 20:
                raise PeerError(f"{path}: header length {n} exceeds the file")
            try:
                header = json.loads(f.read(n))
            except ValueError as e:
                raise PeerError(f"{path}: header is not JSON: {e}")
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        base = 8 + n
        self.entries = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            name = key[len("transformer."):] if key.startswith("transformer.") else key
            if name.endswith((".attn.bias", ".attn.masked_bias")):
                continue
            try:
                dt = info["dtype"]
                shape = [int(d) for d in info["shape"]]
                start, end = (int(x) for x in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise PeerError(f"{path}: bad header entry for {key!r}")
            if dt not in _ST_DTYPES:
                raise PeerError(f"{path}: tensor {key!r} has unsupported dtype {dt}")
            count = int(np.prod(shape)) if shape else 1
            if end - start != count * np.dtype(_ST_DTYPES[dt]).itemsize or base + end > size or start < 0:
                raise PeerError(f"{path}: tensor {key!r} offsets do not match its shape")
            self.entries[name] = (dt, shape, base + start, count)

    def dtype_name(self, name):
        return self.entries[name][0]

    def raw(self, name):
        """The stored array (a view on the mmap; BF16 comes as uint16)."""
        if name not in self.entries:
            raise PeerError(f"{self.path}: tensor {name!r} not found")
        dt, shape, off, count = self.entries[name]
        return np.frombuffer(self.mm, dtype=_ST_DTYPES[dt], count=count, offset=off).reshape(shape)

    def read_f32_into(self, name, out):
        """Fill out (a writable, C-contiguous float32 array of the tensor's size) with the
        tensor, read with pread so that the file's pages never enter this process's RSS."""
        dt, shape, off, count = self.entries[name]
        if out.dtype != np.float32 or out.size != count or not out.flags.c_contiguous:
            raise PeerError(f"{self.path}: {name}: destination does not fit")
        nbytes = count * np.dtype(_ST_DTYPES[dt]).itemsize
        buf = out.reshape(-1).view(np.uint8) if dt == "F32" else np.empty(nbytes, dtype=np.uint8)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            done = 0
            view = memoryview(buf)
            while done < nbytes:
                n = os.preadv(fd, [view[done:]], off + done)
                if n <= 0:
                    raise PeerError(f"{self.path}: {name}: short read")
                done += n
        finally:
            os.close(fd)
        if dt == "F16":
            out.reshape(-1)[:] = buf.view(np.float16)
        elif dt == "BF16":
            out.reshape(-1).view(np.uint32)[:] = buf.view(np.uint16).astype(np.uint32) << 16
        elif dt != "F32":
            out.reshape(-1)[:] = buf.view(_ST_DTYPES[dt])
        return out

    def f32(self, name):
        """The tensor as float32: a view for F32, a converted copy otherwise."""
        a = self.raw(name)
        dt = self.entries[name][0]
        if dt == "BF16":
            return (a.astype(np.uint32) << 16).view(np.float32)
        return a if a.dtype == np.float32 else a.astype(np.float32)


def gpt2_tensors(st, cfg):
    """Check the checkpoint holds GPT-2 with this config; returns the expected names/shapes."""
    C, L, V, T, F = cfg["n_embd"], cfg["n_layer"], cfg["vocab_size"], cfg["n_ctx"], cfg["n_inner"]
    want = {"wte.weight": [V, C], "wpe.weight": [T, C], "ln_f.weight": [C], "ln_f.bias": [C]}
    for i in range(L):
        p = f"h.{i}."
        want.update({
            p + "ln_1.weight": [C], p + "ln_1.bias": [C],
            p + "attn.c_attn.weight": [C, 3 * C], p + "attn.c_attn.bias": [3 * C],
            p + "attn.c_proj.weight": [C, C], p + "attn.c_proj.bias": [C],
            p + "ln_2.weight": [C], p + "ln_2.bias": [C],
            p + "mlp.c_fc.weight": [C, F], p + "mlp.c_fc.bias": [F],
            p + "mlp.c_proj.weight": [F, C], p + "mlp.c_proj.bias": [C],
        })
    for name, shape in want.items():
        if name not in st.entries:
            raise PeerError(f"{st.path}: tensor {name!r} not found")
        if st.entries[name][1] != shape:
            raise PeerError(f"{st.path}: tensor {name!r} has shape {st.entries[name][1]}, expected {shape}")
    return want


def open_checkpoint(model_dir):
    if not os.path.isdir(model_dir):
        raise PeerError(f"{model_dir}: not a directory")
    cfg = read_config(model_dir)
    st = SafeTensors(os.path.join(model_dir, "model.safetensors"))
    gpt2_tensors(st, cfg)
    return cfg, st


# ---- conversion cache ----

def model_key(model_dir):
    """Hash of the checkpoint's real path and its files' mtimes and sizes."""
    h = hashlib.sha256()
    real = os.path.realpath(model_dir)
    h.update(real.encode())
    for name in ("config.json", "model.safetensors"):
        try:
            s = os.stat(os.path.join(real, name))
        except OSError as e:
            raise PeerError(f"{os.path.join(model_dir, name)}: {e.strerror}")
        h.update(f"|{name}:{s.st_mtime_ns}:{s.st_size}".encode())
    return h.hexdigest()[:16]


def cache_root(cache_dir):
    if cache_dir:
        return cache_dir
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "miser", "peers")


def cache_path(cache_dir, model_dir, name):
    d = os.path.join(cache_root(cache_dir), model_key(model_dir))
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


# ---- output ----

def write_json_atomic(path, obj):
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp.{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise PeerError(f"{path}: cannot write: {e.strerror}")


def run_result(prompt, ids, seconds, ttft):
    """The contract's per-generate record."""
    n = len(ids)
    decode = (n - 1) / (seconds - ttft) if n > 1 and seconds > ttft else None
    return {
        "ids": [int(i) for i in ids],
        "prompt_len": len(prompt),
        "new_tokens": n,
        "seconds": round(seconds, 6),
        "ttft_s": round(ttft, 6),
        "decode_tok_s": round(decode, 4) if decode is not None else None,
        "prefill_tok_s": round(len(prompt) / ttft, 4) if ttft > 0 else None,
    }


def now():
    return time.perf_counter()
