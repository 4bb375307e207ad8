"""ML table functions inside queries -> DuckDB SQL.

Each ``ML.<fn>(...)`` call and ``SHOW MODELS`` is replaced, in the user's text, by a
parenthesized DuckDB query; the rest of the text is left exactly as written. So the ML
functions work wherever a table expression can stand: FROM, joins, CTEs, subqueries,
CREATE TABLE ... AS.

- ML.PREDICT becomes a projection over the input that calls the model's UDF: lazy and
  streaming like any DuckDB query, input rows and order kept.
- ML.EVALUATE with data scores the rows when the statement runs and becomes a one-row
  VALUES list; without data it is the metrics stored at training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlml.catalog import SCHEMA, Catalog, ModelRecord, quote
from sqlml.errors import (
    ColumnNotFound,
    DataError,
    ModelNotFound,
    OptionError,
    QueryError,
    UnsupportedType,
)
from sqlml.families import CLASSIFICATION, CLUSTERING, REGRESSION
from sqlml.features import kind_of, numeric_values
from sqlml.metrics import METRICS, evaluate
from sqlml.parser import MLFunction, RawSQL, Source, find_ml_spans, parse_ml_call
from sqlml.planner import Column, describe_query
from sqlml.runtime import label_arrow_type

if TYPE_CHECKING:
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

    # -- text --------------------------------------------------------------------------

    def expand(self, source: Source, lo: int, hi: int) -> str:
        """The text of tokens [lo, hi) with every ML call replaced by DuckDB SQL."""
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
                out.append(self._call(source, parse_ml_call(source, span)))
            position = source.tokens[span.hi - 1].end + 1
        out.append(source.sql[position : source.tokens[hi - 1].end + 1])
        return "".join(out)

    def expand_raw(self, source: Source, raw: RawSQL) -> str:
        lo = source.index_at(raw.args["start"])
        hi = source.index_at(raw.args["end"])
        return self.expand(source, lo, hi)

    # -- models ------------------------------------------------------------------------

    def lookup(self, table: exp.Table) -> ModelRecord:
        schema = table.db or self.current_schema()
        record = self.catalog.current(schema, table.name)
        if record is None:
            known = [r.qualified for r in self.catalog.all_current()]
            listing = f"Models here: {', '.join(known)}" if known else "There are no models yet"
            raise ModelNotFound(f"Model {schema}.{table.name} does not exist. {listing}")
        return record

    def _input_sql(self, source: Source, call: MLFunction) -> str | None:
        data = call.args.get("input")
        if data is None:
            return None
        if isinstance(data, RawSQL):
            return self.expand_raw(source, data)
        return f"SELECT * FROM {data.sql(dialect='duckdb')}"

    def _call(self, source: Source, call: MLFunction) -> str:
        record = self.lookup(call.args["model"])
        function = f"ML.{call.function}"
        if call.args.get("params") is not None:
            raise OptionError(f"{function} takes no STRUCT of settings yet; remove it")
        data = self._input_sql(source, call)
        if call.function == "PREDICT":
            if data is None:
                raise ColumnNotFound(
                    f"ML.PREDICT(MODEL {record.qualified}, ...) needs input rows: "
                    "TABLE <name> or (<query>) as the second argument"
                )
            return self.predict_sql(record, data)
        if call.function == "EVALUATE":
            if data is None:
                return _values_sql(record.metadata["metrics"], METRICS[record.task])
            return _values_sql(self.evaluate(record, data), METRICS[record.task])
        raise AssertionError(call.function)

    def check_input(self, record: ModelRecord, columns: list[Column], function: str) -> None:
        """Every feature present with a usable type; named clearly when not."""
        by_name = {c.name.lower(): c for c in columns}
        missing = [f.name for f in record.features if f.name.lower() not in by_name]
        if missing:
            raise ColumnNotFound(
                f"{function}: the input has no column {', '.join(missing)}, which model "
                f"{record.qualified} was trained on. Add "
                f"{'it' if len(missing) == 1 else 'them'} to the input (the model reads "
                f"{', '.join(f.name for f in record.features)})"
            )
        for feature in record.features:
            column = by_name[feature.name.lower()]
            if kind_of(column.sql_type) != feature.kind:
                raise UnsupportedType(
                    f"{function}: column {column.name} is {column.sql_type}, but model "
                    f"{record.qualified} was trained on it as {feature.sql_type}. Cast it, "
                    f"e.g. CAST({column.name} AS {feature.sql_type})"
                )

    def predict_sql(self, record: ModelRecord, data: str) -> str:
        columns = describe_query(
            self.con, data, f"The input of ML.PREDICT(MODEL {record.qualified})"
        )
        self.check_input(record, columns, "ML.PREDICT")
        return self.functions.predict_sql(record, data)

    def evaluate(self, record: ModelRecord, data: str) -> dict[str, float | None]:
        what = f"The input of ML.EVALUATE(MODEL {record.qualified})"
        columns = describe_query(self.con, data, what)
        self.check_input(record, columns, "ML.EVALUATE")
        needed = [f.name for f in record.features]
        if record.label is not None:
            label = record.label["name"]
            if label.lower() not in {c.name.lower() for c in columns}:
                raise ColumnNotFound(
                    f"ML.EVALUATE: the input has no label column {label}; model "
                    f"{record.qualified} is evaluated against it. Add it to the input"
                )
            needed.append(label)
        try:
            table = self.con.sql(
                f"SELECT {', '.join(quote(n) for n in needed)} FROM ({data}) AS __sqlml_in"
            ).to_arrow_table()
        except duckdb.Error as e:
            raise QueryError(f"{what} failed: {e}") from e
        return evaluate_table(self.functions.runtime(record), table)

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


def evaluate_table(runtime: Any, table: pa.Table) -> dict[str, float | None]:
    """Metrics of a model on rows holding its feature columns and (if supervised) label."""
    record = runtime.record
    y = None
    if record.label is not None:
        label = table.column(record.label["name"])
        keep = pc.is_valid(label)
        if record.task == REGRESSION:
            keep = pc.and_(keep, pc.invert(pc.is_nan(pc.cast(label, pa.float64()))))
        table = table.filter(pc.fill_null(keep, False))
        if table.num_rows == 0:
            raise DataError(
                f"ML.EVALUATE(MODEL {record.qualified}): no input row has a non-NULL label "
                f"{record.label['name']} to evaluate against"
            )
        label = table.column(record.label["name"])
        if record.task == CLASSIFICATION:
            label_type = label_arrow_type(record.label["type_id"])
            try:
                label = pc.cast(label, label_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise UnsupportedType(
                    f"ML.EVALUATE: label {record.label['name']} cannot be compared with the "
                    f"classes of model {record.qualified} ({record.label['sql_type']}): {e}"
                ) from None
            codes = pc.index_in(label, value_set=pa.array(record.classes, label_type))
            y = pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype("int64")
        else:
            y = numeric_values(label)
    outputs = runtime.run([table.column(f.name) for f in record.features])
    centroids = record.metadata["parameters"]["centroids"] if record.task == CLUSTERING else None
    return evaluate(record.task, outputs, y, centroids)


def _literal(value: float | None) -> str:
    if value is None:
        return "NULL::DOUBLE"
    if math.isnan(value):
        return "'NaN'::DOUBLE"
    if math.isinf(value):
        return "'Infinity'::DOUBLE" if value > 0 else "'-Infinity'::DOUBLE"
    return f"{value!r}::DOUBLE"


def _values_sql(metrics: dict[str, float | None], names: tuple[str, ...]) -> str:
    values = ", ".join(_literal(metrics.get(n)) for n in names)
    columns = ", ".join(quote(n) for n in names)
    return f"(SELECT * FROM (VALUES ({values})) AS __sqlml_metrics({columns}))"
