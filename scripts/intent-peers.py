#!/usr/bin/env python3
"""The intent classifier's classic peers (issue 18): scikit-learn TF-IDF +
logistic regression, and fastText supervised, on the repository's intent
sets, each on the same splits as qiao's own runs.

    .venv-peer/bin/python3 scripts/intent-peers.py [--sets a,b,...] [--data datasets/intent]
                                                   [--json out.json]
    .venv-peer/bin/python3 scripts/intent-peers.py --make-10shot [--data datasets/intent]

(scripts/install-deps.sh --peer puts scikit-learn and fasttext-wheel in
.venv-peer.) Prints the CPU (lscpu's model name), then a Markdown table: for
each set, protocol and peer the metrics, the final model's training time
(wall clock and process CPU seconds, one thread; the grid is not counted)
and its size on disk (fastText: the saved .bin; scikit-learn: the pickled
pipeline, vectorizers included). --json writes the same rows, with each
grid point's validation score, as JSON.

Sets (--sets picks among these names; default all):
  clinc150      train.jsonl (150 intents and "oos", trained as a class) ->
                test.jsonl; the grid on val.jsonl (accuracy over all its
                lines, oos included), refit on train. In-scope accuracy (the
                in-scope test lines; predicting "oos" is wrong) and OOS recall
                (the oos test lines predicted "oos"), as Larson et al. 2019.
  banking77     full: train.jsonl -> test.jsonl. 10-shot: train_10shot.jsonl
                (10 lines per intent, --make-10shot; banking77/SOURCE.md)
                -> test.jsonl. Accuracy.
  ecommerce_zh  train.jsonl -> test.jsonl. Accuracy and macro-F1.
  xsid_zh       xsid_zh/val.jsonl -> xsid_zh/test.jsonl, and en->zh zero-shot:
                xsid_en/val.jsonl -> xsid_zh/test.jsonl (lexical models share
                almost no features across the languages: near chance, the
                majority-class rate is shown beside it). Accuracy.
  crosswoz      multi-label ("intents"): val.jsonl -> test.jsonl. Micro-F1
                over labels, and exact match (the whole label set right; a
                turn with an empty list is right only when nothing is
                predicted).
Where a set has no validation file the grid runs on a held-out 10% of the
training file (stratified: per label, a seeded shuffle, round(10%) of its
lines held out, at least one kept for training; a plain seeded 10% for the
multi-label set), and the chosen point is refit on the whole file. The grid
picks by accuracy (micro-F1 for the multi-label set); ties go to the earlier
point.

Featurization, the same for every set and language:
  text      Unicode NFKC, then lower case.
  tokens    each CJK ideograph alone (U+3400-4DBF, U+4E00-9FFF, U+F900-FAFF,
            U+20000-2FFFF); any other run of letters and digits is one token
            (English words, numbers, "4pm"); punctuation and spaces dropped.
  TF-IDF    the union of word 1-2-grams over those tokens and character 1-4-
            grams within word boundaries (analyzer="char_wb") over the
            normalized text, both sublinear tf, idf smoothed, rows
            L2-normalized.
  LR        multinomial logistic regression (lbfgs, max_iter 1000), C from
            {1, 10, 100}. Multi-label: one-vs-rest binary LRs, a label
            predicted where its probability is >= 0.5.
  fastText  the tokens joined by spaces, one "__label__" per intent; dim 100,
            hash buckets 100000 (the default 2M makes the .bin 800 MB for
            word bigrams), thread 1, seed 1; epoch {25, 50} x lr {0.5, 1.0}
            x wordNgrams {1, 2}. Multi-label: loss "ova" (a sigmoid per
            label), labels whose probability is >= 0.5; a turn with no
            label trains as a "__none__" label (fastText skips lines without
            one), which is never reported.
Everything is seeded (fastText seed 1 on one thread, lbfgs is
deterministic), so a rerun gives the same metrics; times vary.
"""
import argparse
import collections
import json
import os
import pickle
import random
import re
import subprocess
import sys
import tempfile
import time
import unicodedata


def import_peers():
    """The peers' packages, loaded only to run them (--make-10shot needs none),
    with one thread for the BLAS under numpy and scipy too (set before they load)."""
    global fasttext, np, sklearn, TfidfVectorizer, LogisticRegression, f1_score
    global OneVsRestClassifier, make_pipeline, make_union, MultiLabelBinarizer
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(v, "1")
    import fasttext
    import numpy as np
    import sklearn
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.preprocessing import MultiLabelBinarizer


