#!/usr/bin/env bash
# One checkpoint in every quantization mode: file size (and the size predicted without
# building), runtime arena, runtime accuracy on the test set (first LIMIT images, default all)
# and images/s on 2 threads. The fp32 row is the unquantized model through the same runtime.
#   bench/quant_table.sh CKPT DATA [LIMIT] [POLICY]     (POLICY adds a mixed row, e.g. 4)
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=$1 DATA=$2 LIMIT=${3:-0} POLICY=${4:-}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
lim=(); [ "$LIMIT" != 0 ] && lim=(--limit "$LIMIT")
echo "| mode | bytes | predicted | arena bytes | accuracy | images/s |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
modes=(fp32 fp16 dynamic int8 int16x8); [ -n "$POLICY" ] && modes+=(mixed)
for m in "${modes[@]}"; do
  pol=(); [ "$m" = mixed ] && pol=(--policy "$POLICY")
  q=$(build/quantlab quantize --ckpt "$CKPT" --data "$DATA" --mode "$m" "${pol[@]}" \
        --out "$tmp/$m.qm" --json)
  r=$(build/quantlab run --model "$tmp/$m.qm" --data "$DATA" "${lim[@]}" --threads 2 --json)
  label=$m; [ "$m" = mixed ] && label="mixed $POLICY"
  python3 - "$label" "$q" "$r" <<'PY'
import json, sys
m, q, r = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
print(f"| {m} | {q['bytes']} | {q['predicted_bytes']} | {q['arena_bytes']} | "
      f"{100 * r['test_acc']:.2f}% | {r['images_per_s']:.0f} |")
PY
done
