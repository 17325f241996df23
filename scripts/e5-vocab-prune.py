#!/usr/bin/env python3
"""What pruning e5-small's vocabulary to the pieces Chinese and English text
use would save (issue 17, section 5): the estimate made before pruning was
built. The pruning itself is `qiao prune-vocab` (models/vocab/prune.h);
docs/benchmarks.md, "Vocabulary pruning, done", has what it gives.

    .venv-peer/bin/python3 scripts/e5-vocab-prune.py [--model build/e5/multilingual-e5-small.safetensors]
                                                     [--qiao build/bin/qiao] [--scenes 2000]

The word embeddings are 250,002 rows of 384 (82 % of the weights), one per
piece of XLM-R's multilingual SentencePiece model. Two ways to keep fewer:

  corpus   the pieces the repository's Chinese and English text uses: every
           "text" of datasets/intent/*/*.jsonl (CLINC150, BANKING77, xSID en
           and zh, CrossWOZ, the e-commerce set; all splits), and the captions,
           questions and answers of a shapes world (`qiao dataset shapes`,
           --scenes train scenes, both languages), each tokenized as e5 reads
           it, after "query: "; plus "passage: ". A lower bound: any text
           outside these corpora may need a piece it dropped.
  script   every piece whose characters (SentencePiece's word-start mark
           aside) are all English or Chinese: ASCII, general punctuation and
           currency signs; CJK ideographs (the unified blocks, extensions and
           compatibility ideographs), CJK symbols and punctuation, radicals,
           Bopomofo, full- and half-width forms. Lossless for any text made of
           these characters: SentencePiece only ever picks pieces that are
           substrings of the (normalized) text, so every piece such a text
           can use is kept and its tokens do not change. "+ Latin-1" adds
           U+00A0..U+00FF (café, naïve), and with it most pieces of the other
           Latin-script languages.
Each keeps the five special tokens (<s> <pad> </s> <unk> <mask>). The
tokenizer is the one in the model file (tokenizer.spm), through PyPI's
SentencePiece; qiao's (Debian's 0.1.97) differs from it only in rare ties.

`qiao prune-vocab` rebuilds the SentencePiece model with the kept pieces
(renumbered, in their order) and keeps every single Chinese or English
character besides, so such text is segmented again rather than lost to
<unk>; text in other scripts may lose pieces, which is the trade.
"""
import argparse
import glob
import json
import os
import subprocess
import tempfile

import sentencepiece as spm
from safetensors import safe_open

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
N_SPECIAL = 5     # <s> <pad> </s> <unk> <mask>: the rows outside SentencePiece's pieces
SPM_CONTROL = 3   # SentencePiece's <unk> <s> </s> come first in its model

ENGLISH = [(0x20, 0x7E), (0x2000, 0x206F), (0x20A0, 0x20CF)]
LATIN1 = [(0xA0, 0xFF)]
CHINESE = [(0x2E80, 0x2FDF), (0x3000, 0x303F), (0x3100, 0x312F), (0x31A0, 0x31BF), (0x3400, 0x4DBF),
           (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F), (0xFF00, 0xFFEF), (0x20000, 0x2FA1F)]


def in_ranges(ch, ranges):
    c = ord(ch)
    return any(lo <= c <= hi for lo, hi in ranges)


def script_piece(piece, ranges):
    return all(in_ranges(ch, ranges) for ch in piece.replace("\u2581", ""))


def intent_texts():
    out = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "datasets", "intent", "*", "*.jsonl"))):
        corpus = os.path.basename(os.path.dirname(path))
        out.setdefault(corpus, []).extend(json.loads(line)["text"] for line in open(path, encoding="utf-8"))
    return out