SEED = 1
SETS = ("clinc150", "banking77", "ecommerce_zh", "xsid_zh", "crosswoz")
LR_GRID = [{"C": c} for c in (1.0, 10.0, 100.0)]
FT_GRID = [{"epoch": e, "lr": lr, "wordNgrams": n} for e in (25, 50) for lr in (0.5, 1.0) for n in (1, 2)]
FT_FIXED = {"dim": 100, "bucket": 100000, "thread": 1, "seed": SEED, "verbose": 0}
THRESHOLD = 0.5
NONE_LABEL = "__none__"

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
TOKEN = re.compile(rf"[{CJK}]|(?:(?![{CJK}])[^\W_])+")


def normalize(text):
    return unicodedata.normalize("NFKC", text).lower()


def tokens(text):
    """Tokens of normalized text: CJK ideographs alone, other letter/digit runs whole."""
    return TOKEN.findall(text)


def ft_line(text):
    return " ".join(tokens(normalize(text)))


# ---------------------------------------------------------------- data


def load(path):
    """[(text, labels)], labels a tuple (one intent, or a multi-label list, maybe empty)."""
    out, multi = [], False
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            o = json.loads(line)
            if "intents" in o:
                multi = True
                labels = tuple(o["intents"])
            else:
                labels = (o["intent"],)
            out.append((o["text"], labels))
    return out, multi


def holdout(examples, multi, frac=0.1):
    """(train, val): a seeded, per-label stratified `frac` of the examples held out."""
    rng = random.Random(SEED)
    if multi:
        idx = list(range(len(examples)))
        rng.shuffle(idx)
        held = set(idx[: round(frac * len(idx))])
    else:
        by = collections.defaultdict(list)
        for i, (_, lab) in enumerate(examples):
            by[lab[0]].append(i)
        held = set()
        for lab in sorted(by):
            idx = by[lab]
            rng.shuffle(idx)
            held.update(idx[: min(round(frac * len(idx)), len(idx) - 1)])
    return ([e for i, e in enumerate(examples) if i not in held],
            [e for i, e in enumerate(examples) if i in held])


def make_10shot(data, k=10):
    """banking77/train_10shot.jsonl: per intent, its lines of train.jsonl in
    file order, shuffled by random.Random(1) (a new generator for each intent),
    the first k kept; written unchanged, in train.jsonl's order."""
    src = os.path.join(data, "banking77", "train.jsonl")
    with open(src, encoding="utf-8") as f:
        lines = [ln for ln in f if ln.strip()]
    by = collections.defaultdict(list)
    for i, ln in enumerate(lines):
        by[json.loads(ln)["intent"]].append(i)
    keep = set()
    for intent in sorted(by):
        idx = list(by[intent])
        random.Random(SEED).shuffle(idx)
        keep.update(idx[:k])
    dst = os.path.join(data, "banking77", "train_10shot.jsonl")
    with open(dst, "w", encoding="utf-8") as f:
        f.writelines(ln for i, ln in enumerate(lines) if i in keep)
    print(f"wrote {dst}: {len(keep)} lines, {len(by)} intents")


# ---------------------------------------------------------------- metrics


def accuracy(gold, pred):
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def multi_scores(gold, pred):
    """(micro-F1 over labels, exact-match rate) for lists of label sets."""
    tp = fp = fn = 0
    for g, p in zip(gold, pred):
        tp += len(g & p)
        fp += len(p - g)
        fn += len(g - p)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return f1, sum(g == p for g, p in zip(gold, pred)) / len(gold)


def selection_score(gold, pred, multi):
    return multi_scores(gold, pred)[0] if multi else accuracy(gold, pred)


# ---------------------------------------------------------------- peers


