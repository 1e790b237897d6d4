#!/usr/bin/env bash
# The GPU checks, for a machine with an NVIDIA GPU. Runs every gpu-labelled
# test binary and the CUDA benchmarks found in BIN_DIR (default build/bin),
# with BIN_DIR/lib on the library path (scripts/gpu_bundle.sh puts the
# shared libraries a Debian-built binary needs there, so a bundle made on a
# machine without a GPU runs on one that has it), then the Python client's
# tests against BIN_DIR/tensorcast-server --devices=auto (with the grpcio and
# protobuf wheels the bundle carries in BIN_DIR/wheels, when it has them);
# among them tests/python/test_cuda_ipc_gpu.py, the Python client's CUDA IPC
# through torch, which skips itself where python3 has no torch (the bundle
# carries none): the table says so, without failing the run.
# Prints a short table last; exits non-zero if anything failed, was missing
# or skipped for want of a GPU. Stays within about 6 minutes: each step has
# its own time limit, clipped to what is left of the whole.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN_DIR=${1:-build/bin}
if ! BIN_DIR=$(cd "$BIN_DIR" 2>/dev/null && pwd); then
  echo "tests/gpu/run.sh: no such directory: ${1:-build/bin}" >&2
  exit 2
fi
HOST_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH="$BIN_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The integration test and the benches start the tensorcast-server beside
# them, not the one their build directory had.
export TENSORCAST_BIN_DIR="$BIN_DIR"
LOGS=$(mktemp -d /tmp/tc-gpu-run.XXXXXX)
BUDGET_S=300  # the whole run, leaving room under 6 minutes

LD_LIBRARY_PATH=$HOST_LD_LIBRARY_PATH timeout 20 \
  nvidia-smi --query-gpu=name,driver_version,memory.total \
  --format=csv,noheader || echo "(nvidia-smi: no GPU or no driver here)"

status=0
summary=()

# Seconds a step may take: its own limit, clipped to what the budget has
# left; 0 when too little is left to start it.
step_limit() {
  local want=$1 left=$((BUDGET_S - SECONDS))
  if [ "$left" -lt 10 ]; then echo 0; elif [ "$want" -gt "$left" ]; then
    echo "$left"; else echo "$want"; fi
}

# GoogleTest binaries: the CUDA kernels, the CUDA memory resources, the
# server end to end on cuda:0, CUDA IPC regions (device memory this
# process lends the server for Fetch and Put), and tensorcast-load (its
# --cuda-ipc runs through a GPU here).
for entry in cast_cuda_test:90 ops_cuda_test:90 cuda_memory_resource_test:90 \
             gpu_integration_test:150 cuda_ipc_test:60 \
             load_integration_test:90; do
  t=${entry%%:*}
  if [ ! -x "$BIN_DIR/$t" ]; then
    summary+=("$t: MISSING")
    status=1
    continue
  fi
  limit=$(step_limit "${entry##*:}")
  if [ "$limit" -eq 0 ]; then
    summary+=("$t: NOT RUN (time budget spent)")
    status=1
    continue
  fi
  echo "== $t (limit ${limit}s)"
  timeout -k 5 "$limit" "$BIN_DIR/$t" --gtest_brief=1 2>&1 | tee "$LOGS/$t.log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    summary+=("$t: TIMED OUT after ${limit}s")
    status=1
  elif [ "$rc" -ne 0 ]; then
    failed=$(grep -oE '^\[  FAILED  \] [A-Za-z][A-Za-z0-9_/.]*' "$LOGS/$t.log" | sort -u | wc -l)
    summary+=("$t: FAILED ($failed failed; exit $rc)")
    status=1
  elif grep -q "SKIPPED" "$LOGS/$t.log"; then
    why=$(grep -m1 -oE 'no CUDA device.*' "$LOGS/$t.log" | cut -c1-110)
    summary+=("$t: SKIPPED (no GPU seen)${why:+: $why}")
    status=1
  else
    summary+=("$t: $(grep -E '^\[  PASSED  \]' "$LOGS/$t.log" | tail -1)")
  fi
done

# Benchmarks: each says "skipped" and exits 0 without a GPU.
benches=(tensorcast-bench-cuda-cast tensorcast-bench-cuda-pool
         tensorcast-bench-cuda-fetch)
for b in "${benches[@]}"; do
  if [ ! -x "$BIN_DIR/$b" ]; then
    summary+=("$b: MISSING")
    status=1
    continue
  fi
  limit=$(step_limit 90)
  if [ "$limit" -eq 0 ]; then
    summary+=("$b: NOT RUN (time budget spent)")
    status=1
    continue
  fi
  echo "== $b (limit ${limit}s)"
  timeout -k 5 "$limit" "$BIN_DIR/$b" 2>&1 | tee "$LOGS/$b.log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    summary+=("$b: TIMED OUT after ${limit}s")
    status=1
  elif [ "$rc" -ne 0 ]; then
    summary+=("$b: FAILED (exit $rc)")
    status=1
  elif grep -qiE 'no CUDA device|skipped' "$LOGS/$b.log"; then
    summary+=("$b: SKIPPED (no GPU seen)")
    status=1
  else
    summary+=("$b: ok")
  fi
done

