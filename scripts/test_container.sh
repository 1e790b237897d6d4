#!/usr/bin/env bash
# make test-container: builds docker/Dockerfile.cpu with podman, as a user's
# `docker build -f docker/Dockerfile.cpu -t tensorcast:cpu .` would, then runs
# the image and uses it from the host, as a user would:
#   - the image: its health check present (a build that ignored HEALTHCHECK
#     and SHELL, as podman's default OCI format does, fails here), the
#     non-root user its Dockerfile names, its packages printed, its size;
#   - the server: healthy by the image's own HEALTHCHECK command (podman
#     healthcheck run) and by the host's `tensorcast health` through the
#     published port; the host's CLI puts a .npy, gets it back and casts it
#     (NumPy compares); tensorcast-load runs a short mixed load with no
#     errors; /metrics answers; the server process runs as that user;
#     `podman stop` (SIGTERM) drains a running fetch load and the server
#     exits 0 within the grace period;
#   - docker/compose.yaml's cpu and load profiles (docker/README.md, "Without
#     Docker"): the server up and healthy, then the load run to completion.
#
# Podman runs images without a daemon, as root. No image registry need be
# reachable: the Dockerfile's base is made locally unless an image of that
# name exists (scripts/debian_base_image.sh: debootstrap from a Debian
# mirror; its root filesystem cached for the next run). The build reuses
# podman's layer cache: with unchanged sources a second run compiles
# nothing. Installs podman, runc and debootstrap (Debian 12) when missing,
# and podman-compose from PyPI in a venv of its own in the cache directory
# (scripts/requirements-container.txt).
#
# Environment:
#   BUILD_DIR  the host build with the CLI and the load tool (default build)
#   JOBS       the image's compile jobs (its JOBS build argument; default 2)
#   PYTHON     Python with NumPy (default .venv/bin/python)
#   TENSORCAST_IMAGE            the tag built and run (default tensorcast:cpu,
#                               which docker/compose.yaml runs)
#   TENSORCAST_DOCKERFILE       the Dockerfile (default docker/Dockerfile.cpu)
#   TENSORCAST_BUILD_ARGS       more KEY=VALUE build arguments, space-separated
#   TENSORCAST_RUN_BASE         the image the run stage starts from, whose
#                               packages are not listed as added (default: the
#                               Debian base)
#   TENSORCAST_CONTAINER_CACHE  the cache directory (default
#                               ${XDG_CACHE_HOME:-~/.cache}/tensorcast)
#   TENSORCAST_DEBIAN_MIRROR    debootstrap's mirror (scripts/debian_base_image.sh)
#   TENSORCAST_TEST_COMPOSE=0   skip the compose part
# Every step prints its time; a failed step prints what failed, then the
# containers' logs, and the script exits 1. Its containers, network and
# volumes are removed on exit; the images stay (the next run's cache).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-2}
PYTHON=${PYTHON:-.venv/bin/python}
IMAGE=${TENSORCAST_IMAGE:-tensorcast:cpu}
CACHE=${TENSORCAST_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tensorcast}
DOCKERFILE=${TENSORCAST_DOCKERFILE:-docker/Dockerfile.cpu}
BUILD_ARGS=(--build-arg "JOBS=$JOBS")
for a in ${TENSORCAST_BUILD_ARGS:-}; do BUILD_ARGS+=(--build-arg "$a"); done
COMPOSE_FILE=docker/compose.yaml
CLI=$BUILD_DIR/bin/tensorcast
LOAD=$BUILD_DIR/bin/tensorcast-load
# runc: crun refuses a host with hybrid cgroups (v1 controllers, as here).
PODMAN=(podman --runtime runc)
# Rootful podman gives a container open-file and process limits above the
# ones it runs with itself (this shell's open files; processes, at most
# 32768), which needs CAP_SYS_RESOURCE, absent on some hosts (as here): set
# limits it holds. The server's threads are far fewer than 4096.
ULIMITS=(--ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit nproc=4096:4096)

STEP=""
T0=$(date +%s)
STEP_T0=$T0
CONTAINERS=()
COMPOSE_UP=0
TMP=""

