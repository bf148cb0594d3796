#!/usr/bin/env bash
# Training speed, quantlab against PyTorch (Debian python3-torch, installed here), same models
# (PyTorch builds them from quantlab's own spec text), batch 64, 2 threads, in the same run.
#   bench/train_speed.sh [BATCHES]        (default 60 timed batches a model)
# PyTorch runs with glibc malloc tuned not to trim/unmap (MALLOC_*_THRESHOLD_), its best case
# on these machines; it also skips the data pipeline (preloaded random tensors), quantlab doesn't.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-60}
scripts/setup.sh
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends python3-torch
fi
build/quantlab data fetch --data fashion-mnist >/dev/null
build/quantlab data fetch --data cifar10 >/dev/null
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf "%-22s %-14s %12s %12s %8s\n" model data "quantlab/s" "pytorch/s" ratio
for md in "custom fashion-mnist" "resnet_v1 cifar10"; do
  set -- $md
  build/quantlab spec --model "$1" --data "$2" --depth 20 > "$tmp/spec"
  ours=$(OMP_NUM_THREADS=2 build/quantlab bench --model "$1" --data "$2" --depth 20 \
           --batches "$N" --batch 64 --threads 2 --json)
  theirs=$(MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 \
           /usr/bin/python3 bench/torch_train.py --spec "$tmp/spec" --batches "$N" --batch 64 \
           --threads 2)
  /usr/bin/python3 - "$1" "$2" "$ours" "$theirs" <<'PY'
import json, sys
m, d, o, t = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
name = m + ("-20" if m.startswith("resnet") else "")
print(f"{name:22s} {d:14s} {o['images_per_s']:12.0f} {t['images_per_s']:12.0f} "
      f"{o['images_per_s'] / t['images_per_s']:7.2f}x")
PY
done
