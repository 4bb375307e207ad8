"""Every stored model as SQL functions.

For a model ``s.m`` sqlml keeps, in the database file, a macro ``s.m(feature, ...)`` (and
``s.m_probs(...)`` for classifiers), each also callable with a whole row, ``s.m(t)``.

- A model scored in SQL (``inference`` 'sql') has the model itself in the macro body: plain
  DuckDB SQL that any DuckDB client can run.
- A model scored from Python (``inference`` 'onnx': onnxruntime; 'native': trees compiled
  to machine code, native.py) has a macro calling a vectorized Arrow UDF named after the
  model version (``__sqlml_...``), which this module registers on every connection sqlml
  opens or wraps.

Either way the macro is replaced by CREATE OR REPLACE MODEL, so every caller switches to
the new version at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from sqlml import compiler, families
from sqlml.catalog import ABORTED, ModelRecord, open_transaction, quote
from sqlml.errors import CatalogError, NameConflict
from sqlml.families import ANOMALY_DETECTION, CLASSIFICATION, DIMENSIONALITY_REDUCTION, IMPORTED
from sqlml.features import CATEGORICAL, DATE_TYPES, DATETIME, type_id
from sqlml.runtime import ModelRuntime, output_columns, runtime_for

SQL, NATIVE, ONNX = "sql", "native", "onnx"


def inference(record: ModelRecord) -> str:
    """How a stored version scores: 'sql', 'native' (native.py) or 'onnx'."""
    return record.metadata.get("inference", {}).get("path", ONNX)


def _model_key(schema: str, name: str) -> str:
    readable = re.sub(r"\W+", "_", f"{schema}_{name}").lower()
    digest = hashlib.sha1(f"{schema}\0{name}".lower().encode()).hexdigest()[:6]
    return f"{readable}_{digest}"


def udf_name(record: ModelRecord) -> str:
    """Stable per model version (so macros stored in the file find it after reopening), and
    never reused: another version, other ONNX bytes or another training run (the suffix,
    from the time it was made) give other names."""
    key = _model_key(record.schema, record.name)
    name = f"__sqlml_{key}_v{record.version}_{record.onnx_sha256[:8]}"
    suffix = record.metadata.get("udf_suffix")  # versions stored before it have none
    return f"{name}_{suffix}" if suffix else name


def generation_variable(schema: str, name: str) -> str:
    """The session variable holding the generation of a model this connection last wrote."""
    return f"__sqlml_generation_{_model_key(schema, name)}"


def set_generation(con: duckdb.DuckDBPyConnection, schema: str, name: str, generation: int) -> None:
    """Tell this session's older compiled statements that the model changed (see
    create_macros)."""
    con.execute(f"SET VARIABLE {quote(generation_variable(schema, name))} = {int(generation)}")


def function_names(record_name: str, task: str) -> list[str]:
    names = [record_name]
    if task == CLASSIFICATION:
        names.append(f"{record_name}_probs")
    return names


def function_outputs(record: ModelRecord) -> list[tuple[str, str]]:
    """(name, SQL type) of each SQL function of a model: the prediction (a classifier's
    class, a cluster id, a pca model's components as a list, an anomaly score), and a
    classifier's probabilities."""
    names = function_names(record.name, record.task)
    if record.task == IMPORTED:  # the first output
        return [(names[0], output_columns(record)[0][1])]
    if record.task == DIMENSIONALITY_REDUCTION:
        return [(names[0], "DOUBLE[]")]
    if record.task == ANOMALY_DETECTION:
        return [(names[0], "DOUBLE")]
    columns = output_columns(record)
    return [(name, columns[i][1]) for i, name in enumerate(names)]


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


def udf_parameter_types(record: ModelRecord) -> list[str]:
    """The SQL types of the UDF's arguments: one per feature (an imported model: per
    input)."""
    if record.task == IMPORTED:
        return [t for _, t in record.inputs]
    return [parameter_type(f.sql_type, f.kind) for f in record.features]


def input_parameter_type(record: ModelRecord, name: str, sql_type: str) -> str:
    """The SQL type a model function declares for an input column."""
    if record.task == IMPORTED:
        return sql_type
    if not record.transform:
        feature = next(f for f in record.features if f.name == name)
        return parameter_type(feature.sql_type, feature.kind)
    return "VARCHAR" if type_id(sql_type) == "enum" else sql_type


def result_type(record: ModelRecord) -> str:
    fields = ", ".join(f"{quote(name)} {sql_type}" for name, sql_type in output_columns(record))
    return f"STRUCT({fields})"


def _raw_type(record: ModelRecord) -> str:
    """The SQL type of a native model's raw scores: one DOUBLE, or a list of them."""
    return "DOUBLE" if len(record.metadata["parameters"]["base"]) == 1 else "DOUBLE[]"


def compiled(record: ModelRecord) -> compiler.CompiledModel:
    return compiler.compile_record(record, families.get(record.model_type))


# Every Python function handed to DuckDB as a UDF, for the life of the process. DuckDB's
# catalog entry points at the function without owning it: a transaction that began before
# the UDF was removed still sees and calls it, and one removed inside a transaction comes
# back at its ROLLBACK. Kept here, such a call finds the function (which then says that the
# version is gone) instead of freed memory. One small closure per registration.
_HANDED: list[Callable[..., object]] = []


@dataclass
class _Changes:
    """What an open transaction of the caller did to models, settled once it ends."""

    transaction: int
    models: set[tuple[str, str]] = field(default_factory=set)  # (schema, name) it changed
    # UDFs registered inside it, on the caller's connection: gone if it rolled back
    registered: set[str] = field(default_factory=set)


class FunctionRegistry:
    """The UDFs registered on one DuckDB connection, and the macros in its database.

    DuckDB's Python UDFs do not roll back with the transaction that registered or removed
    them: a UDF registered inside one is gone after ROLLBACK although the connection still
    holds its name, and one removed inside one comes back to the catalog after ROLLBACK. So
    a UDF is registered on a cursor of our own, outside any transaction, unless the
    caller's transaction is open (it would not see it); none is removed while the caller's
    transaction is open; and once it has ended, settle() keeps the UDFs of the versions
    then current, registering again those a rollback took away.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, load: Callable[[ModelRecord], bytes]):
        self.con = con
        self._load = load
        self.runtimes: dict[str, ModelRuntime] = {}  # by UDF name
        # The UDFs this registry put on the database, and the connection each is on.
        self._created: dict[str, duckdb.DuckDBPyConnection] = {}
        # Versions another connection to the same database had registered: DuckDB keeps
        # Python UDFs per database, and each lives only as long as the connection that made it.
        self._borrowed: set[str] = set()
        self._owner: duckdb.DuckDBPyConnection | None = None
        self._changes: _Changes | None = None

    def runtime(self, record: ModelRecord) -> ModelRuntime:
        """The onnxruntime scorer of a version (ML.EVALUATE and parity use it too)."""
        name = udf_name(record)
        if name not in self.runtimes:
            self.runtimes[name] = runtime_for(record, lambda: self._load(record))
        return self.runtimes[name]

    def onnx_bytes(self, record: ModelRecord) -> bytes:
        """The stored ONNX file of a version (or trial), as it is in the catalog."""
        return self._load(record)

    def register(
        self, record: ModelRecord, runtime: ModelRuntime | None = None, *, owner: bool = False
    ) -> None:
        """Register the UDFs of a version scored from Python, by onnxruntime or natively
        (no database change), scoring with ``runtime`` if given (its session is then
        shared): one returning every output column as a struct (ML.PREDICT), one per output
        column (the model's functions, which then build only what they return), and for a
        native model one returning the raw scores (its ML.PREDICT, outputs in SQL).
        ``owner``: on our own cursor, without looking at the caller's transaction (which
        may hold a result not yet fetched)."""
        name = udf_name(record)
        if runtime is not None:
            self.runtimes.setdefault(name, runtime)
        if inference(record) == SQL or name in self._created or name in self._borrowed:
            return
        scorer = self.runtime(record)
        bodies: list[tuple[str, Callable[[Any, tuple[Any, ...]], object], str]] = [
            (name, lambda r, columns: r(*columns), result_type(record))
        ]
        for i, (_, sql_type) in enumerate(function_outputs(record)):
            bodies.append(
                (
                    f"{name}_{i}",
                    lambda r, columns, i=i: r.function_array(r.run(columns), i),
                    sql_type,
                )
            )
        if inference(record) == NATIVE:  # the raw scores ML.PREDICT's SQL starts from
            from sqlml.native import NativeRuntime

            assert isinstance(scorer, NativeRuntime)
            bodies.append(
                (f"{name}_raw", lambda r, columns: r.raw_array(*columns), _raw_type(record))
            )
        transaction = None if owner else open_transaction(self.con)
        inside = transaction is not None
        target = self.con if inside else self._owner_connection()
        params = udf_parameter_types(record)
        made = [
            self._create_function(target, udf, name, body, params, returns)
            for udf, body, returns in bodies
        ]
        if not made[0]:
            self._borrowed.add(name)
            return
        self._created[name] = target
        if transaction is not None:  # settled once the transaction has ended
            self._note(record.schema, record.name, transaction)
            assert self._changes is not None
            self._changes.registered.add(name)

    def _owner_connection(self) -> duckdb.DuckDBPyConnection:
        if self._owner is None:
            self._owner = self.con.cursor()
        return self._owner

    def _create_function(
        self,
        target: duckdb.DuckDBPyConnection,
        udf: str,
        version: str,
        body: Callable[[Any, tuple[Any, ...]], object],
        params: list[str],
        returns: str,
    ) -> bool:
        """Register one UDF of ``version``; False when another connection to this database
        already has."""
        runtimes = self.runtimes

        def score(*columns: object) -> object:
            # Looked up per call, so that a removed version's scorer is freed (see _HANDED).
            runtime = runtimes.get(version)
            if runtime is None:
                raise CatalogError(
                    f"{udf}: this version of the model was replaced or dropped; "
                    "run the statement again"
                )
            return body(runtime, columns)

        # DuckDB counts the Python function's parameters; give it one per feature.
        score.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(f"c{i}", inspect.Parameter.POSITIONAL_ONLY)
                for i in range(len(params))
            ]
        )
        try:
            target.create_function(
                udf,
                score,
                params,
                returns,
                type="arrow",
                null_handling="special",  # NULL features are imputed, not a NULL result
                side_effects=False,
            )
        except (duckdb.CatalogException, duckdb.NotImplementedException) as e:
            if "already" not in str(e):
                raise
            return False  # the same (immutable) version, from another connection
        _HANDED.append(score)
        return True

    def unregister(self, name: str) -> None:
        """Remove a version's UDFs: at once outside the caller's transaction; inside one,
        once it has ended (see settle)."""
        runtime = self.runtimes.get(name)
        transaction = open_transaction(self.con)
        if transaction is None:
            self._remove(name)
        elif runtime is not None:
            self._note(runtime.record.schema, runtime.record.name, transaction)

    def _remove(self, name: str) -> None:
        runtime = self.runtimes.pop(name, None)
        self._borrowed.discard(name)
        home = self._created.pop(name, None)
        if home is None:
            return
        outputs = len(function_outputs(runtime.record)) if runtime else 0
        functions = [name] + [f"{name}_{i}" for i in range(outputs)]
        if runtime is not None and inference(runtime.record) == NATIVE:
            functions.append(f"{name}_raw")
        for function in functions:
            # Fails when it went with a rolled-back transaction (the connection keeps the
            # name: a training run's UDF names are its own, see udf_name), or in a failed
            # transaction of the caller's: what DuckDB still lists stays callable (_HANDED).
            with contextlib.suppress(duckdb.Error):
                home.remove_function(function)

    def unregister_model(self, schema: str, name: str, keep: ModelRecord | None = None) -> None:
        """Every registered version of one model (after DROP), or every one but ``keep``
        and its tuning trials (once replaced by it; a model dropped and created again in one
        transaction has a version 1 again, with other UDFs)."""
        kept = None if keep is None else udf_name(keep)
        for udf, runtime in list(self.runtimes.items()):
            record = runtime.record
            if (record.schema.lower(), record.name.lower()) != (schema.lower(), name.lower()):
                continue
            trial_of_kept = keep is not None and record.trial_id is not None
            if udf != kept and not (trial_of_kept and record.version == keep.version):
                self.unregister(udf)

    @property
    def pending(self) -> bool:
        """Whether models changed in a transaction that may have ended since (see settle)."""
        return self._changes is not None

    def changed(self, schema: str, name: str, record: ModelRecord | None, generation: int) -> None:
        """A model was stored (``record``) or dropped (None): statements prepared before
        must fail (see create_macros), and the versions it replaced go: at once once its
        transaction has committed, else once the caller's transaction has ended (settle)."""
        set_generation(self.con, schema, name, generation)
        transaction = open_transaction(self.con)
        if transaction is None:
            self.unregister_model(schema, name, keep=record)
        else:
            self._note(schema, name, transaction)

    def _note(self, schema: str, name: str, transaction: int) -> None:
        """Remember a model the caller's open transaction changes."""
        if self._changes is not None and self._changes.transaction != transaction:
            self.settle()  # an earlier transaction's, ended without a statement since
        if self._changes is None:
            self._changes = _Changes(transaction)
        self._changes.models.add((schema.lower(), name.lower()))

    def settle(self) -> None:
        """Once the transaction that changed models has ended: keep only the UDFs of the
        versions now current, registered again where a rollback took them, and their
        generations (resync: a rolled-back change had set a later one)."""
        from sqlml.catalog import Catalog

        changes = self._changes
        if changes is None or open_transaction(self.con) in (changes.transaction, ABORTED):
            return  # nothing to settle, or the transaction still open
        self._changes = None
        if changes.registered:
            listed = {
                row[0]
                for row in self.con.execute(
                    "SELECT function_name FROM duckdb_functions() WHERE function_name LIKE "
                    "'\\_\\_sqlml\\_%' ESCAPE '\\'"
                ).fetchall()
            }
            for udf in changes.registered - listed:  # rolled back with the transaction
                self._created.pop(udf, None)
        catalog = Catalog(self.con)
        for schema, name in changes.models:
            record = catalog.current(schema, name)
            self.unregister_model(schema, name, keep=record)
            if record is not None:
                self.resync([record])
                if udf_name(record) in self.runtimes:
                    self.register(record)  # again, if a rollback took it

    def resync(self, current: list[ModelRecord]) -> None:
        """Bring back the generations this session set for versions that are not current
        (a change rolled back), so that the current versions' functions score: after a
        transaction sqlml saw end (settle), and on connecting (one rolled back on the
        DuckDB connection itself, which no sqlml statement saw)."""
        values = dict(
            self.con.execute(
                "SELECT name, value FROM duckdb_variables() WHERE name LIKE '__sqlml_generation_%'"
            ).fetchall()
        )
        for record in current:
            value = values.get(generation_variable(record.schema, record.name))
            generation = int(record.metadata["generation"])
            if value is not None and int(value) > generation:
                set_generation(self.con, record.schema, record.name, generation)

    def unregister_all(self) -> list[ModelRecord]:
        """Remove every UDF; the versions of those this registry had created."""
        created = [self.runtimes[n].record for n in sorted(self._created) if n in self.runtimes]
        self._changes = None
        for name in {*self._created, *self.runtimes}:
            self._remove(name)
        if self._owner is not None:
            self._owner.close()
            self._owner = None
        return created

    def adopt(self, records: list[ModelRecord]) -> None:
        """Another connection to this database removed the UDFs of these versions as it
        closed: register those still current again, now as their owner (on its own cursor:
        this connection may be in a transaction, or hold a result not yet fetched)."""
        from sqlml.catalog import Catalog

        catalog = Catalog(self._owner_connection())
        for record in records:
            name = udf_name(record)
            if name in self._created:
                continue
            current = catalog.current(record.schema, record.name)
            if current is None or udf_name(current) != name:
                continue  # replaced or dropped since: nothing calls it
            self._borrowed.discard(name)
            self.register(record, owner=True)

    # -- SQL ---------------------------------------------------------------------------------

    def functions_sql(self, record: ModelRecord, arguments: list[str]) -> list[str]:
        """SQL of each of the model's functions (function_outputs) for these features."""
        count = len(function_outputs(record))
        if inference(record) == SQL:
            model = compiled(record)
            outputs = model.outputs(model.raw(arguments))
            if record.task == DIMENSIONALITY_REDUCTION:
                return [f"[{', '.join(outputs)}]"]
            return outputs[:count]
        name = udf_name(record)
        return [f"{quote(f'{name}_{i}')}({', '.join(arguments)})" for i in range(count)]

    def predict_sql(self, record: ModelRecord, data: str) -> str:
        """ML.PREDICT over the query ``data``: the output columns first, then the input's."""
        names = [name for name, _ in output_columns(record)]
        features = record.feature_sql()
        if inference(record) == SQL:
            return compiler.predict_sql(compiled(record), features, data, names)
        self.register(record)
        if inference(record) == NATIVE:
            # The trees' raw scores from Python, the outputs from them in SQL (as for a
            # model in SQL): a query that reads only the label builds no probabilities.
            scores = f"{quote(udf_name(record) + '_raw')}({', '.join(features)})"
            count = len(record.metadata["parameters"]["base"])
            return compiler.predict_sql(compiled(record), features, data, names, scores, count)
        call = f"{quote(udf_name(record))}({', '.join(features)})"
        return (
            "(SELECT __sqlml_out.*, * EXCLUDE (__sqlml_out) FROM "
            f"(SELECT *, {call} AS __sqlml_out FROM ({data}) AS __sqlml_in) AS __sqlml_scored)"
        )

    # -- macros (stored in the database; the caller holds the transaction) -----------------

    def create_macros(self, record: ModelRecord) -> None:
        typed = [f"{quote(n)} {input_parameter_type(record, n, t)}" for n, t in record.inputs]
        by_column = self.functions_sql(record, record.feature_sql())
        if record.transform:
            # The TRANSFORM's SQL refers to input columns by name: a whole row goes through
            # the column overload (created first, so that the row overload can call it).
            qualified = [
                f"{quote(record.schema)}.{quote(f)}"
                for f in function_names(record.name, record.task)
            ]
            fields = ", ".join(f"row[{compiler.string(n)}]" for n, _ in record.inputs)
            by_row = [f"{function}({fields})" for function in qualified]
        else:
            by_row = self.functions_sql(
                record, [f"row[{compiler.string(n)}]" for n, _ in record.inputs]
            )
        # DuckDB expands a macro when a statement is bound and does not bind a prepared
        # statement again when the macro changes unless the statement reads a table. So a
        # prepared `SELECT m($1)` would keep scoring with the replaced model: the guard makes
        # it fail instead, once this session has written a newer generation of the model.
        variable = compiler.string(generation_variable(record.schema, record.name))
        generation = int(record.metadata["generation"])
        stale = compiler.string(
            f"model {record.qualified} was replaced or dropped after this statement was "
            "prepared; prepare it again"
        )

        def guarded(expr: str) -> str:
            return (
                f"(CASE WHEN coalesce(getvariable({variable}), 0) <= {generation} "
                f"THEN {expr} ELSE error({stale}) END)"
            )

        for i, function in enumerate(function_names(record.name, record.task)):
            # Typed parameters win for column values; a whole row (a STRUCT) falls through
            # to the untyped overload, even for a model with a single input.
            name = f"{quote(record.schema)}.{quote(function)}"
            columns = f"({', '.join(typed)}) AS {guarded(by_column[i])}"
            if record.transform:
                self.con.execute(f"CREATE OR REPLACE MACRO {name} {columns}")
            self.con.execute(
                f"CREATE OR REPLACE MACRO {name} {columns}, (row) AS {guarded(by_row[i])}"
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
