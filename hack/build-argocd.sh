#!/usr/bin/env bash
# Builds hack/argocd (Argo CD's application controller and repo-server in one binary, for the Argo CD
# sync tests) through the Go module proxy into the cache, with the Application and AppProject CRDs
# of the same module beside it in crds/, keyed by a hash of the module and this script, so a change
# rebuilds it and a warm cache builds nothing. Prints the binary's path on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${LOCKGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lockgate}"
key="$(cat "${BASH_SOURCE[0]}" "$here"/argocd/go.mod "$here"/argocd/go.sum "$here"/argocd/*.go | sha256sum | cut -c1-16)"
dir="$cache/argocd/$key"
if [[ -x "$dir/argocd" ]]; then echo "$dir/argocd"; exit 0; fi

command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "Go >= 1.25.5 is required to build Argo CD (https://go.dev/dl)" >&2; exit 1; }
module=github.com/argoproj/argo-cd/v3
version="$(awk -v m="$module" '$1 == m {print $2}' "$here/argocd/go.mod")"
echo "[argocd] building Argo CD $version into $dir (first run only: about 10 min on 2 cores with empty Go caches)" >&2
mkdir -p "$cache/argocd"
# Built beside its place and moved in, so a failed build never looks warm.
tmp="$(mktemp -d "$cache/argocd/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cd "$here/argocd"
# The version Argo CD reports (and sends in its user agent), as its release builds set it.
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X $module/common.version=${version#v}" -o "$tmp/argocd" .
mkdir "$tmp/crds"
crds="$(go list -m -f '{{.Dir}}' "$module")/manifests/crds"
cp "$crds/application-crd.yaml" "$crds/appproject-crd.yaml" "$tmp/crds/"  # not ApplicationSets: no controller for them here
rm -rf "$dir"
mv "$tmp" "$dir"
echo "$dir/argocd"
