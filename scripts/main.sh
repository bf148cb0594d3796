#!/usr/bin/env bash
# The main job on the embedded default: set up, start quantd (which, on a first start, trains
# the custom CNN on Fashion-MNIST in the background, fine-tunes it into a supernet, measures its
# sensitivity and trains the gate, and meanwhile already answers), then run a simulated fleet against it with quantctl: devices of six real
# profiles register, receive signed models decided for their budgets, verify and run them on
# test images and ack; then their battery falls to 15% and their free RAM halves, and quantd
# decides and pushes again. quantd is stopped (SIGTERM) at the end; its state stays in
# state/ (a second run reuses the trained backbone). Extra arguments go to `quantctl simulate`
# (e.g. --devices 50 --images 500).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
build/quantlab data fetch --data fashion-mnist
STATE=${QUANTD_STATE:-state}
mkdir -p "$STATE"
ABS=$(cd "$STATE" && pwd) # QUANTD_STATE may be relative or absolute
CTL="ipc://$ABS/control.sock" PUB="ipc://$ABS/push.sock"
build/quantd -c etc/quantd.conf --state-dir "$STATE" --control "$CTL" --push "$PUB" \
  2>>"$STATE/quantd.log" &
QD=$!
trap 'kill -TERM $QD 2>/dev/null; wait $QD 2>/dev/null || true' EXIT
echo "quantd started (pid $QD, log $STATE/quantd.log); a first start trains the backbone," \
     "its supernet and the gate (about 15 minutes on 2 cores)"
Q="build/quantctl --control $CTL --push $PUB --state-dir $STATE"
sleep 1
$Q status
$Q simulate --devices 12 --images 200 --fleet-ops "$@"
echo
$Q status
$Q devices --limit 6
echo
$Q device sim-00001
