"""The ML statements: CREATE MODEL, DROP MODEL, DESCRIBE MODEL.

CREATE MODEL walks the whole path: plan -> train -> ONNX export -> parity check ->
evaluation -> catalog -> functions. Nothing touches the database before the last two
steps, which run in one transaction, so a failure anywhere leaves it as it was.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np

from sqlml.catalog import ModelRecord, quote, transaction
from sqlml.errors import CatalogError, ModelExists, ModelNotFound, ParityError, SchemaNotFound
from sqlml.families import CLUSTERING
from sqlml.functions import function_names, set_generation, udf_name
from sqlml.parser import CreateModel, DescribeModel, DropModel, Statement
from sqlml.query import evaluate_table
from sqlml.runtime import ModelRuntime

if TYPE_CHECKING:
    from sqlml.connection import Connection

_LIBRARIES = ("sqlml", "duckdb", "sqlglot", "numpy", "pyarrow", "scikit-learn", "skl2onnx",
              "onnx", "onnxruntime")  # fmt: skip


def create_model(connection: Connection, statement: Statement) -> None:
    from sqlml import onnx_export, parity, planner, trainer  # heavy: only when training

    ast = statement.ast
    assert isinstance(ast, CreateModel)
    con = connection.duckdb
    schema = ast.this.db or connection.current_schema()
    name = ast.this.name
    existing = connection.catalog.current(schema, name)
    if existing is not None:
        if ast.args.get("exists"):
            return  # IF NOT EXISTS: the model stays as it is, nothing is trained
        if not ast.args.get("replace"):
            raise ModelExists(
                f"Model {existing.qualified} already exists (version {existing.version}). Use "
                "CREATE OR REPLACE MODEL to train a new version, or CREATE MODEL IF NOT EXISTS"
            )
    _check_schema(con, schema)

    plan = planner.plan(
        ast,
        con,
        statement.source.sql,
        lambda raw: connection.expander.expand_raw(statement.source, raw),
    )
    connection.functions.check_names_free(
        plan.schema, plan.name, plan.family.task, own=existing is not None
    )
    started = time.perf_counter()
    trained = trainer.train(con, plan, connection.console)
    version = connection.catalog.next_version(plan.schema, plan.name)
    metadata = _metadata(plan, trained, version)

    with connection.console.phase("converting to ONNX"):
        onnx_bytes, outputs = onnx_export.to_onnx(
            trained.features,
            trained.estimator,
            plan.family,
            {
                "sqlml_version": metadata["libraries"]["sqlml"],
                "model": plan.qualified,
                "version": str(version),
                "task": plan.family.task,
                "features": json.dumps(metadata["features"]),
                "label": json.dumps(metadata["label"]),
                "classes": json.dumps(metadata["classes"]),
            },
        )
    metadata["onnx"] = {
        "size_bytes": len(onnx_bytes),
        "outputs": outputs,
        "precision": "float32" if plan.family.float32 else "float64",
        "opset": onnx_export.TARGET_OPSET,
    }
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    record = ModelRecord(plan.schema, plan.name, version, metadata, sha)
    runtime = ModelRuntime(record, lambda: onnx_bytes)  # shared by parity, evaluation, UDF

    columns = [f.name for f in trained.features]
    with connection.console.phase("checking parity"):
        rows = parity.sample(trained.data.select(columns), trained.train_rows, version)
        metadata["parity"] = parity.check(trained.pipeline, runtime, rows, plan.family.float32)
    with connection.console.phase("evaluating"):
        evaluated = trained.eval_rows if len(trained.eval_rows) else trained.train_rows
        metadata["metrics"] = evaluate_table(runtime, trained.data.take(evaluated))
        metadata["evaluated_on"] = "held_out_rows" if len(trained.eval_rows) else "training_rows"
        if plan.options.get("streaming"):
            metadata["evaluated_on"] = f"a sample of the {metadata['evaluated_on']}"
    with connection.console.phase("choosing inference"):
        metadata["inference"] = _choose_inference(con, plan, record, runtime, rows)
    metadata["training"]["seconds"] = round(time.perf_counter() - started, 3)

    with connection.console.phase("storing"):
        udf = connection.functions.register(record, runtime)
        try:
            with transaction(con):
                connection.catalog.ensure()
                if existing is not None:
                    connection.functions.drop_macros(existing.schema, existing.name, existing.task)
                connection.catalog.add_version(record, onnx_bytes)
                connection.functions.create_macros(record)
        except duckdb.Error as e:
            connection.functions.unregister(udf)
            raise CatalogError(f"Storing model {plan.qualified} failed: {e}") from e
        except BaseException:
            connection.functions.unregister(udf)
            raise
        set_generation(con, record.schema, record.name, metadata["generation"])
        if existing is not None:
            # Callers switch to the new version through the macros; nothing may keep
            # scoring with the old one.
            connection.functions.unregister(udf_name(existing))


def _choose_inference(
    con: duckdb.DuckDBPyConnection,
    plan: Any,
    record: ModelRecord,
    runtime: ModelRuntime,
    rows: Any,
) -> dict[str, Any]:
    """'sql' when the family compiles to SQL, it pays, and the SQL agrees with ONNX."""
    from sqlml import compiler, parity

    wanted = plan.options["inference"]
    family = plan.family
    if wanted == "onnx":
        return {"path": "onnx", "reason": "inference = 'onnx'"}
    if family.compile_sql is None:
        return {"path": "onnx", "reason": f"{family.model_type} has no SQL form"}
    if wanted == "auto" and not family.sql_pays(record.metadata["parameters"]):
        return {"path": "onnx", "reason": "an ensemble this large scores faster in onnxruntime"}
    model = compiler.compile_record(record, family)
    figure = parity.check_sql(con, model, runtime, rows, family.float32)
    if not figure.pop("ok"):
        if wanted == "sql":
            raise ParityError(
                f"The SQL form of model {record.qualified} disagrees with its ONNX form on "
                f"{figure['rows_differing']} of {figure['rows']} sample rows (largest "
                f"difference {figure['max_abs_diff']:.3g}); the model was not stored. Use "
                "inference = 'onnx', and please report this with the training query"
            )
        return {"path": "onnx", "reason": "its SQL form disagreed with ONNX", "parity": figure}
    reason = "inference = 'sql'" if wanted == "sql" else "plain SQL scores faster"
    return {"path": "sql", "reason": reason, "parity": figure}


def drop_model(connection: Connection, statement: Statement) -> None:
    ast = statement.ast
    assert isinstance(ast, DropModel)
    schema = ast.this.db or connection.current_schema()
    record = connection.catalog.current(schema, ast.this.name)
    if record is None:
        if ast.args.get("exists"):
            return
        connection.expander.lookup(ast.this)  # raises ModelNotFound, listing the models
        raise ModelNotFound(ast.this.name)
    try:
        with transaction(connection.duckdb):
            connection.catalog.drop(record.schema, record.name)
            connection.functions.drop_macros(record.schema, record.name, record.task)
    except duckdb.Error as e:
        raise CatalogError(f"Dropping model {record.qualified} failed: {e}") from e
    connection.functions.unregister_model(record.schema, record.name)
    set_generation(connection.duckdb, record.schema, record.name, time.time_ns() // 1000)


def describe_model_sql(connection: Connection, statement: Statement) -> str:
    """DESCRIBE MODEL: one row per fact, as (section, name, value)."""
    ast = statement.ast
    assert isinstance(ast, DescribeModel)
    record = connection.expander.lookup(ast.this)
    meta = record.metadata
    rows: list[tuple[str, str, Any]] = [
        ("model", "name", record.qualified),
        ("model", "version", record.version),
        ("model", "model_type", meta["model_type"]),
        ("model", "task", meta["task"]),
        ("model", "created_at", meta["created_at"]),
        (
            "model",
            "functions",
            ", ".join(f"{n}(...)" for n in function_names(record.name, record.task)),
        ),
    ]
    if meta.get("label"):
        rows.append(("label", meta["label"]["name"], meta["label"]["sql_type"]))
    rows += [("option", key, json.dumps(value)) for key, value in meta["options"].items()]
    for feature in record.features:
        rows.append(("feature", feature.name, f"{feature.sql_type}: {feature.describe()}"))
    for i, value in enumerate(meta.get("classes") or []):
        rows.append(("class", str(i), json.dumps(value)))
    centroids = meta["parameters"]["centroids"] if meta["task"] == CLUSTERING else []
    for i, centroid in enumerate(centroids):
        rows.append(("centroid", str(i + 1), json.dumps([round(v, 6) for v in centroid])))
    rows += [("metric", key, value) for key, value in meta["metrics"].items()]
    rows.append(("metric", "evaluated_on", meta["evaluated_on"]))
    training = meta["training"]
    rows += [
        ("training", "sql", training["sql"]),
        ("training", "rows_read", training["rows_read"]),
        ("training", "rows_null_label", training["rows_null_label"]),
        ("training", "rows_train", training["rows_train"]),
        ("training", "rows_eval", training["rows_eval"]),
        ("training", "split", training["split"]),
        ("training", "estimator", training["estimator"]),
        ("training", "seconds", training["seconds"]),
    ]
    rows += [("training", "warning", w) for w in training["warnings"]]
    rows += [("library", key, value) for key, value in meta["libraries"].items()]
    rows += [
        ("onnx", "size_bytes", meta["onnx"]["size_bytes"]),
        ("onnx", "precision", meta["onnx"]["precision"]),
        ("onnx", "sha256", record.onnx_sha256),
    ]
    rows += [("parity", key, value) for key, value in meta["parity"].items()]
    chosen = meta.get("inference", {"path": "onnx"})
    rows.append(("inference", "path", chosen["path"]))
    rows.append(("inference", "reason", chosen.get("reason")))
    rows += [("inference", f"sql_{k}", v) for k, v in chosen.get("parity", {}).items()]
    values = ", ".join(f"({_string(s)}, {_string(n)}, {_string(_text(v))})" for s, n, v in rows)
    return f"SELECT * FROM (VALUES {values}) AS describe_model(section, name, value)"


def _check_schema(con: duckdb.DuckDBPyConnection, schema: str) -> None:
    found = con.execute(
        "SELECT count(*) FROM duckdb_schemas() WHERE database_name = current_database() "
        "AND lower(schema_name) = lower(?)",
        [schema],
    ).fetchall()[0][0]
    if not found:
        raise SchemaNotFound(
            f"Schema {schema} does not exist; create it first: CREATE SCHEMA {quote(schema)}"
        )


def _metadata(plan: Any, trained: Any, version: int) -> dict[str, Any]:
    estimator = trained.estimator
    created = datetime.now(UTC)
    meta: dict[str, Any] = {
        "format_version": 1,
        "schema": plan.schema,
        "name": plan.name,
        "version": version,
        "model_type": plan.family.model_type,
        "task": plan.family.task,
        "options": plan.options,
        "options_given": plan.given,
        "label": plan.label,
        "features": [f.to_dict() for f in trained.features],
        "classes": trained.classes,
        "key_metric": plan.family.key_metric,
        "created_at": created.replace(tzinfo=None).isoformat(sep=" "),
        # Microseconds since the epoch: orders every version ever made of a model name.
        "generation": int(created.timestamp() * 1_000_000),
        "training": {
            "sql": plan.training_sql,
            "rows_read": trained.rows_read,
            "rows_null_label": trained.rows_null_label,
            "rows_train": trained.rows_train,
            "rows_eval": trained.rows_eval,
            "epochs": trained.epochs,
            "split": trained.split_method,
            "estimator": type(estimator).__name__,
            "estimator_params": _jsonable(estimator.get_params()),
            "warnings": trained.warnings,
            "seconds": None,
        },
        "libraries": _library_versions(),
    }
    if plan.family.parameters is not None:
        meta["parameters"] = plan.family.parameters(estimator)
    return meta


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, float) and not np.isfinite(value):
            out[key] = str(value)
        elif value is None or isinstance(value, bool | int | float | str):
            out[key] = value
        else:
            out[key] = repr(value)
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        return repr(value)
    return value if isinstance(value, str) else json.dumps(value)


def _string(value: str | None) -> str:
    return "NULL::VARCHAR" if value is None else "'" + value.replace("'", "''") + "'"
