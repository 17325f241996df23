#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds qiao and runs the main demo:
# the shipped model (models/qiao-base.safetensors) indexes sample pictures
# and speech of the shapes world and answers typed and spoken queries in
# Chinese and English (`qiao demo`); the shipped VQA and caption model
# (models/qiao-vqa.safetensors) describes one of the pictures and answers its
# questions; then the first model's file is listed (`qiao info`).
#
#   scripts/demo.sh            (samples and index go to build/demo/)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=models/qiao-base.safetensors
if [ ! -f "$MODEL" ]; then
  echo "demo.sh: $MODEL is missing. Train it with scripts/train-base.sh (hours on a few cores;" >&2
  echo "  it writes data/qiao-base.safetensors: copy that to $MODEL), then run this again." >&2
  exit 1
fi
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
build/bin/qiao demo --model "$MODEL" --work build/demo
echo
# The model file: its tensor count, then (skipping the tensor table) its size and metadata.
info=$(build/bin/qiao info "$MODEL")
head -n 1 <<<"$info"
echo "  ... (build/bin/qiao info $MODEL lists every tensor)"
tail -n 7 <<<"$info"
