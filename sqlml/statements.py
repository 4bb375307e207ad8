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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from sqlml import views
from sqlml.catalog import FORMAT_VERSION, ModelRecord, quote, transaction
from sqlml.errors import (
    CatalogError,
    ModelExists,
    ModelFileError,
    ModelNotFound,
    OptionError,
    ParityError,
    SchemaNotFound,
)
from sqlml.families import CLUSTERING, KEY_METRICS
from sqlml.functions import function_names, udf_name
from sqlml.metrics import METRICS
from sqlml.options import jsonable_options, literal_value
from sqlml.parser import CreateModel, DescribeModel, DropModel, ExportModel, Statement
from sqlml.runtime import ModelRuntime
from sqlml.table_functions import evaluate_table, evaluation_sample

# Rows of the training data the stored facts (loss curves, attributions, anomaly score
# quantiles) are computed on: enough for stable figures, bounded time.
SAMPLE_ROWS = 10_000

if TYPE_CHECKING:
    from sqlml.connection import Connection

_LIBRARIES = ("sqlml", "duckdb", "sqlglot", "numpy", "pyarrow", "scikit-learn", "skl2onnx",
              "onnx", "onnxruntime")  # fmt: skip


def create_model(connection: Connection, statement: Statement) -> None:
    ast = statement.ast
    assert isinstance(ast, CreateModel)
    con = connection.duckdb
    schema = connection.expander.schema_of(ast.this)
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
    with connection.console.task(f"CREATE MODEL {schema}.{name}"):
        _train_and_store(connection, statement, existing)


def _train_and_store(
    connection: Connection, statement: Statement, existing: ModelRecord | None
) -> None:
    from sqlml import planner, trainer  # heavy: only when training

    ast = statement.ast
    con = connection.duckdb
    with connection.console.phase("planning"):
        plan = planner.plan(
            ast,
            con,
            statement.source,
            lambda raw: connection.expander.expand_raw(statement.source, raw),
        )
    connection.functions.check_names_free(
        plan.schema, plan.name, plan.task, own=existing is not None
    )
    started = time.perf_counter()
    version = connection.catalog.next_version(plan.schema, plan.name)
    if plan.imported is not None:
        from sqlml import onnx_import

        record, onnx_bytes, runtime = onnx_import.build(plan, version, _metadata(plan, version))
        trials: list[tuple[ModelRecord, bytes]] = []
    else:
        if plan.family.native is not None and plan.options["inference"] in ("auto", "native"):
            from sqlml import native

            native.warm()  # numba loads while scikit-learn fits, ready for the parity check
        trained = trainer.train(con, plan, connection.console)
        record, onnx_bytes, runtime = _version(connection, plan, trained, trained.pipeline, version)
        trials = _trial_versions(connection, plan, trained, record)
    record.metadata["training"]["seconds"] = round(time.perf_counter() - started, 3)
    _store(connection, existing, record, onnx_bytes, runtime, trials)


