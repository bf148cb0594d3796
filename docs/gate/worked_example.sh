#!/usr/bin/env bash
# The worked example: one Cortex-M7 board whose battery falls from 100% to 15% and whose free
# RAM then halves; at each step the gate's policy (made feasible by the exact search) and its
# measured accuracy on the test set. Writes docs/gate/worked-example-<stem>-<device>.md.
#   docs/gate/worked_example.sh GATE [DEVICE] [LIMIT]
set -euo pipefail
cd "$(dirname "$0")/../.."
G=$1 DEV=${2:-cortex-m7} LIMIT=${3:-2000}
Q=${QUANTLAB:-build/quantlab}
stem=$(basename "$G" .gate)
out=docs/gate/worked-example-$stem-$DEV.md
RAM=$(awk -F= '/^ram *=/{gsub(/ /,"",$2); print $2}' etc/devices/$DEV.ini)
RES=$(awk -F= '/^reserved_ram *=/{gsub(/ /,"",$2); print $2}' etc/devices/$DEV.ini)
free_ram=$(python3 -c "
def b(s):
    s=s.strip(); m={'k':1024,'M':1024**2,'G':1024**3}
    return float(s[:-1])*m[s[-1]] if s[-1] in m else float(s)
print(int((b('$RAM')-b('$RES'))/2))")
{
  echo "# Worked example: $DEV, battery falling, then RAM halving ($stem)"
  echo
  echo "Command: \`docs/gate/worked_example.sh $G $DEV $LIMIT\` (accuracy on the first $LIMIT test"
  echo "images, the device runtime on the built .qm after BatchNorm recalibration for its policy)."
  echo "Energy budget from the battery as quantd sets it: at or below 20% the least any policy"
  echo "needs, rising linearly to the most at 100%."
  echo
  echo "| step | battery | free RAM | policy (weight bits, /16: 16-bit activations) | flash | RAM | energy mJ | accuracy | decide µs |"
  echo "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
  i=0
  for B in 1.0 0.8 0.6 0.45 0.3 0.15 "0.15 ram"; do
    i=$((i+1))
    set -- $B
    extra=""; ramtxt="all"
    if [ "${2:-}" = ram ]; then extra="--ram $free_ram"; ramtxt="$free_ram"; fi
    if ! j=$($Q decide --gate "$G" --device "$DEV" --battery "$1" $extra --eval --limit "$LIMIT" \
              --json 2>"$out.err"); then
      echo "| $i | $(python3 -c "print('%.0f%%' % (100*$1))") | $ramtxt | no policy fits: $(tail -1 "$out.err" | sed 's/^quantlab: //') | | | | | |"
      continue
    fi
    echo "$j" | python3 -c "
import json,sys
j=json.loads(sys.stdin.read().strip().splitlines()[-1])
print('| %d | %.0f%% | %s | %s | %.0f | %.0f | %.3f | %.2f%% | %.0f |' % ($i, 100*$1, '$ramtxt', j['policy'], j['flash'], j['ram'], j['energy_mj'], 100*j['test_acc'], j['decide_us']))"
  done
} > "$out"
rm -f "$out.err"
cat "$out"
