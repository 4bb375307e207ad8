"""Training plan -> fitted scikit-learn pipeline.

Runs the feature query in DuckDB, drops rows with a NULL label, holds out evaluation rows
as the plan says, and fits ``FeaturePreprocessor -> estimator``. Imported only when a model
is trained: it imports scikit-learn.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.pipeline import Pipeline

from sqlml import python_scan
from sqlml.console import Console
from sqlml.errors import DataError, Error, OptionError, QueryError, TrainingError
from sqlml.families import CLASSIFICATION, REGRESSION, FitContext
from sqlml.features import (
    FLOAT32_OVERFLOW,
    NUMERIC,
    Feature,
    encoded_width,
    numeric_values,
    out_of_range,
)
from sqlml.planner import TrainingPlan
from sqlml.preprocessing import FeaturePreprocessor, RowSelection

AUTO_SPLIT_SMALL = 500  # fewer rows: no evaluation split
AUTO_SPLIT_LARGE = 50_000  # more rows: hold out AUTO_SPLIT_ROWS
AUTO_SPLIT_ROWS = 10_000


@dataclass
class TrainedModel:
    plan: TrainingPlan
    pipeline: Any
    features: list[Feature]  # fitted
    classes: list[Any] | None
    data: pa.Table  # rows with a label, feature and label columns only
    y: np.ndarray | None  # label per row of data: class index or value
    train_rows: np.ndarray
    eval_rows: np.ndarray
    test_rows: np.ndarray
    rows_read: int
    rows_null_label: int
    warnings: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    # Streaming training keeps samples in ``data``; these count every row.
    rows_train: int | None = None
    rows_eval: int | None = None
    epochs: int | None = None
    trials: list[Any] = field(default_factory=list)  # tuning.Trial, when tuned

    def __post_init__(self) -> None:
        if self.rows_train is None:
            self.rows_train = len(self.train_rows)
        if self.rows_eval is None:
            self.rows_eval = len(self.eval_rows)

    @property
    def estimator(self) -> Any:
        return self.pipeline.named_steps["model"]

    @property
    def split_method(self) -> str:
        return self.plan.options.get("data_split_method", "no_split")


def train(con: duckdb.DuckDBPyConnection, plan: TrainingPlan, console: Console) -> TrainedModel:
    if plan.options.get("streaming"):
        from sqlml.streaming import train_streaming

        return train_streaming(con, plan, console)
    family = plan.family
    started = time.perf_counter()
    with console.phase("reading features"):
        try:
            data = python_scan.run(con.sql, plan.query).to_arrow_table()
        except duckdb.Error as e:
            raise QueryError(f"The training query of model {plan.qualified} failed: {e}") from e
    rows_read = data.num_rows
    read_seconds = time.perf_counter() - started
    if rows_read == 0:
        raise DataError(
            f"The training query of model {plan.qualified} returned no rows; a model needs "
            "training data"
        )

    y: np.ndarray | None = None
    classes: list[Any] | None = None
    rows_null_label = 0
    if plan.label is not None:
        label = data.column(plan.label["name"])
        keep = pc.is_valid(label)
        if family.task == REGRESSION:
            keep = pc.and_(keep, pc.invert(pc.is_nan(pc.cast(label, pa.float64()))))
        keep = pc.fill_null(keep, False)
        rows_null_label = rows_read - pc.sum(keep).as_py()
        if rows_null_label == rows_read:
            raise DataError(
                f"All {rows_read:,} rows of the training query of model {plan.qualified} have "
                f"a NULL label ({plan.label['name']}); filter them out or pick another label"
            )
        if rows_null_label:
            data = data.filter(keep)
        label = data.column(plan.label["name"])
        y = numeric_values(label) if family.task == REGRESSION else None
    check_finite(plan, data)

    train_rows, eval_rows, test_rows = split(len(data), plan, data)
    if family.task == CLASSIFICATION:
        label = data.column(plan.label["name"])
        if pa.types.is_dictionary(label.type):  # ENUM labels are predicted as VARCHAR
            label = pc.cast(label, pa.string())
        classes = sorted(pc.unique(label.take(pa.array(train_rows))).to_pylist())
        if len(classes) < 2:
            raise DataError(
                f"The label {plan.label['name']} of model {plan.qualified} has a single value "
                f"({classes[0]!r}) in the training rows; a classifier needs at least two classes"
            )
        codes = pc.index_in(label, value_set=pa.array(classes, label.type))
        y = np.asarray(pc.fill_null(codes, -1).to_numpy(zero_copy_only=False), dtype=np.int64)

    y_train = y[train_rows] if y is not None else None
    weights = class_weights(plan, classes, y_train)
    y_fit, label_scaling = y_train, None
    if family.unscale_label is not None and y_train is not None:
        label_scaling = (float(np.mean(y_train)), float(np.std(y_train)) or 1.0)
        y_fit = (y_train - label_scaling[0]) / label_scaling[1]
    train_table = data if len(train_rows) == len(data) else RowSelection(data, train_rows)

    @functools.cache
    def width() -> int:
        return encoded_width(plan.features, train_table)

    def fit(
        options: dict[str, Any], report: bool = False, catch: bool = True
    ) -> tuple[Any, list[str], float]:
        """One fit of the pipeline with these options: (pipeline, warnings, seconds);
        ``report``: iterations to the console, where the estimator tells them; ``catch``:
        record the warnings (False where the caller records them: catch_warnings changes
        process-wide state, so parallel fits cannot each use it)."""
        context = FitContext(
            rows=len(train_rows),
            random_seed=options["random_seed"],
            n_classes=len(classes) if classes else None,
            baseline_loss=baseline_loss(family.task, y_fit),
            model=plan.qualified,
            width=width,
        )
        estimator = family.build(options, context)
        preprocessor = FeaturePreprocessor(
            features=plan.features,
            standardize=family.standardize(options),
            float32=family.float32,
        )
        pipeline = Pipeline([("preprocess", preprocessor), ("model", estimator)])
        started = time.perf_counter()
        extra: dict[str, Any] = {} if weights is None else {"model__sample_weight": weights}
        if report and "monitor" in inspect.signature(estimator.fit).parameters:
            # Exact gradient boosting calls a monitor after each tree; False: go on.
            total = estimator.n_estimators
            extra["model__monitor"] = lambda i, *_: console.progress(i + 1, total, "iterations")
        with warnings.catch_warnings(record=True) if catch else nullcontext([]) as recorded:
            if catch:
                warnings.simplefilter("always")
            try:
                pipeline.fit(train_table, y_fit, **extra)
            except Error:
                raise
            except (ValueError, MemoryError, ArithmeticError) as e:
                raise TrainingError(f"Training model {plan.qualified} failed: {e}") from e
        if label_scaling is not None:
            family.unscale_label(estimator, *label_scaling)  # type: ignore[misc]
        return pipeline, warning_texts(recorded), time.perf_counter() - started

    trials: list[Any] = []
    if plan.options.get("num_trials", 1) > 1:
        from sqlml.tuning import tune

        if len(eval_rows) == 0:
            raise DataError(
                f"Tuning model {plan.qualified} evaluates each trial on held-out rows, and "
                f"its data_split_method '{plan.options['data_split_method']}' holds out none "
                f"of its {len(data):,} rows; use data_split_method = 'random'"
            )
        with console.phase(f"tuning: {plan.options['num_trials']} trials"):
            trials = tune(plan, fit, data, y, train_rows, eval_rows, console)
        best = next(t for t in trials if t.optimal)
        pipeline, caught, fit_seconds = best.pipeline, best.warnings, best.seconds
    else:
        with console.phase("fitting"):
            pipeline, caught, fit_seconds = fit(dict(plan.options), report=True)
    for text in caught:
        console.warn(f"model {plan.qualified}: {text}")

    return TrainedModel(
        plan=plan,
        pipeline=pipeline,
        features=pipeline.named_steps["preprocess"].features_,
        classes=classes,
        data=data,
        y=y,
        train_rows=train_rows,
        eval_rows=eval_rows,
        test_rows=test_rows,
        rows_read=rows_read,
        rows_null_label=rows_null_label,
        warnings=caught,
        seconds={"read": read_seconds, "fit": fit_seconds},
        trials=trials,
    )


def check_finite(plan: TrainingPlan, data: pa.Table) -> None:
    """Refuse infinite feature and label values (the preprocessing's means and scales, and
    the estimators, cannot take them), and for the families that compute in float32 (trees)
    feature values that overflow float32 to infinity. One min/max pass per floating-point
    column."""
    family = plan.family
    limit = FLOAT32_OVERFLOW if family.float32 else math.inf
    rows = data.num_rows
    for feature in plan.features:
        if feature.kind != NUMERIC:
            continue
        column = data.column(feature.name)
        if not out_of_range(column, limit):
            continue
        name = feature.name
        infinite = out_of_range(column)
        if infinite:
            raise infinite_values(plan, name, infinite, rows)
        huge = out_of_range(column, limit)
        raise DataError(
            f"Column {name!r} of model {plan.qualified} holds values beyond +-3.4e38 ({huge:,} "
            f"of {rows:,} rows): {family.model_type} models split on float32 values, where "
            f"these overflow to infinity. Scale the column down, filter those rows out"
            ", or replace the values with NULL, which is imputed with the "
            "training mean"
        )
    if plan.label is not None and family.task == REGRESSION:
        infinite = out_of_range(data.column(plan.label["name"]))
        if infinite:
            raise infinite_values(plan, plan.label["name"], infinite, rows)


def infinite_values(plan: TrainingPlan, name: str, count: int, rows: int) -> DataError:
    """The error for a feature or regression label column holding infinite values."""
    found = f"holds infinite values ({count:,} of {rows:,} rows)"
    if plan.label is not None and name == plan.label["name"]:
        return DataError(
            f"The label {name!r} of model {plan.qualified} {found}, which a regression cannot "
            f"fit. Filter those rows out (WHERE isfinite({name})), or replace the values "
            "with NULL: rows with a NULL label are left out of training"
        )
    return DataError(
        f"Column {name!r} of model {plan.qualified} {found}, which sqlml cannot train on. "
        f"Filter those rows out (WHERE isfinite({name})) or replace the values, e.g. with "
        f"NULL, which is imputed with the training mean: CASE WHEN isinf({name}) THEN NULL "
        f"ELSE {name} END"
    )


# scikit-learn's MLP catches Ctrl-C, warns this and returns the half-trained network.
_INTERRUPTED = "Training interrupted by user."


def warning_texts(recorded: list[warnings.WarningMessage]) -> list[str]:
    """Distinct warnings, as "Category: message"; KeyboardInterrupt where an estimator
    swallowed one, so that a half-trained model is never stored."""
    texts: list[str] = []
    for warning in recorded:
        if str(warning.message) == _INTERRUPTED:
            raise KeyboardInterrupt
        text = f"{warning.category.__name__}: {warning.message}"
        if text not in texts:
            texts.append(text)
    return texts


def class_weights(
    plan: TrainingPlan, classes: list[Any] | None, y: np.ndarray | None
) -> np.ndarray | None:
    """Per training row weights from auto_class_weights or class_weights, or None."""
    options = plan.options
    if classes is None or y is None:
        return None
    if options.get("auto_class_weights"):
        if options.get("class_weights"):
            raise OptionError("Give auto_class_weights or class_weights, not both", "class_weights")
        counts = np.bincount(y, minlength=len(classes)).astype(float)
        per_class = len(y) / (len(classes) * np.maximum(counts, 1.0))
        return per_class[y]
    given = options.get("class_weights")
    if not given:
        return None
    by_label = {str(label): weight for label, weight in given}
    unknown = sorted(set(by_label) - {str(c) for c in classes})
    if unknown:
        raise OptionError(
            f"class_weights names {', '.join(unknown)}, not a class of the label; its classes "
            f"are {', '.join(str(c) for c in classes)}",
            "class_weights",
        )
    per_class = np.array([by_label.get(str(c), 1.0) for c in classes])
    return per_class[y]


def held_out(n: int, plan: TrainingPlan) -> int:
    """How many of n labelled rows data_split_method 'auto_split' or 'random' holds out for
    evaluation."""
    method = plan.options.get("data_split_method", "no_split")
    if method == "auto_split":
        if n < AUTO_SPLIT_SMALL:
            n_eval = 0
        elif n <= AUTO_SPLIT_LARGE:
            n_eval = round(n * 0.2)
        else:
            n_eval = AUTO_SPLIT_ROWS
    elif method in ("random", "seq"):
        n_eval = round(n * plan.options["data_split_eval_fraction"])
    else:
        n_eval = 0
    n_test = round(n * plan.options.get("data_split_test_fraction", 0.0))
    if n_eval + n_test >= n:
        raise DataError(
            f"data_split_eval_fraction and data_split_test_fraction leave no training rows "
            f"out of {n} for model {plan.qualified}; lower them"
        )
    return n_eval


def split(
    n: int, plan: TrainingPlan, data: pa.Table | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training, evaluation and test row indices, each in the query's row order.

    'custom': rows whose data_split_col is TRUE or NULL evaluate (as in BigQuery ML), FALSE
    train. 'seq': rows ordered by
    data_split_col, the last evaluate (and the very last test). Otherwise a seeded random
    draw."""
    method = plan.options.get("data_split_method", "no_split")
    everything = np.arange(n)
    n_test = round(n * plan.options.get("data_split_test_fraction", 0.0))
    if method == "custom":
        assert data is not None and plan.split_column is not None
        flags = pc.fill_null(data.column(plan.split_column), True).to_numpy(zero_copy_only=False)
        held = np.asarray(flags, dtype=bool)
        if held.all():
            raise DataError(
                f"data_split_col {plan.split_column} is TRUE or NULL for every row of model "
                f"{plan.qualified}: no row is left to train on (FALSE marks a training row)"
            )
        return everything[~held], everything[held], np.zeros(0, dtype=np.int64)
    n_eval = held_out(n, plan)
    if method == "seq":
        assert data is not None and plan.split_column is not None
        order = np.asarray(
            pc.sort_indices(
                pa.table({"k": data.column(plan.split_column)}),
                sort_keys=[("k", "ascending", "at_start")],
            )
        )
        tail = order[n - n_eval - n_test :]
        return (
            np.sort(order[: n - n_eval - n_test]),
            np.sort(tail[:n_eval]),
            np.sort(tail[n_eval:]),
        )
    if n_eval == 0 and n_test == 0:
        return everything, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    permuted = np.random.default_rng(plan.options["random_seed"]).permutation(n)
    return (
        np.sort(permuted[n_eval + n_test :]),
        np.sort(permuted[:n_eval]),
        np.sort(permuted[n_eval : n_eval + n_test]),
    )


def baseline_loss(task: str, y: np.ndarray | None) -> float:
    """Loss of the constant model: half the label variance, or the class prior's entropy."""
    if y is None or len(y) == 0:
        return 1.0
    if task == REGRESSION:
        return float(0.5 * np.var(y))
    counts = np.bincount(y[y >= 0])
    prior = counts[counts > 0] / counts.sum()
    return float(-(prior * np.log(prior)).sum())
