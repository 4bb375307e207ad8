"""Training on more rows than fit in memory (OPTIONS (streaming = TRUE)).

For the families that learn incrementally (linear and logistic regression by SGD, k-means
by mini-batches). Nothing the size of the data is held in memory:

1. DuckDB computes the preprocessing statistics (means, scales, categories) and the classes
   with aggregate queries over the feature query.
2. The evaluation split is decided in SQL from a hash of each row's values and the seed,
   so every pass over the data agrees on it, whatever order the rows come in.
3. Each epoch streams the training rows in Arrow batches of ``batch_size`` rows through the
   preprocessing into the estimator's ``partial_fit``; training stops after
   ``max_iterations`` epochs, or earlier when an epoch improves the loss on a sample of the
   training rows by less than ``min_rel_progress`` (with learn_rate_strategy 'line_search',
   the step is first divided by 5, as scikit-learn's adaptive schedule does, until it is
   below 1e-6).
4. Parity and the metrics use uniform samples (by hash): up to ``SAMPLE_ROWS`` training
   rows and up to ``SAMPLE_ROWS`` held-out rows.

Differences from in-memory training, by design: statistics come from every labelled row
(BigQuery ML computes them on the input data too), and metrics from a sample of at most
``SAMPLE_ROWS`` rows.
"""

from __future__ import annotations

import math
import time
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.pipeline import Pipeline

from sqlml import compiler, python_scan
from sqlml.catalog import quote
from sqlml.console import Console
from sqlml.errors import DataError, QueryError
from sqlml.families import CLASSIFICATION, REGRESSION, FitContext
from sqlml.features import CATEGORICAL, NULL_TOKEN, NUMERIC, Feature, numeric_values
from sqlml.planner import TrainingPlan
from sqlml.preprocessing import FeaturePreprocessor
from sqlml.trainer import TrainedModel, baseline_loss, held_out, infinite_values

SAMPLE_ROWS = 100_000
_HASH_RANGE = 1_000_000


