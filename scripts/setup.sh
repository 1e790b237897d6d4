#!/usr/bin/env bash
# Installs what tensorcast needs to build and test, and nothing twice:
# Debian packages (only those missing) and a project-local Python venv from
# PyPI, at the versions scripts/constraints.txt pins. Safe to run again. Also
# the install step of the Docker images (docker/), which build the three
# binaries alone and set two switches (both default 1, as `make setup` runs):
#   TENSORCAST_SETUP_PYTHON=0  no Python (every python3* package), no venv;
#   TENSORCAST_SETUP_TESTS=0   no test and development tool chain: clang and
#       libclang-rt (the fuzzers, the thread-safety build), GoogleTest/GMock
#       (the tests, which such a build turns off: -DTENSORCAST_BUILD_TESTS=OFF),
#       clang-format and git (make lint, make format), and the Go client's
#       toolchain (make test-go: Go, Debian's Go gRPC and protobuf sources,
#       protoc-gen-go, the APIv2 plugin, which replaces the older
#       golang-goprotobuf-dev's, and protoc-gen-go-grpc).
# TENSORCAST_UPGRADE=1 (make setup UPGRADE=1) installs the newest releases
# requirements-dev.txt allows instead, ignoring the pins: the step before
# moving them (README.md, "Pinned versions").
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_PYTHON=${TENSORCAST_SETUP_PYTHON:-1}
SETUP_TESTS=${TENSORCAST_SETUP_TESTS:-1}

GO_PACKAGES=(golang-go golang-google-grpc-dev golang-google-protobuf-dev
  golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc)
PACKAGES=(
  build-essential cmake pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev libabsl-dev libgtest-dev libgmock-dev libcpp-httplib-dev
  python3 python3-venv python3-dev
  clang libclang-rt-14-dev clang-format
  "${GO_PACKAGES[@]}"
)
TEST_PACKAGES=(git libgtest-dev libgmock-dev clang libclang-rt-14-dev clang-format
  "${GO_PACKAGES[@]}")
kept=()
for p in "${PACKAGES[@]}"; do
  if [ "$SETUP_PYTHON" = 0 ] && [[ $p == python3* ]]; then continue; fi
  if [ "$SETUP_TESTS" = 0 ] && [[ " ${TEST_PACKAGES[*]} " == *" $p "* ]]; then
    continue
  fi
  kept+=("$p")
done
PACKAGES=("${kept[@]}")

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ "$SETUP_PYTHON" = 0 ] && exit 0

# The venv: NumPy is the reference in tests, grpcio/protobuf for the Python
# client, ml_dtypes for bfloat16. The stamp records what was installed: the
# pins, by a hash of the two files (either changing reinstalls), or
# "upgraded" and that hash after TENSORCAST_UPGRADE=1.
VENV=.venv
REQ=scripts/requirements-dev.txt
CONSTRAINTS=scripts/constraints.txt
STAMP=$VENV/.installed
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
if [ ! -x $VENV/bin/python ]; then
  /usr/bin/python3 -m venv $VENV
fi
files=$(cat $REQ $CONSTRAINTS | sha256sum | cut -d' ' -f1)
have=$(cat $STAMP 2>/dev/null || true)
if [ "${TENSORCAST_UPGRADE:-0}" = 1 ]; then
  echo "setup: installing the newest releases $REQ allows, not $CONSTRAINTS's pins"
  "${PIP[@]}" --upgrade --upgrade-strategy eager -r $REQ
  echo "upgraded $files" >$STAMP
elif [ "$have" = "upgraded $files" ]; then
  echo "setup: $VENV holds the newest releases (make setup UPGRADE=1), not" \
    "$CONSTRAINTS's pins; rm $STAMP and run make setup to go back to them"
elif [ "$have" != "pinned $files" ]; then
  "${PIP[@]}" -r $REQ -c $CONSTRAINTS
  echo "pinned $files" >$STAMP
fi