say() { echo "test-container: $*"; }
# Runs a podman command with its stderr kept aside, shown only if it fails:
# without systemd, podman logs an error for each health-check timer it cannot
# make (the checks are run here by hand instead).
quiet() {
  "$@" 2>"$TMP/stderr" || {
    local rc=$?
    cat "$TMP/stderr" >&2
    return $rc
  }
}
die() {
  echo "test-container: FAILED${STEP:+ ($STEP)}: $*" >&2
  exit 1
}
step() {
  local now
  now=$(date +%s)
  [ -z "$STEP" ] || say "  ($STEP: $((now - STEP_T0)) s)"
  STEP=$1
  STEP_T0=$now
  echo "== $STEP"
}

COMPOSE_PROJECT=tensorcast-test-$$
compose() {
  "$COMPOSE_VENV/bin/podman-compose" --podman-path "$TMP/podman" \
    -p "$COMPOSE_PROJECT" -f "$COMPOSE_FILE" "$@"
}

cleanup() {
  local rc=$? c
  trap - EXIT
  if [ $rc -ne 0 ]; then
    echo "test-container: FAILED${STEP:+ at step: $STEP} (exit $rc)" >&2
    for c in "${CONTAINERS[@]}"; do
      if podman container exists "$c"; then
        echo "---- podman logs $c (last 100 lines) ----" >&2
        podman logs --tail 100 "$c" >&2 2>&1 || true
        echo "---- health: $(podman inspect --format '{{.State.Health.Status}}' "$c" 2>/dev/null || true)" >&2
      fi
    done
  fi
  for c in "${CONTAINERS[@]}"; do
    podman rm -f -t 0 "$c" >/dev/null 2>&1 || true
  done
  if [ "$COMPOSE_UP" = 1 ]; then
    compose --profile cpu --profile load down -v >/dev/null 2>&1 || true
  fi
  [ -z "$TMP" ] || rm -rf "$TMP"
  if [ $rc -eq 0 ]; then
    say "passed in $(($(date +%s) - T0)) s"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- what it needs -------------------------------------------------------
step "prerequisites"
[ "$(id -u)" -eq 0 ] || die "needs root (rootful podman, apt-get, debootstrap)"
for f in "$CLI" "$LOAD" "$PYTHON"; do
  [ -x "$f" ] || die "$f is missing: run make build first"
done
TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/tensorcast-container.XXXXXX")

# --- the base image ------------------------------------------------------
step "base image"
BASE=$(./scripts/debian_base_image.sh)
podman --version
RUN_BASE=${TENSORCAST_RUN_BASE:-$BASE}
podman image exists "$RUN_BASE" || die "no image $RUN_BASE (TENSORCAST_RUN_BASE)"

# --- the image -----------------------------------------------------------
# As a user builds it, but in Docker's image format: podman's default, OCI,
# has no place for HEALTHCHECK and SHELL, so it would drop them (and the
# build still succeed, every RUN under dash without pipefail).
step "build $IMAGE"
build_t0=$(date +%s)
if ! "${PODMAN[@]}" build --format docker -f "$DOCKERFILE" -t "$IMAGE" \
  "${BUILD_ARGS[@]}" . >"$TMP/build.log" 2>&1; then
  tail -n 150 "$TMP/build.log" >&2
  die "podman build failed (the last 150 lines above)"
fi
say "built in $(($(date +%s) - build_t0)) s; $(grep -c -- '--> Using cache' "$TMP/build.log" || true) step(s) from the layer cache"

step "image as a user sees it"
healthcheck=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
case $healthcheck in
  *tensorcast*health*) say "health check: $healthcheck" ;;
  *) die "the image has no HEALTHCHECK ($healthcheck): built without --format docker?" ;;
esac
want_user=$(sed -n 's/^USER //p' "$DOCKERFILE" | tail -n 1)
image_user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[ -n "$want_user" ] && [ "$image_user" = "$want_user" ] ||
  die "the image's user is '$image_user', the Dockerfile names '$want_user'"
case ${image_user%%:*} in
  "" | 0 | root) die "the image runs as root" ;;
esac
say "user: $image_user (not root)"
pkgs() {
  # shellcheck disable=SC2016 # dpkg-query's format, not the shell's
  quiet "${PODMAN[@]}" run --rm "${ULIMITS[@]}" --entrypoint dpkg-query "$1" \
    -W -f '${Package} ${Version}\n' | sort
}
pkgs "$RUN_BASE" >"$TMP/base.pkgs"
pkgs "$IMAGE" >"$TMP/image.pkgs"
comm -13 "$TMP/base.pkgs" "$TMP/image.pkgs" >"$TMP/added.pkgs"
say "$(wc -l <"$TMP/image.pkgs") packages, $(wc -l <"$TMP/added.pkgs") added to the base:"
sed 's/^/    /' "$TMP/added.pkgs"
mib() { echo $(($1 / 1048576)); }
image_size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(podman image inspect --format '{{.Size}}' "$RUN_BASE")
say "size: $(mib "$image_size") MiB ($(mib "$base_size") MiB of it the base $RUN_BASE)"

