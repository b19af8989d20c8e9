# ragway: `make run` starts the embedded stack, `make test` runs every check.
# Works from a fresh clone: only the package registries need to be reachable.

# The interpreter the venv is made from: Debian's python3.11 where it is installed with
# its venv module (built with PGO and LTO: ~15-20% less CPU for the same Python than a
# plain source build such as pyenv's; bench/RESULTS.md), else the first python3.11 on
# PATH. `make PYTHON=...` picks another; the venv is made anew when it changes.
PYTHON ?= $(shell /usr/bin/python3.11 -c 'import ensurepip, venv' 2>/dev/null \
	&& echo /usr/bin/python3.11 || echo python3.11)
VENV := .venv
PY := $(VENV)/bin/python
# The stamp's name carries the interpreter's version line, so a change of interpreter
# makes it missing and the venv is made again.
PYTHON_TAG := $(shell $(PYTHON) -c 'import sys, zlib; print(zlib.crc32(sys.version.encode()))')
STAMP := $(VENV)/.ragway-installed-$(PYTHON_TAG)
PATHS := libs services tests bench

.PHONY: setup setup-models system-packages run test test-fast test-image image \
	lint fmt bench bench-anchors clean console-screenshots

setup: $(STAMP) setup-models

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print(sys.version)')" != \
		"$$($(PYTHON) -c 'import sys; print(sys.version)')" ]; then \
		echo "$(VENV) was made by another python: making it anew from $(PYTHON)"; \
		rm -rf $(VENV); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.ragway-installed*
	touch $(STAMP)

# Models live outside the repository (RAGWAY_CACHE_DIR, default ~/.cache/ragway).
# Each step is idempotent and fast once done.
setup-models: $(STAMP)
	$(PY) -m stack setup-llm
	$(PY) -m embedding.build

# Debian packages some tests use (headless browser, sandbox, image builds); `make test` runs without
# them and those tests say they were skipped. Installs only what is missing, as root.
SYSTEM_PACKAGES := chromium:/usr/bin/chromium bubblewrap:/usr/bin/bwrap \
	podman:/usr/bin/podman runc:/usr/sbin/runc mmdebstrap:/usr/bin/mmdebstrap
system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		test -x "$${pair#*:}" || missing="$$missing $${pair%%:*}"; done; \
	if [ -z "$$missing" ]; then echo "system packages: all present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "system packages: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 $$missing; \
	else echo "system packages missing (as root: apt-get install$$missing); their tests skip"; fi

run: setup
	$(PY) -m stack run

# The README's console screenshots (docs/console/*.png), taken by the browser tests.
console-screenshots: setup system-packages
	RAGWAY_CONSOLE_SCREENSHOTS=docs/console $(VENV)/bin/pytest -q tests/console/test_console_browser.py

test: setup lint
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest

# The container image, built with podman from a Debian-made base (no image registry needed):
# deploy/image/build.sh. `make test-image` builds it and serves the first requests from it.
IMAGE ?= ragway:dev
image:
	deploy/image/build.sh $(IMAGE)

test-image: setup
	@if command -v podman >/dev/null && command -v mmdebstrap >/dev/null; then \
		$(MAKE) image && RAGWAY_TEST_IMAGE=$(IMAGE) $(VENV)/bin/pytest -q tests/image; \
	else echo "test-image skipped: podman and mmdebstrap are not installed (make system-packages)"; fi

# Unit and service tests only (real nats-server and embedding model; no llama-server, no
# whole stack, no process kills, no cluster): about a minute and a half. Markers: pyproject.
test-fast: $(STAMP)
	$(PY) -m embedding.build
	$(VENV)/bin/pytest -q -m "not (e2e or llm or slow or cluster or reliability or security)"

lint: $(STAMP)
	$(VENV)/bin/ruff check $(PATHS)
	$(VENV)/bin/ruff format --check $(PATHS)

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix $(PATHS)
	$(VENV)/bin/ruff format $(PATHS)

# Benchmarks print ratios against a baseline measured in the same run (bench/RESULTS.md).
BENCHES := gateway_overhead controls_overhead nats_relay retrieval_latency upload_latency ingestion retrieval_quality listing_latency embeddings_api
OPENWEBUI_VENV ?= $(HOME)/.cache/ragway/openwebui-venv

bench: setup
	@set -e; for name in $(BENCHES); do \
		echo "== bench/$$name.py ($$(cut -d' ' -f1-3 /proc/loadavg) load)"; \
		$(PY) "bench/$$name.py"; \
	done

# Open WebUI in its own virtualenv outside the repository (~6 min, ~7.3 GB the first time).
bench-anchors: setup
	test -x $(OPENWEBUI_VENV)/bin/open-webui || { \
		$(PYTHON) -m venv $(OPENWEBUI_VENV) && \
		$(OPENWEBUI_VENV)/bin/pip install -q open-webui==0.12.4; }
	$(PY) bench/openwebui_anchor.py --venv $(OPENWEBUI_VENV)

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info bench/out
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
	@echo "kept .venv, data/ and the model cache; remove them by hand to start over"
