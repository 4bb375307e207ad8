# Everything a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint format clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(INSTALLED)

demo: $(INSTALLED)
	rm -f demo.duckdb demo.duckdb.wal
	$(BIN)/sqlml demo.duckdb -f sql/demo.sql

test: $(INSTALLED) lint
	$(BIN)/python -m pytest

lint: $(INSTALLED)
	$(BIN)/ruff check sqlml tests benchmarks
	$(BIN)/ruff format --check sqlml tests benchmarks

format: $(INSTALLED)
	$(BIN)/ruff check --fix sqlml tests benchmarks
	$(BIN)/ruff format sqlml tests benchmarks

clean:
	rm -rf $(VENV) demo.duckdb demo.duckdb.wal .pytest_cache
