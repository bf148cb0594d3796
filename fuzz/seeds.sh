#!/usr/bin/env bash
# Makes the fuzz targets' seed corpora from real messages and files, into BUILD/corpus/<target>/
# (default BUILD: build-fuzz, already built: mkseeds). The seeds are regenerated each time; what
# the fuzzers added to a corpus stays. Sources:
#   mkseeds (fuzz/mkseeds.c): sealed requests, notifications, signed manifests, fetch chunks,
#     packs (raw, zstd, patch against BUILD/seeds/pack_base.qm), .qm models in every mode,
#     checkpoints, the zoo's specs;
#   fuzz/ops.seeds: one request body per op (ops);
#   the repo: etc/quantd.conf (config), etc/devices/*.ini (device), etc/quantd-agent.conf
#     (agentconf), etc/models/*.spec (spec);
#   tests/fuzz-regress/<target>/: every crash found so far (each also a regression test).
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build-fuzz}
rm -rf "$B/seeds"
"$B/mkseeds" "$B/seeds"
mkdir -p "$B/seeds/config" "$B/seeds/device" "$B/seeds/agentconf"
cp etc/quantd.conf "$B/seeds/config/"
cp etc/devices/*.ini "$B/seeds/device/"
cp etc/quantd-agent.conf "$B/seeds/agentconf/"
cp etc/models/*.spec "$B/seeds/spec/"
mkdir -p "$B/seeds/ops" # one request per line of fuzz/ops.seeds (fuzz_ops seals them)
n=0
while IFS= read -r line; do
  [ -n "$line" ] && printf '%s' "$line" >"$B/seeds/ops/seed-$((n += 1))"
done <fuzz/ops.seeds
for d in tests/fuzz-regress/*/; do
  [ -d "$d" ] || continue
  t=$(basename "$d")
  mkdir -p "$B/seeds/$t"
  for f in "$d"*; do [ -f "$f" ] && cp "$f" "$B/seeds/$t/regress-$(basename "$f")"; done
done
for d in "$B"/seeds/*/; do
  t=$(basename "$d")
  mkdir -p "$B/corpus/$t"
  cp "$d"* "$B/corpus/$t/"
done
echo "seeds: $(find "$B/seeds" -type f | wc -l) files in $B/corpus/*" >&2
