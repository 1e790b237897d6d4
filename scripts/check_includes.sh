#!/usr/bin/env bash
# make lint: the boundaries between the parts of the tree, by the text of
# their #include lines (docs/ARCHITECTURE.md, "Layers"). The build enforces
# the same for every CMake target (tensorcast_headers in
# cmake/tensorcast.cmake: a target's include path holds only the folders it
# names and links); this also covers the Python extension, which setup.py
# builds with the repository root on its include path, and says which line
# crossed which boundary.
#
#   common/         includes only common/ (what the server and the clients
#                   share: dtypes, sizes, flags, random ids, the lock)
#   proto/          only proto/
#   server/         its own layer and those below it, in the order
#                   common <- core <- memory <- ops <- store <- service
#                   (+ proto) <- main.cc
#   client/cpp      common/, proto/ and itself -- never server/
#   client/load     the same and client/cpp
#   client/python   common/, proto/ and client/cpp
#   tests/, bench/  anything
# A test (*_test.cc, *_test_util.h) may also include tests/ (the harness and
# tests/support). Prints each line that crosses a boundary; exits 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."

# The C++ and CUDA sources: the tracked ones, or without git every one but
# the local builds and the venv.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files -- '*.cc' '*.h' '*.cu' '*.cuh' |
    while read -r f; do [ -f "$f" ] && echo "$f"; done)
else
  mapfile -t files < <(find . \( -path ./.git -o -path ./.venv \
    -o -path './build*' \) -prune -o -type f \
    \( -name '*.cc' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) \
    -print | sed 's|^\./||')
fi

awk '
  function allowed(file, inc,    p, i, n, layers) {
    # Generated from proto/: the messages and stubs.
    if (inc ~ /^(tensorcast\/v1|grpc\/health\/v1)\//) inc = "proto/" inc
    if (inc !~ /^(common|proto|server|client|tests|bench)\//) return 1
    if (file ~ /^(tests|bench)\//) return 1
    if (inc ~ /^tests\// && file ~ /_test(_util)?\.(cc|h)$/) return 1
    if (file ~ /^common\//) return inc ~ /^common\//
    if (file ~ /^proto\//) return inc ~ /^proto\//
    if (file ~ /^client\/cpp\//) return inc ~ /^(common|proto|client\/cpp)\//
    if (file ~ /^client\/load\//)
      return inc ~ /^(common|proto|client\/cpp|client\/load)\//
    if (file ~ /^client\/python\//)
      return inc ~ /^(common|proto|client\/cpp)\//
    if (file ~ /^server\//) {
      if (inc ~ /^common\//) return 1
      n = split("core memory ops store service http", layers, " ")
      # server/cluster is part of the service layer (it implements the
      # Cluster and Copy RPCs; the service forwards through it).
      sub(/^server\/cluster\//, "server/service/", file)
      sub(/^server\/cluster\//, "server/service/", inc)
      # The layer of the including file; main.cc is above them all.
      p = n + 1
      for (i = 1; i <= n; i++) if (file ~ ("^server/" layers[i] "/")) p = i
      if (inc ~ /^proto\//) return p >= 5
      for (i = 1; i <= n; i++)
        if (inc ~ ("^server/" layers[i] "/")) return i <= p
      return 0
    }
    return 1
  }
  /^[ \t]*#[ \t]*include[ \t]*"/ {
    inc = $0
    sub(/^[^"]*"/, "", inc)
    sub(/".*/, "", inc)
    if (!allowed(FILENAME, inc)) {
      printf "%s:%d: includes \"%s\", across a boundary\n", FILENAME, FNR, inc
      bad = 1
    }
  }
  END { exit bad }
' "${files[@]}" || {
  echo "check_includes: a file includes a header its part of the tree may" \
    "not use (scripts/check_includes.sh says which may use which)" >&2
  exit 1
}
echo "check_includes: every #include stays within its boundaries"
