#!/bin/sh
# The runtime's closure: its objects (the arguments, or one ;-separated list), linked into one
# relocatable object, may leave undefined only memcpy, memset and memmove, and the SIMD back
# ends' CPU-feature symbols: the x86 one's from libgcc (__cpu_model, __cpu_features2,
# __cpu_indicator_init), the aarch64 one's getauxval (Linux's C library: HWCAP_ASIMDDP, the dot
# product, is not in the baseline and is asked of the kernel). Anything else
# (malloc, printf, libm, zlib, a symbol from nn/ or core/) fails. Also checks that the objects
# are the runtime (they define qd_rt_load and the validator), so an empty list cannot pass.
set -eu
LD=${LD:-ld} NM=${NM:-nm} # a cross build's: LD=aarch64-linux-gnu-ld NM=aarch64-linux-gnu-nm
objs=$(echo "$*" | tr ';' ' ')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$LD -r -o "$tmp/rt.o" $objs
$NM "$tmp/rt.o" | grep -q ' T qd_rt_load$' || { echo "$objs: not the runtime (no qd_rt_load)"; exit 1; }
$NM "$tmp/rt.o" | grep -q ' T qd_qm_validate_into$' || { echo "$objs: no validator"; exit 1; }
undef=$($NM -u "$tmp/rt.o" | awk '{print $NF}' | sort -u)
bad=$(echo "$undef" | grep -Evx 'memcpy|memset|memmove|__cpu_model|__cpu_features2|__cpu_indicator_init|getauxval|_GLOBAL_OFFSET_TABLE_|' || true)
if [ -n "$bad" ]; then
  echo "the runtime depends on symbols outside its closure:"; echo "$bad"; exit 1
fi
echo "runtime closure: undefined only $(echo $undef | tr '\n' ' ')"
