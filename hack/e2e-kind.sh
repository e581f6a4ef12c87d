#!/usr/bin/env bash
# `make e2e-kind`: the end-to-end tests on a kind cluster, for machines with a Docker engine.
# Creates the cluster (once), builds lockgate's image and the shop app's and loads them, runs
# PostgreSQL in the cluster,
# and runs the tests against it through LOCKGATE_TEST_KUBECONFIG (the tests start the operator
# themselves; the chart test installs it with helm).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER="${KIND_CLUSTER:-lockgate-e2e}"
IMAGE="${LOCKGATE_TEST_IMAGE:-lockgate:dev}"
APP_IMAGE="${LOCKGATE_TEST_APP_IMAGE:-lockgate-shop:dev}"
KIND_VERSION=v0.30.0
PG_PORT="${LOCKGATE_E2E_PG_PORT:-15432}"

docker info >/dev/null 2>&1 || { echo "make e2e-kind needs a running Docker engine (docker info failed)" >&2; exit 2; }
bin="$(hack/build-cluster-bin.sh)"   # kubectl and helm, pinned
export PATH="$bin:$PATH"
if ! command -v kind >/dev/null; then
  GOBIN="$bin" go install "sigs.k8s.io/kind@$KIND_VERSION"
fi

kubeconfig="$(mktemp)"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 180s
kind get kubeconfig --name "$CLUSTER" > "$kubeconfig"
export KUBECONFIG="$kubeconfig"

docker build -t "$IMAGE" .
docker build -t "$APP_IMAGE" --build-arg "LOCKGATE_IMAGE=$IMAGE" examples/shop/app
kind load docker-image "$IMAGE" "$APP_IMAGE" --name "$CLUSTER"

kubectl apply -f hack/kind/postgres.yaml
kubectl -n lockgate-e2e rollout status deployment/postgres --timeout=180s
kubectl -n lockgate-e2e port-forward svc/postgres "$PG_PORT:5432" >/dev/null 2>&1 &
forward=$!
trap 'kill $forward 2>/dev/null || true; rm -f "$kubeconfig"' EXIT
sleep 2

make venv
LOCKGATE_TEST_KUBECONFIG="$kubeconfig" \
LOCKGATE_TEST_IMAGE="$IMAGE" \
LOCKGATE_TEST_APP_IMAGE="$APP_IMAGE" \
LOCKGATE_TEST_DATABASE_URL="postgresql://postgres:lockgate-e2e@127.0.0.1:$PG_PORT/postgres" \
LOCKGATE_TEST_DATABASE_URL_IN_CLUSTER="postgresql://postgres:lockgate-e2e@postgres.lockgate-e2e.svc:5432/postgres" \
  .venv/bin/python -m pytest tests/cluster/test_operator_e2e.py tests/cluster/test_chart_install.py tests/cluster/test_shop_release.py "$@"
