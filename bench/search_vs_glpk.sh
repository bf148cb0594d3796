#!/usr/bin/env bash
# The exact policy search against GLPK's ILP solver (Debian glpk-utils, installed here) on
# random instances of L = 20, 50 and 200 layers with flash, latency and energy budgets: the
# same objective on every instance, and the time ratio (goal >= 100x).
#   bench/search_vs_glpk.sh [INSTANCES_PER_SIZE]       (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
if ! command -v glpsol >/dev/null; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends glpk-utils
fi
exec build/search_bench "${1:-5}" glpsol
