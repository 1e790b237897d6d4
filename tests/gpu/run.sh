#!/usr/bin/env bash
# The GPU checks, for a machine with an NVIDIA GPU. Runs every gpu-labelled
# test binary and the CUDA benchmarks found in BIN_DIR (default build/bin),
# with BIN_DIR/lib on the library path (scripts/gpu_bundle.sh puts the
# shared libraries a Debian-built binary needs there, so a bundle made on a
# machine without a GPU runs on one that has it). Prints a short table last.
set -uo pipefail
BIN_DIR=${1:-build/bin}
export LD_LIBRARY_PATH="$BIN_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

status=0
summary=()
for t in cast_cuda_test ops_cuda_test cuda_memory_resource_test; do
  if [ ! -x "$BIN_DIR/$t" ]; then
    summary+=("$t: MISSING")
    status=1
    continue
  fi
  echo "== $t"
  if "$BIN_DIR/$t" --gtest_brief=1 2>&1 | tee "/tmp/$t.log"; then
    if grep -q "SKIPPED" "/tmp/$t.log"; then
      summary+=("$t: SKIPPED (no GPU seen)")
      status=1
    else
      summary+=("$t: $(grep -E '^\[  PASSED  \]' "/tmp/$t.log" | tail -1)")
    fi
  else
    summary+=("$t: FAILED")
    status=1
  fi
done

for b in tensorcast-bench-cuda-cast tensorcast-bench-cuda-pool; do
  if [ -x "$BIN_DIR/$b" ]; then
    echo "== $b"
    "$BIN_DIR/$b" | tee "/tmp/$b.log" || status=1
  fi
done

echo
echo "== GPU checks"
for line in "${summary[@]}"; do echo "  $line"; done
for b in tensorcast-bench-cuda-cast tensorcast-bench-cuda-pool; do
  [ -f "/tmp/$b.log" ] && tail -n 12 "/tmp/$b.log"
done
exit $status
