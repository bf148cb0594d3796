#!/usr/bin/env bash
# Every model family on every dataset, a short run each: SUBSET training images (default 10000),
# EPOCHS epochs (default 1), evaluated on the full test set. Shows all fifteen train and land
# clearly above chance (10%). Prints a markdown table; the JSON lines go to runs/families.jsonl.
#   bench/families.sh [SUBSET] [EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
SUBSET=${1:-10000} EPOCHS=${2:-1}
scripts/setup.sh
build/quantlab data fetch --data all >/dev/null
mkdir -p runs; : > runs/families.jsonl
echo "| model | data | params | test acc | train s |"
echo "| --- | --- | ---: | ---: | ---: |"
for data in mnist fashion-mnist cifar10; do
  for m in custom "resnet_v1 --depth 20" "resnet_v2 --depth 20" "mobilenet_v1 --width 0.5" \
           "mobilenet_v2 --width 0.5"; do
    ck=$(mktemp --suffix=.qdck)
    out=$(OMP_NUM_THREADS=2 build/quantlab train --model $m --data $data --subset "$SUBSET" \
            --epochs "$EPOCHS" --threads 2 --no-eval --json --out "$ck" | tail -1)
    ev=$(build/quantlab eval --ckpt "$ck" --json); rm -f "$ck"
    echo "$out $ev" >> runs/families.jsonl
    /usr/bin/env python3 - "$m" "$data" "$out" "$ev" <<'PY'
import json, sys
m, d = sys.argv[1], sys.argv[2]
t, e = json.loads(sys.argv[3]), json.loads(sys.argv[4])
print(f"| {m} | {d} | {t['params']} | {100 * e['test_acc']:.2f}% | {t['train_seconds']:.0f} |")
PY
  done
done
