#!/usr/bin/env python3
"""Writes tests/data/wordpiece/fixture.bin: the ids transformers' slow
BertTokenizer gives, which tests/unit/test_wordpiece.c requires of
tokenizers/wordpiece.c, and a report of where BertTokenizerFast disagrees.

    build/bin/qiao dataset shapes --n 200 --seed 5 --split test --out /tmp/wp-shapes
    .venv-peer/bin/python3 tests/golden/make_wordpiece_fixture.py --shapes /tmp/wp-shapes

Texts: every utterance of datasets/intent/*/*.jsonl, the captions,
questions and answers of the shapes split, hand-written edge cases and seeded random
strings, each once. Corpus utterances are stored by file and line with an
FNV-1a hash of the text (the corpora are in the repository; copying them
would triple the file); the others inline.

Tokenizer configurations ("modes" in the header): 0 do_lower_case=False
(bert-base-chinese's own), 1 True, 2 True with strip_accents=False, 3 False
with strip_accents=True, 4 True with tokenize_chinese_chars=False. Corpus
utterances carry modes 0 and 1, the other texts all five.

Unicode sweep: for every block of 256 code points, the text joining
"a" + chr(c) + "a" with single spaces for each c assigned in this Python's
Unicode version (general category not Cn or Cs); per mode the FNV-1a hash
of its ids. The C test rebuilds each text from ICU's character ages.

Format: one line of JSON (the header), then binary records, little-endian,
varints unsigned LEB128:
    u8 flags        bit 0: inline text, bit 1: truncated
    inline:         varint length, UTF-8 bytes
    by reference:   varint source (index into header "sources"),
                    varint line (from 0), u32 FNV-1a-32 of the UTF-8 text
    truncated:      varint max_length; the ids below are
                    encode(text, truncation=True, max_length=...) with
                    [CLS] and [SEP]; otherwise encode(text) without them
    per mode:       varint c: 0 = same ids as mode <varint j>, else
                    c - 1 ids follow as varints
and after the header's "records" records, for each sweep block and each
mode a u32 FNV-1a-32 of the ids (without [CLS] and [SEP]) as int32
little-endian bytes.
"""
import argparse
import glob
import hashlib
import json
import os
import random
import struct
import sys
import time
import unicodedata

import tokenizers
import transformers
from transformers import BertTokenizer, BertTokenizerFast

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODES = [
    {"do_lower_case": False},
    {"do_lower_case": True},
    {"do_lower_case": True, "strip_accents": False},
    {"do_lower_case": False, "strip_accents": True},
    {"do_lower_case": True, "tokenize_chinese_chars": False},
]
REF_MODES = 2
BLOCK = 256

EDGE = [
    "", " ", "   ", "\t\n\r ", "\u3000\u3000", "a", "A", "[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]",
    "[cls] [mask] [Mask]", "hello [MASK] world", "abc[MASK]def", "[[MASK]]", "[MASK][MASK][UNK]",
    "[MA\u200bSK]", "[MA\x00SK]", "[CLS]Hello[SEP]World[SEP]", "[ MASK ]", "## ##a a##b ###",
    "Hello, World!", "HELLO WORLD", "Don't stop-believing... (really?) [yes]", "U.S.A. e.g. i.e.",
    "https://example.com/path?q=1&r=2#frag", "someone@example.org", "C++ C# F# .NET node.js",
    "$100.00 50% 3.14159 1,000,000 -42 +7 1e-9", "12345678901234567890", "2024-11-20 08:30:00",
    "café résumé naïve façade jalapeño", "Ångström Ørsted Łódź Straße İstanbul",
    "cafe\u0301 re\u0301sume\u0301", "e\u0301\u0301\u0301", "a\u0308\u0304\u0323", "\u0301\u0301 leading marks",
    "ΣΑΣ ΟΔΟΣ. Σ σ ς", "ΐ ΰ Ά", "Привет, мир! ЁЖИК", "ǅ ǆ Ǆ ǈ", "İ ı I i", "ß ẞ STRASSE",
    "ﬁ ﬂ ﬀ ligatures", "Ⅻ ⅻ ① ② ½ ² ℃ № ™ ㎡ ㎏", "ＡＢＣ１２３！？ｈｅｌｌｏ　ｗｏｒｌｄ", "（）【】《》〈〉「」『』",
    "，。！？、；：……——“”‘’", "我的order还没到", "能不能refund，谢谢！", "你好，世界。Hello, world.",
    "我喜欢北京天安门", "豈更車賈滑", "\uf900\uf901\ufa0e\ufa2d", "𠀀𠀁𪚥𫝀𬺰", "\U0002f800\U0002f801",
    "日本語のテキスト、カタカナとひらがな。", "한국어 텍스트입니다", "한", "ภาษาไทย", "नमस्ते दुनिया",
    "مرحبا بالعالم", "שָׁלוֹם", "ꭰ Ꭰ Ᏸ", "Ა Ნ", "𝐀𝐁𝐂 𝑥", "👍🔥😂 😎", "👨\u200d👩\u200d👧 🇨🇳 🏳️\u200d🌈",
    "x\u200dy\u200cz", "a\u00adb soft hyphen", "\ufeffBOM at start", "mid\ufeffdle", "\ufffd replacement \ufffd",
    "nul\x00byte", "\x01\x02\x03\x07\x08\x0b\x0c\x0e\x1b\x1f\x7f controls", "\x85 next line \x85",
    "line\u2028sep\u2029para", "nbsp\u00a0here\u202fnarrow\u205fmath", "\u2000\u2001\u2002\u200a spaces",
    "zero\u200bwidth", "\u180e mongolian", "\ue000\uf8ff private \U000f0000", "\ufdd0\uffff\U0010ffff",
    "tab\tseparated\tvalues", "multiple     spaces", "new\nline\r\nwindows\rmac",
    "a" * 100, "a" * 101, "b" * 99 + "é", "supercalifragilisticexpialidocious " * 3,
    "的" * 150, "x" * 300, "aa" * 60 + " short", "antidisestablishmentarianism",
    "unaffable unbelievable unhappiness", "tokenization WordPiece BERT bge-small-zh Chinese-CLIP",
    "😀" * 120, "a,b.c;d:e!f?g", "'quoted' \"double\" `back`", "~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./",
    "¡¿«»§¶†‡•‰′″‹›‼⁇", "·•・", "—–‐‑‒", "《三体》第一章", "10:30～11:00", "¥199.00 199块 两百块",
    "3q 88 886 转人工！转人工！", "優惠卷 發票 物流", "ABC def GHI", "McDonald's iPhone eBay",
]


