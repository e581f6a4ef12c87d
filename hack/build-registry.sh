#!/usr/bin/env bash
# Builds the CNCF distribution registry (the dev cluster's image and chart registry) through the Go
# module proxy into the cache, keyed by a hash of this script (which pins the version), so a change
# rebuilds it and a warm cache builds nothing. Prints the binary's path on stdout.
set -euo pipefail

VERSION=v3.1.2
cache="${LOCKGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lockgate}"
key="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)"
out="$cache/registry/$key/registry"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi

command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "Go >= 1.25 is required to build the registry (https://go.dev/dl)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
echo "[registry] building distribution $VERSION into $out (first run only: about 6 min on 2 cores with empty Go caches)" >&2
# Its module has no replace directives, so it installs straight from the proxy. Built beside its
# place and moved in, so a failed build never looks warm.
tmp="$(mktemp -d "$(dirname "$out")/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" CGO_ENABLED=0 go install -trimpath \
	-ldflags="-s -w -X github.com/distribution/distribution/v3/version.version=$VERSION" \
	"github.com/distribution/distribution/v3/cmd/registry@$VERSION"
mv "$tmp/registry" "$out"
echo "$out"