def _version(
    connection: Connection,
    plan: Any,
    trained: Any,
    pipeline: Any,
    version: int,
    trial: Any = None,
) -> tuple[ModelRecord, bytes, ModelRuntime]:
    """One trained pipeline as a stored version: ONNX, parity figure, metrics and what the
    inspection functions read. ``trial``: a tuning trial other than the optimal one."""
    from sqlml import onnx_export, parity

    family = plan.family
    estimator = pipeline.named_steps["model"]
    features = pipeline.named_steps["preprocess"].features_
    metadata = _metadata(plan, version, trained, estimator, features)
    chosen = trial or next((t for t in trained.trials if t.optimal), None)
    if chosen is not None:  # tuned: the options this trial trained with
        metadata["options"] = {**metadata["options"], **chosen.hyperparameters}
        metadata["trial_id"] = chosen.trial_id
    with connection.console.phase("converting to ONNX"):
        onnx_bytes, outputs = onnx_export.to_onnx(
            features, estimator, family, onnx_export.properties(metadata)
        )
    metadata["onnx"] = {
        "size_bytes": len(onnx_bytes),
        "outputs": outputs,
        "precision": "float32" if family.float32 else "float64",
        "opset": onnx_export.TARGET_OPSET,
    }
    sha = hashlib.sha256(onnx_bytes).hexdigest()
    trial_id = trial.trial_id if trial is not None else None
    record = ModelRecord(plan.schema, plan.name, version, metadata, sha, trial_id)
    runtime = ModelRuntime(record, lambda: onnx_bytes)  # shared by parity, evaluation, UDF

    data = trained.data.select([f.name for f in features] + _label_column(plan))
    with connection.console.phase("checking parity"):
        rows = parity.sample(data.select([f.name for f in features]), trained.train_rows, version)
        metadata["parity"] = parity.check(pipeline, runtime, rows, family.float32)
    with connection.console.phase("evaluating"):
        seconds = trial.seconds if trial is not None else trained.seconds.get("fit", 0.0)
        _evaluate(plan, trained, runtime, data, estimator, seconds)
    if trial is None:
        with connection.console.phase("choosing inference"):
            metadata["inference"], runtime = _choose_inference(
                connection.duckdb, plan, record, runtime, rows
            )
    else:
        metadata["inference"] = {"path": "onnx", "reason": "a tuning trial"}
    return record, onnx_bytes, runtime


def _label_column(plan: Any) -> list[str]:
    return [plan.label["name"]] if plan.label else []


def _evaluate(
    plan: Any, trained: Any, runtime: ModelRuntime, data: Any, estimator: Any, seconds: float
) -> None:
    """Metrics on the test rows (else the evaluation rows, else the training rows), and the
    facts the inspection and explanation functions read later, into the metadata."""
    from sqlml import anomaly, explain, inspection
    from sqlml.features import matrix

    record = runtime.record
    metadata = record.metadata
    seed = plan.options["random_seed"]
    if len(trained.test_rows):
        held, where = trained.test_rows, "test_rows"
    elif len(trained.eval_rows):
        held, where = trained.eval_rows, "held_out_rows"
    else:
        held, where = trained.train_rows, "training_rows"
    if plan.options.get("streaming"):
        where = f"a sample of the {where}"
    metadata["evaluated_on"] = where
    evaluation = data.take(pa.array(held))
    training = data.take(pa.array(_at_most(trained.train_rows, SAMPLE_ROWS, seed)))
    if record.task in METRICS:
        metadata["metrics"] = evaluate_table(runtime, evaluation)
    else:
        metadata["metrics"] = {}
    sample = evaluation_sample(runtime, evaluation, seed)
    if sample is not None:
        metadata["evaluation_sample"] = sample

    metadata["feature_info"] = inspection.feature_info(
        record.features, data.take(pa.array(trained.train_rows))
    )
    x_train = matrix(record.features, training, float32=plan.family.float32)
    y_train = (
        trained.y[_at_most(trained.train_rows, SAMPLE_ROWS, seed)]
        if trained.y is not None
        else None
    )
    evaluated = None
    if len(trained.eval_rows):
        rows = _at_most(trained.eval_rows, SAMPLE_ROWS, seed)
        x_eval = matrix(record.features, data.take(pa.array(rows)), float32=plan.family.float32)
        evaluated = (x_eval, trained.y[rows] if trained.y is not None else None)
    metadata["training_info"] = inspection.training_info(
        estimator,
        record.task,
        seconds,
        (x_train, y_train),
        evaluated,
    )
    if record.model_type in explain.LINEAR:
        metadata["explain"] = {"mean_row": matrix(record.features, training).mean(axis=0).tolist()}
    if plan.options.get("enable_global_explain"):
        explained = data.take(pa.array(_at_most(held, SAMPLE_ROWS, seed)))
        outputs = runtime.run([explained.column(f.name) for f in record.features])
        metadata["global_explain"] = explain.global_attributions(record, explained, outputs)
    if record.task in anomaly.SCORE:
        outputs = runtime.run([training.column(f.name) for f in record.features])
        metadata["anomaly"] = anomaly.training_scores(record, outputs, training)


