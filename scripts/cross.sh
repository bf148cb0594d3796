#!/usr/bin/env bash
# Device builds, proven under QEMU.
#
#   scripts/cross.sh aarch64 [--images N]
#     Builds the device and gateway end (runtime/, core/, proto/ and libquantd-client with
#     their tests; QD_DEVICE_ONLY + QD_GATEWAY) with Debian's gcc-aarch64-linux-gnu and the
#     :arm64 -dev packages (multiarch), runs the tests under qemu-aarch64 (-cpu max:
#     NEON and the dot product, so test_runtime runs both aarch64 SIMD ISAs), then runs models
#     built on the host (a briefly trained custom CNN on Fashion-MNIST, at int8, int16x8, fp32,
#     fp16, dynamic range and two mixed 2/4/8-bit policies, one with 16-bit activations) on N
#     test images (default 200) with rt_check and compares every logit bit for bit with the
#     host's reference kernels: the host's best SIMD ISA, then on aarch64 the reference
#     kernels, the portable ones, neon, neon-dot (qemu -cpu max) and the best a Cortex-A72 has
#     (qemu -cpu cortex-a72, no dot product: neon). Each line says how many layers ran on the
#     SIMD kernels; an int8 model that runs none on neon or neon-dot fails. Last, the whole
#     project for aarch64 (quantd, quantctl, quantlab) and a smoke run under qemu (quantd's
#     usage; quantlab run gives the host's accuracy). The host's rt_check comes from
#     $HOST_BUILD (default build), quantlab from build.
#
#   scripts/cross.sh cortex-m4|cortex-m7 [--model M.qm --data D] [--limit N] [--json]
#     Builds firmware/ for QEMU's mps2-an386 (Cortex-M4F) or mps2-an500 (Cortex-M7) with the
#     model in flash (quantlab export-c, with N test images of D, default 20) and the arena one
#     static buffer of the size the model states, runs it (-icount shift=0: one instruction a
#     nanosecond; SysTick at the 25 MHz core clock, calibrated in the run against a loop of
#     known length) and the same program on the host (firmware/host.c): every image's logits
#     must be identical. One JSON object a model (firmware/report.py): images, identical,
#     accuracy, flash and RAM with and without the model, the arena, the stack's high-water
#     mark, instructions per inference, and each layer's kernel and instructions. Without
#     --model: a briefly trained custom CNN (Fashion-MNIST) and ResNet-20 (CIFAR-10), each at
#     int8 and at a mixed 2/4/8-bit policy.
#
# Needs the host build (scripts/setup.sh) and the data (quantlab data fetch). Exits non-zero on
# any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-}
shift || true
images=200 model= data= json=0 limit=20
while (($#)); do
  case "$1" in
    --images) images=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --json) json=1; shift ;;
    *) echo "cross.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done

# The :arm64 -dev packages the cross build links (multiarch): cmocka for the tests; cJSON,
# libsodium, SQLite and zstd for the gateway end (the wire format, libquantd-client); OpenBLAS,
# libuv, inih, zlib, libpng and libmicrohttpd (metrics) for the daemon and the tools
# (aarch64_daemon). nanomsg's
# packages cannot be installed for two architectures at once (installing :arm64 removes the
# host's), so its :arm64 ones are downloaded and unpacked into build-aarch64-deps/ instead.
ARM64_PKGS="libcmocka-dev libcjson-dev libsodium-dev libsqlite3-dev libzstd-dev libopenblas-dev
  libuv1-dev libinih-dev zlib1g-dev libpng-dev libmicrohttpd-dev"