def fnv32(b):
    h = 0x811C9DC5
    for x in b:
        h ^= x
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def ids_hash(ids):
    return fnv32(b"".join(struct.pack("<i", i) for i in ids))


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def random_texts(n, seed):
    rng = random.Random(seed)
    pools = [
        [chr(c) for c in range(0x20, 0x7F)],
        [chr(c) for c in range(0xA0, 0x250)],
        [chr(c) for c in range(0x300, 0x370)],
        [chr(c) for c in range(0x370, 0x530)],
        [chr(c) for c in range(0x4E00, 0x4F00)],
        [chr(c) for c in range(0x3000, 0x3100)],
        [chr(c) for c in range(0xAC00, 0xAC80)],
        [chr(c) for c in range(0xFF00, 0xFF70)],
        [chr(c) for c in range(0x1F300, 0x1F650)],
        [chr(c) for c in range(0x2000, 0x2070)],
        ["\x00", "\t", "\n", "\r", "\x0b", "\x85", "\u200b", "\ufeff", "\ufffd", "\u2028"],
        ["[CLS]", "[SEP]", "[UNK]", "[MASK]", "[PAD]", "[", "]", "MASK", "##", " "],
    ]
    out = []
    for _ in range(n):
        k = rng.randint(1, 40)
        out.append("".join(rng.choice(rng.choice(pools)) for _ in range(k)))
    return out


