#!/usr/bin/env bash
# Builds the sample bot's FAST intent classifier: a few of
# multilingual-e5-small's 12 layers fine-tuned on datasets/intent/ecommerce_zh
# with knowledge distillation from the 12-layer classifier that
# scripts/make-intent-bot.sh trains (the teacher), then made small exactly as
# that script makes its small model (pruned vocabulary, int8 GEMMs,
# recalibrated on the held-out tenth). The 12-layer model takes about 3 ms a
# message on one core; 4 layers about a third of that, what `qiao serve`
# needs for 2,000 /v1/parse a second on two cores (docs/intent.md, "A
# faster classifier").
#
#   scripts/make-intent-bot-fast.sh [BUILD_DIR]      (default: build)
#
# Environment (the defaults: the recipe with the best test accuracy in
# docs/intent.md, "A faster classifier: distillation": 83.1 % at int8
# against the teacher's 86.3 %; 8 minutes of training on two cores):
#   LAYERS  e5's layers the student starts from, a JSON list or a count
#           ("[0, 4, 8, 11]": the first, the last and two between)
#   EPOCHS  passes over the training lines (10)
#   LR      the encoder's learning rate (8e-5)
#   ALPHA   the distillation term's weight (0.5): (1 - a) CE + a T^2 KL
#   TEMP    the distillation temperature (2)
#   NAME    the files' name (ecommerce-zh-fast)
#
# Needs BUILD_DIR/bin/qiao, the converted e5 (`ctest --test-dir build -R
# e5.convert`) and the teacher BUILD_DIR/bot/ecommerce-zh.safetensors
# (scripts/make-intent-bot.sh). Writes, in BUILD_DIR/bot-fast,
# NAME.safetensors (bf16, e5's whole vocabulary) with its training log
# NAME.csv, eval-NAME.json, and the small model NAME-small.safetensors with
# eval-NAME-small.json, then runs the sample bot's scripted conversations
# with it. Same data, recipe and seed: the same files on the same machine.
# Interrupted, it resumes from its checkpoint when run again.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
qiao="$build/bin/qiao"
e5="$build/e5/multilingual-e5-small.safetensors"
teacher="$build/bot/ecommerce-zh.safetensors"
data="$root/datasets/intent/ecommerce_zh"
out="$build/bot-fast"
layers="${LAYERS:-[0, 4, 8, 11]}"
epochs="${EPOCHS:-10}"
lr="${LR:-8e-5}"
alpha="${ALPHA:-0.5}"
temp="${TEMP:-2}"
name="${NAME:-ecommerce-zh-fast}"
seed=1
[[ -x "$qiao" ]] || { echo "make-intent-bot-fast: $qiao is missing: build first" >&2; exit 1; }
[[ -f "$e5" ]] || { echo "make-intent-bot-fast: $e5 is missing: ctest --test-dir $build -R e5.convert" >&2; exit 1; }
[[ -f "$teacher" ]] || { echo "make-intent-bot-fast: the teacher $teacher is missing: scripts/make-intent-bot.sh" >&2; exit 1; }
mkdir -p "$out"
recipe="$out/$name.recipe.json"
cat > "$recipe" <<EOF
{"layers": $layers,
 "teacher": {"model": "$teacher", "alpha": $alpha, "temperature": $temp},
 "train": {"epochs": $epochs, "lr": $lr, "seed": $seed}}
EOF
resume=()
[[ -f "$out/$name.ckpt.safetensors" && ! -f "$out/$name.safetensors" ]] &&
  resume=(--resume "$out/$name.ckpt.safetensors")
if [[ ! -f "$out/$name.safetensors" ]]; then
  "$qiao" intent train --init "$e5" --data "$data/train.jsonl" --config "$recipe" \
    --out "$out/$name.safetensors" --ckpt "$out/$name.ckpt.safetensors" \
    --log "$out/$name" "${resume[@]}"
  rm -f "$out/$name.ckpt.safetensors"
fi
"$qiao" intent eval --model "$out/$name.safetensors" --data "$data/test.jsonl" --json > "$out/eval-$name.json"

# Small, as scripts/make-intent-bot.sh makes the 12-layer model small.
intents="$root/datasets/intent"
"$qiao" prune-vocab --model "$out/$name.safetensors" --keep "$data/train.jsonl" \
  --keep "$intents/clinc150/train.jsonl" --keep "$intents/banking77/train.jsonl" --script zh,digits \
  --out "$out/$name-pruned.safetensors"
"$qiao" quantize --model "$out/$name-pruned.safetensors" --precision int8 \
  --out "$out/$name-pruned-int8.safetensors"
"$qiao" intent calibrate --model "$out/$name-pruned-int8.safetensors" --data "$data/train.jsonl" \
  --held-out --seed "$seed" --out "$out/$name-small.safetensors"
rm -f "$out/$name-pruned.safetensors" "$out/$name-pruned-int8.safetensors"
"$qiao" intent eval --model "$out/$name-small.safetensors" --data "$data/test.jsonl" --json > "$out/eval-$name-small.json"
"$qiao" intent eval --model "$out/$name-small.safetensors" --data "$data/test.jsonl"

# The sample bot's scripted conversations with it (the committed 12-layer
# model passes all 47); a failure is reported, not fatal.
"$qiao" chat --bot "$root/apps/chatbot/ecommerce.yml" --model "$out/$name-small.safetensors" \
  --test "$root/apps/chatbot/conversations/zh.yml" "$root/apps/chatbot/conversations/en.yml" ||
  echo "make-intent-bot-fast: some conversations failed (above)"
echo "make-intent-bot-fast: $out/$name-small.safetensors; the repository's copy is" \
  "apps/chatbot/models/ecommerce-zh-fast.safetensors"
