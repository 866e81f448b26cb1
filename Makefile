# rhosym: `make demo` and `make test` both create .venv when missing and install everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.rhosym-installed
# torch is pinned and installed first: an unpinned torch pulls several GB of CUDA packages.
TORCH_PIN := torch==2.13.0
SMK := $(BIN)/snakemake
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: demo test install lint pytest dryrun tiny test-slurm clean report benchmark

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(SMK) --profile profiles/local all
	@echo "figures: $$(ls results/figures 2>/dev/null | tr '\n' ' ')"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(SMK) --lint

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

dryrun: $(STAMP)
	$(SMK) all --profile profiles/local -n --quiet rules

tiny: $(STAMP)
	$(SMK) all --profile profiles/local --configfile config.tiny.yaml
	RHOSYM_TINY_RESULTS=results/tiny $(BIN)/python -m pytest -q tests/test_tiny_outputs.py

test-slurm: $(STAMP)
	bash tests/slurm/run.sh

# On a GPU machine (docs/gpu.md): CUDA checks, throughput, DDP, a short MP-20 training -> one JSON
# ($OUT/gpu-check.json or ./gpu-check.json). Needs .gpu/ (bash tests/gpu/prepare.sh, here) and no .venv.
.PHONY: gpu-check
gpu-check:
	bash tests/gpu/run.sh

test: lint pytest dryrun tiny test-slurm

# The public benchmark, variant quick (82.8 min on 2 CPU cores; docs/benchmarks/public.md).
benchmark: $(STAMP)
	$(SMK) all --profile profiles/local --configfile config/benchmarks/public.yaml

report: $(STAMP)
	$(SMK) --profile profiles/local all --report report.html

clean:
	rm -rf results .snakemake