ARM64_DEPS=build-aarch64-deps
arm64_unpacked() {
  [ -f $ARM64_DEPS/.done ] && return
  rm -rf $ARM64_DEPS && mkdir -p $ARM64_DEPS/root
  (cd $ARM64_DEPS && apt-get download -q libnanomsg5:arm64 libnanomsg-dev:arm64 >&2)
  for d in $ARM64_DEPS/*.deb; do dpkg -x "$d" $ARM64_DEPS/root; done
  local root; root=$(cd $ARM64_DEPS/root && pwd)
  sed -i "s|^prefix=.*|prefix=$root/usr|" $ARM64_DEPS/root/usr/lib/aarch64-linux-gnu/pkgconfig/*.pc
  touch $ARM64_DEPS/.done
}
arm64_packages() {
  local missing=
  if dpkg --print-foreign-architectures | grep -qx arm64; then
    for p in $ARM64_PKGS; do
      dpkg-query -W -f='${Status}' "$p:arm64" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p:arm64"
    done
    [ -z "$missing" ] && return
  else
    missing=$(for p in $ARM64_PKGS; do printf ' %s:arm64' "$p"; done)
  fi
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "cross.sh: adding arm64 (multiarch) and$missing" >&2
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing >&2
}

# The first `images` test images of Fashion-MNIST, raw, and their labels.
test_images() { # DIR
  python3 - "$1" "$images" <<'EOF'
import gzip, sys
out, n = sys.argv[1], int(sys.argv[2])
x = gzip.open('data/fashion-mnist/t10k-images-idx3-ubyte.gz').read()[16:16 + n * 784]
y = gzip.open('data/fashion-mnist/t10k-labels-idx1-ubyte.gz').read()[8:8 + n]
open(out + '/images.raw', 'wb').write(x)
open(out + '/labels.raw', 'wb').write(y)
EOF
}

# The whole project for aarch64 (quantd, quantctl, quantlab; the :arm64 OpenBLAS, libuv, inih,
# zlib and libpng by multiarch), then a smoke run under qemu-aarch64: quantd's usage, and
# quantlab run on the int8 model: the same accuracy line as the host's. (The host-only tests
# stay on the host: some are x86-specific, and test_daemon executes quantd directly.)
aarch64_daemon() { # TMP (holds int8.qm)
  local F=build-aarch64-full deps; deps=$(cd $ARM64_DEPS/root && pwd)
  PKG_CONFIG_LIBDIR=$deps/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
    cmake -S . -B $F -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DQD_WERROR="$([ "${CI:-}" = true ] && echo ON || echo OFF)" \
      -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
      -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc \
      -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath,$deps/usr/lib/aarch64-linux-gnu" >/dev/null
  ninja -C $F quantd quantctl quantlab >&2
  local q="qemu-aarch64 -L /usr/aarch64-linux-gnu" ok=0
  # OpenBLAS under qemu-user: one thread, and not the host's pinned x86 core type
  export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
  unset OPENBLAS_CORETYPE
  timeout 60 $q $F/quantd --help | grep -q "^usage: quantd" || { echo "aarch64 quantd: no usage"; ok=1; }
  local host dev
  host=$(build/quantlab run --model "$1/int8.qm" --data fashion-mnist --limit "$images" --isa portable --json |
         python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])["test_acc"])')
  dev=$(QEMU_CPU=max timeout 300 $q $F/quantlab run --model "$1/int8.qm" --data fashion-mnist \
          --limit "$images" --json |
        python3 -c 'import json,sys; r=json.loads(sys.stdin.read().splitlines()[-1]); print(r["test_acc"], r["isa"], r["accelerated_layers"])')
  if [ "${dev%% *}" = "$host" ]; then
    echo "aarch64 quantd, quantctl, quantlab built; quantlab run under qemu: accuracy $host as on the host ($dev)"
  else
    echo "aarch64 quantlab run: accuracy ${dev%% *}, host $host"; ok=1
  fi
  return $ok
}

aarch64() {
  arm64_packages
  arm64_unpacked
  local B=build-aarch64 HB=${HOST_BUILD:-build} deps; deps=$(cd $ARM64_DEPS/root && pwd)
  PKG_CONFIG_LIBDIR=$deps/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
    cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DQD_DEVICE_ONLY=ON -DQD_GATEWAY=ON \
      -DQD_WERROR="$([ "${CI:-}" = true ] && echo ON || echo OFF)" \
      -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
      -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc \
      -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath,$deps/usr/lib/aarch64-linux-gnu" \
      -DCMAKE_CROSSCOMPILING_EMULATOR="qemu-aarch64;-L;/usr/aarch64-linux-gnu" >/dev/null
  ninja -C $B >&2
  for t in test_runtime test_proto quantd-agent; do
    file $B/$t | grep -q 'ARM aarch64' || { echo "cross.sh: $t is not an aarch64 build" >&2; exit 1; }
  done
  QEMU_CPU=max ctest --test-dir $B --output-on-failure --timeout 900
  # the gateway's program runs there (its end-to-end test is test_fleet, on the host)
  qemu-aarch64 -L /usr/aarch64-linux-gnu $B/quantd-agent --help | grep -q 'usage: quantd-agent' ||
    { echo "cross.sh: quantd-agent does not run under qemu-aarch64" >&2; exit 1; }

  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  test_images "$tmp"
  build/quantlab train --model custom --data fashion-mnist --epochs 1 --max-batches 60 \
    --no-eval --out "$tmp/c.qdck" >/dev/null
  # QEMU's CPU (none: the host)|rt_check's flags (none: the best ISA there)
  local runs=("|" "max|--reference" "max|--isa portable" "max|--isa neon" "max|--isa neon-dot"
              "cortex-a72|")
  local fail=0
  for spec in int8 int16x8 fp32 fp16 dynamic "mixed 8/16,4,2,4/16,8" "mixed 2,2,4,8,8"; do
    set -- $spec
    local name=${1}${2:+-${2//[\/,]/_}} mode=$1
    build/quantlab quantize --ckpt "$tmp/c.qdck" --data fashion-mnist --mode "$mode" \
      ${2:+--policy $2} --calib-n 256 --out "$tmp/$name.qm" >/dev/null
    "$HB"/rt_check "$tmp/$name.qm" "$tmp/images.raw" "$images" --reference >"$tmp/want.txt" \
      2>"$tmp/want.err" || { echo "$name: the host's rt_check failed: $(cat "$tmp/want.err")"; fail=1; continue; }
    local run cpu flags
    for run in "${runs[@]}"; do
      IFS='|' read -r cpu flags <<<"$run"
      if [ -z "$cpu" ]; then
        "$HB"/rt_check "$tmp/$name.qm" "$tmp/images.raw" "$images" "$tmp/labels.raw" $flags \
          >"$tmp/got.txt" 2>"$tmp/got.err" || true
      else
        QEMU_CPU=$cpu qemu-aarch64 -L /usr/aarch64-linux-gnu $B/rt_check "$tmp/$name.qm" \
          "$tmp/images.raw" "$images" "$tmp/labels.raw" $flags >"$tmp/got.txt" 2>"$tmp/got.err" || true
      fi
      local what="$name on ${cpu:+aarch64 -cpu }${cpu:-the host}, ${flags:-best ISA}" said
      said=$(sed 's/^rt_check: //' "$tmp/got.err")
      if ! cmp -s "$tmp/want.txt" "$tmp/got.txt"; then
        echo "$what: logits DIFFER from the host reference kernels' ($(cmp "$tmp/want.txt" "$tmp/got.txt" 2>&1 | head -1); $said)"
        fail=1
      elif [ "$mode" = int8 ] && [[ $flags == *neon* || $cpu == cortex-a72 ]] &&
           [[ $said == *" 0 of "* ]]; then
        echo "$what: identical, but NO layer ran on the SIMD kernels ($said)"
        fail=1
      else
        echo "$what: identical to the host reference kernels' logits; $said"
      fi
    done
  done
  aarch64_daemon "$tmp" || fail=1
  return $fail
}

# One model on one board: build, run under QEMU and on the host, compare, report.
firmware_run() { # CPU MODEL.qm DATA TMP
  local cpu=$1 qm=$2 ds=$3 tmp=$4 machine flags
  case $cpu in
    cortex-m4) machine=mps2-an386 flags="-mcpu=cortex-m4 -mfpu=fpv4-sp-d16" ;;
    cortex-m7) machine=mps2-an500 flags="-mcpu=cortex-m7 -mfpu=fpv5-sp-d16" ;;
  esac
  build/quantlab export-c "$qm" --data "$ds" --limit "$limit" --out "$tmp/model.c"
  local cc="arm-none-eabi-gcc $flags -mthumb -mfloat-abi=hard -O2 -ffreestanding
    -fno-tree-loop-distribute-patterns -ffp-contract=off -Wall -Wextra -nostdlib
    -T firmware/mps2.ld -I. -I$tmp"
  $cc firmware/startup.c firmware/main.c runtime/*.c -lgcc -o "$tmp/fw.elf"
  gcc -O2 -ffp-contract=off -I. -I"$tmp" firmware/host.c firmware/main.c runtime/*.c \
    -o "$tmp/fw-host"
  timeout 600 qemu-system-arm -M $machine -cpu $cpu -nographic -semihosting -icount shift=0 \
    -kernel "$tmp/fw.elf" >/dev/null 2>"$tmp/dev.out" || true
  "$tmp/fw-host" >"$tmp/host.out"
  tr -d '\r' <"$tmp/dev.out" >"$tmp/dev.txt"
  python3 firmware/report.py "$tmp" "$cpu" "$qm" "$json"
}

cortex() { # CPU
  local cpu=$1 tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  if [ -n "$model" ]; then
    [ -n "$data" ] || { echo "cross.sh: --model needs --data" >&2; exit 2; }
    firmware_run "$cpu" "$model" "$data" "$tmp"
    return
  fi
  build/quantlab train --model custom --data fashion-mnist --epochs 1 --max-batches 60 \
    --no-eval --out "$tmp/c.qdck" >/dev/null
  build/quantlab train --model resnet_v1 --depth 20 --data cifar10 --epochs 1 --max-batches 20 \
    --no-eval --out "$tmp/r20.qdck" >/dev/null
  local fail=0 r20mixed=8,4,2,4,8,2,4,8,4,2,4,8,2,4,8,4,2,4,8,2,4,8
  for spec in "c fashion-mnist int8" "c fashion-mnist mixed 8,4,2,4,8" "r20 cifar10 int8" \
              "r20 cifar10 mixed $r20mixed"; do
    set -- $spec
    local name=$1-$3
    build/quantlab quantize --ckpt "$tmp/$1.qdck" --data "$2" --mode "$3" \
      ${4:+--policy $4} --calib-n 256 --out "$tmp/$name.qm" >/dev/null
    firmware_run "$cpu" "$tmp/$name.qm" "$2" "$tmp" || fail=1
  done
  return $fail
}

case "$target" in
  aarch64) aarch64 ;;
  cortex-m4|cortex-m7) cortex "$target" ;;
  *) echo "usage: scripts/cross.sh aarch64 [--images N] | cortex-m4|cortex-m7 [--model M.qm" \
          "--data D] [--limit N] [--json]" >&2; exit 2 ;;
esac
