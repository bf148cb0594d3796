#!/usr/bin/env bash
# Instructions per inference on a Cortex-M core under QEMU: our runtime against CMSIS-NN (the
# peer, built from ../shared/peers/cmsis-nn for the same core: -O3, the library's own
# configuration, ARM_MATH_DSP from the core's flags) on the same layers in the same run.
#
#   bench/mcu_speed.sh [--cpu cortex-m4|cortex-m7] [--verbose] [--json]
#
# For the custom CNN (Fashion-MNIST) and ResNet-20 (CIFAR-10), each at int8 and with every
# layer's weights at 4 and at 2 bits (8-bit activations): one firmware (bench/mcu/bench_main.c)
# runs the model once on our runtime with its per-layer profile, then every convolution,
# depthwise and dense layer on CMSIS-NN with the same shapes, weights, requantization and clamp
# (s8 kernels for 8-bit weights, s4 for 4-bit; CMSIS-NN has no 2-bit kernels). QEMU counts
# instructions (-icount shift=0, SysTick calibrated in the run). Printed per model and
# bitwidth: instructions over those layers, ours and CMSIS-NN's, and ours / CMSIS-NN (goal:
# at most 1.0 at 8 and 4 bits); for 2 bits, ours / our 4-bit (goal: below 1). --verbose adds
# every layer. Weights are a 1-epoch model's: instruction counts do not depend on the values.
set -euo pipefail
cd "$(dirname "$0")/.."
cpu=cortex-m4 verbose=0 json=0
while (($#)); do
  case "$1" in
    --cpu) cpu=$2; shift 2 ;;
    --verbose) verbose=1; shift ;;
    --json) json=1; shift ;;
    *) echo "mcu_speed.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done
case $cpu in
  cortex-m4) machine=mps2-an386 flags="-mcpu=cortex-m4 -mfpu=fpv4-sp-d16" ;;
  cortex-m7) machine=mps2-an500 flags="-mcpu=cortex-m7 -mfpu=fpv5-sp-d16" ;;
  *) echo "mcu_speed.sh: --cpu cortex-m4 or cortex-m7" >&2; exit 2 ;;
esac
peer=${CMSIS_NN:-../shared/peers/cmsis-nn}
[ -d "$peer/Source" ] || { echo "mcu_speed.sh: no CMSIS-NN sources at $peer" >&2; exit 1; }
Q=${QUANTLAB:-build/quantlab}
[ -x "$Q" ] || { echo "mcu_speed.sh: build the host first (scripts/setup.sh)" >&2; exit 1; }
flags="$flags -mthumb -mfloat-abi=hard -ffp-contract=off"

# CMSIS-NN's integer kernels, once per core (float sources need its float configuration)
lib=build-mcu/cmsis-nn-$cpu
if [ ! -f "$lib/.done" ] || [ "$peer/Source" -nt "$lib/.done" ]; then
  mkdir -p "$lib"
  rm -f "$lib"/*.o
  for f in $(ls "$peer"/Source/*/*.c | grep -v '_f16\|_f32\|flt'); do
    echo "arm-none-eabi-gcc $flags -O3 -I$peer/Include -c $f -o $lib/$(basename "$f" .c).o"
  done | xargs -P 2 -I{} sh -c {}
  touch "$lib/.done"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=$tmp/results.txt
: >"$out"
for md in "custom fashion-mnist 5" "resnet_v1 cifar10 22"; do
  set -- $md
  model=$1 data=$2 nq=$3
  $Q data fetch --data "$data" >/dev/null
  $Q train --model "$model" --data "$data" --epochs 1 --max-batches 20 --no-eval \
    --out "$tmp/$model.qdck" >/dev/null
  for bits in 8 4 2; do
    mode=mixed policy=$(python3 -c "print(','.join(['$bits'] * $nq))")
    [ "$bits" = 8 ] && mode=int8
    $Q quantize --ckpt "$tmp/$model.qdck" --data "$data" --mode $mode \
      ${policy:+--policy $policy} --calib-n 64 --out "$tmp/m.qm" >/dev/null
    mkdir -p "$tmp/m"
    $Q export-c "$tmp/m.qm" --data "$data" --limit 1 --out "$tmp/m/model.c"
    arm-none-eabi-gcc $flags -O2 -ffreestanding -fno-tree-loop-distribute-patterns -nostdlib \
      -T firmware/mps2.ld -I. -I"$tmp/m" -I"$peer/Include" firmware/startup.c \
      bench/mcu/bench_main.c runtime/*.c "$lib"/*.o -lgcc -o "$tmp/bench.elf"
    echo "model $model $bits" >>"$out"
    timeout 900 qemu-system-arm -M $machine -cpu $cpu -nographic -semihosting -icount shift=0 \
      -kernel "$tmp/bench.elf" 2>>"$out" >/dev/null
  done
done
tr -d '\r' <"$out" | python3 bench/mcu/report.py "$cpu" "$verbose" "$json"
