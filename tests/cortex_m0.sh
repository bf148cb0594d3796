#!/bin/sh
# The runtime compiles for the smallest core a device profile names (RP2040: Cortex-M0+),
# freestanding, every warning an error, with and without its float paths. Run from the source
# root (the argument); arm-none-eabi-gcc comes from scripts/setup.sh.
set -eu
cd "$1"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for float in 1 0; do
  (cd "$out" && arm-none-eabi-gcc -mcpu=cortex-m0plus -mthumb -Os -ffreestanding -Wall -Wextra \
     -Werror -DQD_RT_FLOAT=$float -c "$1"/runtime/*.c)
  arm-none-eabi-size -t "$out"/*.o | tail -1 | awk -v f=$float '{print "cortex-m0+ QD_RT_FLOAT=" f ": text " $1 " bytes"}'
  rm -f "$out"/*.o
done
