#!/usr/bin/env bash
# make lint-deploy (part of make lint): the Kubernetes manifests in
# deploy/kubernetes, checked offline (docs/cluster.md):
#   - each target rendered: overlays/cpu and overlays/gpu, and each with
#     components/tls. Where a kubectl with kustomize v5 or later (kubectl
#     1.27 or later) is on PATH (or KUBECTL=PATH), with `kubectl kustomize`,
#     and scripts/kustomize_render.py (the subset of kustomize these
#     manifests use, in Python) must render every target to the same objects
#     (a difference fails, with a diff); without one, with
#     scripts/kustomize_render.py alone, saying so (Debian 12's kubectl is
#     1.20, too old, and make setup installs none);
#   - every object they render to validated by kubernetes-validate --strict
#     (scripts/requirements-dev.txt; it bundles the API schemas) for each
#     Kubernetes minor version in KUBE_VERSIONS;
#   - what the schemas cannot check, and broken copies that must fail both
#     (scripts/check_deploy.py);
#   - shellcheck on this script.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV_BIN:-.venv/bin}
KUBECTL=${KUBECTL:-kubectl}
# Every minor version from 1.30 to the newest the pinned kubernetes-validate
# bundles (1.37.0 bundles 1.25-1.37).
KUBE_VERSIONS=${KUBE_VERSIONS:-1.30,1.31,1.32,1.33,1.34,1.35,1.36,1.37}
DEPLOY=deploy/kubernetes

failed=()
# kubectl's kustomize version (5.5.0); why it is not used where it is not.
version=''
why="$KUBECTL not found"
if command -v "$KUBECTL" >/dev/null 2>&1; then
  version=$("$KUBECTL" version --client 2>/dev/null |
    sed -n 's/^Kustomize Version: v//p') || version=
  why="$KUBECTL has kustomize ${version:-v4 or older}"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
use_kubectl=
if [[ $version =~ ^[0-9]+\. ]] && [ "${version%%.*}" -ge 5 ]; then
  use_kubectl=1
  echo "== render ($KUBECTL, kustomize v$version; scripts/kustomize_render.py" \
    "must render the same objects)"
else
  echo "== render (scripts/kustomize_render.py alone, not compared with kubectl" \
    "kustomize: no kubectl 1.27+ with kustomize v5+; $why)"
fi
# render DIR NAME: the target NAME, rendered from the kustomization in DIR.
render() {
  local file=$out/$2.yaml
  if [ -n "$use_kubectl" ]; then
    "$KUBECTL" kustomize "$1" >"$file"
    "$BIN/python" scripts/kustomize_render.py "$1" --compare "$file" ||
      failed+=("kustomize_render.py on $2")
  elif ! "$BIN/python" scripts/kustomize_render.py "$1" >"$file"; then
    echo "lint-deploy: FAILED: scripts/kustomize_render.py cannot render $2" >&2
    exit 1
  fi
  targets+=("$2=$file")
}
targets=()
for overlay in cpu gpu; do
  render "$DEPLOY/overlays/$overlay" "$overlay"
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
  render "$out/$overlay-tls" "$overlay+tls"
done
echo "rendered: ${targets[*]%%=*}"
if [ -n "$use_kubectl" ] && [ ${#failed[@]} -eq 0 ]; then
  echo "scripts/kustomize_render.py: the same objects as kubectl kustomize, each target"
fi

"$BIN/python" -u scripts/check_deploy.py --validator "$BIN/kubernetes-validate" \
  --versions "$KUBE_VERSIONS" --repo . "${targets[@]}" || failed+=(manifests)
echo "== shellcheck"
"$BIN/shellcheck" scripts/check_deploy.sh || failed+=(shellcheck)

if [ ${#failed[@]} -gt 0 ]; then
  echo "lint-deploy: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "lint-deploy: $DEPLOY renders, validates and holds its checks"
