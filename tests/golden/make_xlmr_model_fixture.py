#!/usr/bin/env python3
"""Writes the end-to-end parity fixture of a converted XLM-RoBERTa (issue 17):
a tiny random XLMRobertaModel saved as a Hugging Face directory, converted
by scripts/convert-hf.py, and transformers' own embeddings of real texts.

Regenerate (transformers, sentencepiece and safetensors in .venv-peer; CI
reads the committed files):

    .venv-peer/bin/python3 tests/golden/make_xlmr_model_fixture.py tests/data/xlmr

writes tests/data/xlmr/model.safetensors (the converted model, f32: what
qiao_model_load reads) and tests/data/xlmr/expected.safetensors:
    texts (U8, NUL-separated), lengths (I32), ids (I32): XLMRobertaTokenizer's,
    emb (F32 (n, 32)): the masked mean of last_hidden_state, L2-normalized
        (e5's recipe), computed in float64.
The model is built offline from transformers' config class (no hub) with
the SentencePiece model of tests/data/tokenizer/spm-kind.safetensors as its
sentencepiece.bpe.model, weights drawn O(1) so every layer matters, and a
sentence-transformers 1_Pooling/config.json asking for the mean, which the
converter reads. LayerNorm eps is XLM-R's 1e-5 (the golden trunk test
covers BERT's 1e-12).
"""
import glob
import json
import math
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizer

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
    return out + ["x" * 200, "你好" * 80]  # longer than the positions: truncated, </s> kept


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: .venv-peer/bin/python3 tests/golden/make_xlmr_model_fixture.py OUT_DIR")
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(SEED)
    spm_tensors, _ = read_safetensors(os.path.join(ROOT, "tests", "data", "tokenizer", "spm-kind.safetensors"))
    with tempfile.TemporaryDirectory() as hf:
        open(os.path.join(hf, "sentencepiece.bpe.model"), "wb").write(spm_tensors["tokenizer.spm"].tobytes())
        tok = XLMRobertaTokenizer(vocab_file=os.path.join(hf, "sentencepiece.bpe.model"))
        cfg = XLMRobertaConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64, max_position_embeddings=MAX_POS + 2, type_vocab_size=1,
                               layer_norm_eps=1e-5, pad_token_id=1, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0, attn_implementation="eager")
        model = XLMRobertaModel(cfg, add_pooling_layer=False)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() == 2:
                    p.copy_(torch.randn(p.shape) / math.sqrt(p.shape[1]))
                elif "LayerNorm.weight" in name:
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape))
                else:
                    p.copy_(0.1 * torch.randn(p.shape))
        model.eval().save_pretrained(hf, safe_serialization=True)
        os.makedirs(os.path.join(hf, "1_Pooling"))
        json.dump({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True},
                  open(os.path.join(hf, "1_Pooling", "config.json"), "w"))
        model_out = os.path.join(out_dir, "model.safetensors")
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert-hf.py"), hf, model_out, "--name",
                        "xlmr-tiny-random"], check=True)
    ts = list(dict.fromkeys(texts()))
    model = model.double()
    ids, lengths, embs = [], [], []
    with torch.no_grad():
        for t in ts:
            enc = tok(t, split_special_tokens=True, truncation=True, max_length=MAX_POS)
            x = torch.tensor([enc["input_ids"]])
            h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0]
            e = torch.nn.functional.normalize(h.mean(0), dim=-1)
            ids += enc["input_ids"]
            lengths.append(len(enc["input_ids"]))
            embs.append(e.float().numpy())
    blob = b"".join(t.encode("utf-8") + b"\0" for t in ts)
    write_safetensors(os.path.join(out_dir, "expected.safetensors"),
                      [("texts", np.frombuffer(blob, dtype=np.uint8)), ("lengths", np.array(lengths, dtype=np.int32)),
                       ("ids", np.array(ids, dtype=np.int32)), ("emb", np.stack(embs))],
                      {"generator": "tests/golden/make_xlmr_model_fixture.py",
                       "transformers": __import__("transformers").__version__, "max_tokens": str(MAX_POS)})
    print(f"wrote {out_dir}: {len(ts)} texts, model {os.path.getsize(model_out):,} bytes")


if __name__ == "__main__":
    main()