def shapes_texts(qiao, scenes):
    if not os.path.exists(qiao):
        print(f"(no {qiao}: the shapes world's captions are left out)")
        return []
    with tempfile.TemporaryDirectory(prefix="qiao-prune-") as tmp:
        subprocess.run([qiao, "dataset", "shapes", "--n", str(scenes), "--seed", "1", "--out", tmp, "--split",
                        "train", "--jobs", "1"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out = []
        for line in open(os.path.join(tmp, "manifest.jsonl"), encoding="utf-8"):
            scene = json.loads(line)
            for caps in scene.get("captions", {}).values():
                out += caps
            for qa in scene.get("qa", []):
                out += [qa["question"], qa["answer"]]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "build", "e5", "multilingual-e5-small.safetensors"))
    ap.add_argument("--qiao", default=os.path.join(ROOT, "build", "bin", "qiao"))
    ap.add_argument("--scenes", type=int, default=2000)
    args = ap.parse_args()

    with safe_open(args.model, "numpy") as f:
        meta = f.metadata()
        proto = f.get_tensor("tokenizer.spm").tobytes()
        emb_dtype = f.get_slice("text.piece_emb.weight").get_dtype()
    cfg = json.loads(meta["qiao.config"])
    rows, width = cfg["text"]["vocab"], cfg["text"]["width"]
    sp = spm.SentencePieceProcessor(model_proto=proto)
    n_pieces = sp.get_piece_size() - SPM_CONTROL
    assert n_pieces + N_SPECIAL == rows, (n_pieces, rows)

    corpora = intent_texts()
    corpora["shapes captions and QA"] = shapes_texts(args.qiao, args.scenes)
    used, tokens, unk = set(), 0, 0
    print(f"{args.model}: {rows:,} rows x {width}, word embeddings stored {emb_dtype}")
    print(f"{'corpus':<24} {'texts':>8} {'tokens':>9} {'pieces':>8}")
    for name, texts in corpora.items():
        ids = sp.encode(["query: " + t for t in texts])
        mine = {i for seq in ids for i in seq}
        used |= mine
        tokens += sum(map(len, ids))
        unk += sum(seq.count(sp.unk_id()) for seq in ids)
        print(f"{name:<24} {len(texts):>8,} {sum(map(len, ids)):>9,} {len(mine):>8,}")
    used |= set(sp.encode("passage: "))
    used = {i for i in used if i >= SPM_CONTROL}
    pieces = range(SPM_CONTROL, sp.get_piece_size())
    script = {i for i in pieces if script_piece(sp.id_to_piece(i), ENGLISH + CHINESE)}
    latin1 = {i for i in pieces if script_piece(sp.id_to_piece(i), ENGLISH + CHINESE + LATIN1)}
    outside = used - script
    print(f"all: {tokens:,} tokens ({unk:,} <unk>), {len(used):,} distinct pieces; "
          f"{len(outside):,} of them outside the script sets")
    if outside:
        print("  e.g. " + " ".join(sorted(sp.id_to_piece(i) for i in outside)[:20]))

    file_bytes = os.path.getsize(args.model)
    fsize = 2 if emb_dtype in ("float16", "F16", "bfloat16", "BF16") else 4
    print(f"\n{'keep':<18} {'rows':>9} {'share':>6} {'emb f16 MiB':>12} {'emb f32 MiB':>12} {'file MiB':>9}")
    mib = 1 / (1024 * 1024)
    for name, keep in [("all (now)", rows - N_SPECIAL), ("corpus", len(used)), ("script", len(script)),
                       ("corpus + script", len(used | script)), ("script + Latin-1", len(latin1))]:
        r = keep + N_SPECIAL
        print(f"{name:<18} {r:>9,} {r / rows:>6.1%} {r * width * 2 * mib:>12.1f} {r * width * 4 * mib:>12.1f} "
              f"{(file_bytes - (rows - r) * width * fsize) * mib:>9.1f}")
    print(f"\nfile MiB: this model file ({file_bytes * mib:.1f} MiB) with the dropped rows removed; qiao holds "
          f"the word embeddings in f32 in memory whatever the file stores, so qiao_model_memory falls by the f32 "
          f"column's difference.")


if __name__ == "__main__":
    main()
