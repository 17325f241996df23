#!/usr/bin/env python3
"""Writes tests/data/caption_metrics.json: candidate/reference sets and the
scores pycocoevalcap's Bleu(4) and Cider give them, for
tests/test_caption_metrics.c (models/captioning/metrics.c must match to 1e-4).

The sentences are already tokenized: the scorers get the tokens joined by
single spaces, which is what pycocoevalcap's own PTBTokenizer hands them (its
Java tokenizer is not used, so no Java is needed). Each corpus is scored as
one evaluation, since CIDEr's document frequencies are over the whole set.

Needs pycocoevalcap (PyPI) and numpy:
    scripts/install-deps.sh --peer          # .venv-peer has pycocoevalcap
    .venv-peer/bin/python3 tests/golden/make_caption_metrics_fixture.py
"""
import json
import os
import random
import sys

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider

try:
    from importlib.metadata import version
    PCE_VERSION = version("pycocoevalcap")
except Exception:  # pragma: no cover
    PCE_VERSION = "unknown"

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "caption_metrics.json")


def toks(s):
    return s.split()


# ---- English: hand-made edge cases, then shapes-world captions with noise ----

EN_EDGE = [
    ("identical to a reference",
     "a small red circle in the top left",
     ["a small red circle in the top left", "there is a red circle at the top left", "a little red disk upper left"]),
    ("shorter than every reference",
     "a red circle",
     ["there is a small red circle in the top left corner", "a little red circle sits in the upper left"]),
    ("longer than every reference",
     "there is a small red circle in the top left and a big blue square in the middle of the picture today",
     ["a red circle", "red circle top left", "a small red circle"]),
    ("no overlap", "green hexagon bottom edge", ["a purple star on the right", "violet star right side"]),
    ("one token, in the references", "circle", ["a red circle", "the circle is red", "circle"]),
    ("one token, no overlap", "zebra", ["a red circle", "two blue squares"]),
    ("references of five lengths",
     "a big blue square in the middle and a small star",
     ["blue square", "a big blue square in the middle",
      "the picture shows a big blue square in the middle and a small yellow star at the top",
      "a large blue square center", "there is a big blue square and a little star here"]),
    ("clipped repeats", "red red red red circle", ["a red circle", "the red circle is red"]),
    ("closest length tie picks the shorter",
     "a b c d e f", ["a b c d e", "a b c x e f g"]),
    ("single reference", "two shapes a red star and a blue cross", ["there are two shapes a red star and a blue cross"]),
    ("empty candidate", "", ["a red circle in the center", "a circle"]),
    ("duplicate references", "a green triangle at the bottom",
     ["a green triangle at the bottom", "a green triangle at the bottom", "green triangle bottom"]),
    ("two tokens", "red circle", ["a red circle in the center", "red circle"]),
    ("three tokens", "a red circle", ["a red circle in the center", "one red circle"]),
    ("clitics and symbols as tokens", "it 's a red circle , isn 't it", ["it 's a red circle", "is n't it a red circle"]),
]

COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "violet", "brown", "black"]
SIZES = ["small", "little", "large", "big"]
SHAPES = ["circle", "disk", "square", "triangle", "star", "hexagon", "cross", "diamond", "rhombus"]
PLACES = ["top left", "upper left", "top", "top right", "left", "center", "middle", "right",
          "bottom left", "bottom", "bottom right", "lower right"]


def en_object(r):
    return "a %s %s %s in the %s" % (r.choice(SIZES), r.choice(COLORS), r.choice(SHAPES), r.choice(PLACES))


def en_caption(r, objs):
    head = r.choice(["there are %d shapes" % len(objs), "the picture shows", "this image contains", ""])
    return (head + " " + " and ".join(objs)).split()


def perturb(r, words, vocab):
    w = list(words)
    for _ in range(r.randint(0, 4)):
        op = r.randint(0, 3)
        if op == 0 and len(w) > 1:
            del w[r.randrange(len(w))]
        elif op == 1:
            w.insert(r.randrange(len(w) + 1), r.choice(vocab))
        elif op == 2 and w:
            w[r.randrange(len(w))] = r.choice(vocab)
        elif op == 3 and len(w) > 2:
            i = r.randrange(len(w) - 1)
            w[i], w[i + 1] = w[i + 1], w[i]
    return w


