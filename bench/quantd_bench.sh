#!/usr/bin/env bash
# quantd under load, over TCP loopback (ports the OS picked): decide requests/s and p50/p99
# latency (against a bare nanomsg REP echo server on the same transport, in the same run),
# context change -> notified, fetched and verified model p50/p99 with 1,000 simulated devices,
# bytes on the wire for a fleet-wide update (broadcast against notify + fetch, and the patch
# saving on a one-layer change), and quantd's
# RSS with 100,000 registered devices (quantd deciding with a gate it trains briefly on its
# start), and health round trips while the pool builds models. Goals: >= 20k req/s, push p99
# <= 10 ms, RSS <= 200 MiB, health within 50 ms.
#   bench/quantd_bench.sh [--clients K] [--seconds S] [--push-devices N] [--rss-devices N]
#                         [--only decide|push|wire|patch|health|rss]
set -euo pipefail
cd "$(dirname "$0")/.."
clients=4 seconds=5 pushn=1000 rssn=100000 only=
while (($#)); do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --push-devices) pushn=$2; shift 2 ;;
    --rss-devices) rssn=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "quantd_bench.sh: unknown flag $1" >&2; exit 2 ;;
  esac
done
BUILD=${BUILD:-build}
[ "$BUILD" = build ] && scripts/setup.sh >/dev/null
$BUILD/quantlab data fetch --data fashion-mnist >/dev/null
T=$(mktemp -d /tmp/quantd-bench.XXXXXX)
read -r P1 P2 P3 < <(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
CTL=tcp://127.0.0.1:$P1 PUB=tcp://127.0.0.1:$P2
$BUILD/quantd --state-dir "$T" --control "$CTL" --push "$PUB" --train-epochs 1 \
  --train-subset 5000 --supernet-epochs 1 --gate-steps 300 --sens-n 500 --log-level warn \
  2>"$T/quantd.log" &
QD=$!
trap 'kill -TERM $QD 2>/dev/null; wait $QD 2>/dev/null; rm -rf "$T"' EXIT
Q="$BUILD/quantctl --control $CTL --push $PUB --state-dir $T"
until $Q status 2>/dev/null | grep -q '^quantd: ready'; do sleep 1; done
B="$BUILD/quantd_bench"
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }
if want decide; then
echo "== decide over loopback ($clients clients, ${seconds}s each side)"
$B decide --control "$CTL" --admin-key "$T/admin.key" --clients "$clients" --seconds "$seconds" \
  --echo "tcp://127.0.0.1:$P3"
fi
if want push; then
echo "== context change -> notified, fetched, verified model ($pushn devices)"
$B push --control "$CTL" --push "$PUB" --admin-key "$T/admin.key" --devices "$pushn"
fi
if want wire; then
echo "== bytes on the wire for a fleet-wide update ($pushn devices)"
$B wire --control "$CTL" --push "$PUB" --admin-key "$T/admin.key" --devices "$pushn"
fi
if want patch; then
echo "== patches against a one-layer change (the daemon's backbone)"
$B patch --ckpt "$T/backbone.qdck" --data-dir data
fi
if want health; then
echo "== health while the pool builds models ($clients loaders, 100 devices each, ${seconds}s)"
$B health --control "$CTL" --push "$PUB" --admin-key "$T/admin.key" --clients "$clients" \
  --devices 100 --seconds "$seconds"
fi
if want rss; then
echo "== RSS with $rssn registered devices"
$B rss --control "$CTL" --admin-key "$T/admin.key" --pid "$QD" --devices "$rssn"
fi
