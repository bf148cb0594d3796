#!/usr/bin/env bash
# Decision time: the gate's forward pass plus the exact search that makes its choice feasible,
# next to the sensitivity search alone, over random contexts on every device profile (p50,
# p99), for a gate and its supernet. Goal: p99 <= 100 us for ResNet-20 (gate + search).
#   bench/gate_bench.sh GATE [CONTEXTS]
set -euo pipefail
cd "$(dirname "$0")/.."
Q=${QUANTLAB:-build/quantlab}
$Q gate eval --gate "$1" --contexts "${2:-1000}" --no-eval --threads 1 | tail -2
