#!/usr/bin/env python3
"""A copy of a shapes split whose long captions carry typing slips, for
testing how a text encoder copes with text it was not trained on.

    scripts/typo-split.py SRC_SPLIT OUT_SPLIT [--rate 0.15] [--seed 1]

Only the first (long) caption of each language changes; pictures and speech
are the source's (symlinked folders), and so are the objects the retrieval
signatures come from. The slips are those people make:
  English, per word of 4+ letters with probability RATE: two neighbouring
      letters swapped, one letter dropped or one doubled;
  Chinese, per Han character with probability RATE: the character dropped,
      swapped with the next, or replaced by another character of the same
      caption vocabulary (a stand-in for homophone slips).
Deterministic for a given seed. Development tooling (not used by the SDK).
"""
import argparse
import json
import os
import random
import re
import shutil


def slip_en(text, rate, rng):
    def word(m):
        w = m.group(0)
        if len(w) < 4 or rng.random() >= rate:
            return w
        i = rng.randrange(1, len(w) - 1)
        kind = rng.randrange(3)
        if kind == 0:
            return w[:i] + w[i + 1] + w[i] + w[i + 2:]
        if kind == 1:
            return w[:i] + w[i + 1:]
        return w[:i] + w[i] + w[i:]
    return re.sub(r"[A-Za-z]+", word, text)


def slip_zh(text, rate, rng, han):
    out, i, chars = [], 0, list(text)
    while i < len(chars):
        c = chars[i]
        if "\u4e00" <= c <= "\u9fff" and rng.random() < rate:
            kind = rng.randrange(3)
            if kind == 0:
                i += 1
                continue
            if kind == 1 and i + 1 < len(chars):
                out += [chars[i + 1], c]
                i += 2
                continue
            out.append(rng.choice(han))
        else:
            out.append(c)
        i += 1
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--rate", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    with open(os.path.join(a.src, "manifest.jsonl"), encoding="utf-8") as f:
        scenes = [json.loads(line) for line in f if line.strip()]
    han = sorted({c for s in scenes for c in s["captions"].get("zh", [""])[0] if "\u4e00" <= c <= "\u9fff"})
    os.makedirs(a.out, exist_ok=True)
    for sub in ("images", "speech"):
        link, target = os.path.join(a.out, sub), os.path.abspath(os.path.join(a.src, sub))
        if os.path.isdir(target) and not os.path.lexists(link):
            os.symlink(target, link)
    if os.path.exists(os.path.join(a.src, "dataset.json")):
        shutil.copyfile(os.path.join(a.src, "dataset.json"), os.path.join(a.out, "dataset.json"))
    changed = 0
    tmp = os.path.join(a.out, "manifest.jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for s in scenes:
            caps = s["captions"]
            for lang, slip in (("en", slip_en), ("zh", slip_zh)):
                if caps.get(lang):
                    before = caps[lang][0]
                    caps[lang][0] = slip(before, a.rate, rng) if lang == "en" else slip(before, a.rate, rng, han)
                    changed += caps[lang][0] != before
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    os.replace(tmp, os.path.join(a.out, "manifest.jsonl"))
    print(f"typo-split: {len(scenes)} scenes, {changed} captions changed, rate {a.rate}, seed {a.seed} -> {a.out}")


if __name__ == "__main__":
    main()