class TfidfLR:
    name = "TF-IDF + LR"
    grid = LR_GRID

    def __init__(self, multi):
        self.multi = multi

    def fit(self, examples, hp):
        texts = [t for t, _ in examples]
        feats = make_union(
            TfidfVectorizer(preprocessor=normalize, tokenizer=tokens, token_pattern=None,
                            lowercase=False, ngram_range=(1, 2), sublinear_tf=True),
            TfidfVectorizer(preprocessor=normalize, analyzer="char_wb", lowercase=False,
                            ngram_range=(1, 4), sublinear_tf=True))
        lr = LogisticRegression(C=hp["C"], solver="lbfgs", max_iter=1000, random_state=SEED)
        if self.multi:
            self.mlb = MultiLabelBinarizer()
            y = self.mlb.fit_transform([lab for _, lab in examples])
            self.model = make_pipeline(feats, OneVsRestClassifier(lr, n_jobs=1))
        else:
            y = [lab[0] for _, lab in examples]
            self.model = make_pipeline(feats, lr)
        self.model.fit(texts, y)
        return self

    def predict(self, texts):
        if self.multi:
            proba = self.model.predict_proba(texts)
            return [frozenset(self.mlb.classes_[np.flatnonzero(row >= THRESHOLD)]) for row in proba]
        return list(self.model.predict(texts))

    def size(self, tmp):
        obj = (self.model, self.mlb) if self.multi else self.model
        return len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


