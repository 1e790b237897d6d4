#!/usr/bin/env bash
# make test-container-cuda: as much of the CUDA image (docker/Dockerfile) as a
# machine without its bases can check. nvidia/cuda's images cannot be pulled
# here, so this makes a stand-in pair from the local Debian base
# (scripts/debian_base_image.sh) and this machine's CUDA toolkit
# (CUDA_HOME, default /usr/local/cuda; its nvcc must be the Dockerfile's
# CUDA major.minor):
#   devel    the toolkit in /usr/local/cuda-X.Y (nvcc, nvvm, headers, the
#            static and import libraries) on PATH, as nvidia/cuda's devel
#            image has it;
#   runtime  the CUDA runtime library alone, as the package
#            cuda-cudart-X-Y that nvidia/cuda's runtime image installs (made
#            here with dpkg-deb from the toolkit's libcudart), so that
#            docker/runtime-packages.sh finds its owner as it does there.
# Then it builds docker/Dockerfile unchanged on them (--build-arg
# BUILD_IMAGE=... RUNTIME_IMAGE=...), runs the image through
# scripts/test_container.sh (health, put/get, load, /metrics, non-root,
# SIGTERM drain: on the CPU, no GPU being here), and checks what differs
# from the CPU image: the nvcc flags the build stage compiled with (the
# architectures, C++20, no -Werror as the Dockerfile asks), the
# device code in the binary (a cubin per CUDA_ARCHITECTURES entry, PTX of
# the newest), the run stage's library list from runtime-packages.sh against
# what the binaries link, and that the CUDA runtime resolves through the
# install RUNPATH to the package's file.
# What it cannot check -- Ubuntu 24.04's packages and compiler, NVIDIA's
# actual images, a GPU -- docker/README.md lists.
#
# Environment: CUDA_HOME; CUDA_ARCHITECTURES (default: the Dockerfile's);
# JOBS, BUILD_DIR, PYTHON and TENSORCAST_CONTAINER_CACHE as for
# scripts/test_container.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
PYTHON=${PYTHON:-.venv/bin/python}
DOCKERFILE=docker/Dockerfile
IMAGE=tensorcast:cuda-local
BUILD_STAGE=tensorcast-build:cuda-local
PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
TMP=""

