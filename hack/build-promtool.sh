#!/usr/bin/env bash
# Builds promtool (Prometheus's rule checker and rule unit-test runner, for the alert tests) through
# the Go module proxy into the cache, keyed by a hash of hack/promtool's module and this script, so
# a change rebuilds it and a warm cache builds nothing. Prints the binary's path on stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${LOCKGATE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lockgate}"
key="$(cat "${BASH_SOURCE[0]}" "$here"/promtool/go.mod "$here"/promtool/go.sum | sha256sum | cut -c1-16)"
out="$cache/promtool/$key/promtool"
if [[ -x "$out" ]]; then echo "$out"; exit 0; fi

command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "Go >= 1.26 is required to build promtool (https://go.dev/dl)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
echo "[promtool] building promtool into $out" >&2
# remove_all_sd is Prometheus's own build tag that leaves out the cloud service-discovery plugins
# (AWS, Azure, GCE, ...): checking and unit-testing rules needs none of them, and they are most of
# the compile. Built beside its place and moved in, so a failed build never looks warm.
# Prometheus 3.x is the Go module version v0.3xx.y: v0.316.0 is 3.16.0, what `promtool --version` says.
module="$(awk '$1 == "github.com/prometheus/prometheus" {print $2}' "$here/promtool/go.mod")"
IFS=. read -r _ minor patch <<<"${module#v}"
version="$((minor / 100)).$((minor % 100)).$patch"
(cd "$here/promtool" && CGO_ENABLED=0 go build -tags remove_all_sd -trimpath \
	-ldflags="-s -w -X github.com/prometheus/common/version.Version=$version" \
	-o "$out.tmp" github.com/prometheus/prometheus/cmd/promtool)
mv "$out.tmp" "$out"
echo "$out"
