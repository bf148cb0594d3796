#!/usr/bin/env bash
# Device builds, proven under QEMU.
#
#   scripts/cross.sh aarch64 [--images N]
#     Builds the device end (runtime/ and its tests; QD_DEVICE_ONLY) with Debian's
#     gcc-aarch64-linux-gnu and the :arm64 cmocka, runs its tests under qemu-aarch64 (-cpu max),
#     then runs models built on the host (a briefly trained custom CNN on Fashion-MNIST, at
#     int8, int16x8, fp32, fp16, dynamic range and a mixed 2/4/8-bit policy with 16-bit
#     activations) on N test images (default 200) with rt_check on both machines and compares
#     every logit bit for bit, fast kernels and reference kernels alike.
#
# Needs the host build (scripts/setup.sh) and the data (quantlab data fetch). Prints one line a
# model and exits non-zero on any difference.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-}
shift || true
images=200
while (($#)); do
  case "$1" in
    --images) images=$2; shift 2 ;;
    *) echo "cross.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done

arm64_packages() {
  dpkg --print-foreign-architectures | grep -qx arm64 && \
    dpkg-query -W -f='${Status}' libcmocka-dev:arm64 2>/dev/null | grep -q "install ok installed" && return
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "cross.sh: adding arm64 (multiarch) and libcmocka-dev:arm64" >&2
  $SUDO dpkg --add-architecture arm64
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    libcmocka-dev:arm64 >&2
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

aarch64() {
  arm64_packages
  local B=build-aarch64
  PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig \
    cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DQD_DEVICE_ONLY=ON \
      -DQD_WERROR="$([ "${CI:-}" = true ] && echo ON || echo OFF)" \
      -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
      -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc \
      -DCMAKE_CROSSCOMPILING_EMULATOR="qemu-aarch64;-L;/usr/aarch64-linux-gnu" >/dev/null
  ninja -C $B >&2
  file $B/test_runtime | grep -q 'ARM aarch64' || { echo "cross.sh: not an aarch64 build" >&2; exit 1; }
  QEMU_CPU=max ctest --test-dir $B --output-on-failure --timeout 900

  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  test_images "$tmp"
  build/quantlab train --model custom --data fashion-mnist --epochs 1 --max-batches 60 \
    --no-eval --out "$tmp/c.qdck" >/dev/null
  local fail=0
  for spec in int8 int16x8 fp32 fp16 dynamic "mixed 8/16,4,2,4/16,8" "mixed 2,2,4,8,8"; do
    set -- $spec
    local name=${1}${2:+-${2//[\/,]/_}} mode=$1
    build/quantlab quantize --ckpt "$tmp/c.qdck" --data fashion-mnist --mode "$mode" \
      ${2:+--policy $2} --calib-n 256 --out "$tmp/$name.qm" >/dev/null
    for ref in "" --reference; do
      build/rt_check "$tmp/$name.qm" "$tmp/images.raw" "$images" $ref >"$tmp/host.txt" \
        2>"$tmp/host.err"
      QEMU_CPU=max qemu-aarch64 -L /usr/aarch64-linux-gnu $B/rt_check "$tmp/$name.qm" \
        "$tmp/images.raw" "$images" "$tmp/labels.raw" $ref >"$tmp/dev.txt" 2>"$tmp/dev.err"
      if cmp -s "$tmp/host.txt" "$tmp/dev.txt"; then
        echo "aarch64 $name${ref:+ (reference kernels)}: $images images, logits identical to the host's; $(sed 's/^rt_check: //' "$tmp/dev.err")"
      else
        echo "aarch64 $name${ref:+ (reference kernels)}: logits DIFFER from the host's" \
             "($(cmp "$tmp/host.txt" "$tmp/dev.txt" | head -1))"
        fail=1
      fi
    done
  done
  return $fail
}

case "$target" in
  aarch64) aarch64 ;;
  *) echo "usage: scripts/cross.sh aarch64 [--images N]" >&2; exit 2 ;;
esac
