#!/usr/bin/python3
"""The PyTorch side of bench/bench_encoders.c: times the peer encoders
(qiao_peer.py) on exactly the inputs and weights qiao uses, in float32 under
torch.inference_mode(), when the C side asks, so that both sides are timed in
alternation and see the same load on a shared machine.

    /usr/bin/python3 bench/peer/bench_encoders_peer.py MODEL INPUTS [--threads N]
    .venv-peer/bin/python3 bench/peer/bench_encoders_peer.py MODEL INPUTS [--threads N] --engine ort-int8

--engine torch (default) runs the PyTorch modules; ort-f32 exports each case's
encoder to ONNX (torch.onnx.export, opset 17, the case's fixed shapes) and
runs it in ONNX Runtime with N intra-op threads (1 inter-op thread, all
graph optimizations); ort-int8 also passes the ONNX file through
onnxruntime.quantization.quantize_dynamic (weight_type QInt8, its defaults
otherwise: per-tensor weights, u8 activations quantized per call), the
standard dynamic int8 recipe. ORT needs the virtual environment that
scripts/install-deps.sh --peer makes (.venv-peer, onnxruntime and onnx from
PyPI over Debian's torch and numpy).

MODEL   the model file qiao wrote (qmod_save, F32), config in "qiao.config"
INPUTS  a .safetensors written by bench_encoders: metadata "bench.cases" is
        a JSON list of [modality, B]; case tensors are named
        "<modality>.b<B>.<field>" with the fields of models/embed.h's
        qmod_batch (text: ids, char_ids, tags, mask; image: patches;
        audio: mel, mask)

A line protocol on stdin / stdout, one reply line per command:
    (start)              -> "ready torch <version> <threads>" (ORT: "ready onnxruntime-<engine> <version> <threads>")
    calib <mod> <B>      -> "reps <n>": after 3 warm-up calls, the number of
                            calls (a power of two) that lasts >= 50 ms
    time <mod> <B> <n>   -> "t <seconds per call>" over n calls
    emb <path>           -> "ok": writes "<mod>.b<B>.emb" (B, D) float32 for
                            every case to path (safetensors)
    quit                 -> "rss <peak resident kB>", then exits
Anything wrong ends the process with a message on stderr (the C side then
reports the peer as failed).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qiao_peer  # noqa: E402


def case_args(mod, B, tensors):
    """The forward's arguments for one case, as torch tensors sharing the
    arrays read from the file."""
    p = f"{mod}.b{B}."
    t = {k[len(p):]: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items() if k.startswith(p)}
    if mod == "text":
        return (t["ids"], t["char_ids"], t["tags"], t["mask"])
    if mod == "image":
        return (t["patches"],)
    return (t["mel"], t["mask"])


def ort_fns(args, encoders, cases, inputs):
    """One ONNX Runtime session per case (the case's fixed shapes), f32 or
    dynamically quantized int8; returns the timed callables and the banner."""
    import tempfile

    import onnxruntime as ort

    tmp = tempfile.mkdtemp(prefix="qiao-ort-")
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    fns = {}
    for mod, B in cases:
        a = case_args(mod, B, inputs)
        names = {"text": ["ids", "char_ids", "tags", "mask"], "image": ["patches"], "audio": ["mel", "mask"]}[mod]
        path = os.path.join(tmp, f"{mod}.b{B}.onnx")
        with torch.no_grad():
            torch.onnx.export(encoders[mod], a, path, input_names=names, output_names=["emb"], opset_version=17,
                              do_constant_folding=True)
        if args.engine == "ort-int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            qpath = path.replace(".onnx", ".int8.onnx")
            quantize_dynamic(path, qpath, weight_type=QuantType.QInt8)
            path = qpath
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feed = {n: t.numpy() for n, t in zip(names, a)}
        fns[f"{mod} {B}"] = (lambda sess=sess, feed=feed: sess.run(None, feed)[0])
    import atexit
    import shutil

    atexit.register(shutil.rmtree, tmp, True)  # the sessions hold their graphs; the files are no longer needed
    return fns, f"onnxruntime-{args.engine} {ort.__version__} {args.threads}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engine", choices=["torch", "ort-f32", "ort-int8"], default="torch")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    weights, meta = qiao_peer.read_safetensors(args.model)
    config = json.loads(meta["qiao.config"])
    inputs, imeta = qiao_peer.read_safetensors(args.inputs)
    cases = [(m, int(b)) for m, b in json.loads(imeta["bench.cases"])]
    encoders = {m: qiao_peer.build(m, config, weights, torch.float32) for m in sorted({m for m, _ in cases})}
    fns = {}
    for mod, B in cases:
        enc, a = encoders[mod], case_args(mod, B, inputs)
        fns[f"{mod} {B}"] = (lambda enc=enc, a=a: enc(*a))
    banner = f"torch {torch.__version__} {torch.get_num_threads()}"
    if args.engine != "torch":
        fns, banner = ort_fns(args, encoders, cases, inputs)

    def embeddings():
        return [(f"{m}.b{b}.emb", np.asarray(fns[f"{m} {b}"]()).astype(np.float32)) for m, b in cases]

    qiao_peer.serve("bench_encoders_peer", banner, fns, {"emb": embeddings})

if __name__ == "__main__":
    main()