def _at_most(rows: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``rows``, drawn without replacement, in order."""
    if len(rows) <= limit:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))


def _trial_versions(
    connection: Connection, plan: Any, trained: Any, record: ModelRecord
) -> list[tuple[ModelRecord, bytes]]:
    """The other successful trials of a tuned model, each a version of its own (stored
    beside the model), and the trials' summary in the model's metadata."""
    if not trained.trials:
        return []
    record.metadata["trials"] = [t.summary() for t in trained.trials]
    out = []
    for trial in trained.trials:
        if trial.optimal or trial.status != "SUCCEEDED":
            continue
        trial_record, onnx_bytes, _ = _version(
            connection, plan, trained, trial.pipeline, record.version, trial
        )
        out.append((trial_record, onnx_bytes))
    return out


def _store(
    connection: Connection,
    existing: ModelRecord | None,
    record: ModelRecord,
    onnx_bytes: bytes,
    runtime: ModelRuntime,
    trials: list[tuple[ModelRecord, bytes]],
) -> None:
    """Catalog rows and macros in one transaction; the UDF registered first and removed
    again if storing fails, so nothing is left half made."""
    con = connection.duckdb
    with connection.console.phase("storing"):
        connection.functions.register(record, runtime)
        try:
            with transaction(con):
                connection.catalog.ensure()
                if existing is not None:
                    connection.functions.drop_macros(existing.schema, existing.name, existing.task)
                connection.catalog.add_version(record, onnx_bytes)
                for trial_record, trial_bytes in trials:
                    connection.catalog.add_trial(trial_record, trial_bytes)
                connection.functions.create_macros(record)
        except duckdb.Error as e:
            connection.functions.unregister(udf_name(record))
            raise CatalogError(f"Storing model {record.qualified} failed: {e}") from e
        except BaseException:
            connection.functions.unregister(udf_name(record))
            raise
        # Callers switch to the new version through the macros; nothing may keep scoring
        # with an old one.
        connection.functions.changed(
            record.schema, record.name, record, record.metadata["generation"]
        )
        views.follow(connection, record.schema, record.name)


def _choose_inference(
    con: duckdb.DuckDBPyConnection,
    plan: Any,
    record: ModelRecord,
    runtime: ModelRuntime,
    rows: Any,
) -> tuple[dict[str, Any], ModelRuntime]:
    """How the model will score, and the runtime to score with: 'sql' when the family
    compiles to SQL, it pays, and the SQL agrees with ONNX on the parity rows; else
    'native' when the family has a native scorer that takes the model and agrees with ONNX;
    else 'onnx'. A path asked for by name that cannot be taken is an error (the planner
    refuses those it can tell before training)."""
    from sqlml import compiler, parity

    wanted = plan.options["inference"]
    family = plan.family
    parameters = record.metadata.get("parameters") or {}
    if wanted == "onnx":
        return {"path": "onnx", "reason": "inference = 'onnx'"}, runtime
    reasons: list[str] = []  # why not a faster path
    figures: dict[str, Any] = {}  # the parity figure of a faster path that disagreed
    if wanted in ("auto", "sql") and family.compile_sql is not None:
        if wanted == "sql" or family.sql_pays(parameters):
            model = compiler.compile_record(record, family)
            figure = parity.check_sql(con, model, runtime, rows, family.float32)
            if figure.pop("ok"):
                reason = "inference = 'sql'" if wanted == "sql" else "plain SQL scores faster"
                return {"path": "sql", "reason": reason, "parity": figure}, runtime
            if wanted == "sql":
                raise _disagreement("SQL form", record, figure)
            reasons.append("its SQL form disagreed with ONNX")
            figures["parity"] = figure
        else:
            reasons.append("an ensemble this large scores faster off SQL")
    elif family.compile_sql is None:
        reasons.append(f"{family.model_type} has no SQL form")
    if wanted in ("auto", "native") and family.native is not None:
        problem = family.native(parameters)
        if problem is None:
            from sqlml.native import NativeRuntime

            scorer = NativeRuntime(record)
            figure = parity.check_runtime(scorer, runtime, rows, family.float32)
            if figure.pop("ok"):
                reason = "trees score faster natively"
                if wanted == "native":
                    reason = "inference = 'native'"
                return {"path": "native", "reason": reason, "parity": figure}, scorer
            if wanted == "native":
                raise _disagreement("native scorer", record, figure)
            reasons.append("its native scorer disagreed with ONNX")
            figures["parity"] = figure
        elif wanted == "native":
            raise OptionError(
                f"inference = 'native' cannot score model {record.qualified}: {problem}; the "
                "model was not stored. Use inference = 'auto' or 'onnx'",
                "inference",
            )
        else:
            reasons.append(f"not native: {problem}")
    return {"path": "onnx", "reason": "; ".join(reasons), **figures}, runtime


def _disagreement(form: str, record: ModelRecord, figure: dict[str, Any]) -> ParityError:
    return ParityError(
        f"The {form} of model {record.qualified} disagrees with its ONNX form on "
        f"{figure['rows_differing']} of {figure['rows']} sample rows (largest difference "
        f"{figure['max_abs_diff']:.3g}); the model was not stored. Use inference = 'onnx', "
        "and please report this with the training query"
    )


EXPORT_OPTIONS = ("uri", "trial_id")


def export_model(connection: Connection, statement: Statement) -> None:
    """EXPORT MODEL m OPTIONS (uri = 'path/m.onnx' | 'folder/' [, trial_id = n]): the ONNX
    file plain onnxruntime runs, and a JSON sidecar beside it (onnx_export.sidecar). Both
    are written to temporary names first, so a failure leaves no partial file."""
    import os

    from sqlml.onnx_export import sidecar
    from sqlml.tuning import trial_record

    ast = statement.ast
    assert isinstance(ast, ExportModel)
    record = connection.expander.lookup(ast.this)
    given = {}
    for option in ast.args.get("options") or []:
        key = option.this.name.lower()
        if key not in EXPORT_OPTIONS:
            raise OptionError(
                f"Unknown option {key!r} for EXPORT MODEL; valid: {', '.join(EXPORT_OPTIONS)}",
                key,
            )
        given[key] = literal_value(option.expression, key)
    uri = given.get("uri")
    if not isinstance(uri, str) or not uri:
        raise OptionError(
            f"EXPORT MODEL {record.qualified} needs OPTIONS (uri = 'path/model.onnx'), the "
            "file to write (or an existing folder)",
            "uri",
        )
    if "trial_id" in given:
        record = trial_record(connection.expander, record, given["trial_id"], "EXPORT MODEL")
    path = Path(uri).expanduser()
    if path.is_dir():
        path = path / f"{record.name}.onnx"
    if path.suffix.lower() != ".onnx":
        raise OptionError(
            f"EXPORT MODEL {record.qualified}: uri {uri!r} must name an .onnx file or an "
            "existing folder",
            "uri",
        )
    if not path.parent.is_dir():
        raise ModelFileError(
            f"EXPORT MODEL {record.qualified}: folder {str(path.parent)!r} does not exist; "
            "create it first"
        )
    onnx_bytes = connection.functions.onnx_bytes(record)
    side = json.dumps(sidecar(record, path.name), indent=2, ensure_ascii=False) + "\n"
    targets = [(path, onnx_bytes), (path.with_suffix(".json"), side.encode())]
    written: list[Path] = []
    try:
        for target, data in targets:
            temporary = target.with_name(f".{target.name}.sqlml-tmp")
            temporary.write_bytes(data)
            written.append(temporary)
        for (target, _), temporary in zip(targets, written, strict=True):
            os.replace(temporary, target)
    except OSError as e:
        for temporary in written:
            temporary.unlink(missing_ok=True)
        raise ModelFileError(f"EXPORT MODEL {record.qualified} could not write {path}: {e}") from e


def drop_model(connection: Connection, statement: Statement) -> None:
    ast = statement.ast
    assert isinstance(ast, DropModel)
    schema = connection.expander.schema_of(ast.this)
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
    connection.functions.changed(record.schema, record.name, None, time.time_ns() // 1000)
    views.follow(connection, record.schema, record.name)


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
    for name, sql_type in record.inputs if record.transform else []:
        rows.append(("input", name, sql_type))
    for item in (record.transform or {}).get("features", []):
        rows.append(("transform", item["name"], item["sql"]))
    for feature in record.features:
        rows.append(("feature", feature.name, f"{feature.sql_type}: {feature.describe()}"))
    for i, value in enumerate(meta.get("classes") or []):
        rows.append(("class", str(i), json.dumps(value)))
    centroids = meta["parameters"]["centroids"] if meta["task"] == CLUSTERING else []
    for i, centroid in enumerate(centroids):
        rows.append(("centroid", str(i + 1), json.dumps([round(v, 6) for v in centroid])))
    rows += [("metric", key, value) for key, value in meta["metrics"].items()]
    for trial in meta.get("trials", []):
        summary = {k: trial[k] for k in ("hyperparameters", "status", "is_optimal")}
        rows.append(("trial", str(trial["trial_id"]), summary))
    rows.append(("metric", "evaluated_on", meta["evaluated_on"]))
    training = meta["training"]
    rows += [
        ("training", "sql", training["sql"]),
        ("training", "rows_read", training["rows_read"]),
        ("training", "rows_null_label", training["rows_null_label"]),
        ("training", "rows_train", training["rows_train"]),
        ("training", "rows_eval", training["rows_eval"]),
        ("training", "rows_test", training.get("rows_test", 0)),
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
    rows += [("parity", key, value) for key, value in meta.get("parity", {}).items()]
    imported = meta.get("imported")
    if imported:
        rows.append(("imported", "path", imported["path"]))
        if "sqlml_model_type" in imported:
            rows.append(("imported", "sqlml_model_type", imported["sqlml_model_type"]))
        rows += [("imported", "input", i) for i in imported["inputs"]]
        rows += [("imported", "output", o) for o in imported["outputs"]]
    chosen = meta.get("inference", {"path": "onnx"})
    rows.append(("inference", "path", chosen["path"]))
    rows.append(("inference", "reason", chosen.get("reason")))
    rows += [("inference", f"parity_{k}", v) for k, v in chosen.get("parity", {}).items()]
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


def _metadata(
    plan: Any,
    version: int,
    trained: Any = None,
    estimator: Any = None,
    features: list[Any] | None = None,
) -> dict[str, Any]:
    """The metadata every version has; ``trained`` is None for an imported model."""
    created = datetime.now(UTC)
    meta: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "schema": plan.schema,
        "name": plan.name,
        "version": version,
        "model_type": plan.family.model_type,
        "task": plan.task,
        "options": jsonable_options(plan.options),
        "options_given": jsonable_options(plan.given),
        "label": plan.label,
        "features": [f.to_dict() for f in (features or plan.features)],
        "classes": trained.classes if trained is not None else None,
        "key_metric": KEY_METRICS[plan.task],
        "created_at": created.replace(tzinfo=None).isoformat(sep=" "),
        # Microseconds since the epoch: orders every version ever made of a model name.
        "generation": int(created.timestamp() * 1_000_000),
        # Part of its UDFs' names (functions.udf_name): a model trained again from the same
        # rows after a rollback gets other names than those the rollback took away.
        "udf_suffix": f"{int(created.timestamp() * 1_000_000):x}"[-8:],
        "training": {
            "sql": plan.training_sql,
            "rows_read": trained.rows_read if trained else 0,
            "rows_null_label": trained.rows_null_label if trained else 0,
            "rows_train": trained.rows_train if trained else 0,
            "rows_eval": trained.rows_eval if trained else 0,
            "rows_test": len(trained.test_rows) if trained else 0,
            "epochs": trained.epochs if trained else None,
            "split": trained.split_method if trained else None,
            "estimator": type(estimator).__name__ if estimator is not None else None,
            "estimator_params": _jsonable(estimator.get_params()) if estimator is not None else {},
            "warnings": trained.warnings if trained else [],
            "seconds": None,
        },
        "libraries": _library_versions(),
    }
    if plan.transform is not None:
        meta["transform"] = plan.transform
    if plan.family.parameters is not None and estimator is not None:
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
