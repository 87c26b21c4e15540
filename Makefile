# rlexp — `make help` lists the targets. Everything runs inside .venv, created on first use.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
# The torch requirement installed first. 2.13.0 is a CPU build found on local disk; GPU users
# override it, e.g. `make install TORCH='torch==2.13.0 --index-url https://…/cu128'`.
TORCH  ?= torch==2.13.0
ARGS   ?=
ATARI_ARGS ?=
PORT   ?= 6006
LOGDIR ?= outputs

BIN   := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install train sweep report test test-slow lint docs docs-serve tensorboard clean bench

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# The stamp makes `install` a no-op until pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)  ## Create .venv and install torch ($$TORCH) then rlexp with its dev extra (tests, launchers, Optuna)

train: $(STAMP)  ## Train one run: make train ARGS='agent=dqn env=cartpole seed=1'
	$(BIN)/python -m rlexp.train $(ARGS)

sweep: $(STAMP)  ## Parallel sweep, one job per core: make sweep ARGS='seed=0,1,2,3 optimizer=sgd,adam'
	$(BIN)/python -m rlexp.train -m hydra/launcher=parallel $(ARGS)

report: $(STAMP)  ## Re-make a sweep's report: make report ARGS=outputs/multirun/DATE/TIME
	$(BIN)/python -m rlexp.report $(ARGS)

test: $(STAMP)  ## Run the default test suite (a few minutes; one worker per core)
	$(BIN)/python -m pytest -n auto --dist worksteal $(ARGS)

test-slow: $(STAMP)  ## Run the slow learning checks (about 15 minutes; one worker per core)
	$(BIN)/python -m pytest -m slow -n auto --dist worksteal $(ARGS)

lint: $(STAMP)  ## ruff check and the import layering contracts (.importlinter)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

docs: $(STAMP)  ## Build the documentation site into site/ (mkdocs-material, --strict: a broken link fails)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

docs-serve: $(STAMP)  ## Serve the documentation on http://localhost:8000
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

tensorboard: $(STAMP)  ## Serve $(LOGDIR) (outputs/; a sweep dir: its HParams tab) on http://localhost:$(PORT)
	$(BIN)/tensorboard --logdir $(LOGDIR) --host 127.0.0.1 --port $(PORT)

clean:  ## Remove .venv, caches and all run outputs (keeps outputs/.gitkeep)
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info site
	find outputs -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

bench: $(STAMP)  ## CartPole, population, Atari, report and tracker benchmarks: rlexp vs Stable-Baselines3 and joblib (installs the bench extra)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python scripts/bench_cartpole.py $(ARGS)
	$(BIN)/python scripts/bench_population.py $(POPULATION_ARGS)
	$(BIN)/python scripts/bench_atari.py $(ATARI_ARGS)
	$(BIN)/python scripts/bench_report.py
	$(BIN)/python scripts/bench_trackers.py
