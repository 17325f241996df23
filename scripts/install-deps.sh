#!/usr/bin/env bash
# Installs every Debian 12 package qiao needs to build, test and benchmark.
# Idempotent and quiet; run as root on a fresh machine.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --peer   also Debian's PyTorch, for regenerating golden
#                                    fixtures and running the peer benchmarks
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config git
  libopenblas-dev      # CPU GEMM (cblas_sgemm)
  libcjson-dev         # JSON: safetensors headers, configs
  libcmocka-dev        # unit tests
  clang                # libFuzzer targets, second compiler for sanitizer runs
  python3 python3-numpy
  # inputs: text, images, audio
  libicu-dev           # normalization, transliteration, word segmentation
  libsentencepiece-dev # subword pieces (BPE), training and encoding
  libstb-dev           # stb_image decoding
  libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libswresample-dev
  libsndfile1-dev      # WAV, FLAC, OGG/Vorbis, AIFF
  ffmpeg sox           # test inputs in other formats are made at test time
  # data: the synthetic shapes world
  libcairo2-dev        # antialiased drawing
  espeak-ng espeak-ng-data  # speech for captions and questions (the program)
  fonts-noto-cjk       # glyphs for rendered Chinese text (cards, plots)
)
if [[ "${1:-}" == "--peer" ]]; then
  pkgs+=(python3-torch python3-torchaudio)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