def train_streaming(
    con: duckdb.DuckDBPyConnection, plan: TrainingPlan, console: Console
) -> TrainedModel:
    family = plan.family
    label = plan.label["name"] if plan.label else None
    seed = plan.options["random_seed"]
    names = [f.name for f in plan.features] + ([label] if label else [])
    columns = ", ".join(quote(n) for n in names)
    labelled = f"SELECT {columns} FROM ({plan.query}) AS __sqlml_q"
    if label:
        keep = f"{quote(label)} IS NOT NULL"
        if family.task == REGRESSION:
            keep += f" AND NOT isnan(CAST({quote(label)} AS DOUBLE))"
        labelled += f" WHERE {keep}"

    started = time.perf_counter()
    with console.phase("computing statistics"):
        rows_read = _scalar(con, f"SELECT count(*) FROM ({plan.query})", plan)
        rows = _scalar(con, f"SELECT count(*) FROM ({labelled})", plan)
        if label and family.task == REGRESSION:
            infinite = _scalar(
                con,
                f"SELECT count(*) FROM ({labelled}) WHERE isinf(CAST({quote(label)} AS DOUBLE))",
                plan,
            )
            if infinite:
                raise infinite_values(plan, label, infinite, rows)
        if rows == 0:
            raise DataError(
                f"The training query of model {plan.qualified} returned no rows with a label"
                if rows_read
                else f"The training query of model {plan.qualified} returned no rows"
            )
        features = _fitted_features(con, plan, labelled, rows, family.standardize(plan.options))
        classes = None
        if family.task == CLASSIFICATION:
            classes = sorted(
                r[0] for r in _query(con, f"SELECT DISTINCT {quote(label)} FROM ({labelled})", plan)
            )
            if len(classes) < 2:
                raise DataError(
                    f"The label {label} of model {plan.qualified} has a single value "
                    f"({classes[0]!r}); a classifier needs at least two classes"
                )

    n_eval = held_out(rows, plan)
    threshold = round(n_eval / rows * _HASH_RANGE)
    hashed = ", ".join(quote(n) for n in names)
    split = (
        f"SELECT *, hash({seed}, {hashed}) % {_HASH_RANGE} < {threshold} AS __sqlml_eval, "
        f"hash({seed + 1}, {hashed}) % {_HASH_RANGE} AS __sqlml_pick FROM ({labelled})"
    )
    n_eval = _scalar(con, f"SELECT count(*) FILTER (WHERE __sqlml_eval) FROM ({split})", plan)
    n_train = rows - n_eval
    train_sample = _sample(con, split, "NOT __sqlml_eval", n_train, columns, plan)
    eval_sample = _sample(con, split, "__sqlml_eval", n_eval, columns, plan)

    preprocessor = FeaturePreprocessor.fitted(
        features, family.standardize(plan.options), family.float32
    )
    y_sample = _labels(train_sample, label, classes, family.task)
    context = FitContext(
        rows=n_train,
        random_seed=seed,
        n_classes=len(classes) if classes else None,
        baseline_loss=baseline_loss(family.task, y_sample),
    )
    estimator = family.build_incremental(plan.options, context)  # type: ignore[misc]
    x_sample = preprocessor.transform(train_sample)
    batch_rows = plan.options["batch_size"]
    fit_started = time.perf_counter()
    previous = math.inf
    epochs = 0
    most = plan.options["max_iterations"]
    with console.phase("fitting"):
        for _ in range(most):
            reader = _reader(
                con, f"SELECT {columns} FROM ({split}) WHERE NOT __sqlml_eval", batch_rows, plan
            )
            for batch in reader:
                table = pa.Table.from_batches([batch])
                x = preprocessor.transform(table)
                y = _labels(table, label, classes, family.task)
                if family.task == CLASSIFICATION:
                    estimator.partial_fit(x, y, classes=np.arange(len(classes or [])))
                elif y is None:
                    estimator.partial_fit(x)
                else:
                    estimator.partial_fit(x, y)
            epochs += 1
            console.progress(epochs, most, "epochs (at most)")
            loss = _loss(estimator, x_sample, y_sample, family.task)
            if plan.options["early_stop"] and previous - loss < (
                plan.options["min_rel_progress"] * abs(previous)
            ):
                # As scikit-learn's 'adaptive' schedule does inside fit(): a smaller step
                # while it helps, then stop.
                if getattr(estimator, "learning_rate", None) != "adaptive" or estimator.eta0 < 1e-6:
                    break
                estimator.eta0 /= 5
            previous = min(previous, loss)

    data = pa.concat_tables([train_sample, eval_sample])
    return TrainedModel(
        plan=plan,
        pipeline=Pipeline([("preprocess", preprocessor), ("model", estimator)]),
        features=features,
        classes=classes,
        data=data,
        y=_labels(data, label, classes, family.task),
        train_rows=np.arange(train_sample.num_rows),
        eval_rows=np.arange(train_sample.num_rows, data.num_rows),
        test_rows=np.zeros(0, dtype=np.int64),
        rows_read=rows_read,
        rows_null_label=rows_read - rows,
        seconds={"read": fit_started - started, "fit": time.perf_counter() - fit_started},
        rows_train=n_train,
        rows_eval=n_eval,
        epochs=epochs,
    )


