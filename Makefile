# The two set-up commands of the README: `make demo` and `make test`.
#
# Everything runs in a virtual environment: the active one ($VIRTUAL_ENV), else
# ./.venv, made here on first use. A Debian/Ubuntu system Python refuses
# `pip install` outside one (PEP 668, "externally-managed-environment").
# The venv sees the system's site-packages, so a JAX that is already installed
# (e.g. jax[cuda12]) is reused; pip adds only what is missing.
PYTHON ?= python3
ifneq ($(VIRTUAL_ENV),)
VENV := $(VIRTUAL_ENV)
else
VENV ?= .venv
endif
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LSBENCH := $(PY) -m lsbench.cli.main
DEMO_DIR ?= runs/demo

.PHONY: venv install install-test demo test test-slow bench accelerator-check leaderboard-publish leaderboard-sync

venv: $(PY)

$(PY):
ifneq ($(VIRTUAL_ENV),)
	@echo "error: VIRTUAL_ENV=$(VIRTUAL_ENV) has no bin/python; activate a working venv or deactivate it" >&2; exit 2
else
	@echo "creating $(VENV) (python: $(PYTHON)); activate your own venv first to use that one instead"
	@$(PYTHON) -m venv --system-site-packages $(VENV) || { rm -rf $(VENV); \
	  echo "error: '$(PYTHON) -m venv' failed; on Debian/Ubuntu run 'sudo apt install python3-venv', then retry" >&2; \
	  exit 2; }
endif

install: $(PY)
	$(PIP) install -q -e .

install-test: $(PY)
	$(PIP) install -q -e ".[test]"

# Main job: the demo suite (one small task per track, >= 3 methods each), then the leaderboard.
demo: install
	$(LSBENCH) suite --preset=demo --workdir=$(DEMO_DIR)
	$(LSBENCH) leaderboard --results=$(DEMO_DIR)/runs --out=$(DEMO_DIR)/leaderboard
	@echo "open $(DEMO_DIR)/leaderboard/index.html"

# Default tests (slow reproductions and benchmarks are deselected); TESTS=tests/test_x.py for one file.
TESTS ?= tests
test: install-test
	$(PY) -m pytest -q -n 2 $(TESTS)

# On demand: published-number reproductions and benchmarks.
test-slow: install-test
	$(PY) -m pytest -q -m slow tests

bench: install
	$(PY) benchmarks/bench_client_backends.py

# On a GPU host or TPU VM: the demo preset and the throughput benchmark, with the device name.
accelerator-check: install
	PY=$(PY) bash benchmarks/accelerator_check.sh

# Regenerate the published board in leaderboard/ (PRESET=small is what is published). Resumable:
# committed results made by the current code are reused (seed); `make leaderboard-sync` copies and
# commits finished runs at any time (also while the suite runs); publishing refuses dirty or mixed code.
PRESET ?= small
leaderboard-publish: install
	$(PY) -m lsbench.leaderboard.publish seed --results=leaderboard/results --workdir=runs/$(PRESET)
	$(LSBENCH) suite --preset=$(PRESET) --workdir=runs/$(PRESET)
	$(PY) -m lsbench.leaderboard.publish sync --results=leaderboard/results --workdir=runs/$(PRESET)
	$(LSBENCH) leaderboard --publish --results=leaderboard/results --out=leaderboard

leaderboard-sync:
	$(PY) -m lsbench.leaderboard.publish sync --results=leaderboard/results --workdir=runs/$(PRESET) --commit
