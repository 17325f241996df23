#!/usr/bin/env python3
"""Writes the end-to-end parity fixtures of converted Hugging Face models
(issue 17): a tiny random model of each family saved as a Hugging Face
directory, converted by scripts/convert-hf.py, and transformers' own
embeddings of real texts.

Regenerate (transformers, sentencepiece and safetensors in .venv-peer; CI
reads the committed files):

    .venv-peer/bin/python3 tests/golden/make_hf_model_fixture.py tests/data/hf

writes, per family, tests/data/hf/<family>/model.safetensors (the converted
model: what qiao_model_load reads) and expected.safetensors:
    texts (U8, NUL-separated), lengths (I32), ids (I32): transformers'
        tokenizer's, truncated to the model's 64 positions,
    emb (F32 (n, width)): the pooled last_hidden_state, L2-normalized,
        computed in float64.
Models are built offline from transformers' config classes (no hub),
weights drawn O(1) so every layer matters:
    xlmr  XLMRobertaModel, width 32, LayerNorm eps 1e-5 (XLM-R's), the
          SentencePiece model of tests/data/tokenizer/spm-kind.safetensors
          as its sentencepiece.bpe.model, and a sentence-transformers
          1_Pooling/config.json asking for the mean (e5's recipe), which the
          converter reads; stored f32.
    bert  BertModel, width 16, eps 1e-12, bert-base-chinese's vocab.txt
          (tests/data/wordpiece/) lowercasing, no pooling file: the
          converter's default for BERT, the [CLS] token (bge's recipe);
          stored f16, its weights rounded to f16 before transformers runs,
          so both sides compute with the same values.
"""
import glob
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import BertConfig, BertModel, BertTokenizer, XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "peer"))
from qiao_peer import read_safetensors, write_safetensors  # noqa: E402

SEED = 20261208
N_PER_CORPUS = 40
MAX_POS = 64


def texts():
    rng = random.Random(SEED)
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "datasets", "intent", "*", "test.jsonl"))):
        t = [json.loads(line)["text"] for line in open(path, encoding="utf-8")]
        out += rng.sample(t, min(N_PER_CORPUS, len(t)))
    return out + ["x" * 200, "你好" * 80]  # longer than the positions: truncated, the end token kept


def randomize(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape) / math.sqrt(p.shape[1]))
            elif "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape))
            else:
                p.copy_(0.1 * torch.randn(p.shape))


def family(name, hf):
    """(model, tokenizer, pooling, dtype) saved into the directory hf."""
    common = dict(num_hidden_layers=2, max_position_embeddings=MAX_POS, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0, attn_implementation="eager")
    if name == "xlmr":
        spm_tensors, _ = read_safetensors(os.path.join(ROOT, "tests", "data", "tokenizer", "spm-kind.safetensors"))
        open(os.path.join(hf, "sentencepiece.bpe.model"), "wb").write(spm_tensors["tokenizer.spm"].tobytes())
        tok = XLMRobertaTokenizer(vocab_file=os.path.join(hf, "sentencepiece.bpe.model"))
        common["max_position_embeddings"] = MAX_POS + 2  # ids start after the padding index
        cfg = XLMRobertaConfig(vocab_size=tok.vocab_size, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                               type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, **common)
        model = XLMRobertaModel(cfg, add_pooling_layer=False)
        randomize(model)
        os.makedirs(os.path.join(hf, "1_Pooling"))
        json.dump({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True},
                  open(os.path.join(hf, "1_Pooling", "config.json"), "w"))
        return model, tok, "mean", "f32"
    shutil.copy(os.path.join(ROOT, "tests", "data", "wordpiece", "vocab.txt"), os.path.join(hf, "vocab.txt"))
    json.dump({"do_lower_case": True, "tokenize_chinese_chars": True, "strip_accents": None},
              open(os.path.join(hf, "tokenizer_config.json"), "w"))
    tok = BertTokenizer(vocab_file=os.path.join(hf, "vocab.txt"), do_lower_case=True)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                     type_vocab_size=2, layer_norm_eps=1e-12, **common)
    model = BertModel(cfg, add_pooling_layer=False)
    randomize(model)
    with torch.no_grad():  # the values an f16 file holds
        for p in model.parameters():
            p.copy_(p.half().float())
    return model, tok, "first", "f16"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: .venv-peer/bin/python3 tests/golden/make_hf_model_fixture.py OUT_DIR")
    torch.manual_seed(SEED)
    ts = list(dict.fromkeys(texts()))
    for name in ("xlmr", "bert"):
        out_dir = os.path.join(sys.argv[1], name)
        os.makedirs(out_dir, exist_ok=True)
        model_out = os.path.join(out_dir, "model.safetensors")
        with tempfile.TemporaryDirectory() as hf:
            model, tok, pool, dtype = family(name, hf)
            model.eval().save_pretrained(hf, safe_serialization=True)
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert-hf.py"), hf, model_out, "--name",
                            f"{name}-tiny-random", "--dtype", dtype], check=True)
        model = model.double()
        ids, lengths, embs = [], [], []
        with torch.no_grad():
            for t in ts:
                enc = tok(t, split_special_tokens=True, truncation=True, max_length=MAX_POS)
                x = torch.tensor([enc["input_ids"]])
                h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0]
                e = torch.nn.functional.normalize(h.mean(0) if pool == "mean" else h[0], dim=-1)
                ids += enc["input_ids"]
                lengths.append(len(enc["input_ids"]))
                embs.append(e.float().numpy())
        blob = b"".join(t.encode("utf-8") + b"\0" for t in ts)
        write_safetensors(os.path.join(out_dir, "expected.safetensors"),
                          [("texts", np.frombuffer(blob, dtype=np.uint8)),
                           ("lengths", np.array(lengths, dtype=np.int32)), ("ids", np.array(ids, dtype=np.int32)),
                           ("emb", np.stack(embs))],
                          {"generator": "tests/golden/make_hf_model_fixture.py",
                           "transformers": __import__("transformers").__version__, "max_tokens": str(MAX_POS),
                           "pool": pool})
        print(f"wrote {out_dir}: {len(ts)} texts, model {os.path.getsize(model_out):,} bytes ({dtype})")


if __name__ == "__main__":
    main()
