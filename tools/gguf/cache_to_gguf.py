#!/usr/bin/python3
"""Write a GGUF file holding the blocks of a miser converted-weights cache
(`--precision q4_0|q4_k|q8_0`), for tests/test_quant_convert.c: llama.cpp
and numpy (tools/gguf/ref_gguf.py) then run exactly the blocks miser runs.

  cache_to_gguf.py IN.f32.gguf CACHE_DIR OUT.gguf

IN.f32.gguf is the same checkpoint converted to f32 by
tools/peers/to_gguf.py (gpt2) or to_gguf_llama.py (llama): its metadata and
tokenizer are copied, and every tensor the cache stores in a block type
(Q8_0, Q4_0, Q4_K, Q6_K) replaces the f32 one byte for byte. The cache's
block tensors are already GGUF's layout: N rows of K, blocks along K (GPT-2's
Conv1D weights are stored transposed, listed in "miser_transposed"). Llama's
attn_q / attn_k rows are permuted per head as convert_hf_to_gguf does
(whole rows move, so the blocks are unchanged). Other cache tensors (f32 /
f16 norms, biases, fallbacks) keep the f32 file's values.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "peers"))
from to_gguf import import_gguf  # noqa: E402

import numpy as np  # noqa: E402

gguf = import_gguf()
Q = gguf.GGMLQuantizationType
BLOCKS = {"Q8_0": Q.Q8_0, "Q4_0": Q.Q4_0, "Q4_K": Q.Q4_K, "Q6_K": Q.Q6_K}

GPT2 = {"token_embd.weight": "wte.weight", "position_embd.weight": "wpe.weight", "output.weight": "lm_head.weight",
        "attn_qkv.weight": "h.%d.attn.c_attn.weight", "attn_output.weight": "h.%d.attn.c_proj.weight",
        "ffn_up.weight": "h.%d.mlp.c_fc.weight", "ffn_down.weight": "h.%d.mlp.c_proj.weight"}
LLAMA = {"token_embd.weight": "model.embed_tokens.weight", "output.weight": "lm_head.weight",
         "attn_q.weight": "model.layers.%d.self_attn.q_proj.weight",
         "attn_k.weight": "model.layers.%d.self_attn.k_proj.weight",
         "attn_v.weight": "model.layers.%d.self_attn.v_proj.weight",
         "attn_output.weight": "model.layers.%d.self_attn.o_proj.weight",
         "ffn_gate.weight": "model.layers.%d.mlp.gate_proj.weight",
         "ffn_up.weight": "model.layers.%d.mlp.up_proj.weight",
         "ffn_down.weight": "model.layers.%d.mlp.down_proj.weight"}


def hf_name(arch, name):
    table = GPT2 if arch == "gpt2" else LLAMA
    if name.startswith("blk."):
        _, n, rest = name.split(".", 2)
        f = table.get(rest)
        return f % int(n) if f else None
    return table.get(name)


def read_cache(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        hdr = json.loads(f.read(n))
        data = f.read()
    return hdr, data


def permute_rows(rows, n_head):
    """convert_hf_to_gguf's permute on whole rows (rows: [N, bytes])"""
    n = rows.shape[0]
    return rows.reshape(n_head, 2, n // n_head // 2, rows.shape[1]).swapaxes(1, 2).reshape(rows.shape)


def main():
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    src, cache_dir, dst = sys.argv[1:]
    hdr, blob = read_cache(os.path.join(cache_dir, "model.safetensors"))
    rd = gguf.GGUFReader(src)
    arch = bytes(rd.fields["general.architecture"].parts[-1]).decode()
    if arch not in ("gpt2", "llama"):
        raise SystemExit(f"cache_to_gguf: {src}: architecture {arch} is not gpt2 or llama")
    heads = int(rd.fields[f"{arch}.attention.head_count"].parts[-1][0])
    kv = int(rd.fields[f"{arch}.attention.head_count_kv"].parts[-1][0]) if f"{arch}.attention.head_count_kv" in rd.fields else heads
    w = gguf.GGUFWriter(dst + ".tmp", arch)
    for name, f in rd.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.alignment"):
            continue
        vt = f.types[0]
        sub = f.types[1] if vt == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(name, f.contents(), vt, sub_type=sub)
    replaced = 0
    for t in rd.tensors:
        shape = [int(x) for x in reversed(t.shape)]  # numpy order: [N, K]
        hn = hf_name(arch, t.name)
        e = hdr.get(hn) if hn else None
        if e and e["dtype"] in BLOCKS:
            qt = BLOCKS[e["dtype"]]
            if list(e["shape"]) != shape:
                raise SystemExit(f"cache_to_gguf: {hn}: cache shape {e['shape']} is not GGUF's {shape}")
            b0, b1 = e["data_offsets"]
            rows = np.frombuffer(blob[b0:b1], dtype=np.uint8).reshape(shape[0], -1)
            if arch == "llama" and t.name.endswith(("attn_q.weight", "attn_k.weight")):
                rows = permute_rows(rows, heads if t.name.endswith("attn_q.weight") else kv)
            w.add_tensor(t.name, np.ascontiguousarray(rows), raw_dtype=qt)
            replaced += 1
        else:
            a = np.asarray(t.data, dtype=np.float32).reshape(shape)
            w.add_tensor(t.name, a)
    if not replaced:
        raise SystemExit(f"cache_to_gguf: {cache_dir}: no block-quantised tensor to carry over")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(dst + ".tmp", dst)


if __name__ == "__main__":
    main()