def en_random(r, n):
    vocab = COLORS + SIZES + SHAPES + ["a", "the", "in", "and", "is", "there"]
    items = []
    for i in range(n):
        objs = [en_object(r) for _ in range(r.randint(1, 3))]
        refs = [perturb(r, en_caption(r, objs), vocab) for _ in range(r.randint(1, 5))]
        cand = perturb(r, en_caption(r, objs if r.random() < 0.7 else [en_object(r)]), vocab)
        items.append(("random %d" % i, cand, refs))
    return items


# ---- Chinese, as words and as characters -------------------------------------

ZH_COLORS = ["红色", "橙色", "黄色", "绿色", "蓝色", "紫色", "棕色", "黑色"]
ZH_SHAPES = ["圆形", "正方形", "三角形", "五角星", "六边形", "十字形", "菱形"]
ZH_PLACES = ["左上角", "上方", "右上角", "左边", "中间", "右边", "左下角", "下方", "右下角"]
ZH_SIZES = ["小", "大"]

ZH_EDGE = [
    ("zh identical", ["图中", "有", "一个", "红色", "的", "圆形"],
     [["图中", "有", "一个", "红色", "的", "圆形"], ["左上角", "有", "一个", "红色", "圆形"]]),
    ("zh one token", ["圆形"], [["图中", "有", "一个", "圆形"], ["一个", "红色", "的", "圆形"]]),
    ("zh no overlap", ["蓝色", "方块"], [["一个", "红色", "的", "圆形"], ["红色", "圆"]]),
    ("zh characters", list("左上角有一个小的红色圆形"),
     [list("左上角是一个红色的小圆形"), list("一个小的红色圆形在左上方"), list("图中有一个红色圆形")]),
    ("zh characters, short", list("红圆"), [list("一个红色的圆形在中间"), list("红色圆形")]),
]


def zh_object(r):
    p, s, c, h = r.choice(ZH_PLACES), r.choice(ZH_SIZES), r.choice(ZH_COLORS), r.choice(ZH_SHAPES)
    return r.choice([[p, "有", "一个", s, "的", c, h], [p, "是", "一个", c, "的", s, h], ["一个", s, "的", c, h, "在", p]])


def zh_random(r, n, chars):
    vocab = ZH_COLORS + ZH_SHAPES + ZH_PLACES + ZH_SIZES + ["的", "有", "一个", "在"]
    items = []
    for i in range(n):
        objs = [zh_object(r) for _ in range(r.randint(1, 3))]

        def cap(os_):
            w = ["图中", "有"] if r.random() < 0.5 else []
            for k, o in enumerate(os_):
                w += (["和"] if k else []) + o
            return w

        refs = [perturb(r, cap(objs), vocab) for _ in range(r.randint(1, 4))]
        cand = perturb(r, cap(objs if r.random() < 0.7 else [zh_object(r)]), vocab)
        if chars:  # the same sentences cut into characters
            refs = [list("".join(x)) for x in refs]
            cand = list("".join(cand))
        items.append(("zh %s %d" % ("chars" if chars else "words", i), cand, refs))
    return items


def score(items):
    gts = {i: [" ".join(ref) for ref in refs] for i, (_, _, refs) in enumerate(items)}
    res = {i: [" ".join(cand)] for i, (_, cand, _) in enumerate(items)}
    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    cider, cider_items = Cider().compute_score(gts, res)
    return {
        "bleu": [float(x) for x in bleu],
        "bleu_items": [[float(bleu_items[k][i]) for k in range(4)] for i in range(len(items))],
        "cider": float(cider),
        "cider_items": [float(x) for x in cider_items],
    }


def corpus(name, items):
    items = [(label, toks(c) if isinstance(c, str) else c, [toks(x) if isinstance(x, str) else x for x in refs])
             for label, c, refs in items]
    out = {"name": name,
           "items": [{"label": label, "candidate": c, "references": refs} for label, c, refs in items]}
    out.update(score(items))
    return out


def main():
    r = random.Random(20261201)
    corpora = [
        corpus("en", EN_EDGE + en_random(r, 20)),
        corpus("zh", ZH_EDGE + zh_random(r, 8, False) + zh_random(r, 8, True)),
        corpus("one item", [EN_EDGE[6]]),
        corpus("two items", [EN_EDGE[0], EN_EDGE[3]]),
    ]
    doc = {
        "version": 1,
        "generator": "tests/golden/make_caption_metrics_fixture.py, pycocoevalcap %s (Bleu(4), Cider)" % PCE_VERSION,
        "tolerance": 1e-4,
        "corpora": corpora,
    }
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n = sum(len(c["items"]) for c in corpora)
    print("wrote %s: %d corpora, %d items" % (os.path.normpath(OUT), len(corpora), n), file=sys.stderr)


if __name__ == "__main__":
    main()
