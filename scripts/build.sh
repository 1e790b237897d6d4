#!/usr/bin/env bash
# Configures and builds tensorcast with CMake: the one build recipe behind
# `make build` and the Docker images (docker/). scripts/setup.sh installs what
# it needs first.
#
#   scripts/build.sh [--install PREFIX] [CMAKE_ARG...]
#
# CMAKE_ARGs (e.g. -DTENSORCAST_CUDA=OFF) go to the configure step, after
# -DCMAKE_BUILD_TYPE. --install PREFIX then installs the three binaries
# (tensorcast-server, tensorcast, tensorcast-load) into PREFIX/bin.
# Environment:
#   BUILD_DIR    build directory (default build)
#   BUILD_TYPE   CMAKE_BUILD_TYPE (default Release)
#   JOBS         parallel build jobs (default 2)
#   CMAKE_FLAGS  more configure arguments, split on whitespace, after the
#                CMAKE_ARGs (the images' build argument of the same name)
# As `make build` always did, CMake is configured only while BUILD_DIR has no
# CMakeCache.txt: to change the flags of an existing build directory, remove
# it (make clean) or run cmake on it yourself.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
JOBS=${JOBS:-2}
# Word splitting is the point: CMAKE_FLAGS is a list, as in the Makefile.
# shellcheck disable=SC2206
extra=(${CMAKE_FLAGS:-})

prefix=""
configure_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --install)
      [ $# -ge 2 ] || { echo "build.sh: --install needs a PREFIX" >&2; exit 2; }
      prefix=$2
      shift 2
      ;;
    --install=*)
      prefix=${1#--install=}
      shift
      ;;
    -h | --help)
      sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
      exit 0
      ;;
    *)
      configure_args+=("$1")
      shift
      ;;
  esac
done
if [ -n "$prefix" ] && [ -z "${prefix##-*}" ]; then
  echo "build.sh: --install needs a PREFIX, not '$prefix'" >&2
  exit 2
fi

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
    "${configure_args[@]}" "${extra[@]}"
fi
cmake --build "$BUILD_DIR" -j"$JOBS"
if [ -n "$prefix" ]; then
  cmake --install "$BUILD_DIR" --prefix "$prefix"
fi
