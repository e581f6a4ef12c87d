#!/usr/bin/env bash
# Builds the pinned control-plane binaries for the test harness into a cache directory:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl; the node's kubelet,
# kube-proxy and containerd (with its runc shim and ctr); helm (Helm 4, the chart's tested client)
# and helm3 (the last Helm 3, for one lint/template test while Helm 3 still gets fixes).
# Prints the directory on stdout. Builds nothing when KUBEBUILDER_ASSETS already holds
# them (the envtest convention) or when the cache is warm.
set -euo pipefail

KUBE_VERSION=v1.35.4
HELM_VERSION=v4.3.1
HELM3_VERSION=v3.20.2
CONTAINERD_VERSION=v2.2.9
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy
  containerd containerd-shim-runc-v2 ctr helm helm3)

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
# A change to this recipe (script, pins) makes the cache cold, so it never serves stale builds.
recipe="$(cat "${BASH_SOURCE[0]}" "$here/kubebin/go.mod" "$here/kubebin/go.sum" | sha256sum | cut -d' ' -f1)"
if have_all "$bin" && [[ "$(cat "$bin/.recipe" 2>/dev/null)" == "$recipe" ]]; then echo "$bin"; exit 0; fi

command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "Go >= 1.25 is required to build the control plane (https://go.dev/dl), or set KUBEBUILDER_ASSETS" >&2; exit 1; }
mkdir -p "$bin"
tmp="$(mktemp -d "$bin/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
kube_major="${KUBE_VERSION#v}"; kube_major="${kube_major%%.*}"
kube_minor="${KUBE_VERSION#v*.}"; kube_minor="${kube_minor%%.*}"
# What Kubernetes' own build stamps in; without it every binary reports v0.0.0-master
# (and `helm install` of a chart with a kubeVersion constraint fails against it).
version_flags() {
  echo "-X $1.gitVersion=$KUBE_VERSION -X $1.gitMajor=$kube_major -X $1.gitMinor=$kube_minor -X $1.gitTreeState=clean"
}
log() { echo "[cluster-bin +$((SECONDS - start))s] $*" >&2; }
# go build prints nothing for minutes: say every 30 s that it is still at work.
with_heartbeat() {
  local what="$1"
  shift
  "$@" &
  local pid=$!
  ( while sleep 30; do kill -0 "$pid" 2>/dev/null || exit 0; log "still compiling $what..."; done ) &
  local beat=$!
  local status=0
  wait "$pid" || status=$?
  kill "$beat" 2>/dev/null || true
  return "$status"
}

log "building Kubernetes $KUBE_VERSION and etcd from Go modules into $bin (first run only: about 15 min on 2 cores with empty Go caches, with containerd and helm)"
(
  cd "$here/kubebin"
  CGO_ENABLED=0 with_heartbeat "Kubernetes and etcd" go build -trimpath -ldflags="-s -w $(version_flags k8s.io/component-base/version) $(version_flags k8s.io/client-go/pkg/version)" -o "$tmp/" \
    ./etcd \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy
)
log "building containerd $CONTAINERD_VERSION"
# containerd's own module has no replace directives, so it installs straight from the proxy. Static
# (CGO_ENABLED=0): no btrfs or seccomp headers needed; runc, not containerd, applies seccomp.
containerd_flags="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
GOBIN="$tmp" CGO_ENABLED=0 with_heartbeat containerd go install -trimpath -ldflags="-s -w $containerd_flags" \
  "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
log "building helm $HELM_VERSION"
# Helm 4 reads the Kubernetes version it assumes without a cluster from its client-go's build info.
GOBIN="$tmp" CGO_ENABLED=0 with_heartbeat helm go install -trimpath \
  -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
log "building helm3 $HELM3_VERSION"
helm3_flags="-X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION"
for pkg in chartutil lint/rules; do  # the Kubernetes version helm 3 assumes without a cluster, as its release builds set it
  helm3_flags+=" -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMajor=$kube_major -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMinor=$kube_minor"
done
mkdir "$tmp/v3"
GOBIN="$tmp/v3" CGO_ENABLED=0 with_heartbeat helm3 go install -trimpath -ldflags="-s -w $helm3_flags" "helm.sh/helm/v3/cmd/helm@$HELM3_VERSION"
mv "$tmp/v3/helm" "$tmp/helm3"
# Move into place only when everything built, so a failed build never looks warm.
for b in "${BINARIES[@]}"; do mv "$tmp/$b" "$bin/$b"; done
echo "$recipe" > "$bin/.recipe"
log "done: $(du -sh "$bin" | cut -f1) in $bin"
echo "$bin"
