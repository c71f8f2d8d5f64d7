#!/usr/bin/python3
"""Export a Hugging Face GPT-2 checkpoint to ONNX the way Keras builds GPT-2.

Used by ort_gpt2.js (ONNX Runtime peer of `miser compare`). The graph is made
with onnx.helper (opset 17, no torch): attention projections are Einsums with
constant kernels exactly as Keras' EinsumDense expresses them (the pattern of
the OpenVINO constant-duplication study):
  Q/K/V   abc,cde->abde  kernel [C, H, D]   (+ bias [H, D])
  scores  aecd,abcd->acbe                    (key, scaled query -> [B, H, S, T])
  combine acbe,aecd->abcd                    (probs, value -> [B, S, H, D])
  output  abcd,cde->abe  kernel [H, D, C]   (+ bias [C])
and the MLP as Dense (MatMul + Add). Inputs: input_ids and position_ids
[1, S] int64, past_key_N / past_value_N [1, P, H, D] (P may be 0); outputs:
logits [1, V] of the last position (lm_head tied to wte through Gemm transB,
so wte is stored once) and present_key_N / present_value_N [1, P+S, H, D].

Weights are stored as external data in one file beside the model
(model.onnx.data, each tensor at a 4096-byte aligned offset) and streamed from
the checkpoint's mmap, so the export never holds the whole model in memory.
The output directory is written under a temporary name and renamed into place.

  export_onnx.py --model DIR --out OUTDIR        (OUTDIR/model.onnx + model.onnx.data)
"""
import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_common as pc  # noqa: E402

import numpy as np  # noqa: E402

PROG = "export_onnx"
OPSET = 17
ALIGN = 4096


