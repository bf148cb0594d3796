#!/usr/bin/env bash
# Int8 inference speed: quantlab's runtime (int8 on the best SIMD kernels here, and its fp32
# path) against PyTorch int8 (Debian python3-torch, static post-training quantization, oneDNN,
# FX graph mode), same network (PyTorch builds it from quantlab's spec text), same threads, in
# the same run. Prints images/s and the ratios the quantization issue sets goals for:
# ours int8 / PyTorch int8 at batch 1 and batch 64 (goal >= 1.2 at 64), ours int8 / ours fp32
# (goal >= 3).
#   bench/int8_speed.sh [THREADS...]          (default: 1 2)
# Uses runs/custom-fmnist.qdck and runs/resnet20-cifar10.qdck when they exist (scripts/main.sh
# and docs/results.md make them); otherwise trains a 1-epoch stand-in (speed does not depend on
# the weights' values). Our runtime runs one image at a time per thread, so its batch-64
# figure is 64 images spread over the threads; PyTorch runs real batches.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${*:-1 2}
scripts/setup.sh >/dev/null
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends python3-torch
fi
Q=${QUANTLAB:-build/quantlab}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=68719476736 # PyTorch's best case
printf "%-10s %-8s %3s %10s %10s %10s %10s %9s %9s %9s\n" model data thr "ours-int8" "ours-fp32" \
  "pt-int8-b1" "pt-int8-b64" "vs-pt-b1" "vs-pt-b64" "vs-fp32"
for md in "custom fashion-mnist runs/custom-fmnist.qdck 10000" \
          "resnet_v1 cifar10 runs/resnet20-cifar10.qdck 4000"; do
  set -- $md
  model=$1 data=$2 ckpt=$3 n=$4
  $Q data fetch --data "$data" >/dev/null
  if [ ! -f "$ckpt" ]; then
    ckpt=$tmp/$model.qdck
    $Q train --model "$model" --depth 20 --data "$data" --epochs 1 --subset 2000 --no-eval \
      --out "$ckpt" >/dev/null
  fi
  $Q spec --model "$model" --depth 20 --data "$data" > "$tmp/spec"
  $Q quantize --ckpt "$ckpt" --data "$data" --mode int8 --out "$tmp/int8.qm" >/dev/null
  $Q quantize --ckpt "$ckpt" --data "$data" --mode fp32 --out "$tmp/fp32.qm" >/dev/null
  for t in $THREADS; do
    ours=$(OMP_NUM_THREADS=$t $Q run --model "$tmp/int8.qm" --data "$data" --limit "$n" \
             --threads "$t" --json)
    fp32=$(OMP_NUM_THREADS=$t $Q run --model "$tmp/fp32.qm" --data "$data" --limit $((n / 10)) \
             --threads "$t" --json)
    b1=$(cd bench && /usr/bin/python3 torch_int8.py --spec "$tmp/spec" --batch 1 --threads "$t")
    b64=$(cd bench && /usr/bin/python3 torch_int8.py --spec "$tmp/spec" --batch 64 --threads "$t")
    /usr/bin/python3 - "$model" "$data" "$t" "$ours" "$fp32" "$b1" "$b64" <<'PY'
import json, sys
m, d, t = sys.argv[1:4]
o, f, b1, b64 = (json.loads(s) for s in sys.argv[4:8])
oi, fi, p1, p64 = o["images_per_s"], f["images_per_s"], b1["images_per_s"], b64["images_per_s"]
# at batch 1 our single image runs on one thread whatever t is: per-image rate = oi / t
o1 = oi / int(t)
name = m + ("-20" if m.startswith("resnet") else "")
print(f"{name:10s} {d[:8]:8s} {t:>3s} {oi:10.0f} {fi:10.0f} {p1:10.0f} {p64:10.0f} "
      f"{o1 / p1:8.2f}x {oi / p64:8.2f}x {oi / fi:8.2f}x   [{o['isa']}, {o['accelerated_layers']} layers]")
PY
  done
done
