#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds qiao and runs the main demo.
# Until the encoders exist, the demo is the learning run: a 2-layer
# transformer trained in C, its held-out accuracy, and its model file.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
build/bin/qiao demo --out build/qiao-demo.safetensors
build/bin/qiao info build/qiao-demo.safetensors | head -n 12
