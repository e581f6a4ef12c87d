# lockgate: `make demo` runs the local demo, `make test` runs every test, `make check` the fast ones.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Go's standard install location, for shells whose PATH lacks it (the control-plane build needs go).
export PATH := $(or $(PATH),/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin):/usr/local/go/bin

.PHONY: test check lint typecheck reference demo venv postgres flyway node-deps cluster-bin registry-bin health-bin promtool-bin argocd-bin images cluster-up cluster-down bench bench-big bench-backfill bench-startup bench-operator bench-operator-cache bench-fanout bench-registry e2e-kind clean

test: lint postgres flyway node-deps cluster-bin registry-bin health-bin promtool-bin argocd-bin images
	$(PY) -m pytest

# Lint, types and the unit tier (tests/tiers.py): seconds, no root, no server, no cluster, no Go build.
check: lint
	$(PY) -m pytest -m unit -q

lint: venv typecheck
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# mypy --strict on operator/lockgate (configured in pyproject.toml); the layer contracts are tests/unit/test_layers.py.
typecheck: venv
	$(PY) -m mypy

# After editing the CRD: docs/reference.md's field tables from its descriptions (hack/gen_reference.py,
# prose in hack/reference.template.md), and the chart's copy of it (tests check both).
reference: venv
	$(PY) hack/gen_reference.py
	cp crds/lockgate.dev_schemamigrations.yaml charts/lockgate/crds/

# The local demo: control plane, PostgreSQL, the operator and examples/shop, two releases, narrated.
demo: venv postgres node-deps cluster-bin registry-bin images
	$(PY) hack/demo.py

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

# A PostgreSQL server for the tests: Debian's package where initdb/pg_ctl are missing; and
# PgBouncer, which the runner's pooler tests put in front of it.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ echo "installing PostgreSQL (apt-get install -y postgresql)"; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@command -v pgbouncer >/dev/null 2>&1 || ls /usr/sbin/pgbouncer >/dev/null 2>&1 || \
		{ echo "installing PgBouncer (apt-get install -y pgbouncer)"; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null; }

# Flyway 11 for tests/postgres/test_flyway.py and examples/flyway: a Java runtime from Debian where
# java is missing, and Flyway's jars from Maven Central, checksummed and cached (hack/fetch-flyway.sh).
flyway:
	@command -v java >/dev/null 2>&1 || \
		{ echo "installing a Java runtime (apt-get install -y openjdk-17-jre-headless)"; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }
	@hack/fetch-flyway.sh >/dev/null

# The real node's parts from Debian: runc, the CNI plugins, iptables and conntrack (kube-proxy),
# buildah and mmdebstrap (the images are built here, not pulled from the internet), skopeo (pushes
# them to the cluster's registry) and apache2-utils (htpasswd, for the registry that wants a login).
NODE_PACKAGES := runc containernetworking-plugins iptables conntrack buildah mmdebstrap skopeo apache2-utils
node-deps:
	@missing="$$(for p in $(NODE_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	if [ -n "$$missing" ]; then \
		echo "installing" $$missing "(apt-get install -y)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The images the node runs, built from the Dockerfile and the examples (shop, Django, Alembic, Flyway;
# cached: a warm run builds nothing).
images: venv node-deps cluster-bin
	$(PY) -m devcluster.images >/dev/null

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet, kube-proxy,
# containerd, helm (Helm 4) and helm3 (cached; a warm run builds nothing).
cluster-bin:
	@hack/build-cluster-bin.sh >/dev/null

# The CNCF distribution registry v3.1.2: the cluster's registry, which the node pulls from (cached).
registry-bin:
	@hack/build-registry.sh >/dev/null

# hack/health: kstatus and Argo CD's Lua engine, which the status tests read objects with (cached).
health-bin:
	@hack/build-health.sh >/dev/null

# promtool (Prometheus 3.16), which the alert tests check and unit-test the chart's rules with (cached).
promtool-bin:
	@hack/build-promtool.sh >/dev/null

# Argo CD v3.2.11's application controller and repo-server (one binary, cached) and the Redis they
# cache in, for the Argo CD sync tests: Debian's redis-tools, whose binary is the server (the
# redis-server package adds only a system service, which would outlive the tests).
argocd-bin:
	@command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-check-rdb ] || \
		{ echo "installing Redis (apt-get install -y redis-tools)"; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null; }
	@hack/build-argocd.sh >/dev/null

# The tests' control plane and real node outside pytest; the admin kubeconfig is $(CLUSTER_DIR)/kubeconfig.
CLUSTER_DIR ?= .cache/cluster
cluster-up: venv node-deps cluster-bin registry-bin images
	$(PY) -m devcluster up --dir $(CLUSTER_DIR)

cluster-down:
	$(PY) -m devcluster down --dir $(CLUSTER_DIR)

bench: venv postgres
	$(PY) benchmarks/runner_throughput.py

# Big scripts and long histories: splitting 10k-40k statements, a 10 MB file, plan over 5,000 applied.
bench-big: venv postgres
	$(PY) benchmarks/big_scripts.py

# A 5 M-row backfill as one UPDATE and batched, under a probe load; then resumes after SIGKILLs.
bench-backfill: venv postgres
	$(PY) benchmarks/backfill.py

# Start-up of --version, exec -- true, a no-op migrate (beside Flyway's) and wait, beside a bare `python -c pass`.
bench-startup: venv postgres flyway
	$(PY) benchmarks/startup.py

# Operator reaction times; then 1,000 SchemaMigrations in 50 namespaces: memory, time to Ready, idle CPU.
bench-operator: venv postgres node-deps cluster-bin images
	$(PY) benchmarks/operator_latency.py --runs 20 --many 1000 --namespaces 50

# No cluster: the Python memory the operator keeps per SchemaMigration, Job and Job pod, by line.
bench-operator-cache: venv
	$(PY) benchmarks/operator_cache.py

# One SchemaMigration over 1,000 tenant databases, then 1,000 schemas: time, operator memory, status size; beside a loop.
bench-fanout: venv postgres node-deps cluster-bin images
	$(PY) benchmarks/fanout.py --targets 1000

# What the registry adds to a cluster start: the images pushed into empty storage, then into kept storage.
bench-registry: venv node-deps registry-bin images
	$(PY) benchmarks/registry_push.py

# The end-to-end tests on a kind cluster, where a Docker engine exists.
e2e-kind:
	hack/e2e-kind.sh

clean:
	rm -rf $(VENV) .pytest_cache
