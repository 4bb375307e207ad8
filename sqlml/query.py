"""ML functions inside queries -> DuckDB SQL.

Each ``ML.<fn>(...)`` call and ``SHOW MODELS`` is replaced, in the user's text, by a
parenthesized DuckDB query (or expression, for the preprocessing functions); the rest of
the text is left exactly as written. So the ML functions work wherever DuckDB takes a table
expression: FROM, joins, CTEs, subqueries, CREATE TABLE ... AS, another model's training
query. The functions themselves are in table_functions.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import duckdb
from sqlglot import exp

from sqlml import python_scan
from sqlml.catalog import SCHEMA, Catalog, ModelRecord, quote
from sqlml.errors import ArgumentError, ColumnNotFound, ModelNotFound, QueryError, UnsupportedType
from sqlml.features import kind_of
from sqlml.parser import MLPreprocess, RawSQL, Source, find_ml_spans, parse_ml_call, placeholders
from sqlml.planner import Column, describe_query

if TYPE_CHECKING:
    import pyarrow as pa

    from sqlml.functions import FunctionRegistry

SHOW_MODELS_COLUMNS = [
    ("schema", "VARCHAR", "v.schema_name"),
    ("name", "VARCHAR", "v.model_name"),
    ("model_type", "VARCHAR", "v.model_type"),
    ("label", "VARCHAR", "v.label"),
    ("feature_count", "INTEGER", "v.feature_count"),
    ("training_rows", "BIGINT", "v.training_rows"),
    ("key_metric", "VARCHAR", "v.key_metric"),
    ("key_metric_value", "DOUBLE", "v.key_metric_value"),
    ("version", "INTEGER", "v.version"),
    ("created_at", "TIMESTAMP", "v.created_at"),
]


class QueryExpander:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        catalog: Catalog,
        functions: FunctionRegistry,
        current_schema: Callable[[], str],
    ):
        self.con = con
        self.catalog = catalog
        self.functions = functions
        self.current_schema = current_schema
        self._reading: set[str] | None = None  # see expand_reading_models

    # -- text --------------------------------------------------------------------------

    def expand(self, source: Source, lo: int, hi: int) -> str:
        """The text of tokens [lo, hi) with every ML call replaced by DuckDB SQL."""
        from sqlml import table_functions, transform

        spans = find_ml_spans(source, lo, hi)
        if not spans:
            return source.text(lo, hi)
        out: list[str] = []
        position = source.tokens[lo].start
        for span in spans:
            out.append(source.sql[position : source.tokens[span.lo].start])
            if span.kind == "show_models":
                out.append(self.show_models_sql())
            else:
                call = parse_ml_call(source, span)
                if isinstance(call, MLPreprocess):
                    out.append(transform.window_sql(source, call))
                else:
                    out.append(table_functions.call_sql(self, source, call))
            position = source.tokens[span.hi - 1].end + 1
        out.append(source.sql[position : source.tokens[hi - 1].end + 1])
        return "".join(out)

    def expand_reading_models(self, source: Source, lo: int, hi: int) -> tuple[str, list[str]]:
        """expand(), and the models its ML calls read ("schema.name", lower case)."""
        self._reading = set()
        try:
            return self.expand(source, lo, hi), sorted(self._reading)
        finally:
            self._reading = None

    def expand_raw(self, source: Source, raw: RawSQL) -> str:
        lo = source.index_at(raw.args["start"])
        hi = source.index_at(raw.args["end"])
        return self.expand(source, lo, hi)

    # -- models ------------------------------------------------------------------------

    def schema_of(self, table: exp.Table) -> str:
        """The schema of a model name. A database part (``ref()`` in dbt renders
        ``"db"."main"."m"``) must name the current database: models live in the file that
        holds them."""
        if table.catalog:
            database = self.con.execute("SELECT current_database()").fetchall()[0][0]
            if table.catalog.lower() != database.lower():
                schema = table.db or self.current_schema()
                raise ModelNotFound(
                    f"Model {table.catalog}.{schema}.{table.name} names database "
                    f"{table.catalog}, but models are read from the current database, "
                    f"{database}. Name it {schema}.{table.name}, or USE {table.catalog} first"
                )
        return table.db or self.current_schema()

    def lookup(self, table: exp.Table) -> ModelRecord:
        schema = self.schema_of(table)
        record = self.catalog.current(schema, table.name)
        if record is None:
            known = [r.qualified for r in self.catalog.all_current()]
            listing = f"Models here: {', '.join(known)}" if known else "There are no models yet"
            error = ModelNotFound(f"Model {schema}.{table.name} does not exist. {listing}")
            error.model = f"{schema}.{table.name}"  # type: ignore[attr-defined]
            raise error
        if self._reading is not None:
            self._reading.add(record.qualified.lower())
        return record

    def input_columns(self, record: ModelRecord, data: str, function: str) -> list[Column]:
        """The columns of ``data``, checked to hold every input of the model with a usable
        type; named clearly when not."""
        columns = describe_query(
            self.con, data, f"The input of {function}(MODEL {record.qualified})"
        )
        reserved = [c.name for c in columns if c.name.lower().startswith("__sqlml_")]
        if reserved:
            raise ArgumentError(
                f"{function}(MODEL {record.qualified}): the input's column {reserved[0]} has "
                "a name sqlml keeps for its own columns (__sqlml_...); rename it, e.g. "
                f"SELECT * RENAME ({quote(reserved[0])} AS other_name)"
            )
        by_name = {c.name.lower(): c for c in columns}
        inputs = record.inputs
        missing = [name for name, _ in inputs if name.lower() not in by_name]
        if missing:
            raise ColumnNotFound(
                f"{function}: the input has no column {', '.join(missing)}, which model "
                f"{record.qualified} was trained on. Add "
                f"{'it' if len(missing) == 1 else 'them'} to the input (the model reads "
                f"{', '.join(name for name, _ in inputs)})"
            )
        for name, sql_type in inputs:
            column = by_name[name.lower()]
            expected = kind_of(sql_type)
            # "NULL": an untyped NULL or a parameter, which DuckDB casts where it is used.
            untyped = column.sql_type.strip('"') == "NULL"
            if expected is not None and not untyped and kind_of(column.sql_type) != expected:
                raise UnsupportedType(
                    f"{function}: column {column.name} is {column.sql_type}, but model "
                    f"{record.qualified} was trained on it as {sql_type}. Cast it, "
                    f"e.g. CAST({column.name} AS {sql_type})"
                )
        return columns

    def fetch(self, sql: str, what: str) -> pa.Table:
        """Run a query while the statement is rewritten (the ML functions computed in Python:
        ML.EVALUATE, ML.EXPLAIN_PREDICT, ...), before its parameters are bound."""
        if placeholders(sql) is not None:
            raise QueryError(
                f"{what} uses query parameters (?, $1 or $name), which have no values yet: "
                "this function reads its input while the statement is prepared. Write the "
                "values into the query"
            )
        try:
            return python_scan.run(self.con.sql, sql).to_arrow_table()
        except duckdb.Error as e:
            raise QueryError(f"{what} failed: {e}") from e

    # -- SHOW MODELS ---------------------------------------------------------------------

    def show_models_sql(self) -> str:
        if self.catalog.format_version() is None:
            empty = ", ".join(f"NULL::{t} AS {quote(n)}" for n, t, _ in SHOW_MODELS_COLUMNS)
            return f"SELECT {empty} WHERE false"
        select = ", ".join(f"{expr} AS {quote(n)}" for n, _, expr in SHOW_MODELS_COLUMNS)
        return (
            f"SELECT {select} FROM {SCHEMA}.models m JOIN {SCHEMA}.model_versions v "
            "ON v.schema_name = m.schema_name AND v.model_name = m.model_name "
            "AND v.version = m.current_version ORDER BY v.schema_name, v.model_name"
        )
