"""The planner on valid and invalid CREATE MODEL statements (golden files under
golden/planner), against a table with every DuckDB column type and the penguins."""

from __future__ import annotations

from typing import Any

import pytest

import sqlml
from sqlml import families, planner
from sqlml.parser import split_statements
from tests.conftest import load_penguins, snapshot
from tests.golden import GOLDEN, check

EVERY_TYPE = """
CREATE TABLE every_type AS SELECT
    1::TINYINT AS ti, 2::INTEGER AS i, 3::BIGINT AS bi, 4.5::DECIMAL(5, 2) AS dec,
    1.5::FLOAT AS f, 2.5::DOUBLE AS d, 'a' AS v, true AS b, 'x'::ENUM('x', 'y') AS e,
    DATE '2024-01-02' AS dt, TIMESTAMP '2024-01-02 03:04:05' AS ts,
    TIMESTAMPTZ '2024-01-02 03:04:05+00' AS tz, [1, 2] AS l, {'a': 1} AS s,
    'abc'::BLOB AS blob, INTERVAL 1 DAY AS iv
"""


@pytest.fixture(scope="module")
def connection():
    con = sqlml.connect()
    con.sql(EVERY_TYPE)
    con.sql("CREATE SCHEMA analytics")
    load_penguins(con)
    con.sql(
        "CREATE MODEL mass OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g']) "
        "AS SELECT body_mass_g, flipper_length_mm FROM penguins"
    )
    yield con
    con.close()


def render(con: sqlml.Connection, sql: str) -> Any:
    [statement] = split_statements(sql)
    try:
        plan = planner.plan(
            statement.ast,
            con.duckdb,
            statement.source,
            lambda raw: con.expander.expand_raw(statement.source, raw),
        )
        summary = plan.summary()
        # Builders check what depends on the data; run them on a nominal context too.
        plan.family.build(plan.options, families.FitContext(rows=100, random_seed=0, n_classes=2))
        return summary
    except sqlml.Error as e:
        return {"error": type(e).__name__, "message": str(e)}


def test_golden(connection):
    before = snapshot(connection)
    check(GOLDEN / "planner" / "plans.sql", lambda sql: render(connection, sql))
    assert snapshot(connection) == before  # planning changes nothing