def sweep_text(block):
    words = []
    for c in range(block * BLOCK, (block + 1) * BLOCK):
        if unicodedata.category(chr(c)) in ("Cn", "Cs"):
            continue
        words.append("a" + chr(c) + "a")
    return " ".join(words)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", default=os.path.join(ROOT, "tests/data/wordpiece/vocab.txt"))
    ap.add_argument("--shapes", required=True, help="a shapes split made by `qiao dataset shapes` (manifest.jsonl)")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/wordpiece/fixture.bin"))
    args = ap.parse_args()

    slow = [BertTokenizer(args.vocab, **m) for m in MODES]
    fast = [BertTokenizerFast(vocab_file=args.vocab, **m) for m in MODES]
    cls_id, sep_id = slow[0].cls_token_id, slow[0].sep_token_id

    # (kind, payload, text, max_length): kind "ref" payload (source, line), "inline" payload None
    seen = set()
    items = []
    sources = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "datasets/intent/*/*.jsonl")))
    counts = {"corpus": 0, "shapes": 0, "edge": 0, "random": 0, "truncated": 0}
    for si, src in enumerate(sources):
        with open(os.path.join(ROOT, src), encoding="utf-8") as f:
            for li, line in enumerate(f):
                t = json.loads(line)["text"]
                if t in seen:
                    continue
                seen.add(t)
                items.append(("ref", (si, li), t, 0))
                counts["corpus"] += 1

    def add_inline(t, what):
        if t in seen:
            return
        seen.add(t)
        items.append(("inline", None, t, 0))
        counts[what] += 1

    with open(os.path.join(args.shapes, "manifest.jsonl"), encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            for lang in sorted(rec["captions"]):
                for c in rec["captions"][lang]:
                    add_inline(c, "shapes")
            for qa in rec["qa"]:
                add_inline(qa["question"], "shapes")
                add_inline(qa["answer"], "shapes")
    for t in EDGE:
        add_inline(t, "edge")
    for t in random_texts(600, 5):
        add_inline(t, "random")
    # Not max_length=2: transformers then refuses to remove every token and
    # returns the whole text, where max_tokens=2 gives [CLS] [SEP].
    for t, n in [("Hello, World! This is a fairly long sentence to cut.", 5), ("你好，世界。Hello!", 3), ("unaffable " * 20, 16), ("supercalifragilistic " * 10, 7),
                 ("[CLS] a b c [MASK] d e f", 6)]:
        items.append(("inline", None, t, n))
        counts["truncated"] += 1

    started = time.time()
    body = bytearray()
    disagree = [0] * len(MODES)
    examples = [[] for _ in MODES]
    for kind, payload, text, max_len in items:
        flags = (1 if kind == "inline" else 0) | (2 if max_len else 0)
        body.append(flags)
        raw = text.encode("utf-8")
        if kind == "inline":
            body += varint(len(raw)) + raw
        else:
            body += varint(payload[0]) + varint(payload[1]) + struct.pack("<I", fnv32(raw))
        if max_len:
            body += varint(max_len)
        nm = REF_MODES if kind == "ref" else len(MODES)
        per_mode = []
        for m in range(nm):
            if max_len:
                ids = slow[m].encode(text, truncation=True, max_length=max_len)
                fids = fast[m].encode(text, truncation=True, max_length=max_len)
            else:
                full = slow[m].encode(text)
                assert full[0] == cls_id and full[-1] == sep_id
                ids = full[1:-1]
                assert slow[m].encode(text, add_special_tokens=False) == ids
                fids = fast[m].encode(text)[1:-1]
            if fids != ids:
                disagree[m] += 1
                if len(examples[m]) < 8:
                    examples[m].append(text[:80])
            same = next((j for j in range(m) if per_mode[j] == ids), None)
            if same is not None:
                body += varint(0) + varint(same)
            else:
                body += varint(len(ids) + 1) + b"".join(varint(i) for i in ids)
            per_mode.append(ids)
    print(f"{len(items)} texts in {time.time() - started:.0f} s: {counts}", file=sys.stderr)

    started = time.time()
    nblocks = 0x110000 // BLOCK
    sweep_disagree = [0] * len(MODES)
    for b in range(nblocks):
        text = sweep_text(b)
        for m in range(len(MODES)):
            ids = slow[m].encode(text, add_special_tokens=False)
            if fast[m].encode(text, add_special_tokens=False) != ids:
                sweep_disagree[m] += 1
            body += struct.pack("<I", ids_hash(ids))
    print(f"sweep of {nblocks} blocks in {time.time() - started:.0f} s", file=sys.stderr)

    with open(args.vocab, "rb") as f:
        vocab_bytes = f.read()
    header = {
        "format": "qiao-wordpiece-fixture",
        "version": 1,
        "generator": "tests/golden/make_wordpiece_fixture.py",
        "python": sys.version.split()[0],
        "unicodedata": unicodedata.unidata_version,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "vocab": os.path.relpath(os.path.abspath(args.vocab), ROOT),
        "vocab_md5": hashlib.md5(vocab_bytes).hexdigest(),
        "vocab_lines": len(open(args.vocab, encoding="utf-8").readlines()),
        "modes": MODES,
        "reference_modes": REF_MODES,
        "sources": sources,
        "records": len(items),
        "counts": counts,
        "sweep": {"block": BLOCK, "blocks": nblocks, "word": "a<c>a", "separator": " "},
        "fast_disagreements": {"texts": disagree, "sweep_blocks": sweep_disagree,
                               "examples": examples},
    }
    with open(args.out, "wb") as f:
        f.write(json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode() + b"\n")
        f.write(bytes(body))
    print(f"wrote {args.out}: {os.path.getsize(args.out)} bytes", file=sys.stderr)
    for m, mode in enumerate(MODES):
        print(f"mode {m} {mode}: BertTokenizerFast disagrees on {disagree[m]} of the texts and "
              f"{sweep_disagree[m]} of {nblocks} sweep blocks", file=sys.stderr)
        for e in examples[m]:
            print(f"    {e!r}", file=sys.stderr)


if __name__ == "__main__":
    main()
