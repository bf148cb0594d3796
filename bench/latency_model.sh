#!/usr/bin/env bash
# The host cost model against reality: measures the host profile's coefficients by running the
# runtime (quantlab calibrate-host: per-layer times, best of 3 rounds, fitted to the host
# kernel model), then prints measured and predicted latency for the five families under
# uniform and random mixed policies (the random ones are not fitted), with the errors. Goal:
# within 20% for every family. Run it on an idle machine; copy runs/host.ini over
# etc/devices/host.ini to adopt the new coefficients.
#   bench/latency_model.sh [IMAGES]      (default 30 per round; writes runs/host.ini)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
mkdir -p runs
OMP_NUM_THREADS=1 exec build/quantlab calibrate-host --out runs/host.ini --images "${1:-30}"
