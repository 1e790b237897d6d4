#!/usr/bin/env bash
# make lint-deploy (part of make lint): the Kubernetes manifests in
# deploy/kubernetes, checked offline (docs/cluster.md):
#   - each target rendered with `kubectl kustomize` (kubectl's built-in
#     kustomize, v5 or later): overlays/cpu and overlays/gpu, and each with
#     components/tls;
#   - every object they render to validated by kubernetes-validate --strict
#     (scripts/requirements-dev.txt; it bundles the API schemas) for each
#     Kubernetes minor version in KUBE_VERSIONS;
#   - what the schemas cannot check, and broken copies that must fail both
#     (scripts/check_deploy.py);
#   - shellcheck on this script.
# kubectl is not a Python package: it must be on PATH (or KUBECTL=PATH). A
# missing one fails the check with what to install; it is never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV_BIN:-.venv/bin}
KUBECTL=${KUBECTL:-kubectl}
# Every minor version from 1.30 to the newest the pinned kubernetes-validate
# bundles (1.37.0 bundles 1.25-1.37).
KUBE_VERSIONS=${KUBE_VERSIONS:-1.30,1.31,1.32,1.33,1.34,1.35,1.36,1.37}
DEPLOY=deploy/kubernetes

if ! command -v "$KUBECTL" >/dev/null 2>&1; then
  echo "lint-deploy: FAILED: no kubectl ($KUBECTL) to render $DEPLOY with." >&2
  echo "  Install kubectl 1.27 or later (its kustomize is v5): Kubernetes'" >&2
  echo "  own package repository, or a release binary; or set KUBECTL=PATH." >&2
  exit 1
fi
version=$("$KUBECTL" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v//p')
if [ "${version%%.*}" = "" ] || [ "${version%%.*}" -lt 5 ]; then
  echo "lint-deploy: FAILED: $KUBECTL has kustomize '${version:-none}'; v5 or" \
    "later is needed (kubectl 1.27 or later)" >&2
  exit 1
fi
echo "== render ($KUBECTL, kustomize v$version)"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
targets=()
for overlay in cpu gpu; do
  "$KUBECTL" kustomize "$DEPLOY/overlays/$overlay" >"$out/$overlay.yaml"
  targets+=("$overlay=$out/$overlay.yaml")
  # The overlay with the TLS component, as docs/cluster.md says to add it.
  mkdir "$out/$overlay-tls"
  rel() { realpath --relative-to="$out/$overlay-tls" "$1"; }
  cat >"$out/$overlay-tls/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(rel "$DEPLOY/overlays/$overlay")
components:
  - $(rel "$DEPLOY/components/tls")
YAML
  "$KUBECTL" kustomize "$out/$overlay-tls" >"$out/$overlay+tls.yaml"
  targets+=("$overlay+tls=$out/$overlay+tls.yaml")
done
echo "rendered: ${targets[*]%%=*}"

failed=()
"$BIN/python" -u scripts/check_deploy.py --validator "$BIN/kubernetes-validate" \
  --versions "$KUBE_VERSIONS" --repo . "${targets[@]}" || failed+=(manifests)
echo "== shellcheck"
"$BIN/shellcheck" scripts/check_deploy.sh || failed+=(shellcheck)

if [ ${#failed[@]} -gt 0 ]; then
  echo "lint-deploy: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "lint-deploy: $DEPLOY renders, validates and holds its checks"
