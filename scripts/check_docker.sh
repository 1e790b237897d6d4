#!/usr/bin/env bash
# make lint-docker: what can be checked of the images and the compose file
# where no Docker engine runs (here and in CI), with the venv's tools
# (scripts/requirements-dev.txt):
#   - hadolint on docker/Dockerfile and docker/Dockerfile.cpu, failing on any
#     finding, style included; a rule is skipped only by an inline
#     `# hadolint ignore=DLxxxx` that says why;
#   - docker/compose.yaml against the Compose Specification's JSON Schema
#     (a copy in docker/schema/compose-spec.json; COMPOSE_SCHEMA overrides)
#     and the references the schema cannot follow (docker/check_compose.py);
#   - shellcheck on the scripts the images and this check run, and on
#     scripts/check_standalone.sh and the scripts of make test-container and
#     make test-container-cuda, which build and run the images with podman.
# Runs every check, then exits 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV_BIN:-.venv/bin}
SCHEMA=${COMPOSE_SCHEMA:-docker/schema/compose-spec.json}

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

run hadolint "$BIN/hadolint" --no-color --failure-threshold style \
  docker/Dockerfile docker/Dockerfile.cpu
run compose "$BIN/python" docker/check_compose.py --schema "$SCHEMA" \
  docker/compose.yaml
run shellcheck "$BIN/shellcheck" scripts/build.sh scripts/setup.sh \
  scripts/check_docker.sh scripts/check_standalone.sh \
  scripts/test_container.sh scripts/test_container_cuda.sh \
  scripts/debian_base_image.sh docker/runtime-packages.sh

if [ ${#failed[@]} -gt 0 ]; then
  echo "lint-docker: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "lint-docker: hadolint, compose schema and shellcheck passed"
