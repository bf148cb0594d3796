#!/usr/bin/env bash
# The supernet against models fine-tuned for one policy each: for uniform 8, 4 and 2-bit weights
# and two random mixed policies, the supernet's test accuracy at that policy (BatchNorm
# recalibrated for it) next to a copy of the float checkpoint fine-tuned with QAT for that
# policy alone, for as many epochs as the supernet had. Prints a markdown table.
#   bench/supernet_table.sh CKPT SUPERNET EPOCHS [DATA]
set -euo pipefail
cd "$(dirname "$0")/.."
CKPT=$1 SUPER=$2 EPOCHS=$3 DATA=${4:-}
Q=${QUANTLAB:-build/quantlab}
T=$(mktemp -d /tmp/supernet-table.XXXXXX)
trap 'rm -rf "$T"' EXIT
json() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
# layer count from a uniform quantize of the checkpoint
L=$($Q quantize --ckpt "$CKPT" --mode int8 --out "$T/probe.qm" --json ${DATA:+--data $DATA} | json layers)
rand() { python3 -c "import random; random.seed($1); print(','.join(random.choice(['2','4','8','16']) for _ in range($L)))"; }
echo "| policy | supernet | fine-tuned for it alone ($EPOCHS epochs) | difference |"
echo "| --- | ---: | ---: | ---: |"
for P in 8 4 2 "$(rand 1)" "$(rand 2)"; do
  S=$($Q supernet --ckpt "$SUPER" --policy "$P" --json ${DATA:+--data $DATA} | json test_acc)
  $Q quantize --ckpt "$CKPT" --mode mixed --policy "$P" --qat-epochs "$EPOCHS" --out "$T/p.qm" \
    --json ${DATA:+--data $DATA} >/dev/null
  F=$($Q run --model "$T/p.qm" --json ${DATA:+--data $DATA} | json test_acc)
  python3 -c "print('| %s | %.2f%% | %.2f%% | %+.2f pt |' % ('$P', 100*$S, 100*$F, 100*($S-$F)))"
done
