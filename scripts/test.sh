#!/usr/bin/env bash
# The test suite: set up, fetch the real datasets (the data tests then require them), build,
# run every test with ctest, the device builds under QEMU (scripts/cross.sh), then the whole
# suite again under ASan + UBSan, the hostile-input test under ThreadSanitizer (QD_TSAN_ALL=1:
# the daemon and fleet tests too), and every fuzz target for a few seconds (scripts/fuzz.sh).
#   --fast   skip the sanitizer and fuzz passes
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0; [ "${1:-}" = --fast ] && fast=1
if ((fast)); then scripts/setup.sh; else scripts/setup.sh --sanitize; fi
build/quantlab data fetch --data all
export QD_REQUIRE_DATA=1 OMP_NUM_THREADS=2
# what the daemon tests' first starts train, kept for this run only: the release pass trains,
# the sanitizer passes start from the same artifacts (tests/daemonfix.h)
export QD_TEST_CACHE=$PWD/build/test-cache
rm -rf "$QD_TEST_CACHE"
# two at a time: the end-to-end tests mostly wait on their daemons (this halves their wall
# time on 2 cores; every test passed so in a run with a training test beside it)
ctest --test-dir build --output-on-failure --timeout 900 -j2
echo "== the device end, cross-built, under QEMU =="
scripts/cross.sh aarch64 --images 50
scripts/cross.sh cortex-m4 --limit 10
scripts/cross.sh cortex-m7 --limit 10
if ((!fast)); then
  echo "== the same suite under ASan + UBSan =="
  QD_KILLS=2 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
    ctest --test-dir build-asan --output-on-failure --timeout 1800 -j2
  # TSan's checks of the NN code's memcpy/memset (uninstrumented, but one module with the
  # daemon) make training ~20x slower: CI runs the hostile test (limits, concurrent jobs,
  # faults, kill -9; a plain backbone trains in a minute) and the fleet-operations test (its
  # backbone from the release pass: retention sweeps and the metrics thread, about 2 minutes);
  # QD_TSAN_ALL=1 adds the daemon and fleet tests (supernet and gate: about 10 minutes).
  echo "== the daemon under ThreadSanitizer =="
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQD_TSAN=ON >/dev/null
  ninja -C build-tsan quantd quantctl quantlab quantd-agent qdfault test_hostile test_ops test_daemon \
    test_fleet >&2
  tsan='^(hostile|ops)$'; [ "${QD_TSAN_ALL:-0}" = 1 ] && tsan='^(hostile|ops|daemon|fleet)$'
  QD_KILLS=2 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp" \
    ctest --test-dir build-tsan -R "$tsan" --output-on-failure --timeout 1800
  echo "== every fuzz target, briefly =="
  scripts/fuzz.sh --seconds "${QD_FUZZ_SECONDS:-3}"
fi