# --- the server ----------------------------------------------------------
step "run and become healthy"
NAME=tensorcast-test-$$
CONTAINERS+=("$NAME")
# Ports as -p 127.0.0.1::PORT: podman picks free ones on the host.
quiet "${PODMAN[@]}" run -d --name "$NAME" "${ULIMITS[@]}" --stop-timeout 15 \
  -p 127.0.0.1::50051 -p 127.0.0.1::9090 "$IMAGE" >/dev/null
GRPC=$(podman port "$NAME" 50051/tcp)
METRICS=$(podman port "$NAME" 9090/tcp)
say "published: gRPC $GRPC, metrics $METRICS"
# Nothing runs a container's health check on a timer without systemd:
# run it, the image's own command, until it passes (it has 20 s to start).
healthy=0
for _ in $(seq 1 60); do
  if "${PODMAN[@]}" healthcheck run "$NAME" >/dev/null 2>&1; then
    healthy=1
    break
  fi
  [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] ||
    die "the container exited ($(podman inspect --format '{{.State.ExitCode}}' "$NAME"))"
  sleep 0.5
done
[ $healthy = 1 ] || die "the image's health check did not pass in 30 s"
status=$(podman inspect --format '{{.State.Health.Status}}' "$NAME")
[ "$status" = healthy ] || die "health status '$status' after a passing check"
say "the image's HEALTHCHECK: $status"
"$CLI" --server="$GRPC" --timeout=5 health ||
  die "tensorcast health from the host failed"
say "tensorcast health from the host: SERVING"

step "non-root"
uids=$(podman exec "$NAME" awk '/^Uid:/ {print $2, $3, $4, $5}' /proc/1/status)
for u in $uids; do
  [ "$u" = "${want_user%%:*}" ] || die "the server runs as uid '$uids', not ${want_user%%:*}"
done
say "the server (pid 1 in the container) runs as uid ${want_user%%:*}: $(podman exec "$NAME" id)"

step "put and get a .npy with the host's CLI"
"$PYTHON" - "$TMP" <<'EOF'
import sys
import numpy as np
rng = np.random.default_rng(17)
np.save(f"{sys.argv[1]}/a.npy", rng.standard_normal((64, 33)).astype(np.float32))
EOF
handle=$("$CLI" --server="$GRPC" put "$TMP/a.npy" --name=container-test)
"$CLI" --server="$GRPC" get container-test -o "$TMP/b.npy"
"$CLI" --server="$GRPC" get "$handle" -o "$TMP/c.npy" --dtype=float16
half=$("$CLI" --server="$GRPC" to container-test --dtype=float64)
"$CLI" --server="$GRPC" get "$half" -o "$TMP/d.npy"
"$PYTHON" - "$TMP" <<'EOF'
import sys
import numpy as np
d = sys.argv[1]
a = np.load(f"{d}/a.npy")
b, c, e = (np.load(f"{d}/{n}.npy") for n in "bcd")
assert b.dtype == a.dtype and np.array_equal(a, b), "get: not the array put"
assert c.dtype == np.float16 and np.array_equal(c, a.astype(np.float16)), "get --dtype=float16"
assert e.dtype == np.float64 and np.array_equal(e, a.astype(np.float64)), "to --dtype=float64"
print(f"test-container: put {a.dtype}{a.shape}, got it back equal, as float16 and "
      "(to) float64 equal to NumPy's casts")
EOF
"$CLI" --server="$GRPC" ls
"$CLI" --server="$GRPC" rm container-test "$half"

step "load"
if ! "$LOAD" --server="$GRPC" --scenario=mixed --mix=fetch:6,info:2,put:1,to:1 \
  --size=256KiB --concurrency=4 --warmup=1s --duration=5s \
  --json="$TMP/load.json" >"$TMP/load.txt" 2>&1; then
  cat "$TMP/load.txt" >&2
  die "tensorcast-load failed"
