#!/usr/bin/env bash
# One model on an emulated Cortex-M board: builds firmware/ with the model in flash (quantlab
# export-c, one test image of DATA), runs it under QEMU (-icount shift=0) and prints, per layer,
# "layer I KERNEL INSTRUCTIONS" (SysTick ticks times the instructions a tick, calibrated in the
# same run), then "total INSTRUCTIONS ARENA_BYTES STACK_BYTES" and "model_bytes N" (the model's
# array in the ELF's flash). quantlab calibrate-device runs it for every model it measures.
#   scripts/mcu_run.sh cortex-m4|cortex-m7 MODEL.qm DATA
set -euo pipefail
cd "$(dirname "$0")/.."
cpu=$1 qm=$2 data=$3
case $cpu in
  cortex-m4) machine=mps2-an386 flags="-mcpu=cortex-m4 -mfpu=fpv4-sp-d16" ;;
  cortex-m7) machine=mps2-an500 flags="-mcpu=cortex-m7 -mfpu=fpv5-sp-d16" ;;
  *) echo "mcu_run.sh: cortex-m4 or cortex-m7" >&2; exit 2 ;;
esac
Q=${QUANTLAB:-build/quantlab}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$Q export-c "$qm" --data "$data" --limit 1 --out "$tmp/model.c"
arm-none-eabi-gcc $flags -mthumb -mfloat-abi=hard -O2 -ffreestanding \
  -fno-tree-loop-distribute-patterns -ffp-contract=off -Wall -Wextra -nostdlib \
  -T firmware/mps2.ld -I. -I"$tmp" firmware/startup.c firmware/main.c runtime/*.c -lgcc \
  -o "$tmp/fw.elf"
timeout 900 qemu-system-arm -M $machine -cpu $cpu -nographic -semihosting -icount shift=0 \
  -kernel "$tmp/fw.elf" 2>"$tmp/dev.out" >/dev/null || true
tr -d '\r' <"$tmp/dev.out" | python3 -c '
import json, sys
lines = sys.stdin.read().splitlines()
if not lines or not lines[-1].startswith("{") or "error" in lines[-1]:
    sys.exit("mcu_run.sh: the firmware failed: %s" % (lines[-1] if lines else "no output"))
r = json.loads(lines[-1])
ipt = r["calib_instructions"] / r["calib_ticks"]
tot = 0
for l in lines:
    if l.startswith("layer "):
        f = l.split()
        n = round(int(f[3]) * ipt)
        tot += n
        print("layer %s %s %d" % (f[1], f[2], n))
print("total %d %d %d" % (tot, r["arena_bytes"], r["stack_bytes"]))
'
arm-none-eabi-nm -S "$tmp/fw.elf" | while read -r _ size _ name; do
  [ "$name" = qd_model ] && echo "model_bytes $((16#$size))"
done || true
