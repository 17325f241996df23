#!/usr/bin/env bash
# Fine-tunes a model on real speech, the Free Spoken Digit Dataset
# (datasets/fsdd/SOURCE.md), so that the text embeddings of "zero".."nine"
# and "零".."九" pick the spoken digit, and reports the accuracy before (the
# baseline: MODEL as given) and after, on FSDD's test takes (0-4 of the
# training speakers) and on a held-out speaker:
#   1. qiao dataset fsdd: manifests WORK/fsdd/{train,test,speaker} (no audio copied),
#   2. qiao eval digits of MODEL on test and speaker (the "before" rows),
#   3. qiao train --init MODEL on WORK/fsdd/train: audio-text only (no images), a
#      batch holds one clip of each digit, text in zh or en at random,
#   4. qiao eval digits of the fine-tuned model, and the table (WORK/results.md).
# Every step resumes: finished outputs are kept, training continues from its
# checkpoint (Ctrl-C is safe at any time; run the script again). Delete WORK
# to start over.
#
#   scripts/finetune-fsdd.sh [MODEL] [WORK]
#       MODEL default models/qiao-base.safetensors, WORK default data/fsdd-ft
#   QIAO=path/to/qiao  THREADS=2  FSDD=../shared/datasets/fsdd  HOLDOUT=theo
#   STEPS=1000 (4.4 epochs of 225 batches)  BATCH=10  LR=2e-4  WARMUP=50  SEED=1
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/qiao-base.safetensors}
WORK=${2:-data/fsdd-ft}
QIAO=${QIAO:-build/bin/qiao}
THREADS=${THREADS:-2}
FSDD=${FSDD:-../shared/datasets/fsdd}
HOLDOUT=${HOLDOUT:-theo}
STEPS=${STEPS:-1000}
BATCH=${BATCH:-10}
LR=${LR:-2e-4}
WARMUP=${WARMUP:-50}
SEED=${SEED:-1}

if [ ! -f "$MODEL" ]; then
  echo "finetune-fsdd: no model at $MODEL; pass one (scripts/train-base.sh writes data/qiao-base.safetensors)" >&2
  exit 2
fi
[ -x "$QIAO" ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$THREADS"; }
mkdir -p "$WORK"

# A WORK directory belongs to one starting model and one split: reusing it
# with others would mix their results.
run_id="model=$(realpath "$MODEL") holdout=$HOLDOUT steps=$STEPS batch=$BATCH lr=$LR warmup=$WARMUP seed=$SEED"
if [ -f "$WORK/run.txt" ] && [ "$(cat "$WORK/run.txt")" != "$run_id" ]; then
  echo "finetune-fsdd: $WORK was made by another run:" >&2
  echo "  $(cat "$WORK/run.txt")" >&2
  echo "  now: $run_id" >&2
  echo "  use another WORK directory, or delete $WORK" >&2
  exit 2
fi
echo "$run_id" > "$WORK/run.txt"

DATA=$WORK/fsdd
if [ ! -f "$DATA/train/manifest.jsonl" ] || [ ! -f "$DATA/test/manifest.jsonl" ] ||
   [ ! -f "$DATA/speaker/manifest.jsonl" ]; then
  "$QIAO" dataset fsdd --src "$FSDD" --out "$DATA" --holdout-speaker "$HOLDOUT"
fi

# eval NAME MODEL SPLIT: WORK/eval-NAME-SPLIT.json, kept once complete
evaluate() {
  local out="$WORK/eval-$1-$3.json"
  [ -s "$out" ] && return 0
  "$QIAO" eval digits --model "$2" --data "$DATA/$3" --threads "$THREADS" --json > "$out.tmp"
  mv "$out.tmp" "$out"
}
for split in test speaker; do evaluate before "$MODEL" "$split"; done

FT=$WORK/fsdd-ft.safetensors
CKPT=$WORK/fsdd-ft.ckpt.safetensors
if [ ! -f "$FT" ]; then
  if [ -f "$CKPT" ]; then
    start=(--resume "$CKPT")
  else
    start=(--init "$MODEL")
  fi
  "$QIAO" train "${start[@]}" --data "$DATA/train" --out "$FT" --ckpt "$CKPT" --threads "$THREADS" \
    --steps "$STEPS" --batch "$BATCH" --lr "$LR" --warmup "$WARMUP" --seed "$SEED"
fi
for split in test speaker; do evaluate after "$FT" "$split"; done

python3 - "$WORK" "$MODEL" "$HOLDOUT" <<'EOF' | tee "$WORK/results.md"
import json, sys
work, model, holdout = sys.argv[1:]
def acc(name, split, lang):
    with open(f"{work}/eval-{name}-{split}.json") as f:
        r = json.load(f)
    return 100 * r[lang]["accuracy"], r["n"]
print(f"FSDD spoken digits, accuracy % (chance 10.0); start: {model}, held-out speaker: {holdout}\n")
print("| model | test en | test zh | speaker en | speaker zh |")
print("|---|---|---|---|---|")
for name, label in (("before", "before (baseline)"), ("after", "fine-tuned")):
    cells = [acc(name, s, l) for s in ("test", "speaker") for l in ("en", "zh")]
    print(f"| {label} | " + " | ".join(f"{a:.1f}" for a, _ in cells) + " |")
n_test, n_spk = acc("before", "test", "en")[1], acc("before", "speaker", "en")[1]
print(f"\ntest: {n_test} clips (takes 0-4 of the other speakers); speaker: {n_spk} clips ({holdout})")
EOF
