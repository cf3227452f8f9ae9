# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the package (with test tools) on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: demo test lint install clean-results readme check-readme

$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# the peephole LSTM's C++ kernel, built once here (~30 s) rather than in the first training job;
	@# without a compiler it says why, and training uses the Python recurrence (same results up to rounding)
	$(BIN)/python -c "from videmotion.peephole import resolve_kernel; print('peephole LSTM kernel:', resolve_kernel())"
	touch $@

install: $(BIN)/snakemake

## The demo reproduction: renders the synthetic corpus and runs every stage; the wall
## time goes to results/demo_wall_seconds.txt (read by `videmotion readme`).
demo: install
	@start=$$(date +%s); $(BIN)/snakemake --cores $(CORES) && mkdir -p results && \
		echo $$(( $$(date +%s) - start )) > results/demo_wall_seconds.txt
	@cat results/table.md

## After a fresh `make demo`: paste results/table.md, the findings and the run's facts into README.md,
## and the per-stage times into docs/performance.md.
readme: install
	$(BIN)/videmotion readme

## Fail when the README's demo table or findings differ from the run's (CI runs it after the demo).
check-readme: install
	$(BIN)/videmotion readme --check

## The test suite (includes a tiny end-to-end workflow run).
test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile workflow
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results .snakemake