def _fitted_features(
    con: duckdb.DuckDBPyConnection,
    plan: TrainingPlan,
    labelled: str,
    rows: int,
    standardize: bool,
) -> list[Feature]:
    """The statistics FeaturePreprocessor.fit computes, by aggregate queries."""
    fitted: list[Feature] = []
    for template in plan.features:
        feature = Feature.from_dict(template.to_dict())
        column = quote(feature.name)
        feature.null_count = _scalar(
            con, f"SELECT count(*) - count({column}) FROM ({labelled})", plan
        )
        if feature.kind == CATEGORICAL:
            values = [
                r[0]
                for r in _query(
                    con, f"SELECT DISTINCT CAST({column} AS VARCHAR) FROM ({labelled})", plan
                )
            ]
            feature.categories = sorted(
                (v for v in values if v != NULL_TOKEN), key=lambda v: (v is None, v)
            )
        else:
            # NaN counts as missing, as in FeaturePreprocessor.fit.
            clean = [
                f"CASE WHEN isnan({v}) THEN NULL ELSE {v} END"
                for v in compiler.raw_numeric_values(feature, column)
            ]
            aggregates = ", ".join(f"avg({c}), var_pop({c}), count({c})" for c in clean)
            if feature.kind == NUMERIC:
                aggregates += f", count(*) FILTER (isinf(CAST({column} AS DOUBLE)))"
            stats = _query(con, f"SELECT {aggregates} FROM ({labelled})", plan)[0]
            if feature.kind == NUMERIC and stats[-1]:
                raise infinite_values(plan, feature.name, stats[-1], rows)
            means, scales = [], []
            for i in range(len(clean)):
                mean, variance, count = stats[3 * i : 3 * i + 3]
                means.append(float(mean) if count else 0.0)
                spread = math.sqrt(variance * count / rows) if count else 0.0
                scales.append(spread if math.isfinite(spread) and spread > 0 else 1.0)
            feature.means = means
            feature.scales = scales if standardize else None
        fitted.append(feature)
    width = sum(f.width for f in fitted)
    if width > 100_000:
        widest = max(fitted, key=lambda f: f.width)
        raise DataError(
            f"Column {widest.name!r} of model {plan.qualified} one-hot encodes to "
            f"{widest.width:,} columns; leave identifier-like columns out of the training query"
        )
    return fitted


def _sample(
    con: duckdb.DuckDBPyConnection,
    split: str,
    where: str,
    count: int,
    columns: str,
    plan: TrainingPlan,
) -> pa.Table:
    """A uniform sample (by hash) of about SAMPLE_ROWS of the rows ``where`` selects."""
    fraction = min(1.0, SAMPLE_ROWS / max(count, 1))
    limit = round(fraction * _HASH_RANGE)
    sql = f"SELECT {columns} FROM ({split}) WHERE {where} AND __sqlml_pick < {limit}"
    try:
        return python_scan.run(con.sql, sql).to_arrow_table()
    except duckdb.Error as e:
        raise QueryError(f"The training query of model {plan.qualified} failed: {e}") from e


def _labels(
    table: pa.Table, label: str | None, classes: list[Any] | None, task: str
) -> np.ndarray | None:
    if label is None:
        return None
    column = table.column(label)
    if task == REGRESSION:
        return numeric_values(column)
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, pa.string())
    codes = pc.index_in(column, value_set=pa.array(classes, column.type))
    return np.asarray(pc.fill_null(codes, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _loss(estimator: Any, x: np.ndarray, y: np.ndarray | None, task: str) -> float:
    if len(x) == 0:
        return 0.0
    if task == CLASSIFICATION:
        p = np.clip(estimator.predict_proba(x)[np.arange(len(y)), y], 1e-15, 1.0)  # type: ignore[arg-type]
        return float(-np.mean(np.log(p)))
    if task == REGRESSION:
        return float(0.5 * np.mean((estimator.predict(x) - y) ** 2))
    return float(-estimator.score(x) / len(x))


def _reader(con: duckdb.DuckDBPyConnection, sql: str, batch_rows: int, plan: TrainingPlan) -> Any:
    try:
        return python_scan.run(con.sql, sql).to_arrow_reader(batch_rows)
    except duckdb.Error as e:
        raise QueryError(f"The training query of model {plan.qualified} failed: {e}") from e


def _query(con: duckdb.DuckDBPyConnection, sql: str, plan: TrainingPlan) -> list[tuple]:
    try:
        return python_scan.run(con.execute, sql).fetchall()
    except duckdb.Error as e:
        raise QueryError(f"The training query of model {plan.qualified} failed: {e}") from e


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, plan: TrainingPlan) -> int:
    return int(_query(con, sql, plan)[0][0])
