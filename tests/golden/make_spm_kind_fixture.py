#!/usr/bin/env python3
"""Writes the fixture of the "spm" tokenizer kind (issue 17): an imported
model's SentencePiece model on the raw text, XLM-RoBERTa's ids around it.

Regenerate (needs transformers, sentencepiece and protobuf, which
scripts/install-deps.sh puts in .venv-peer; CI reads the committed file):

    .venv-peer/bin/python3 tests/golden/make_spm_kind_fixture.py tests/data/tokenizer/spm-kind.safetensors

A unigram SentencePiece model (3,000 pieces, nmt_nfkc normalization as
XLM-R's own) is trained on the repository's intent corpora (Chinese and
English), wrapped as qiao stores an imported tokenizer (tensor
"tokenizer.spm", metadata "tokenizer.config" with kind "spm" and fairseq's
ids: <s> 0, <pad> 1, </s> 2, <unk> 3, pieces shifted by 1, <mask> last),
and transformers' XLMRobertaTokenizer on that same model gives the
expected ids of every text: a sample of every corpus and hand-written edge
cases. Special-token strings typed in a text are text to qiao (no user
text can inject a <mask>), so the reference runs with
split_special_tokens=True. The file is both the tokenizer and its test data:
    fixture.texts (U8: the texts, each followed by a NUL byte),
    fixture.lengths (I32 (n)), fixture.ids (I32 (sum of lengths)),
    fixture.scores (F32 (pieces)): each SentencePiece piece's score, with
        which the test tells a tie from a difference: SentencePiece 0.1.97
        (Debian 12, what qiao links) and 0.2.x (PyPI, what transformers
        runs) break exact ties in the unigram lattice differently ("999"
        is "99" + "9" or "9" + "99", the same score).
"""
import glob
import json
import os
import random
import sys
import tempfile

import numpy as np
import sentencepiece as spm
import transformers
from transformers import XLMRobertaTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "bench", "peer"))
from qiao_peer import write_safetensors  # noqa: E402

SEED = 20261207
PER_CORPUS = 300
EDGE = ["", " ", "   \t\n ", "Hello, World!", "ＡＢＣ　全角　１２３", "naïve café résumé", "😀 emoji 👍🏽 mixed 中文",
        "你好，我想找一家经济型的酒店。", "can't won't I'M", "a" * 300, "x\u0301\u0302y", "tab\tand\nnewline",
        "数字123和English混合", "\u200bzero\u200bwidth", "ｷｬｯﾁ", "℡㍿№", "𠀀𠀁 (astral)", "<s> </s> <mask> <pad>"]


def corpus_texts():
    rng = random.Random(SEED)
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "datasets", "intent", "*", "*.jsonl"))):
        texts = [json.loads(line)["text"] for line in open(path, encoding="utf-8")]
        out += rng.sample(texts, min(PER_CORPUS, len(texts)))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: .venv-peer/bin/python3 tests/golden/make_spm_kind_fixture.py OUT.safetensors")
    all_texts = []
    for path in sorted(glob.glob(os.path.join(ROOT, "datasets", "intent", "*", "*.jsonl"))):
        all_texts += [json.loads(line)["text"] for line in open(path, encoding="utf-8")]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "w", encoding="utf-8") as f:
            f.write("\n".join(t.replace("\n", " ") for t in all_texts) + "\n")
        spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(tmp, "m"), vocab_size=3000,
                                       model_type="unigram", character_coverage=0.9995, num_threads=1,
                                       normalization_rule_name="nmt_nfkc", minloglevel=2)
        model = open(os.path.join(tmp, "m.model"), "rb").read()
        tok = XLMRobertaTokenizer(vocab_file=os.path.join(tmp, "m.model"))
        sp = spm.SentencePieceProcessor(model_file=os.path.join(tmp, "m.model"))
        n_pieces = sp.get_piece_size()
        scores = np.array([sp.get_score(i) for i in range(n_pieces)], dtype=np.float32)
    texts = list(dict.fromkeys(corpus_texts() + EDGE))
    ids, lengths = [], []
    for t in texts:
        x = tok(t, split_special_tokens=True)["input_ids"] if t.strip() else []  # qiao: no text, no tokens
        ids += x
        lengths.append(len(x))
    vocab = n_pieces + 2  # fairseq's <pad> before the pieces, <mask> after
    assert tok.vocab_size == vocab and tok.mask_token_id == vocab - 1, (tok.vocab_size, tok.mask_token_id)
    config = {"version": 1, "kind": "spm", "vocab_size": vocab, "id_offset": 1, "bos": 0, "pad": 1, "eos": 2,
              "unk": 3, "mask": vocab - 1, "add_bos": True, "add_eos": True}
    blob = b"".join(t.encode("utf-8") + b"\0" for t in texts)
    tensors = [("tokenizer.spm", np.frombuffer(model, dtype=np.uint8)),
               ("fixture.texts", np.frombuffer(blob, dtype=np.uint8)),
               ("fixture.lengths", np.array(lengths, dtype=np.int32)), ("fixture.ids", np.array(ids, dtype=np.int32)),
               ("fixture.scores", scores)]
    meta = {"tokenizer.config": json.dumps(config), "generator": "tests/golden/make_spm_kind_fixture.py",
            "transformers": transformers.__version__, "sentencepiece": spm.__version__, "texts": str(len(texts))}
    write_safetensors(sys.argv[1], tensors, meta)
    unk = sum(1 for i in ids if i == 3)
    print(f"wrote {sys.argv[1]}: {len(texts)} texts, {len(ids)} ids ({unk} <unk>), vocab {vocab}, "
          f"{os.path.getsize(sys.argv[1])} bytes")


if __name__ == "__main__":
    main()