class FastText:
    name = "fastText"
    grid = FT_GRID

    def __init__(self, multi):
        self.multi = multi

    def fit(self, examples, hp):
        fd, path = tempfile.mkstemp(suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for text, labels in examples:
                labs = labels if labels or not self.multi else (NONE_LABEL,)
                for lab in labs:
                    if not lab or any(c.isspace() for c in lab):
                        sys.exit(f"fastText cannot take the label {lab!r}")
                f.write(" ".join("__label__" + lab for lab in labs) + " " + ft_line(text) + "\n")
        args = dict(FT_FIXED, **hp)
        if self.multi:
            args["loss"] = "ova"
        try:
            self.model = fasttext.train_supervised(input=path, **args)
        finally:
            os.unlink(path)
        return self

    def predict(self, texts):
        lines = [ft_line(t) for t in texts]
        if self.multi:
            labels, _ = self.model.predict(lines, k=-1, threshold=THRESHOLD)
            return [frozenset(lab[len("__label__"):] for lab in labs) - {NONE_LABEL} for labs in labels]
        labels, _ = self.model.predict(lines, k=1)
        return [labs[0][len("__label__"):] for labs in labels]

    def size(self, tmp):
        path = os.path.join(tmp, "model.bin")
        self.model.save_model(path)
        n = os.path.getsize(path)
        os.unlink(path)
        return n


# ---------------------------------------------------------------- runs


def gold_of(examples, multi):
    return [frozenset(lab) for _, lab in examples] if multi else [lab[0] for _, lab in examples]


def run_one(peer_cls, name, protocol, train, val, test, multi, metrics, tmp, note=""):
    """Grid on val (or a holdout of train when val is None), refit on train, test."""
    grid_train, grid_val = (train, val) if val is not None else holdout(train, multi)
    val_gold = gold_of(grid_val, multi)
    grid = []
    for hp in peer_cls.grid:
        p = peer_cls(multi).fit(grid_train, hp)
        grid.append({"hp": hp, "val": selection_score(val_gold, p.predict([t for t, _ in grid_val]), multi)})
    best = max(grid, key=lambda g: g["val"])  # first of the ties
    w0, c0 = time.perf_counter(), time.process_time()
    p = peer_cls(multi).fit(train, best["hp"])
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    pred = p.predict([t for t, _ in test])
    row = {
        "set": name, "protocol": protocol, "peer": peer_cls.name, "hp": best["hp"],
        "grid_on": "val" if val is not None else "10% held out", "grid": grid,
        "metrics": metrics(gold_of(test, multi), pred),
        "train_wall_s": wall, "train_cpu_s": cpu, "size_bytes": p.size(tmp),
        "n_train": len(train), "n_test": len(test), "note": note,
    }
    print(f"  {name} {protocol} {peer_cls.name}: {fmt_metrics(row['metrics'])} "
          f"({fmt_hp(best['hp'])}; {wall:.1f} s)", file=sys.stderr, flush=True)
    return row


def m_accuracy(gold, pred):
    return {"accuracy": accuracy(gold, pred)}


def m_acc_f1(gold, pred):
    return {"accuracy": accuracy(gold, pred), "macro-F1": f1_score(gold, pred, average="macro")}


def m_clinc(gold, pred):
    ins = [(g, p) for g, p in zip(gold, pred) if g != "oos"]
    oos = [p for g, p in zip(gold, pred) if g == "oos"]
    return {"in-scope accuracy": sum(g == p for g, p in ins) / len(ins),
            "OOS recall": sum(p == "oos" for p in oos) / len(oos),
            "accuracy (all)": accuracy(gold, pred)}


def m_multi(gold, pred):
    f1, em = multi_scores(gold, pred)
    return {"micro-F1": f1, "exact match": em}


def majority_rate(train, test):
    top = collections.Counter(lab[0] for _, lab in train).most_common(1)[0][0]
    return sum(lab[0] == top for _, lab in test) / len(test)


def runs(name, data):
    """[(protocol, train, val or None, test, multi, metrics, note)] for one set."""
    def f(s, split):
        return load(os.path.join(data, s, split + ".jsonl"))

    if name == "clinc150":
        (tr, m), (va, _), (te, _) = f(name, "train"), f(name, "val"), f(name, "test")
        return [("train -> test", tr, va, te, m, m_clinc, "")]
    if name == "banking77":
        (tr, m), (te, _) = f(name, "train"), f(name, "test")
        shot_path = os.path.join(data, name, "train_10shot.jsonl")
        if not os.path.exists(shot_path):
            sys.exit(f"{shot_path} is missing: make it with --make-10shot")
        sh, _ = load(shot_path)
        return [("full: train -> test", tr, None, te, m, m_accuracy, ""),
                ("10-shot: train_10shot -> test", sh, None, te, m, m_accuracy, "")]
    if name == "ecommerce_zh":
        (tr, m), (te, _) = f(name, "train"), f(name, "test")
        return [("train -> test", tr, None, te, m, m_acc_f1, "")]
    if name == "xsid_zh":
        (zv, m), (zt, _), (ev, _) = f("xsid_zh", "val"), f("xsid_zh", "test"), f("xsid_en", "val")
        chance = f"majority class {100 * majority_rate(ev, zt):.1f}"
        return [("zh val -> zh test", zv, None, zt, m, m_accuracy, ""),
                ("en->zh zero-shot: en val -> zh test", ev, None, zt, m, m_accuracy, chance)]
    if name == "crosswoz":
        (va, m), (te, _) = f(name, "val"), f(name, "test")
        return [("val -> test (multi-label)", va, None, te, m, m_multi, "")]
    sys.exit(f"unknown set {name!r} (known: {', '.join(SETS)})")


def fmt_metrics(ms):
    return ", ".join(f"{k} {100 * v:.1f}" for k, v in ms.items())


def fmt_hp(hp):
    return " ".join(f"{k}={v:g}" for k, v in hp.items())


def fmt_size(n):
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    ap.add_argument("--data", default="datasets/intent")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--make-10shot", action="store_true", help="write banking77/train_10shot.jsonl and stop")
    a = ap.parse_args()
    if a.make_10shot:
        make_10shot(a.data)
        return
    names = [s for s in a.sets.split(",") if s]
    for s in names:
        if s not in SETS:
            ap.error(f"unknown set {s!r} (known: {', '.join(SETS)})")
    import_peers()
    cpu = cpu_name()
    versions = {"python": sys.version.split()[0], "numpy": np.__version__, "scikit-learn": sklearn.__version__,
                "fastText": _dist_version()}
    print(f"CPU: {cpu} (one thread)", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for protocol, train, val, test, multi, metrics, note in runs(name, a.data):
                for peer in (TfidfLR, FastText):
                    rows.append(run_one(peer, name, protocol, train, val, test, multi, metrics, tmp, note))
    print()
    print("| set | protocol | peer | hyperparameters (grid) | test metrics (%) | train wall s | train CPU s | size |")
    print("|---|---|---|---|---|---:|---:|---:|")
    for r in rows:
        ms = fmt_metrics(r["metrics"]) + (f" ({r['note']})" if r["note"] else "")
        print(f"| {r['set']} | {r['protocol']} | {r['peer']} | {fmt_hp(r['hp'])} (on {r['grid_on']}) | {ms} "
              f"| {r['train_wall_s']:.1f} | {r['train_cpu_s']:.1f} | {fmt_size(r['size_bytes'])} |")
    print(f"\nVersions: {', '.join(f'{k} {v}' for k, v in versions.items())}")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump({"cpu": cpu, "threads": 1, "versions": versions, "rows": rows}, f, ensure_ascii=False, indent=1)
            f.write("\n")


def _dist_version():
    from importlib import metadata
    for dist in ("fasttext-wheel", "fasttext"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            pass
    return "unknown"


if __name__ == "__main__":
    main()
