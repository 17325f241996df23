#!/usr/bin/env bash
# Reproduces the shipped default model, models/qiao-base.safetensors:
#   1. the shapes world with spoken long captions (train 20k, val 500,
#      test 1000, cogent 1000 scenes),
#   2. the tokenizer, trained on the train captions and questions plus the
#      intent corpora (so fine-tuning on customer-service text finds its
#      words and characters),
#   3. contrastive training with models/configs/base.json in four stages
#      (see below),
#   4. retrieval evaluation on the test and cogent splits.
# Every step resumes: generation skips finished files, training continues
# from its checkpoint (Ctrl-C is safe at any time; run the script again).
#
#   scripts/train-base.sh [WORK_DIR]       (default: data/)
#   QIAO=path/to/qiao  THREADS=2  STAGE3=2300 STEPS=3100 (where stages 3 and 4 end)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-data}
QIAO=${QIAO:-build/bin/qiao}
THREADS=${THREADS:-2}
mkdir -p "$WORK"
[ -x "$QIAO" ] || { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j"$THREADS"; }

for s in train:20000 val:500 test:1000 cogent:1000; do
  split=${s%%:*} n=${s##*:}
  "$QIAO" dataset shapes --n "$n" --seed 1 --split "$split" --out "$WORK/shapes/$split" --speech-long --jobs "$THREADS"
done

if [ ! -f "$WORK/tokenizer.safetensors" ]; then
  "$QIAO" dataset corpus --out "$WORK/corpus.txt" "$WORK/shapes/train" \
    datasets/intent/clinc150/train.jsonl datasets/intent/banking77/train.jsonl \
    datasets/intent/crosswoz/val.jsonl datasets/intent/ecommerce_zh/train.jsonl \
    datasets/intent/xsid_en/val.jsonl datasets/intent/xsid_zh/val.jsonl
  "$QIAO" tokenizer train --input "$WORK/corpus.txt" --vocab-size 2000 --char-vocab 3000 --k 4 \
    --out "$WORK/tokenizer.safetensors"
fi

# Four stages, as the shipped model was trained, each a warm restart
# (--restart: a new warmup and cosine) from the end of the one before, all
# through the one checkpoint; a stage that is interrupted resumes where it
# stopped (its settings are kept in the checkpoint).
#   1. steps 1-600: the config's schedule (warmup 100, lr 5e-4);
#   2. to 1650: all three pairs again (warmup 50, lr 4e-4); speech only
#      starts to align after about 800 steps (docs/qiao-base.png);
#   3. to STAGE3: text and pictures alone (--audio-weight 0, 2.4x faster
#      steps), batch 256, with place groups: batches hold scenes whose
#      objects differ only in where they are, the misses v1 made most;
#   4. to STEPS: speech bound to the now fixed text-picture space
#      (--freeze text,image), batch 128, place groups kept.
CKPT=$WORK/qiao-base.ckpt.safetensors
STAGE1=600 STAGE2=1650 STAGE3=${STAGE3:-2300}
STEPS=${STEPS:-3100}
ckpt_step() { "$QIAO" info "$CKPT" | grep -o '"step":[0-9]*' | head -n 1 | cut -d: -f2; }
stage() { # END PREV ARGS...: trains to step END; a warm restart when the checkpoint is at PREV
  local end=$1 prev=$2
  shift 2
  [ -f "$WORK/qiao-base-$end.safetensors" ] && return 0
  local restart=()
  [ "$(ckpt_step)" = "$prev" ] && restart=(--restart)
  "$QIAO" train --resume "$CKPT" --data "$WORK/shapes" --out "$WORK/qiao-base-$end.safetensors" --ckpt "$CKPT" \
    --log "$WORK/qiao-base" --threads "$THREADS" --steps "$end" "${restart[@]}" "$@"
}
if [ ! -f "$WORK/qiao-base-$STAGE1.safetensors" ]; then
  resume=()
  [ -f "$CKPT" ] && resume=(--resume "$CKPT")
  "$QIAO" train --config models/configs/base.json --tokenizer "$WORK/tokenizer.safetensors" \
    --data "$WORK/shapes" --out "$WORK/qiao-base-$STAGE1.safetensors" --ckpt "$CKPT" --log "$WORK/qiao-base" \
    --threads "$THREADS" --steps "$STAGE1" "${resume[@]}"
fi
stage "$STAGE2" "$STAGE1" --warmup 50 --lr 4e-4
stage "$STAGE3" "$STAGE2" --batch 256 --warmup 40 --lr 5e-4 --audio-weight 0 --place-groups 8
stage "$STEPS" "$STAGE3" --batch 128 --warmup 30 --lr 5e-4 --audio-weight 1 --freeze text,image --place-groups 8
cp "$WORK/qiao-base-$STEPS.safetensors" "$WORK/qiao-base.safetensors"

# the shipped file: models/qiao-base.safetensors (bf16, tokenizer inside)
cp "$WORK/qiao-base.safetensors" models/qiao-base.safetensors
cp "$WORK/qiao-base.png" "$WORK/qiao-base.csv" docs/ 2>/dev/null || true

for split in test cogent; do
  "$QIAO" eval retrieval --model models/qiao-base.safetensors --data "$WORK/shapes/$split" --pool 1000 --json \
    > "$WORK/eval-$split.json"
  echo "$split: $(cat "$WORK/eval-$split.json")"
done
