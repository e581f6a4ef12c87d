# lockgate: `make demo` runs the local demo, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test demo venv postgres cluster-bin bench clean

test: venv postgres cluster-bin
	$(PY) -m pytest

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

# A PostgreSQL server for the tests: Debian's package where initdb/pg_ctl are missing.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ echo "installing PostgreSQL (apt-get install -y postgresql)"; \
		  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, helm (cached; a warm run builds nothing).
cluster-bin:
	@hack/build-cluster-bin.sh >/dev/null

bench: venv postgres
	$(PY) benchmarks/runner_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
