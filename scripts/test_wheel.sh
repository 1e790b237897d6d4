#!/usr/bin/env bash
# make test-wheel: the binary wheel `make wheel` built (dist/), installed and
# used where users install it -- a plain Debian 12 with python3 and pip and
# nothing else: no compiler, no gRPC C++ library. The container (podman,
# from the Debian base image scripts/debian_base_image.sh makes) gets
# python3-venv, then, with no network, a venv with the wheel and its
# dependencies (numpy, grpcio, protobuf: downloaded on the host at the
# pinned versions, scripts/constraints.txt, and kept in the cache). Checks:
# no libgrpc++ and no compiler inside; the client reports the native path
# (`client.native`); a put and fetch (new array and numpy(out=)) against
# this build's server, running on the host, agree with NumPy.
#
# Environment:
#   BUILD_DIR  the build with tensorcast-server (default build)
#   PYTHON     the venv's Python (default .venv/bin/python)
#   TENSORCAST_CONTAINER_CACHE  the cache directory (default
#                               ${XDG_CACHE_HOME:-~/.cache}/tensorcast)
# Needs root (rootful podman); the first run needs a Debian mirror (the
# image's python3) and PyPI (the dependencies' wheels), later runs neither.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
PYTHON=${PYTHON:-.venv/bin/python}
CACHE=${TENSORCAST_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tensorcast}
IMAGE=tensorcast-wheel-test:debian12
# runc, and limits podman holds itself: as scripts/test_container.sh.
PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
say() { echo "test-wheel: $*"; }
die() {
  say "FAILED: $*" >&2
  exit 1
}

shopt -s nullglob
wheels=(dist/tensorcast-*-manylinux*.whl)
[ ${#wheels[@]} -eq 1 ] || die "expected one dist/tensorcast-*-manylinux*.whl (make wheel), found ${#wheels[@]}"
WHEEL=${wheels[0]}
SERVER=$BUILD_DIR/bin/tensorcast-server
[ -x "$SERVER" ] || die "no $SERVER (make build)"

BASE=$(./scripts/debian_base_image.sh)
if ! podman image exists "$IMAGE"; then
  say "making $IMAGE from $BASE (python3 and venv only)"
  printf '%s\n' "FROM $BASE" \
    "RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/*" |
    "${PODMAN[@]}" build -q -t "$IMAGE" -f - . >/dev/null
fi

# The dependencies' wheels, at the pins, for the image's Python (3.11).
DEPS=$CACHE/wheel-test-deps
pins=()
for p in numpy grpcio protobuf; do
  pin=$(grep -i "^$p==" scripts/constraints.txt) || die "no $p pin in scripts/constraints.txt"
  pins+=("$pin")
done
stamp="${pins[*]}"
if [ "$(cat "$DEPS/.pins" 2>/dev/null)" != "$stamp" ]; then
  say "downloading ${pins[*]}"
  rm -rf "$DEPS" && mkdir -p "$DEPS"
  "$PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_35_x86_64 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEPS" "${pins[@]}"
  echo "$stamp" >"$DEPS/.pins"
fi

TMP=$(mktemp -d)
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
PORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$SERVER" --listen="127.0.0.1:$PORT" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
cp "$WHEEL" "$TMP/"
cat >"$TMP/check.py" <<'EOF'
import sys
import numpy as np
import tensorcast as tc

with tc.connect(sys.argv[1], default=False) as c:
    assert c.native, "the wheel's client does not take the native path"
    a = np.random.default_rng(1).standard_normal((1024, 1024)).astype(np.float32)
    t = c.from_numpy(a)
    np.testing.assert_array_equal(t.numpy(), a)
    out = np.empty_like(a)
    assert t.numpy(out=out) is out
    np.testing.assert_array_equal(out, a)
    np.testing.assert_array_equal(t.double().numpy(), a.astype(np.float64))
print("test-wheel: native path, put and fetch OK")
EOF
say "installing $(basename "$WHEEL") in $IMAGE (no network) against 127.0.0.1:$PORT"
"${PODMAN[@]}" run --rm "${ULIMITS[@]}" --network host -v "$TMP:/w:ro" -v "$DEPS:/deps:ro" "$IMAGE" sh -ec "
  ! ldconfig -p | grep -q 'libgrpc' || { echo 'a gRPC library is installed'; exit 1; }
  ! command -v cc c++ g++ gcc >/dev/null || { echo 'a compiler is installed'; exit 1; }
  python3 -m venv /tmp/venv
  /tmp/venv/bin/pip install -q --disable-pip-version-check --no-index \
    --find-links /deps /w/$(basename "$WHEEL")
  /tmp/venv/bin/python /w/check.py 127.0.0.1:$PORT
" || {
  cat "$TMP/server.log" >&2
  die "the wheel did not work in $IMAGE"
}