fi
"$PYTHON" - "$TMP/load.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_us"]
kinds = ", ".join(f"{k} {v['requests']}" for k, v in sorted(r["by_kind"].items()))
print(f"test-container: {r['requests']} requests ({kinds}) in {r['duration_s']:.1f} s, "
      f"{r['requests_per_s']:.0f} req/s, {r['bytes_per_s'] / 1e6:.0f} MB/s, "
      f"p50 {lat['p50']:.0f} us, p99 {lat['p99']:.0f} us, errors {r['errors'] or 0}")
if r["errors"] or r["requests"] == 0 or r["ok"] != r["requests"]:
    sys.exit("test-container: the load run had errors or no requests")
EOF

step "/metrics"
"$PYTHON" - "$METRICS" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5) as r:
    assert r.status == 200, r.status
    body = r.read().decode()
need = ["tensorcast_rpcs_total", "tensorcast_build_info", "tensorcast_tensors_held"]
lost = [m for m in need if m not in body]
assert not lost, f"/metrics lacks {lost}"
rpcs = sum(float(l.split()[-1]) for l in body.splitlines()
           if l.startswith("tensorcast_rpcs_total"))
print(f"test-container: /metrics: {len(body.splitlines())} lines, "
      f"tensorcast_rpcs_total {rpcs:.0f}")
EOF

step "stop drains"
"$LOAD" --server="$GRPC" --scenario=fetch --size=16MiB --format=raw \
  --concurrency=4 --warmup=0s --duration=30s >"$TMP/drain.txt" 2>&1 &
drain_load=$!
# Stop once the load has fetches running (the server's active streams).
active_streams() {
  "$PYTHON" - "$METRICS" <<'EOF' 2>/dev/null || echo 0
import sys, urllib.request
body = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=5).read().decode()
print(int(sum(float(l.split()[-1]) for l in body.splitlines()
              if l.startswith("tensorcast_active_streams"))))
EOF
}
streams=0
for _ in $(seq 1 50); do
  streams=$(active_streams)
  [ "$streams" -gt 0 ] && break
  sleep 0.2
done
stop_t0=$(date +%s.%N)
quiet "${PODMAN[@]}" stop -t 15 "$NAME" >/dev/null
stop_s=$(awk -v a="$stop_t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
code=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
# The load run has lost its server: interrupt it (it would retry until its
# --duration ends) and see how it ended.
kill -INT "$drain_load" 2>/dev/null || true
wait "$drain_load" && load_rc=0 || load_rc=$?
logs=$(podman logs "$NAME" 2>&1)
draining=$(grep -o 'draining: [0-9]* call(s) running.*' <<<"$logs" | head -n 1)
say "server log: $draining"
say "podman stop: exit code $code after $stop_s s (the load run, interrupted after, exited $load_rc)"
[ "$code" = 0 ] || die "the server exited $code on SIGTERM"
grep -q 'received SIGTERM, draining' <<<"$logs" || die "no 'received SIGTERM, draining' in the log"
[ -n "$draining" ] && [ "$(awk '{print $2}' <<<"$draining")" -gt 0 ] ||
  die "no fetches were running when it was stopped: nothing drained ($draining)"
! grep -q 'cancelling .* call(s) still running' <<<"$logs" ||
  die "calls were cancelled at the end of the grace period, not drained"
grep -q 'stopped' <<<"$logs" || die "no 'stopped' in the log"
awk -v s="$stop_s" 'BEGIN {exit !(s < 15)}' ||
  die "stop took $stop_s s: past the stop timeout, killed, not drained"

# --- compose -------------------------------------------------------------
if [ "${TENSORCAST_TEST_COMPOSE:-1}" != 0 ]; then
  step "compose: cpu profile, then load"
  COMPOSE_REQ=scripts/requirements-container.txt
  COMPOSE_VENV=$CACHE/podman-compose-$(sha256sum "$COMPOSE_REQ" | cut -c1-12)
  if [ ! -x "$COMPOSE_VENV/bin/podman-compose" ]; then
    rm -rf "$COMPOSE_VENV"
    /usr/bin/python3 -m venv "$COMPOSE_VENV"
    "$COMPOSE_VENV/bin/pip" install -q --disable-pip-version-check -r "$COMPOSE_REQ"
  fi
  # podman-compose runs podman by the path it is given: this podman adds
  # --runtime runc and the limits above to each container (compose.yaml sets
  # none), and drops --health-startup-interval, which podman-compose makes of
  # healthcheck.start_interval and podman 4.3 lacks.
  cat >"$TMP/podman" <<EOF
#!/usr/bin/env bash
args=()
while [ \$# -gt 0 ]; do
  case \$1 in
    --health-startup-interval) shift 2 ;;
    --health-startup-interval=*) shift ;;
    *) args+=("\$1"); shift ;;
  esac
