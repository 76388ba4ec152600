# Two commands on a fresh clone: `make fit` (train the tutorial's model) and `make test`.
# Both create .venv on first use. TORCH picks the PyTorch build (default: a CPU/CUDA wheel of 2.13.0
# from the package index; e.g. `make fit TORCH=torch==2.14.1`).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: fit test lint setup clean-logs

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

fit: $(STAMP)
	$(BIN)/python scripts/fit.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean-logs:
	rm -rf lightning_logs/version_*