# The Python client's tests against a server with --devices=auto. The
# bundle's wheels (grpcio and protobuf at the versions the committed stubs
# need) go first on the path; without them, python3's own packages are used.
python_tests() {
  # python3 runs with the machine's own libraries (the bundle's Debian
  # libstdc++ and OpenSSL could break its extension modules); the servers it
  # starts get the bundle's through this wrapper (conftest.py honours
  # TENSORCAST_SERVER_BIN).
  local wrapper="$LOGS/tensorcast-server"
  printf '#!/usr/bin/env bash\nLD_LIBRARY_PATH=%q exec %q "$@"\n' "$LD_LIBRARY_PATH" \
    "$BIN_DIR/tensorcast-server" >"$wrapper"
  chmod +x "$wrapper"
  export TENSORCAST_SERVER_BIN="$wrapper"
  if [ -n "$HOST_LD_LIBRARY_PATH" ]; then
    export LD_LIBRARY_PATH="$HOST_LD_LIBRARY_PATH"
  else
    unset LD_LIBRARY_PATH
  fi
  local site=/tmp/tc-site
  local pypath="$REPO/client/python"
  local pyver
  pyver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
  if ! compgen -G "$BIN_DIR/wheels/*.whl" >/dev/null; then
    echo "no wheels in $BIN_DIR/wheels: using python3's own grpcio and protobuf"
  elif [ "$pyver" != 3.12 ]; then
    echo "the bundle's wheels are for CPython 3.12, python3 is ${pyver:-missing}:" \
         "using its own grpcio and protobuf"
  else
    rm -rf "$site" && mkdir -p "$site"
    if ! python3 -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --upgrade --target "$site" "$BIN_DIR"/wheels/*.whl; then
      # No pip, or one that refuses: a wheel is a zip laid out as
      # site-packages wants it.
      echo "pip could not install the wheels; unpacking them instead"
      for w in "$BIN_DIR"/wheels/*.whl; do
        python3 -m zipfile -e "$w" "$site" || return 1
      done
    fi
    # A regular package in front, so that an older google/__init__.py in
    # python3's site-packages cannot hide this google.protobuf.
    if [ -d "$site/google" ] && [ ! -f "$site/google/__init__.py" ]; then
      printf '%s\n' "__path__ = __import__('pkgutil').extend_path(__path__, __name__)" \
        >"$site/google/__init__.py"
    fi
    pypath="$site:$pypath"
  fi
  export PYTHONPATH="$pypath${PYTHONPATH:+:$PYTHONPATH}"
  if ! python3 -c 'import grpc, numpy'; then
    if [ "$pypath" != "$REPO/client/python" ]; then
      echo "python3 cannot import grpc and numpy with the bundle's wheels"
      return 1
    fi
    echo "python3 cannot import grpc and numpy: Python tests not run"
    return 3
  fi
  python3 -c 'import grpc, google.protobuf as pb, numpy as np
print("python3: grpcio", grpc.__version__, "protobuf", pb.__version__,
      "numpy", np.__version__)' || return 1

  local port_file="$LOGS/port" server_pid rc
  "$wrapper" --devices=auto --listen=127.0.0.1:0 \
    --port-file="$port_file" --shutdown-grace=2 >"$LOGS/py-server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 300); do
    [ -s "$port_file" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ ! -s "$port_file" ]; then
    echo "tensorcast-server did not start:"
    cat "$LOGS/py-server.log"
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    return 1
  fi
  TENSORCAST_TEST_SERVER="127.0.0.1:$(tr -d '\n' <"$port_file")"
  export TENSORCAST_TEST_SERVER
  local limit
  limit=$(step_limit 150)
  if [ "$limit" -eq 0 ]; then
    rc=4
  else
    echo "== python tests against $TENSORCAST_TEST_SERVER (limit ${limit}s)"
    (cd "$REPO" && timeout -k 5 "$limit" python3 -m pytest -q -rs -p no:cacheprovider \
      tests/python)
    rc=$?
  fi
  kill "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  return $rc
}
python_tests 2>&1 | tee "$LOGS/python.log"
rc=${PIPESTATUS[0]}
py_counts=$(grep -E '^(=+ )?[0-9]+ (passed|failed|skipped|error)' "$LOGS/python.log" |
  tail -1 | sed -E 's/=//g; s/^ +| +$//g')
case $rc in
  0) summary+=("python tests: ${py_counts:-passed}") ;;
  3) summary+=("python tests: NOT RUN (python3 lacks grpc or numpy)") ;;
  4) summary+=("python tests: NOT RUN (time budget spent)"); status=1 ;;
  124 | 137) summary+=("python tests: TIMED OUT (${py_counts:-no counts})"); status=1 ;;
  *) summary+=("python tests: FAILED (exit $rc; ${py_counts:-no counts})"); status=1 ;;
esac
if grep -q "test_cuda_ipc_gpu.py.*needs a CUDA GPU and torch" "$LOGS/python.log"; then
  summary+=("python CUDA IPC (test_cuda_ipc_gpu.py): SKIPPED (needs a CUDA GPU and torch)")
elif grep -q "FAILED tests/python/test_cuda_ipc_gpu.py" "$LOGS/python.log"; then
  summary+=("python CUDA IPC (test_cuda_ipc_gpu.py): FAILED (see the python tests)")
elif [ "$rc" -ne 3 ] && [ "$rc" -ne 4 ]; then
  summary+=("python CUDA IPC (test_cuda_ipc_gpu.py): ran (in the python tests' counts)")
fi

echo
for b in "${benches[@]}"; do
  if [ -f "$LOGS/$b.log" ]; then
    echo "== $b"
    tail -n 14 "$LOGS/$b.log"
  fi
done
echo
echo "== GPU checks (${SECONDS}s; logs in $LOGS)"
for line in "${summary[@]}"; do echo "  $line"; done
exit $status
