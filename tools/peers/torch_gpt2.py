#!/usr/bin/python3
"""PyTorch peer for `miser compare`: GPT-2 greedy generation with a KV cache.

Follows the common contract in tools/peers/README.md. Uses Hugging Face
transformers' GPT2LMHeadModel when it is importable (it is not on Debian 12),
otherwise its own GPT-2 below (pre-LN, tanh GELU, causal attention, KV cache,
lm_head tied to wte) over weights read with peer_common's safetensors reader.
The weights are read (pread, not through the mmap) into torch tensors owned by
the process (anonymous memory), as a PyTorch model loaded from a checkpoint
holds them.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc  # noqa: E402

PROG = "torch_gpt2"
PRECISIONS = ("f32", "bf16")


class OwnGPT2:
    """GPT-2 in plain torch ops; weights in Hugging Face's Conv1D layout (y = x @ W + b)."""

    def __init__(self, torch, cfg, st, dtype):
        self.torch = torch
        self.F = torch.nn.functional
        self.cfg = cfg
        self.dtype = dtype
        C = cfg["n_embd"]
        self.H, self.D = cfg["n_head"], C // cfg["n_head"]

        def t(name):
            # Read straight into process-owned memory (no mmap view held at
            # the same time, so the peak is the weights once), then the
            # compute dtype.
            a = torch.empty(st.entries[name][1], dtype=torch.float32)
            st.read_f32_into(name, a.numpy())
            return a if dtype == torch.float32 else a.to(dtype)

        self.wte, self.wpe = t("wte.weight"), t("wpe.weight")
        self.lnf = (t("ln_f.weight"), t("ln_f.bias"))
        self.layers = []
        for i in range(cfg["n_layer"]):
            p = f"h.{i}."
            self.layers.append({k: t(p + k) for k in (
                "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")})

    def new_cache(self, max_len):
        torch = self.torch
        L = self.cfg["n_layer"]
        return {"k": torch.empty(L, self.H, max_len, self.D, dtype=self.dtype),
                "v": torch.empty(L, self.H, max_len, self.D, dtype=self.dtype), "len": 0}

    def step(self, ids, cache):
        """Run ids (list of ints) after the cache's tokens; returns the last position's logits."""
        torch, F = self.torch, self.F
        C, H, D, eps = self.cfg["n_embd"], self.H, self.D, self.cfg["eps"]
        S, P = len(ids), cache["len"]
        T = P + S
        idx = torch.tensor(ids, dtype=torch.long)
        x = self.wte[idx] + self.wpe[P:T]                      # [S, C]
        mask = None
        if S > 1:  # query i (absolute P+i) sees keys j <= P+i
            mask = torch.ones(S, T, dtype=torch.bool).tril(diagonal=P).logical_not()
        scale = 1.0 / (D ** 0.5)
        for li, w in enumerate(self.layers):
            h = F.layer_norm(x, (C,), w["ln_1.weight"], w["ln_1.bias"], eps)
            qkv = torch.addmm(w["attn.c_attn.bias"], h, w["attn.c_attn.weight"])   # [S, 3C]
            q, k, v = qkv.split(C, dim=1)
            q = q.view(S, H, D).transpose(0, 1)                                      # [H, S, D]
            cache["k"][li, :, P:T] = k.view(S, H, D).transpose(0, 1)
            cache["v"][li, :, P:T] = v.view(S, H, D).transpose(0, 1)
            K, Vv = cache["k"][li, :, :T], cache["v"][li, :, :T]                     # [H, T, D]
            att = torch.matmul(q, K.transpose(1, 2)) * scale                        # [H, S, T]
            if mask is not None:
                att = att.masked_fill(mask, float("-inf"))
            att = torch.softmax(att.float(), dim=-1).to(self.dtype)
            y = torch.matmul(att, Vv).transpose(0, 1).reshape(S, C)                 # [S, C]
            x = x + torch.addmm(w["attn.c_proj.bias"], y, w["attn.c_proj.weight"])
            h = F.layer_norm(x, (C,), w["ln_2.weight"], w["ln_2.bias"], eps)
            h = F.gelu(torch.addmm(w["mlp.c_fc.bias"], h, w["mlp.c_fc.weight"]), approximate="tanh")
            x = x + torch.addmm(w["mlp.c_proj.bias"], h, w["mlp.c_proj.weight"])
        cache["len"] = T
        last = F.layer_norm(x[-1], (C,), self.lnf[0], self.lnf[1], eps)
        return torch.mv(self.wte, last)                                              # [V]

    def generate(self, prompt, n_new):
        torch = self.torch
        cache = self.new_cache(len(prompt) + n_new)
        out = []
        t0 = pc.now()
        ttft = None
        logits = self.step(prompt, cache)
        for i in range(n_new):
            tok = int(torch.argmax(logits))
            out.append(tok)
            if i == 0:
                ttft = pc.now() - t0
            if i + 1 < n_new:
                logits = self.step([tok], cache)
        return out, pc.now() - t0, ttft


