"""What a trained model says about itself: ML.FEATURE_INFO, ML.WEIGHTS, ML.CENTROIDS,
ML.FEATURE_IMPORTANCE, ML.TRAINING_INFO, ML.PRINCIPAL_COMPONENTS and
ML.PRINCIPAL_COMPONENT_INFO, with BigQuery ML's column names.

The facts are computed at training and kept in the model's metadata (``feature_info``,
``training_info``) or read from its fitted parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlml import tables
from sqlml.compiler import scaling
from sqlml.errors import ArgumentError
from sqlml.families import CLASSIFICATION, CLUSTERING, DIMENSIONALITY_REDUCTION, REGRESSION
from sqlml.features import CATEGORICAL, NULL_TOKEN, Feature, numeric_matrix, string_values
from sqlml.metrics import log_loss

if TYPE_CHECKING:
    from sqlml.table_functions import Call, Spec


# -- computed at training ---------------------------------------------------------------------


def feature_info(features: list[Feature], table: pa.Table) -> list[dict[str, Any]]:
    """ML.FEATURE_INFO's row per feature, from the training rows. Date and time features
    report their Unix time."""
    rows = []
    for feature in features:
        column = table.column(feature.name)
        row: dict[str, Any] = {
            "input": feature.name,
            "min": None,
            "max": None,
            "mean": None,
            "median": None,
            "stddev": None,
            "category_count": None,
            "null_count": int(column.null_count),
            "dimension": feature.width,
        }
        if feature.kind == CATEGORICAL:
            values = pc.unique(string_values(column)).to_pylist()
            row["category_count"] = len([v for v in values if v != NULL_TOKEN])
        else:
            values = numeric_matrix(feature, column)[:, 0]
            values = values[~np.isnan(values)]
            if len(values):
                row.update(
                    min=float(values.min()),
                    max=float(values.max()),
                    mean=float(values.mean()),
                    median=float(np.median(values)),
                    stddev=float(values.std(ddof=1)) if len(values) > 1 else None,
                )
        rows.append(row)
    return rows


def training_info(
    estimator: Any,
    task: str,
    seconds: float,
    train: tuple[np.ndarray, np.ndarray | None],
    evaluation: tuple[np.ndarray, np.ndarray | None] | None,
) -> list[dict[str, Any]]:
    """ML.TRAINING_INFO's rows: the training and evaluation loss after each iteration where
    the estimator can replay them (boosting: staged predictions; neural networks: their loss
    curve), else one row for the whole fit. ``train`` and ``evaluation`` are (matrix, label)
    samples; the loss is BigQuery ML's: mean squared error, log loss, or the mean squared
    distance to the nearest centroid."""
    rate = getattr(estimator, "learning_rate_init", getattr(estimator, "learning_rate", None))
    rate = float(rate) if isinstance(rate, int | float) else None
    staged = getattr(
        estimator, "staged_predict_proba" if task == CLASSIFICATION else "staged_predict", None
    )
    if staged is not None:
        train_curve = [_loss(task, train[1], p) for p in staged(train[0])]
        eval_curve = (
            [_loss(task, evaluation[1], p) for p in staged(evaluation[0])]
            if evaluation is not None
            else [None] * len(train_curve)
        )
        pairs = list(zip(train_curve, eval_curve, strict=True))
    elif getattr(estimator, "loss_curve_", None) is not None:
        curve = estimator.loss_curve_
        final = final_loss(estimator, task, evaluation)
        pairs = [(float(loss), None) for loss in curve]
        pairs[-1] = (pairs[-1][0], final)
    else:
        pairs = [(final_loss(estimator, task, train), final_loss(estimator, task, evaluation))]
    rows = [
        {
            "training_run": 0,
            "iteration": i,
            "loss": loss,
            "eval_loss": eval_loss,
            "learning_rate": rate,
            "duration_ms": None,
        }
        for i, (loss, eval_loss) in enumerate(pairs)
    ]
    rows[-1]["duration_ms"] = round(seconds * 1000)  # the fit is timed as a whole
    return rows


def final_loss(
    estimator: Any, task: str, rows: tuple[np.ndarray, np.ndarray | None] | None
) -> float | None:
    if rows is None or len(rows[0]) == 0:
        return None
    x, y = rows
    if task == CLASSIFICATION:
        return _loss(task, y, estimator.predict_proba(x))
    if task == REGRESSION:
        return _loss(task, y, estimator.predict(x))
    if task == CLUSTERING:
        return float(np.mean(np.min(estimator.transform(x), axis=1) ** 2))
    return None


def _loss(task: str, y: np.ndarray | None, predicted: np.ndarray) -> float | None:
    if y is None:
        return None
    if task == REGRESSION:
        return float(np.mean((y - np.asarray(predicted).ravel()) ** 2))
    known = y >= 0
    return log_loss(y[known], np.asarray(predicted)[known])


# -- the functions ----------------------------------------------------------------------------

FEATURE_INFO_COLUMNS = [
    ("input", "VARCHAR"),
    ("min", "DOUBLE"),
    ("max", "DOUBLE"),
    ("mean", "DOUBLE"),
    ("median", "DOUBLE"),
    ("stddev", "DOUBLE"),
    ("category_count", "BIGINT"),
    ("null_count", "BIGINT"),
    ("dimension", "BIGINT"),
]


def _stored_rows(call: Call, key: str, columns: list[tuple[str, str]]) -> str:
    """A table the metadata keeps as a list of rows (dicts) under ``key``."""
    rows = call.record.metadata.get(key) or []
    return tables.table_sql(columns, [[r[n] for n, _ in columns] for r in rows])


def feature_info_sql(call: Call) -> str:
    return _stored_rows(call, "feature_info", FEATURE_INFO_COLUMNS)


def weights_sql(call: Call) -> str:
    """Linear and logistic weights per processed input; categorical inputs as a list of
    (category, weight). By default on the inputs' own scale (standardize = FALSE);
    STRUCT(TRUE AS standardize) gives the weights of the standardized inputs."""
    record = call.record
    standardize = call.settings.get("standardize", False)
    if not isinstance(standardize, bool):
        raise ArgumentError("ML.WEIGHTS: standardize is TRUE or FALSE")
    parameters = record.metadata["parameters"]
    coef, intercept = parameters["coef"], parameters["intercept"]
    classes = record.classes or []
    multiclass = len(coef) > 1
    rows = []
    for k, (weights, bias) in enumerate(zip(coef, intercept, strict=True)):
        label = str(classes[k]) if multiclass else None
        position = 0
        for feature in record.features:
            block = weights[position : position + feature.width]
            position += feature.width
            if feature.kind == CATEGORICAL:
                items = [
                    {"category": "NULL" if c is None else c, "weight": float(w)}
                    for c, w in zip(feature.categories, block, strict=True)
                ]
                rows.append([label, feature.name, None, items])
                continue
            names = feature.encoded_names()
            for name, w, (mean, scale) in zip(names, block, scaling(feature), strict=True):
                if standardize:
                    rows.append([label, name, float(w), []])
                else:
                    rows.append([label, name, float(w / scale), []])
                    bias -= w * mean / scale
        rows.append([label, "__INTERCEPT__", float(bias), []])
    columns = [
        ("processed_input", "VARCHAR"),
        ("weight", "DOUBLE"),
        ("category_weights", "STRUCT(category VARCHAR, weight DOUBLE)[]"),
    ]
    if multiclass:
        return tables.table_sql([("class_label", "VARCHAR"), *columns], rows)
    return tables.table_sql(columns, [r[1:] for r in rows])


def _per_feature_rows(
    record: Any, vectors: list[list[float]], number: Callable[[float, float, float], float]
) -> list[list[Any]]:
    """One row per vector (a centroid or a component) and numeric input column, numbers
    through ``number(value, mean, scale)``; a categorical feature is one row whose
    (category, value) list holds its one-hot block."""
    rows = []
    for i, vector in enumerate(vectors, start=1):
        position = 0
        for feature in record.features:
            block = vector[position : position + feature.width]
            position += feature.width
            if feature.kind == CATEGORICAL:
                items = [
                    {"category": "NULL" if c is None else c, "value": float(v)}
                    for c, v in zip(feature.categories, block, strict=True)
                ]
                rows.append([i, feature.name, None, items])
                continue
            for name, v, (mean, scale) in zip(
                feature.encoded_names(), block, scaling(feature), strict=True
            ):
                rows.append([i, name, float(number(v, mean, scale)), None])
    return rows


def centroids_sql(call: Call) -> str:
    """Each centroid per feature: numbers on the inputs' own scale (or standardized, with
    STRUCT(TRUE AS standardize)); categorical features as (category, value) lists."""
    standardize = call.settings.get("standardize", False)
    rows = _per_feature_rows(
        call.record,
        call.record.metadata["parameters"]["centroids"],
        lambda v, mean, scale: v if standardize else v * scale + mean,
    )
    columns = [
        ("centroid_id", "BIGINT"),
        ("feature", "VARCHAR"),
        ("numerical_value", "DOUBLE"),
        ("categorical_value", "STRUCT(category VARCHAR, value DOUBLE)[]"),
    ]
    return tables.table_sql(columns, rows)


def feature_importance_sql(call: Call) -> str:
    """Per input feature, over every split of every tree: importance_weight, the number of
    splits on it; importance_gain, their mean loss reduction; importance_cover, the mean
    number of training rows they split (XGBoost's definitions, as BigQuery ML's)."""
    record = call.record
    owner = [f.name for f in record.features for _ in range(f.width)]
    stats = {f.name: [0, 0.0, 0.0] for f in record.features}
    for tree in record.metadata["parameters"]["trees"]:
        for node, leaf in enumerate(tree["leaf"]):
            if leaf:
                continue
            entry = stats[owner[tree["feature"][node]]]
            entry[0] += 1
            entry[1] += tree["gain"][node]
            entry[2] += tree["cover"][node]
    rows = [
        [name, count, gain / count if count else 0.0, cover / count if count else 0.0]
        for name, (count, gain, cover) in stats.items()
    ]
    rows.sort(key=lambda r: -r[2])
    columns = [
        ("feature", "VARCHAR"),
        ("importance_weight", "BIGINT"),
        ("importance_gain", "DOUBLE"),
        ("importance_cover", "DOUBLE"),
    ]
    return tables.table_sql(columns, rows)


TRAINING_INFO_COLUMNS = [
    ("training_run", "BIGINT"),
    ("iteration", "BIGINT"),
    ("loss", "DOUBLE"),
    ("eval_loss", "DOUBLE"),
    ("learning_rate", "DOUBLE"),
    ("duration_ms", "BIGINT"),
]


def training_info_sql(call: Call) -> str:
    return _stored_rows(call, "training_info", TRAINING_INFO_COLUMNS)


def principal_components_sql(call: Call) -> str:
    """Each component's loading per feature (categorical: per category)."""
    rows = _per_feature_rows(
        call.record,
        call.record.metadata["parameters"]["components"],
        lambda v, mean, scale: v,
    )
    columns = [
        ("principal_component_id", "BIGINT"),
        ("feature", "VARCHAR"),
        ("numerical_value", "DOUBLE"),
        ("categorical_value", "STRUCT(category VARCHAR, value DOUBLE)[]"),
    ]
    return tables.table_sql(columns, rows)


