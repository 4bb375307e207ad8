"""Every stored model as SQL functions.

For a model ``s.m`` sqlml keeps, in the database file, a macro ``s.m(feature, ...)`` (and
``s.m_probs(...)`` for classifiers), each also callable with a whole row, ``s.m(t)``. The
macros call a vectorized Arrow UDF named after the model version (``__sqlml_...``) that
this module registers on every connection sqlml opens or wraps. Because the macro names
the version's UDF, CREATE OR REPLACE switches every caller to the new version at once.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable

import duckdb

from sqlml.catalog import ModelRecord, quote
from sqlml.errors import NameConflict
from sqlml.families import CLASSIFICATION, CLUSTERING
from sqlml.features import CATEGORICAL, DATE_TYPES, DATETIME, type_id
from sqlml.runtime import ModelRuntime, output_columns


def udf_name(record: ModelRecord) -> str:
    """Stable per model version, so macros stored in the file find it after reopening."""
    readable = re.sub(r"\W+", "_", f"{record.schema}_{record.name}").lower()
    digest = hashlib.sha1(f"{record.schema}\0{record.name}".lower().encode()).hexdigest()[:6]
    return f"__sqlml_{readable}_{digest}_v{record.version}"


def function_names(record_name: str, task: str) -> list[str]:
    names = [record_name]
    if task == CLASSIFICATION:
        names.append(f"{record_name}_probs")
    return names


def parameter_type(feature_sql_type: str, kind: str) -> str:
    """The SQL type a model function declares for a feature column."""
    tid = type_id(feature_sql_type)
    if kind == CATEGORICAL:
        return "BOOLEAN" if tid == "boolean" else "VARCHAR"
    if kind == DATETIME:
        if tid in DATE_TYPES:
            return "DATE"
        return "TIMESTAMP WITH TIME ZONE" if tid == "timestamp with time zone" else "TIMESTAMP"
    return "DOUBLE"


def result_type(record: ModelRecord) -> str:
    fields = ", ".join(f"{quote(name)} {sql_type}" for name, sql_type in output_columns(record))
    return f"STRUCT({fields})"


class FunctionRegistry:
    """The UDFs registered on one DuckDB connection, and the macros in its database."""

    def __init__(self, con: duckdb.DuckDBPyConnection, load: Callable[[ModelRecord], bytes]):
        self.con = con
        self._load = load
        self.runtimes: dict[str, ModelRuntime] = {}  # by UDF name
        self._created: set[str] = set()  # the UDFs this registry put on the database

    def runtime(self, record: ModelRecord) -> ModelRuntime:
        name = udf_name(record)
        if name not in self.runtimes:
            self.register(record)
        return self.runtimes[name]

    def register(self, record: ModelRecord, runtime: ModelRuntime | None = None) -> str:
        """Register the version's UDF on this connection (no database change), scoring with
        ``runtime`` if given (its session is then shared)."""
        name = udf_name(record)
        if name in self.runtimes:
            return name
        if runtime is None:
            runtime = ModelRuntime(record, lambda: self._load(record))
        params = [parameter_type(f.sql_type, f.kind) for f in record.features]

        def score(*columns: object) -> object:
            return runtime(*columns)

        # DuckDB counts the Python function's parameters; give it one per feature.
        score.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(f"c{i}", inspect.Parameter.POSITIONAL_ONLY)
                for i in range(len(params))
            ]
        )
        try:
            self.con.create_function(
                name,
                score,
                params,
                result_type(record),
                type="arrow",
                null_handling="special",  # NULL features are imputed, not a NULL result
                side_effects=False,
            )
            self._created.add(name)
        except (duckdb.CatalogException, duckdb.NotImplementedException) as e:
            if "already" not in str(e):
                raise
            # Another connection to this database registered the same (immutable) version.
        self.runtimes[name] = runtime
        return name

    def unregister(self, name: str) -> None:
        self.runtimes.pop(name, None)
        if name in self._created:
            self._created.discard(name)
            self.con.remove_function(name)

    def unregister_model(self, schema: str, name: str) -> None:
        """Every registered version of one model (after DROP, or once replaced)."""
        for udf, runtime in list(self.runtimes.items()):
            record = runtime.record
            if (record.schema.lower(), record.name.lower()) == (schema.lower(), name.lower()):
                self.unregister(udf)

    def unregister_all(self) -> None:
        for name in list(self.runtimes):
            self.unregister(name)

    def call_sql(self, record: ModelRecord, arguments: list[str]) -> str:
        """SQL calling the version's UDF; the result is the struct of output columns."""
        return f"{quote(udf_name(record))}({', '.join(arguments)})"

    # -- macros (stored in the database; the caller holds the transaction) -----------------

    def create_macros(self, record: ModelRecord) -> None:
        columns = [name for name, _ in output_columns(record)]
        features = record.features
        typed = [f"{quote(f.name)} {parameter_type(f.sql_type, f.kind)}" for f in features]
        by_column = [quote(f.name) for f in features]
        by_row = [f"row[{_string(f.name)}]" for f in features]
        for function, column in zip(
            function_names(record.name, record.task),
            _macro_outputs(record.task, columns),
            strict=False,
        ):
            # Typed parameters win for column values; a whole row (a STRUCT) falls through
            # to the untyped overload, even for a model with a single feature.
            self.con.execute(
                f"CREATE OR REPLACE MACRO {quote(record.schema)}.{quote(function)} "
                f"({', '.join(typed)}) AS ({self.call_sql(record, by_column)}).{quote(column)}, "
                f"(row) AS ({self.call_sql(record, by_row)}).{quote(column)}"
            )

    def drop_macros(self, schema: str, name: str, task: str) -> None:
        for function in function_names(name, task):
            self.con.execute(f"DROP MACRO IF EXISTS {quote(schema)}.{quote(function)}")

    def check_names_free(self, schema: str, name: str, task: str, own: bool) -> None:
        """Refuse a model whose function names are taken by someone else's function or
        macro. ``own``: the model already exists, so its own macros do not count."""
        for function in function_names(name, task):
            rows = self.con.execute(
                """SELECT schema_name, function_type, internal FROM duckdb_functions()
                   WHERE lower(function_name) = lower(?)
                     AND (internal OR lower(schema_name) = lower(?))""",
                [function, schema],
            ).fetchall()
            for fn_schema, fn_type, internal in rows:
                if own and not internal and fn_type == "macro":
                    continue
                # Python UDFs live in DuckDB's system catalog, like the built-ins.
                where = (
                    "a built-in or registered" if internal else f"a {fn_type} in schema {fn_schema}"
                )
                raise NameConflict(
                    f"Model {schema}.{name} would define the SQL function {function}(), but "
                    f"{function} is already {where} function. Choose another model name"
                    + ("" if internal else f", or drop the existing {fn_type} first")
                )


def _macro_outputs(task: str, columns: list[str]) -> list[str]:
    """Which output column each model function returns: the prediction, then the probs."""
    if task == CLUSTERING:
        return [columns[0]]
    return columns


def _string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
