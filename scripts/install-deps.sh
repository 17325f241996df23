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
)
if [[ "${1:-}" == "--peer" ]]; then
  pkgs+=(python3-torch)
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
