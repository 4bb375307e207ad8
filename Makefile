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
	$(BIN)/sqlml build sql --db demo.duckdb
	$(BIN)/sqlml demo.duckdb -c "SELECT name, model_type, key_metric, key_metric_value, version FROM (SHOW MODELS)"
	$(BIN)/sqlml demo.duckdb -c "SELECT round(COLUMNS(*), 3) FROM (SELECT accuracy, precision, recall, f1_score, log_loss, roc_auc FROM ML.EVALUATE(MODEL penguin_species))"
	$(BIN)/sqlml demo.duckdb -c "SELECT round(COLUMNS(*), 3) FROM (SELECT mean_absolute_error, median_absolute_error, r2_score FROM ML.EVALUATE(MODEL penguin_mass))"
	$(BIN)/sqlml demo.duckdb -c "SELECT species, penguin_group, count(*) AS penguins, round(avg(predicted_body_mass_g)) AS predicted_mass_g FROM penguin_estimates GROUP BY ALL ORDER BY ALL"

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