done
case \${args[0]:-} in
  create | run) args=("\${args[0]}" ${ULIMITS[*]} "\${args[@]:1}") ;;
esac
exec podman --runtime runc "\${args[@]}"
EOF
  chmod +x "$TMP/podman"
  free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  }
  TENSORCAST_PUBLISH_GRPC_PORT=$(free_port)
  TENSORCAST_PUBLISH_METRICS_PORT=$(free_port)
  export TENSORCAST_PUBLISH_GRPC_PORT TENSORCAST_PUBLISH_METRICS_PORT
  service_container() {
    podman ps -a --format '{{.Names}}' \
      --filter "label=com.docker.compose.project=$COMPOSE_PROJECT" \
      --filter "label=com.docker.compose.service=$1" | head -n 1
  }
  COMPOSE_UP=1
  compose --profile cpu up -d >"$TMP/compose-up.log" 2>&1 || {
    cat "$TMP/compose-up.log" >&2
    die "podman-compose --profile cpu up failed"
  }
  SERVER=$(service_container server-cpu)
  [ -n "$SERVER" ] || die "no server-cpu container after up"
  CONTAINERS+=("$SERVER")
  # The gate compose's depends_on (service_healthy) asks for, kept here:
  # podman before 4.6 cannot wait for a container's health, so
  # podman-compose starts the dependant at once, and without systemd nothing
  # runs the check on its timer.
  healthy=0
  for _ in $(seq 1 60); do
    if podman --runtime runc healthcheck run "$SERVER" >/dev/null 2>&1; then
      healthy=1
      break
    fi
    sleep 0.5
  done
  [ $healthy = 1 ] || die "compose's server-cpu did not become healthy in 30 s"
  "$CLI" --server="127.0.0.1:$TENSORCAST_PUBLISH_GRPC_PORT" --timeout=5 health ||
    die "tensorcast health from the host (compose's published port) failed"
  say "server-cpu ($SERVER) healthy by compose's check, and from the host on port $TENSORCAST_PUBLISH_GRPC_PORT"
  compose --profile cpu --profile load up -d load >>"$TMP/compose-up.log" 2>&1 || {
    cat "$TMP/compose-up.log" >&2
    die "podman-compose --profile cpu --profile load up load failed"
  }
  LOADC=$(service_container load)
  [ -n "$LOADC" ] || die "no load container after up"
  CONTAINERS+=("$LOADC")
  [ "$(podman inspect --format '{{.Id}}' "$SERVER")" = "$(podman inspect --format '{{.Id}}' "$(service_container server-cpu)")" ] ||
    die "starting the load run recreated the server"
  load_rc=$(podman wait "$LOADC")
  podman logs "$LOADC" >"$TMP/compose-load.txt" 2>&1
  sed -n '1,6s/^/    /p' "$TMP/compose-load.txt"
  [ "$load_rc" = 0 ] || die "compose's load run exited $load_rc"
  quiet "${PODMAN[@]}" run --rm "${ULIMITS[@]}" \
    -v "${COMPOSE_PROJECT}_load-reports:/var/lib/tensorcast/reports" \
    --entrypoint cat "$IMAGE" /var/lib/tensorcast/reports/fetch.json >"$TMP/fetch.json"
  "$PYTHON" - "$TMP/fetch.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"test-container: compose's load run: {r['requests']} fetches of 16 MiB in "
      f"{r['duration_s']:.0f} s, {r['bytes_per_s'] / 1e9:.2f} GB/s, "
      f"p50 {r['latency_us']['p50'] / 1e3:.1f} ms, errors {r['errors'] or 0} "
      "(reports/fetch.json in the load-reports volume)")
if r["errors"] or r["requests"] == 0:
    sys.exit("test-container: compose's load run had errors or no requests")
EOF
  compose --profile cpu --profile load down -v >/dev/null 2>&1
  COMPOSE_UP=0
fi
step "done"
say "image $IMAGE: $(mib "$image_size") MiB"
