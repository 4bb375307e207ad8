"""Shared fixtures: real data sets shipped by packages on PyPI, and database snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import palmerpenguins
import pytest

import sqlml

PENGUINS_CSV = Path(palmerpenguins.__file__).parent / "data" / "penguins.csv"
PENGUIN_FEATURES = [
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
    "year",
]


def load_penguins(
    con: sqlml.Connection | duckdb.DuckDBPyConnection, table: str = "penguins"
) -> None:
    con.sql(f"CREATE TABLE {table} AS FROM read_csv('{PENGUINS_CSV}', nullstr = 'NA')")


def load_breast_cancer(con: sqlml.Connection) -> None:
    """569 rows, 30 numeric features, binary VARCHAR label (malignant / benign)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame["diagnosis"] = [data.target_names[t] for t in frame.pop("target")]
    con.duckdb.register("breast_cancer_frame", frame)
    con.sql("CREATE TABLE breast_cancer AS SELECT * FROM breast_cancer_frame")
    con.duckdb.unregister("breast_cancer_frame")


@pytest.fixture
def con():
    connection = sqlml.connect()
    load_penguins(connection)
    yield connection
    connection.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "models.duckdb"


def snapshot(con: sqlml.Connection | duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Everything a failed statement must leave unchanged: schemas, tables with their rows,
    views, user functions and macros, and the model catalog."""
    raw = con.duckdb if isinstance(con, sqlml.Connection) else con
    state: dict[str, Any] = {
        "schemas": raw.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE NOT internal ORDER BY 1"
        ).fetchall(),
        "views": raw.execute(
            "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY 1, 2"
        ).fetchall(),
        "functions": raw.execute(
            "SELECT schema_name, function_name, function_type, macro_definition "
            "FROM duckdb_functions() WHERE NOT internal OR function_name LIKE '\\_\\_sqlml%' "
            "ESCAPE '\\' ORDER BY ALL"
        ).fetchall(),
    }
    tables = raw.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT internal ORDER BY 1, 2"
    ).fetchall()
    state["tables"] = {
        f"{schema}.{name}": raw.execute(
            f'SELECT COLUMNS(*)::VARCHAR FROM "{schema}"."{name}" ORDER BY ALL'
        ).fetchall()
        for schema, name in tables
    }
    return state


@pytest.fixture(scope="module")
def model_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file with the penguins and a linear model of their mass (shared by a
    test module)."""
    path = tmp_path_factory.mktemp("models") / "penguins.duckdb"
    with sqlml.connect(str(path)) as con:
        load_penguins(con)
        con.sql(
            "CREATE MODEL penguin_mass OPTIONS (model_type = 'linear_reg', "
            "input_label_cols = ['body_mass_g']) "
            "AS SELECT * FROM penguins WHERE body_mass_g IS NOT NULL"
        )
    return path