def build(onnx, cfg, st, data_path):
    from onnx import TensorProto, helper

    C, H, L, V = cfg["n_embd"], cfg["n_head"], cfg["n_layer"], cfg["vocab_size"]
    D = C // H
    nodes, inits = [], []
    data = open(data_path, "wb")

    def init(name, arr):
        """An initializer whose bytes go to the external data file."""
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        off = data.tell()
        pad = (-off) % ALIGN
        if pad:
            data.write(b"\0" * pad)
            off += pad
        arr.tofile(data)
        t = TensorProto()
        t.name = name
        t.data_type = TensorProto.FLOAT
        t.dims.extend(arr.shape)
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", os.path.basename(data_path)), ("offset", str(off)),
                     ("length", str(arr.nbytes))):
            e = t.external_data.add()
            e.key, e.value = k, v
        inits.append(t)
        return name

    def const(name, value, dtype=np.float32):
        arr = np.asarray(value, dtype=dtype)
        inits.append(helper.make_tensor(name, helper.np_dtype_to_tensor_dtype(arr.dtype)
                                        if hasattr(helper, "np_dtype_to_tensor_dtype")
                                        else onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[arr.dtype],
                                        arr.shape, arr.flatten().tolist()))
        return name

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    # constants
    const("scale", 1.0 / np.sqrt(D))
    const("neg", np.finfo(np.float32).min)
    const("half", 0.5)
    const("one", 1.0)
    const("gelu_c", np.sqrt(2.0 / np.pi))
    const("gelu_k", 0.044715)
    const("i1", [1], np.int64)
    const("i2", [2], np.int64)
    const("last", -1, np.int64)

    # embeddings
    init("wte", st.f32("wte.weight"))
    init("wpe", st.f32("wpe.weight"))
    x = node("Add", [node("Gather", ["wte", "input_ids"], "tok_emb"),
                     node("Gather", ["wpe", "position_ids"], "pos_emb")], "emb")

    # causal mask [S, T]: query i (absolute P+i) sees key j when j <= i + P
    node("Shape", ["input_ids"], "ids_shape")
    node("Slice", ["ids_shape", "i1", "i2"], "S1")                 # [S]
    node("Shape", ["past_key_0"], "past_shape")
    node("Slice", ["past_shape", "i1", "i2"], "P1")                # [P]
    node("Add", ["S1", "P1"], "T1")                                 # [T]
    node("Concat", ["S1", "T1"], "mask_shape", axis=0)
    nodes.append(helper.make_node("ConstantOfShape", ["mask_shape"], ["ones"], name="ones",
                                  value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])))
    node("Squeeze", ["P1"], "P0")                                   # scalar P
    node("Trilu", ["ones", "P0"], "tril", upper=0)
    node("Cast", ["tril"], "mask", to=TensorProto.BOOL)

    def layer_norm(inp, g, b, name):
        return node("LayerNormalization", [inp, g, b], name, axis=-1, epsilon=cfg["eps"])

    for i in range(L):
        p = f"h.{i}."
        n = f"l{i}_"
        w_attn = st.f32(p + "attn.c_attn.weight")     # [C, 3C], columns Q|K|V, each h*D+d
        b_attn = st.f32(p + "attn.c_attn.bias")
        for j, part in enumerate("qkv"):
            init(n + "w" + part, w_attn[:, j * C:(j + 1) * C].reshape(C, H, D))
            init(n + "b" + part, b_attn[j * C:(j + 1) * C].reshape(H, D))
        init(n + "wo", st.f32(p + "attn.c_proj.weight").reshape(H, D, C))
        init(n + "bo", st.f32(p + "attn.c_proj.bias"))
        for k in ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight",
                  "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"):
            init(n + k, st.f32(p + k))

        h = layer_norm(x, n + "ln_1.weight", n + "ln_1.bias", n + "ln1")
        proj = {}
        for part in "qkv":
            e = node("Einsum", [h, n + "w" + part], n + part + "_e", equation="abc,cde->abde")
            proj[part] = node("Add", [e, n + "b" + part], n + part)          # [1, S, H, D]
        q = node("Mul", [proj["q"], "scale"], n + "q_scaled")
        k = node("Concat", [f"past_key_{i}", proj["k"]], f"present_key_{i}", axis=1)
        v = node("Concat", [f"past_value_{i}", proj["v"]], f"present_value_{i}", axis=1)
        s = node("Einsum", [k, q], n + "scores", equation="aecd,abcd->acbe")  # [1, H, S, T]
        s = node("Where", ["mask", s, "neg"], n + "masked")
        a = node("Softmax", [s], n + "probs", axis=-1)
        c = node("Einsum", [a, v], n + "ctx", equation="acbe,aecd->abcd")     # [1, S, H, D]
        o = node("Einsum", [c, n + "wo"], n + "o_e", equation="abcd,cde->abe")
        o = node("Add", [o, n + "bo"], n + "attn_out")
        x = node("Add", [x, o], n + "res1")

        h = layer_norm(x, n + "ln_2.weight", n + "ln_2.bias", n + "ln2")
        f = node("Add", [node("MatMul", [h, n + "mlp.c_fc.weight"], n + "fc_mm"),
                         n + "mlp.c_fc.bias"], n + "fc")
        # GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = node("Mul", [node("Mul", [f, f], n + "g_sq"), f], n + "g_cube")
        inner = node("Add", [f, node("Mul", [cube, "gelu_k"], n + "g_kc")], n + "g_in")
        t = node("Tanh", [node("Mul", [inner, "gelu_c"], n + "g_sc")], n + "g_tanh")
        g = node("Mul", [node("Mul", [f, "half"], n + "g_half"),
                         node("Add", [t, "one"], n + "g_1p")], n + "gelu")
        m = node("Add", [node("MatMul", [g, n + "mlp.c_proj.weight"], n + "proj_mm"),
                         n + "mlp.c_proj.bias"], n + "mlp_out")
        x = node("Add", [x, m], n + "res2")

    init("ln_f.weight", st.f32("ln_f.weight"))
    init("ln_f.bias", st.f32("ln_f.bias"))
    x = layer_norm(x, "ln_f.weight", "ln_f.bias", "ln_f")
    last = node("Gather", [x, "last"], "h_last", axis=1)                 # [1, C]
    nodes.append(helper.make_node("Gemm", [last, "wte"], ["logits"], name="lm_head", transB=1))
    data.flush()
    os.fsync(data.fileno())
    data.close()

    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    inputs = [helper.make_tensor_value_info("input_ids", i64, [1, "seq"]),
              helper.make_tensor_value_info("position_ids", i64, [1, "seq"])]
    outputs = [helper.make_tensor_value_info("logits", f32, [1, V])]
    for i in range(L):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_{kind}_{i}", f32, [1, "past", H, D]))
            outputs.append(helper.make_tensor_value_info(f"present_{kind}_{i}", f32, [1, "total", H, D]))
    graph = helper.make_graph(nodes, "gpt2_keras_einsum", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="miser export_onnx", producer_version=str(pc.CONVERTER_VERSION["onnx"]))
    model.ir_version = 8
    return model


def export(model_dir, out_dir):
    try:
        import onnx
    except ImportError:
        raise pc.PeerError("the onnx Python package is not installed for /usr/bin/python3 "
                           "(Debian python3-onnx); install it with `make peers`", pc.EXIT_NOT_INSTALLED)
    cfg, st = pc.open_checkpoint(model_dir)
    out_dir = out_dir.rstrip("/")
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.tmp.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        model = build(onnx, cfg, st, os.path.join(tmp, "model.onnx.data"))
        path = os.path.join(tmp, "model.onnx")
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        onnx.checker.check_model(path)  # by path, so that it finds the external data
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not os.path.exists(os.path.join(out_dir, "model.onnx")):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same export first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def main():
    ap = argparse.ArgumentParser(prog=PROG, description="Export a HF GPT-2 checkpoint to ONNX (Keras-style einsums)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True, help="output directory (model.onnx + model.onnx.data)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    export(args.model, args.out)
    print(f"{PROG}: exported {args.model} to {args.out} in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    pc.run_main(PROG, main)
