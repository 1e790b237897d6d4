#!/usr/bin/env bash
# `make bench`: every benchmark, each printing figures and ratios against a
# baseline measured in the same run. Figures, not pass/fail.
set -euo pipefail
BUILD=${1:-build}
for b in cast pool fetch; do
  echo "== tensorcast-bench-$b"
  "$BUILD/bin/tensorcast-bench-$b"
  echo
done
echo "== bench-python (bench/python_bench.py)"
.venv/bin/python bench/python_bench.py --server-bin "$BUILD/bin/tensorcast-server"
echo
echo "== bench-suite (bench/suite.py): tensorcast beside its peers, one table;"
echo "   results also go to bench/results/<date>.json"
.venv/bin/python bench/suite.py --build "$BUILD"
