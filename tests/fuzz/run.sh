#!/usr/bin/env bash
# Runs each fuzz target for SECONDS on a fresh copy of its seeds:
#   tests/fuzz/run.sh BUILD_DIR SECONDS TARGET...   (make fuzz calls it)
# BUILD_DIR/bin/<target>_fuzzer must exist. Corpora grow in
# BUILD_DIR/fuzz/corpus/<target>, logs go to BUILD_DIR/fuzz/<target>.log and
# a crashing input to BUILD_DIR/fuzz/artifacts/. Exits 1 if any target
# crashed, leaked, timed out or ran out of memory.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2

build=$1
seconds=$2
shift 2
work=$build/fuzz
mkdir -p "$work/artifacts"

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
for t in "$@"; do
  corpus=$work/corpus/$t
  rm -rf "$corpus"
  mkdir -p "$corpus"
  cp tests/fuzz/corpus/"$t"/* "$corpus"/
  log=$work/$t.log
  extra=()
  # libFuzzer's leak check after each input sweeps the heap whenever more
  # was allocated than freed, which the server's own threads make almost
  # always: 30 times slower. Leaks are still reported at exit.
  [ "$t" = rpc ] && extra+=(-detect_leaks=0)
  echo "fuzz: $t for ${seconds}s (log: $log)"
  "$build/bin/${t}_fuzzer" "$corpus" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/$t-" \
    "${extra[@]}" >"$log" 2>&1
  rc=$?
  # The last status line (coverage, features, corpus) and the exec rate.
  grep -E '^#[0-9]+' "$log" | tail -1 | sed 's/^/fuzz:   /'
  grep -E 'stat::(number_of_executed_units|average_exec_per_sec)' "$log" |
    sed 's/^/fuzz:   /'
  if [ $rc -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $rc); the end of its log:"
    tail -40 "$log"
    for input in "$work/artifacts/$t-"*; do
      [ -e "$input" ] && echo "fuzz:   input: $input"
    done
    failed+=("$t")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in: ${failed[*]} (see tests/fuzz/README.md)"
  exit 1
fi
echo "fuzz: all targets ran ${seconds}s without a crash"
