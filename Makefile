# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the package (with test tools) on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: demo test lint install clean-results

$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/snakemake

## The demo reproduction: renders the synthetic corpus and runs every stage.
demo: install
	$(BIN)/snakemake --cores $(CORES)
	@cat results/table.md

## The test suite (includes a tiny end-to-end workflow run).
test: install
	$(BIN)/pytest

lint: install
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results .snakemake