say() { echo "test-container-cuda: $*"; }
die() {
  echo "test-container-cuda: FAILED: $*" >&2
  exit 1
}
cleanup() {
  local rc=$?
  [ -z "$TMP" ] || rm -rf "$TMP"
  podman rm -f -t 0 "tensorcast-cuda-test-$$" >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup EXIT

[ "$(id -u)" -eq 0 ] || die "needs root (rootful podman)"
[ -x "$CUDA_HOME/bin/nvcc" ] || die "no nvcc in $CUDA_HOME/bin (set CUDA_HOME)"
NVCC_VERSION=$("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release [0-9.]*, V\([0-9.]*\).*/\1/p')
CUDA_MM=$(cut -d. -f1-2 <<<"$NVCC_VERSION")
WANT=$(sed -n 's/^ARG CUDA_VERSION=//p' "$DOCKERFILE")
[ "$(cut -d. -f1-2 <<<"$WANT")" = "$CUDA_MM" ] ||
  die "the Dockerfile's CUDA is $WANT, this toolkit's nvcc $NVCC_VERSION"
ARCHS=${CUDA_ARCHITECTURES:-$(sed -n 's/^ARG CUDA_ARCHITECTURES="\(.*\)"$/\1/p' "$DOCKERFILE")}
[ -n "$ARCHS" ] || die "no ARG CUDA_ARCHITECTURES in $DOCKERFILE"
say "toolkit $CUDA_HOME: nvcc $NVCC_VERSION (the Dockerfile's CUDA $WANT); architectures $ARCHS"

DEBIAN=$(./scripts/debian_base_image.sh)
TAG=${NVCC_VERSION}-debian12
DEVEL=localhost/tensorcast-local-cuda:$TAG-devel
RUNTIME=localhost/tensorcast-local-cuda:$TAG-runtime
TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/tensorcast-cuda.XXXXXX")
DASHED=${CUDA_MM/./-}
CUDA_DIR=usr/local/cuda-$CUDA_MM

# --- the stand-in bases ---------------------------------------------------
if podman image exists "$DEVEL" && podman image exists "$RUNTIME"; then
  say "$DEVEL and $RUNTIME exist (podman rmi them to make them again)"
else
  ctx=$TMP/ctx
  real=$(readlink -f "$CUDA_HOME")
  cudart=$(readlink -f "$real/lib64/libcudart.so.${CUDA_MM%%.*}")
  [ -f "$cudart" ] || die "no libcudart.so.${CUDA_MM%%.*} in $real/lib64"
  # The package: the library, its soname link, lib64 and /usr/local/cuda.
  pkg=$TMP/pkg
  mkdir -p "$pkg/DEBIAN" "$pkg/$CUDA_DIR/lib" "$ctx"
  cp "$cudart" "$pkg/$CUDA_DIR/lib/"
  [ "$(basename "$cudart")" = "libcudart.so.${CUDA_MM%%.*}" ] ||
    ln -s "$(basename "$cudart")" "$pkg/$CUDA_DIR/lib/libcudart.so.${CUDA_MM%%.*}"
  ln -s lib "$pkg/$CUDA_DIR/lib64"
  ln -s "cuda-$CUDA_MM" "$pkg/usr/local/cuda"
  cat >"$pkg/DEBIAN/control" <<EOF
Package: cuda-cudart-$DASHED
Version: $NVCC_VERSION-local
Architecture: $(dpkg --print-architecture)
Maintainer: tensorcast test-container-cuda <nobody@localhost>
Description: CUDA runtime library (this machine's toolkit, for test_container_cuda.sh)
EOF
  dpkg-deb --root-owner-group -b "$pkg" "$ctx/cuda-cudart.deb" >/dev/null
  # The rest of the toolkit nvcc and CMake need (not its other libraries).
  mkdir -p "$ctx/cuda"
  parts=(bin nvvm include)
  for p in targets lib/libcudart_static.a lib/libcudadevrt.a lib/libculibos.a \
    lib/libcudart.so lib/stubs lib/cmake; do
    [ ! -e "$real/$p" ] || parts+=("$p")
  done
  tar -C "$real" -c "${parts[@]}" | tar -C "$ctx/cuda" -x
  cat >"$ctx/devel.Containerfile" <<EOF
FROM $DEBIAN
COPY cuda-cudart.deb /tmp/
RUN dpkg -i /tmp/cuda-cudart.deb && rm /tmp/cuda-cudart.deb
COPY cuda/ /$CUDA_DIR/
ENV PATH=/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    CUDA_VERSION=$NVCC_VERSION
EOF
  cat >"$ctx/runtime.Containerfile" <<EOF
FROM $DEBIAN
COPY cuda-cudart.deb /tmp/
RUN dpkg -i /tmp/cuda-cudart.deb && rm /tmp/cuda-cudart.deb
ENV CUDA_VERSION=$NVCC_VERSION
EOF
  for kind in devel runtime; do
    ref=$DEVEL
    [ $kind = devel ] || ref=$RUNTIME
    "${PODMAN[@]}" build -q --format docker -f "$ctx/$kind.Containerfile" -t "$ref" "$ctx" >/dev/null
    say "$ref made: $(($(podman image inspect --format '{{.Size}}' "$ref") / 1048576)) MiB"
  done
fi

# --- the image, built and run --------------------------------------------
TENSORCAST_DOCKERFILE=$DOCKERFILE TENSORCAST_IMAGE=$IMAGE \
  TENSORCAST_RUN_BASE=$RUNTIME TENSORCAST_TEST_COMPOSE=0 \
  TENSORCAST_BUILD_ARGS="BUILD_IMAGE=$DEVEL RUNTIME_IMAGE=$RUNTIME CUDA_ARCHITECTURES=$ARCHS" \
  ./scripts/test_container.sh

# --- what is CUDA's ------------------------------------------------------
echo "== the CUDA build"
# The build stage alone, from the layer cache the build above left.
"${PODMAN[@]}" build -q --format docker -f "$DOCKERFILE" --target build \
  --build-arg JOBS="${JOBS:-2}" --build-arg BUILD_IMAGE="$DEVEL" \
  --build-arg RUNTIME_IMAGE="$RUNTIME" --build-arg CUDA_ARCHITECTURES="$ARCHS" \
  -t "$BUILD_STAGE" . >/dev/null
c=tensorcast-cuda-test-$$
podman create --name "$c" "$BUILD_STAGE" >/dev/null
podman cp "$c:/tmp/build/compile_commands.json" "$TMP/"
podman cp "$c:/tmp/build/CMakeCache.txt" "$TMP/"
podman cp "$c:/opt/tensorcast/bin/tensorcast-server" "$TMP/"
podman cp "$c:/opt/tensorcast/runtime-packages.txt" "$TMP/"
podman rm "$c" >/dev/null

grep -q '^TENSORCAST_CUDA:STRING=ON$' "$TMP/CMakeCache.txt" || die "the build stage's TENSORCAST_CUDA is not ON"
grep -q '^TENSORCAST_WERROR:BOOL=OFF$' "$TMP/CMakeCache.txt" || die "-Werror is on in the CUDA build"
say "CMake: $(grep -E '^(CMAKE_CUDA_COMPILER|CMAKE_CUDA_ARCHITECTURES|CMAKE_INSTALL_RPATH_USE_LINK_PATH|TENSORCAST_BUILD_TESTS|TENSORCAST_BUILD_BENCH):' "$TMP/CMakeCache.txt" | tr '\n' ' ')"
"$PYTHON" - "$TMP/compile_commands.json" "$ARCHS" <<'EOF' || die "nvcc flags"
import json, re, sys
cmds = [c for c in json.load(open(sys.argv[1])) if c["file"].endswith(".cu")]
assert cmds, "no .cu file in compile_commands.json"
want = sorted(int(a) for a in sys.argv[2].split(";"))
for c in cmds:
    cmd = c["command"]
    archs = sorted(int(a) for a in re.findall(r"--generate-code=arch=compute_(\d+),", cmd))
    assert archs == want, f"{c['file']}: nvcc for {archs}, not {want}"
    assert "-std=c++20" in cmd, f"{c['file']}: not C++20"
# The Dockerfile turns -Werror off (a newer compiler than CI's): for nvcc
# and its host compiler too.
werror = [c["file"] for c in json.load(open(sys.argv[1])) if "-Werror" in c["command"]]
assert not werror, f"-Werror with TENSORCAST_WERROR=OFF: {werror}"
name = cmds[0]["file"].rsplit("/", 1)[-1]
flags = " ".join(f for f in cmds[0]["command"].split() if f.startswith(("--generate-code", "-std", "-O", "-Xcompiler")))
print(f"test-container-cuda: {len(cmds)} .cu files, e.g. {name}: {flags}")
EOF
# The device code the server carries: the .nv_fatbin section's entries
# (kind 1 PTX, 2 cubin; the architecture is the entry header's 8th word).
objcopy -O binary --only-section=.nv_fatbin "$TMP/tensorcast-server" "$TMP/fatbin"
"$PYTHON" - "$TMP/fatbin" "$ARCHS" <<'EOF' || die "device code"
import struct, sys
data = open(sys.argv[1], "rb").read()
want = sorted(int(a) for a in sys.argv[2].split(";"))
off, blobs, cubins, ptx = 0, 0, set(), set()
while off + 16 <= len(data):
    magic, _, header, size = struct.unpack_from("<IHHQ", data, off)
    if magic != 0xBA55ED50:
        off += 8
        continue
    p, end = off + header, off + header + size
    while p < end:
        kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, p)
        arch = struct.unpack_from("<I", data, p + 28)[0]
        (ptx if kind == 1 else cubins).add(arch)
        p += entry_header + payload
    off, blobs = end, blobs + 1
assert blobs, "no device code in tensorcast-server"
assert sorted(cubins) == want, f"cubins for {sorted(cubins)}, not {want}"
assert max(want) in ptx, f"no PTX for {max(want)} (PTX for {sorted(ptx)})"
print(f"test-container-cuda: tensorcast-server: {blobs} fatbins, cubins sm_"
      + ", sm_".join(map(str, sorted(cubins))) + ", PTX compute_"
      + ", compute_".join(map(str, sorted(ptx))))
EOF
runpath=$(readelf -d "$TMP/tensorcast-server" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
say "RUNPATH: ${runpath:-none}"
grep -qx "cuda-cudart-$DASHED" "$TMP/runtime-packages.txt" ||
  die "runtime-packages.txt lacks cuda-cudart-$DASHED"
say "runtime-packages.txt (what the build stage's binaries load): $(tr '\n' ' ' <"$TMP/runtime-packages.txt")"
# In the image: every library each binary loads is found and belongs to a
# package, the CUDA runtime to the base's cuda-cudart (kept, not replaced).
# shellcheck disable=SC2016 # a script for the image's bash, not this one
inner='set -euo pipefail
for b in /usr/local/bin/tensorcast-server /usr/local/bin/tensorcast /usr/local/bin/tensorcast-load; do
  if ldd "$b" | grep "not found"; then exit 1; fi
done
lib=$(ldd /usr/local/bin/tensorcast-server | awk "/libcudart/ {print \$3}")
[ -n "$lib" ] || { echo "tensorcast-server does not load libcudart"; exit 1; }
owner=$(dpkg -S "$(readlink -f "$lib")")
echo "test-container-cuda: in the image, tensorcast-server loads $lib -> $(readlink -f "$lib"), from $owner"
dpkg-query -W -f="test-container-cuda: \${Package} \${Version}, the base image'"'"'s, kept\n" "cuda-cudart-$DASHED"'
"${PODMAN[@]}" run --rm "${ULIMITS[@]}" -e DASHED="$DASHED" --entrypoint /bin/bash \
  "$IMAGE" -c "$inner" 2>"$TMP/stderr" || {
  cat "$TMP/stderr" >&2
  die "the image's libraries"
}
say "passed"
