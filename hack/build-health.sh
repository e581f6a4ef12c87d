#!/usr/bin/env bash
# Builds hack/health (kstatus and Argo CD's Lua engine, for the status tests) through the Go module
# proxy into the cache, keyed by a hash of its module and this script, so a change rebuilds it and
# a warm cache builds nothing. Prints the binary's path on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${LOCKGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lockgate}"
key="$(cat "${BASH_SOURCE[0]}" "$here"/health/go.mod "$here"/health/go.sum "$here"/health/*.go | sha256sum | cut -c1-16)"
out="$cache/health/$key/health"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi

command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "Go >= 1.25 is required to build hack/health (https://go.dev/dl)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
echo "[health] building hack/health into $out" >&2
# Built beside its place and moved in, so a failed build never looks warm.
(cd "$here/health" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$out.tmp" .)
mv "$out.tmp" "$out"
echo "$out"
