#!/usr/bin/env bash
# make test (first): the repository must build and test from a plain clone
# with nothing beside it. Fails if a tracked file refers to the sibling
# directory NAME (below), which some development checkouts have next to
# them: a build, test or script that read it would pass there and fail
# everywhere else. (Keep what is needed in the repository instead, as
# docker/schema/ does.) This file is left out of the search.
set -euo pipefail
cd "$(dirname "$0")/.."
SELF=scripts/check_standalone.sh
# ../NAME, ../NAME/x, `../NAME`, "../NAME." -- not ../NAME_memory.h. The name
# is spelled in two parts so that this file does not match itself.
NAME=sha"red"
PATTERN="\\.\\./${NAME}([^A-Za-z0-9_.-]|\\.([^A-Za-z0-9_-]|\$)|\$)"

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  hits=$(git grep -n -I -E "$PATTERN" -- . ":(exclude)$SELF" || true)
else  # an export without git: every file but the local builds and the venv
  hits=$(grep -r -n -I -E "$PATTERN" . \
    --exclude-dir=.git --exclude-dir=.venv --exclude-dir='build*' \
    --exclude-dir=__pycache__ | grep -v "^\./$SELF:" || true)
fi
if [ -n "$hits" ]; then
  echo "check_standalone: these refer to ../${NAME}, which a clone does not have:" >&2
  echo "$hits" >&2
  exit 1
fi
echo "check_standalone: nothing refers to ../${NAME}"
