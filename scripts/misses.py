#!/usr/bin/env python3
"""Break down retrieval misses (`qiao eval retrieval --misses F.jsonl`) by
how the top-ranked wrong scene differs from the query's scene.

usage: scripts/misses.py MISSES.jsonl SPLIT_DIR [--dir t2i]

For each miss the two scenes' objects are matched one to one (the best
matching by attributes shared); the report counts misses by object-count
difference and, for scenes with equal counts, by how many objects differ and
in which attribute (colour, shape, size, place) the differing ones differ.
"""
import collections
import itertools
import json
import sys

ATTRS = ("color", "shape", "size", "grid")


def load_scenes(split):
    scenes = {}
    with open(f"{split}/manifest.jsonl", encoding="utf-8") as f:
        for line in f:
            s = json.loads(line)
            scenes[s["id"]] = [tuple(o[a] for a in ATTRS) for o in s["objects"]]
    return scenes


def best_matching(a, b):
    """The pairing of a's and b's objects (equal counts) with the most equal
    attributes; small scenes (<= 6 objects) so permutations are cheap."""
    best, best_pairs = -1, None
    for perm in itertools.permutations(range(len(b))):
        score = sum(sum(x == y for x, y in zip(a[i], b[j])) for i, j in enumerate(perm))
        if score > best:
            best, best_pairs = score, [(a[i], b[j]) for i, j in enumerate(perm)]
    return best_pairs


def main():
    args = sys.argv[1:]
    direction = "t2i"
    if "--dir" in args:
        k = args.index("--dir")
        direction = args[k + 1]
        del args[k:k + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    scenes = load_scenes(args[1])
    misses = [json.loads(l) for l in open(args[0], encoding="utf-8")]
    misses = [m for m in misses if m["dir"] == direction]
    by_count = collections.Counter()
    by_ndiff = collections.Counter()
    by_attr = collections.Counter()
    by_nobj = collections.Counter()
    for m in misses:
        q, t = scenes[m["query"]], scenes[m["top"]]
        by_nobj[len(q)] += 1
        d = len(t) - len(q)
        by_count[d] += 1
        if d != 0:
            continue
        pairs = best_matching(q, t)
        diff = [p for p in pairs if p[0] != p[1]]
        by_ndiff[len(diff)] += 1
        if len(diff) == 1:
            a, b = diff[0]
            by_attr["+".join(ATTRS[i] for i in range(len(ATTRS)) if a[i] != b[i])] += 1
    n = len(misses)
    print(f"{n} {direction} misses")
    print("\nmisses by the query's object count:")
    for k in sorted(by_nobj):
        print(f"  {k} objects: {by_nobj[k]} ({100 * by_nobj[k] / n:.0f} %)")
    print("\ntop wrong scene's object count minus the query's:")
    for k in sorted(by_count):
        print(f"  {k:+d}: {by_count[k]} ({100 * by_count[k] / n:.0f} %)")
    same = by_count[0]
    print(f"\nsame object count ({same}): objects that differ after the best matching:")
    for k in sorted(by_ndiff):
        print(f"  {k}: {by_ndiff[k]} ({100 * by_ndiff[k] / max(same, 1):.0f} %)")
    print("\none object differs: in which attributes:")
    for k, v in by_attr.most_common():
        print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
