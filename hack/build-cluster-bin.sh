#!/usr/bin/env bash
# Builds the pinned control-plane binaries for the test harness into a cache directory:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and helm.
# Prints the directory on stdout. Builds nothing when KUBEBUILDER_ASSETS already holds
# them (the envtest convention) or when the cache is warm.
set -euo pipefail

KUBE_VERSION=v1.35.4
HELM_VERSION=v3.20.2
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

have_all() {
  local dir="$1"
  for b in "${BINARIES[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if have_all "$KUBEBUILDER_ASSETS"; then echo "$KUBEBUILDER_ASSETS"; exit 0; fi
  echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of: ${BINARIES[*]}; building them instead" >&2
fi

cache="${LOCKGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lockgate}"
bin="$cache/kube/$KUBE_VERSION/bin"
if have_all "$bin"; then echo "$bin"; exit 0; fi

command -v go >/dev/null || { echo "go is required to build the control plane (apt-get install golang)" >&2; exit 1; }
mkdir -p "$bin"
tmp="$(mktemp -d "$bin/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
log() { echo "[cluster-bin +$((SECONDS - start))s] $*" >&2; }

log "building Kubernetes $KUBE_VERSION and etcd from Go modules into $bin (first run only: ~15-30 min on 2 cores)"
(
  cd "$here/kubebin"
  CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$tmp/" \
    ./etcd \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
)
log "building helm $HELM_VERSION"
GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath -ldflags="-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
# Move into place only when everything built, so a failed build never looks warm.
for b in "${BINARIES[@]}"; do mv "$tmp/$b" "$bin/$b"; done
log "done: $(du -sh "$bin" | cut -f1) in $bin"
echo "$bin"
