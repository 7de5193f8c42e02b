# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3
PIP ?= $(PY) -m pip
DEMO_DIR ?= runs/demo

.PHONY: install install-test demo test test-slow bench leaderboard-publish

install:
	$(PIP) install -q -e .

install-test:
	$(PIP) install -q -e ".[test]"

# Main job: the demo suite (one small task per track, >= 3 methods each), then the leaderboard.
demo: install
	lsbench suite --preset=demo --workdir=$(DEMO_DIR)
	lsbench leaderboard --results=$(DEMO_DIR)/runs --out=$(DEMO_DIR)/leaderboard
	@echo "open $(DEMO_DIR)/leaderboard/index.html"

# Default tests (slow reproductions and benchmarks are deselected).
test: install-test
	$(PY) -m pytest -q -n 2 tests

# On demand: published-number reproductions and benchmarks.
test-slow: install-test
	$(PY) -m pytest -q -m slow tests

bench: install
	$(PY) benchmarks/bench_client_backends.py

# Regenerate the published board in leaderboard/ (PRESET=quick by default; finished runs are reused).
PRESET ?= quick
leaderboard-publish: install
	lsbench suite --preset=$(PRESET) --workdir=runs/$(PRESET)
	rm -rf leaderboard/results && mkdir -p leaderboard/results
	cd runs/$(PRESET)/runs && find . \( -name final.json -o -name metrics.jsonl -o -name manifest.json \) \
		-exec cp --parents {} $(CURDIR)/leaderboard/results/ \;
	lsbench leaderboard --results=leaderboard/results --out=leaderboard
