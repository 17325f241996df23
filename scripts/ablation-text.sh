#!/usr/bin/env bash
# The text encoder's ablation: what the character branch and its gate buy over
# subword pieces alone, on text-to-image retrieval in the shapes world.
# Two arms that differ only in text.fusion (models/configs/ablation-*.json):
#   gate:  e = g * e_piece + (1 - g) * e_char, g = sigmoid(W [e_piece; e_char] + b)
#   piece: e = e_piece (no character CNN, no gate)
# Both are small text+image models (width 128, 2 layers, audio_weight 0: no
# speech, so an arm trains in minutes); each arm trains once per seed and is
# evaluated on the test and cogent splits and on "typos", the test split with
# typing slips in its captions (scripts/typo-split.py, rate 0.15), all with
# pools of 1000. The table (WORK/results.md) gives t2i and i2t R@1 per
# language, mean over the seeds, and each seed's t2i R@1.
#
# Every step resumes: finished models and evaluations are kept, training
# continues from its checkpoint (Ctrl-C is safe; run the script again).
#
#   scripts/ablation-text.sh DATA TOKENIZER [WORK]
#       DATA: a shapes data set root (train/ val/ test/ cogent/), as
#       scripts/train-base.sh generates; TOKENIZER: its tokenizer.
#       WORK default data/ablation-text
#   QIAO=path/to/qiao  THREADS=2  SEEDS="1 2"  STEPS (default: the configs')
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:?usage: scripts/ablation-text.sh DATA TOKENIZER [WORK]}
TOK=${2:?usage: scripts/ablation-text.sh DATA TOKENIZER [WORK]}
WORK=${3:-data/ablation-text}
QIAO=${QIAO:-build/bin/qiao}
THREADS=${THREADS:-2}
SEEDS=${SEEDS:-1 2}
STEPS=${STEPS:-}
[ -x "$QIAO" ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$THREADS"; }
mkdir -p "$WORK"
[ -f "$WORK/typos/manifest.jsonl" ] || python3 scripts/typo-split.py "$DATA/test" "$WORK/typos" --rate 0.15 --seed 1

for seed in $SEEDS; do
  for arm in gate piece; do
    out=$WORK/$arm-$seed.safetensors
    if [ ! -f "$out" ]; then
      ckpt=$WORK/$arm-$seed.ckpt.safetensors
      if [ -f "$ckpt" ]; then
        start=(--resume "$ckpt")
      else
        start=(--config "models/configs/ablation-$arm.json" --tokenizer "$TOK")
      fi
      "$QIAO" train "${start[@]}" --data "$DATA" --out "$out" --ckpt "$ckpt" --threads "$THREADS" \
        --loader-threads 2 --seed "$seed" ${STEPS:+--steps "$STEPS"} --quiet
    fi
    for split in test cogent typos; do
      res=$WORK/eval-$arm-$seed-$split.json
      [ -s "$res" ] && continue
      dir=$DATA/$split
      [ "$split" = typos ] && dir=$WORK/typos
      "$QIAO" eval retrieval --model "$out" --data "$dir" --pool 1000 --no-audio \
        --threads "$THREADS" --json > "$res.tmp"
      mv "$res.tmp" "$res"
    done
  done
done

python3 - "$WORK" "$SEEDS" <<'EOF' | tee "$WORK/results.md"
import json, sys
work, seeds = sys.argv[1], sys.argv[2].split()
def r1(arm, seed, split, d, lang):
    with open(f"{work}/eval-{arm}-{seed}-{split}.json") as f:
        return 100 * json.load(f)[d][lang]["r1"]
print(f"Text encoder ablation: R@1 % over pools of 1000, mean of seeds {', '.join(seeds)}\n")
print("| arm | split | t2i zh | t2i en | i2t zh | i2t en | t2i per seed (zh/en) |")
print("|---|---|---|---|---|---|---|")
for split in ("test", "cogent", "typos"):
    for arm in ("gate", "piece"):
        cells = []
        for d in ("t2i", "i2t"):
            for lang in ("zh", "en"):
                cells.append(sum(r1(arm, s, split, d, lang) for s in seeds) / len(seeds))
        per = ", ".join(f"{r1(arm, s, split, 't2i', 'zh'):.1f}/{r1(arm, s, split, 't2i', 'en'):.1f}" for s in seeds)
        print(f"| {arm} | {split} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {per} |")
EOF