class HFGPT2:
    """transformers' GPT2LMHeadModel driven by the same greedy loop (only where importable)."""

    def __init__(self, torch, model_dir, dtype):
        from transformers import GPT2LMHeadModel
        self.torch = torch
        self.model = GPT2LMHeadModel.from_pretrained(model_dir, torch_dtype=dtype).eval()

    def generate(self, prompt, n_new):
        torch = self.torch
        out = []
        t0 = pc.now()
        ttft = None
        ids = torch.tensor([prompt], dtype=torch.long)
        past = None
        for i in range(n_new):
            r = self.model(input_ids=ids, past_key_values=past, use_cache=True)
            past = r.past_key_values
            tok = int(torch.argmax(r.logits[0, -1]))
            out.append(tok)
            if i == 0:
                ttft = pc.now() - t0
            ids = torch.tensor([[tok]], dtype=torch.long)
        return out, pc.now() - t0, ttft


def main():
    ap = pc.make_parser(PROG, "PyTorch GPT-2 peer runtime (common contract: tools/peers/README.md)",
                        PRECISIONS)
    ap.add_argument("--impl", choices=("auto", "own", "transformers"), default="auto",
                    help="auto: transformers when importable, else the built-in GPT-2")
    args = ap.parse_args()
    p1, p2, n1, n2 = pc.finish_args(args, PRECISIONS)
    cfg = pc.read_config(args.model)
    for p, n in ((p1, n1), (p2, n2)):
        if len(p) + n > cfg["n_ctx"]:
            raise pc.PeerError(f"prompt ({len(p)}) + new tokens ({n}) exceed the context ({cfg['n_ctx']})",
                               pc.EXIT_USAGE)
        if max(p) >= cfg["vocab_size"]:
            raise pc.PeerError(f"token id {max(p)} is outside the vocabulary ({cfg['vocab_size']})",
                               pc.EXIT_USAGE)

    # OpenBLAS (pthread build) and OpenMP read these when torch loads them.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    # The runtime's libraries load before 0_INITIAL, as the study imported its
    # framework before its first reading.
    try:
        import torch
    except ImportError:
        raise pc.PeerError("PyTorch is not installed for /usr/bin/python3 (Debian python3-torch); "
                           "install it with `make peers`", pc.EXIT_NOT_INSTALLED)
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.precision]
    impl = args.impl
    if impl == "auto":
        try:
            import transformers  # noqa: F401
            impl = "transformers"
        except ImportError:
            impl = "own"
    stages = pc.Stages()
    stages.mark(0)

    t0 = pc.now()
    with torch.inference_mode():
        if impl == "transformers":
            model = HFGPT2(torch, args.model, dtype)
        else:
            cfg, st = pc.open_checkpoint(args.model)
            model = OwnGPT2(torch, cfg, st, dtype)
            del st
        load_s = pc.now() - t0
        stages.mark(1)
        stages.mark(2)
        ids1, s1, ttft1 = model.generate(p1, n1)
        stages.mark(3, seconds=f"{s1:.6f}", tokens=len(ids1), ttft_s=f"{ttft1:.6f}")
        ids2, s2, ttft2 = model.generate(p2, n2)
        stages.mark(4, seconds=f"{s2:.6f}", tokens=len(ids2), ttft_s=f"{ttft2:.6f}")
    hwm = pc.proc_status_kb().get("VmHWM", 0) / 1024.0
    result = {
        "runtime": "pytorch",
        "version": f"torch {torch.__version__} ({'transformers' if impl == 'transformers' else 'built-in GPT-2'})",
        "precision": args.precision,
        "threads": args.threads,
        "load_s": round(load_s, 6),
        "convert_s": 0.0,
        "first": pc.run_result(p1, ids1, s1, ttft1),
        "second": pc.run_result(p2, ids2, s2, ttft2),
        "peak_rss_mb": round(hwm, 2),
    }
    stages.mark(5)
    result["stages"] = stages.records
    if args.json_out:
        pc.write_json_atomic(args.json_out, result)
    return 0


if __name__ == "__main__":
    pc.run_main(PROG, main)
