#!/usr/bin/env bash
# The main job on the embedded default: set up, fetch Fashion-MNIST, train the custom CNN and
# evaluate the saved checkpoint. Extra arguments go to `quantlab train` (e.g. --epochs 3).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build/quantlab data fetch --data fashion-mnist
mkdir -p runs
build/quantlab train --model custom --data fashion-mnist --epochs 10 --threads 2 \
  --out runs/custom-fashion-mnist.qdck "$@"
build/quantlab eval --ckpt runs/custom-fashion-mnist.qdck
