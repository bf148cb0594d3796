#!/usr/bin/env bash
# Installs every Debian package quantd needs (idempotent: apt runs only when something is
# missing), then configures and builds into build/ (or $BUILD_DIR). Flags:
#   --no-build        packages only
#   --sanitize        also build build-asan/ with ASan + UBSan
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake ninja-build pkg-config git
      libuv1-dev libnanomsg-dev libopenblas-dev libsqlite3-dev libcjson-dev libinih-dev
      libsodium-dev libzstd-dev libpng-dev libcmocka-dev zlib1g-dev
      dataset-fashion-mnist gnuplot-nox python3 python3-nacl
      gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
      clang libclang-rt-14-dev libmicrohttpd-dev prometheus)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

build=1 sanitize=0
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    --sanitize) sanitize=1 ;;
    *) echo "setup: unknown flag $a" >&2; exit 2 ;;
  esac
done
((build)) || exit 0

werror=OFF; [ "${CI:-}" = true ] && werror=ON
B=${BUILD_DIR:-build}
cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQD_WERROR=$werror >/dev/null
ninja -C "$B" >&2
if ((sanitize)); then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DQD_SANITIZE=ON -DQD_WERROR=$werror >/dev/null
  ninja -C build-asan >&2
fi
