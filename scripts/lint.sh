#!/usr/bin/env bash
# make lint (with scripts/check_docker.sh and scripts/check_standalone.sh):
# the style and static checks, which need no build, so that drift fails in
# seconds, before make test builds anything. With the venv's tools, at the
# versions scripts/constraints.txt pins, and Debian 12's clang-format:
#   - clang-format (the repository's .clang-format) on every C++ and CUDA
#     file: `make format` rewrites them;
#   - ruff (ruff.toml) on every Python file but the generated stubs;
#   - mypy on the Python client's package, strict
#     (client/python/pyproject.toml, [tool.mypy]);
#   - shellcheck on every shell script;
#   - gofmt on the Go client (client/go), where a Go toolchain is installed
#     (make setup installs one; make test-go checks it again, and fails
#     without one).
# Runs every check, then exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(cd "${VENV_BIN:-.venv/bin}" && pwd)
# The tools' caches go in the venv, out of git's and Docker's way.
export RUFF_CACHE_DIR=$BIN/../cache/ruff MYPY_CACHE_DIR=$BIN/../cache/mypy

# The files to check: the tracked ones, or in an export without git every
# file but the local builds and the venv.
files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -- "$@"
  else
    local args=() p
    for p in "$@"; do args+=(-o -path "./$p"); done
    find . \( -path ./.git -o -path ./.venv -o -path './build*' \) -prune \
      -o \( -false "${args[@]}" \) -type f -print | sed 's|^\./||'
  fi
}

failed=()
run() {
  local name=$1
  shift
  echo "== $name"
  if "$@"; then
    echo "ok"
  else
    failed+=("$name")
  fi
}

mapfile -t cxx < <(files '*.cc' '*.h' '*.cu')
mapfile -t shell < <(files '*.sh' '.ci/run')

clang-format --version
run clang-format clang-format --dry-run --Werror "${cxx[@]}"
run ruff "$BIN/ruff" check --no-fix .
run mypy "$BIN/mypy" --config-file client/python/pyproject.toml \
  client/python/tensorcast
run shellcheck "$BIN/shellcheck" "${shell[@]}"
gofmt_clean() {
  local out
  [ $# -gt 0 ] || return 0
  out=$(gofmt -l "$@") || return 1
  [ -z "$out" ] && return 0
  echo "gofmt would change: $out (gofmt -w client/go fixes it)"
  return 1
}
mapfile -t gofiles < <(files '*.go')
if command -v gofmt >/dev/null; then
  run gofmt gofmt_clean "${gofiles[@]}"
else
  echo "== gofmt: no Go toolchain here (make setup installs golang-go);" \
    "make test-go fails without one"
fi

if [ ${#failed[@]} -gt 0 ]; then
  echo "lint: FAILED: ${failed[*]} (make format fixes clang-format's)" >&2
  exit 1
fi
echo "lint: clang-format, ruff, mypy, shellcheck and gofmt passed"