def principal_component_info_sql(call: Call) -> str:
    parameters = call.record.metadata["parameters"]
    ratios = parameters["explained_variance_ratio"]
    cumulative = np.cumsum(ratios)
    rows = [
        [i, float(eigenvalue), float(ratio), float(total)]
        for i, (eigenvalue, ratio, total) in enumerate(
            zip(parameters["explained_variance"], ratios, cumulative, strict=True), start=1
        )
    ]
    columns = [
        ("principal_component_id", "BIGINT"),
        ("eigenvalue", "DOUBLE"),
        ("explained_variance_ratio", "DOUBLE"),
        ("cumulative_explained_variance_ratio", "DOUBLE"),
    ]
    return tables.table_sql(columns, rows)


def register_functions(register: Callable[[str, Spec], None], supervised: frozenset[str]) -> None:
    from sqlml.table_functions import Spec

    linear = frozenset({"linear_reg", "logistic_reg"})
    trees = frozenset(
        {
            "boosted_tree_regressor",
            "boosted_tree_classifier",
            "random_forest_regressor",
            "random_forest_classifier",
        }
    )
    register("FEATURE_INFO", Spec(feature_info_sql, "none"))
    register("TRAINING_INFO", Spec(training_info_sql, "none"))
    register(
        "WEIGHTS",
        Spec(weights_sql, "none", frozenset({"standardize"}), model_types=linear,
             needs="linear_reg and logistic_reg"),
    )  # fmt: skip
    register(
        "CENTROIDS",
        Spec(centroids_sql, "none", frozenset({"standardize"}), frozenset({CLUSTERING}),
             needs="kmeans"),
    )  # fmt: skip
    register(
        "FEATURE_IMPORTANCE",
        Spec(feature_importance_sql, "none", model_types=trees,
             needs="boosted tree and random forest"),
    )  # fmt: skip
    register(
        "PRINCIPAL_COMPONENTS",
        Spec(principal_components_sql, "none", tasks=frozenset({DIMENSIONALITY_REDUCTION}),
             needs="pca"),
    )  # fmt: skip
    register(
        "PRINCIPAL_COMPONENT_INFO",
        Spec(principal_component_info_sql, "none", tasks=frozenset({DIMENSIONALITY_REDUCTION}),
             needs="pca"),
    )  # fmt: skip
