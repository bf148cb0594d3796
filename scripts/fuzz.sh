#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/: clang, ASan + UBSan) into build-fuzz/, makes their seed
# corpora (fuzz/seeds.sh) and runs each target in turn, one process at a time, for N seconds;
# then prints per target the executions, the crashes (crash-, leak-, timeout- and oom- files
# this run left in build-fuzz/artifacts/<target>/) and libFuzzer's exit status. Exits nonzero
# when any target crashed. Needs clang and libFuzzer's runtime (scripts/setup.sh installs
# them: clang, libclang-rt-14-dev); installs nothing itself.
#   scripts/fuzz.sh [--seconds N] [--runs R] [--only T[,T...]]
# (N: 60 by default, CI runs 3; --runs stops each target after R executions instead, e.g.
# --runs 10000000 for the closing note's 10 million per target.)
# Corpora grow in build-fuzz/corpus/<target>/ across runs; logs are build-fuzz/logs/<target>.log
# ($FUZZ_BUILD_DIR instead of build-fuzz where set).
# A crash: reproduce with build-fuzz/fuzz_<target> FILE, minimize with -minimize_crash=1, fix
# it, and add the input to tests/fuzz-regress/<target>/ (a cmocka test feeds every file there).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=60 runs="" only=""
while (($#)); do
  case "$1" in
    --seconds) secs=$2; shift ;;
    --seconds=*) secs=${1#*=} ;;
    --runs) runs=$2; shift ;;
    --runs=*) runs=${1#*=} ;;
    --only) only=$2; shift ;;
    --only=*) only=${1#*=} ;;
    *) echo "fuzz: unknown argument $1 (--seconds N, --runs R, --only T)" >&2; exit 2 ;;
  esac
  shift
done

# target:max_len:dictionary
TARGETS=(request:8192:request.dict note:2048:json.dict manifest:8192:json.dict
         chunk:8192:json.dict pack:8192: qm:16384: ckpt:16384:spec.dict spec:8192:spec.dict
         config:8192:ini.dict device:8192:ini.dict agentconf:4096:ini.dict
         ops:4096:json.dict)

if ! command -v clang >/dev/null || ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' |
     clang -x c -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
  echo "fuzz: needs clang with libFuzzer (Debian: clang libclang-rt-14-dev; scripts/setup.sh --no-build)" >&2
  exit 2
fi

B=${FUZZ_BUILD_DIR:-build-fuzz}
[ -f "$B/build.ninja" ] || cmake -S fuzz -B "$B" -G Ninja -DCMAKE_C_COMPILER=clang >/dev/null
ninja -C "$B" >&2
fuzz/seeds.sh "$B"
mkdir -p "$B/logs"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export QD_FUZZ_BASE=$(cd "$B" && pwd)/seeds/pack_base.qm

rows=() bad=0
for spec in "${TARGETS[@]}"; do
  IFS=: read -r t maxlen dict <<<"$spec"
  if [ -n "$only" ] && [[ ",$only," != *",$t,"* ]]; then continue; fi
  art=$B/artifacts/$t
  mkdir -p "$art"
  stamp=$(mktemp)
  if [ -n "$runs" ]; then limit=(-runs="$runs"); what="$runs executions"
  else limit=(-max_total_time="$secs"); what="${secs}s"; fi
  args=("${limit[@]}" -rss_limit_mb=2048 -timeout=10 -max_len="$maxlen"
        -print_final_stats=1 -artifact_prefix="$art/")
  [ -n "$dict" ] && args+=(-dict="fuzz/$dict")
  echo "fuzz: $t for $what" >&2
  set +e
  "$B/fuzz_$t" "${args[@]}" "$B/corpus/$t" >"$B/logs/$t.log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$B/logs/$t.log" | tail -1)
  crashes=$(find "$art" -maxdepth 1 -type f -newer "$stamp" \
            \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  rm -f "$stamp"
  rows+=("$(printf '%-10s %14s %8s %6s' "$t" "${execs:-?}" "$crashes" "$rc")")
  if ((crashes || rc)); then
    bad=1
    grep -m3 -E 'ERROR|runtime error|invariant failed' "$B/logs/$t.log" >&2 || true
  fi
done

printf '%-10s %14s %8s %6s\n' target executions crashes status
printf '%s\n' "${rows[@]}"
exit $bad
