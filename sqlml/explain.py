"""Feature attributions: ML.EXPLAIN_PREDICT and ML.GLOBAL_EXPLAIN.

Each attribution explains the raw score of the predicted class (the regression value; a
classifier's logit, or a random forest's probability), relative to a baseline:

- linear and logistic regression: exactly, weight x (value - training mean) in the model's
  space, the baseline being the score of the mean training row;
- tree ensembles: path attributions (Saabas) from the fitted trees: along a row's path,
  each split credits its feature with the change of the expected leaf value (weighted by
  training rows) from the node to the child taken; the baseline is the expected value at
  the roots.

Either way the attributions of a row sum to its prediction minus the baseline, so
``approximation_error`` is rounding only. One-hot columns and date parts add up to their
input feature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from sqlml import compiler, tables
from sqlml.catalog import ModelRecord, quote
from sqlml.errors import ArgumentError
from sqlml.families import CLASSIFICATION
from sqlml.features import matrix
from sqlml.runtime import output_columns

if TYPE_CHECKING:
    from sqlml.table_functions import Call, Spec

LINEAR = frozenset({"linear_reg", "logistic_reg"})
TREES = frozenset(
    {
        "boosted_tree_regressor",
        "boosted_tree_classifier",
        "random_forest_regressor",
        "random_forest_classifier",
    }
)


def explainable(model_type: str) -> bool:
    return model_type in LINEAR | TREES


def attributions(
    record: ModelRecord, x: np.ndarray, predicted: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(attributions per row and feature, baseline per row, prediction per row) of the raw
    score of each row's ``predicted`` class (class indices; None for regression)."""
    parameters = record.metadata["parameters"]
    if record.model_type in LINEAR:
        columns, baseline, prediction = _linear(parameters, record, x, predicted)
    else:
        columns, baseline, prediction = _trees(parameters, x, predicted)
    return _by_feature(record, columns), baseline, prediction


def _class_score(
    link: str | None, n_scores: int, predicted: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Which raw score explains each row's class, and its sign: a binary model with one
    score z scores the first class as -z."""
    if predicted is None:
        return np.zeros(0, dtype=np.int64), np.ones(0)
    if n_scores == 1 and link in (compiler.LOGIT, compiler.LOGISTIC_PAIR):
        return np.zeros(len(predicted), dtype=np.int64), np.where(predicted == 1, 1.0, -1.0)
    return predicted.astype(np.int64), np.ones(len(predicted))


def _linear(
    parameters: dict[str, Any], record: ModelRecord, x: np.ndarray, predicted: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    coef = np.asarray(parameters["coef"])
    intercept = np.asarray(parameters["intercept"])
    mean = np.asarray(record.metadata["explain"]["mean_row"])
    if predicted is None:
        which, sign = np.zeros(len(x), dtype=np.int64), np.ones(len(x))
    else:
        which, sign = _class_score(parameters["link"], len(coef), predicted)
    w = coef[which] * sign[:, None]
    columns = w * (x - mean)
    baseline = sign * (intercept[which] + coef[which] @ mean)
    prediction = baseline + columns.sum(axis=1)
    return columns, baseline, prediction


def _expected(tree: dict[str, Any], output: int) -> np.ndarray:
    """Each node's expected leaf value, weighted by the training rows under it."""
    n = len(tree["leaf"])
    value = np.array([v[output] for v in tree["value"]], dtype=np.float64)
    cover = np.asarray(tree["cover"], dtype=np.float64)
    expected = np.zeros(n)
    for node in reversed(_order(tree)):  # children before parents
        if tree["leaf"][node]:
            expected[node] = value[node]
        else:
            left, right = tree["left"][node], tree["right"][node]
            total = cover[left] + cover[right]
            expected[node] = (
                (cover[left] * expected[left] + cover[right] * expected[right]) / total
                if total
                else value[node]
            )
    return expected


def _order(tree: dict[str, Any]) -> list[int]:
    order, stack = [], [0]
    while stack:
        node = stack.pop()
        order.append(node)
        if not tree["leaf"][node]:
            stack += [tree["left"][node], tree["right"][node]]
    return order


def _trees(
    parameters: dict[str, Any], x: np.ndarray, predicted: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, width = x.shape
    n_outputs = len(parameters["base"])
    which, sign = (
        (np.zeros(rows, dtype=np.int64), np.ones(rows))
        if predicted is None
        else _class_score(parameters["link"], n_outputs, predicted)
    )
    scale = parameters["scale"]
    columns = np.zeros((rows, width))
    baseline = np.asarray(parameters["base"], dtype=np.float64)[which].copy()
    everyone = np.arange(rows)
    for tree in parameters["trees"]:
        for position, output in enumerate(tree["outputs"]):
            mine = which == output
            if not mine.any():
                continue
            expected = _expected(tree, position)
            baseline[mine] += scale * expected[0]
            node = np.zeros(rows, dtype=np.int64)
            active = mine & ~np.asarray(tree["leaf"])[node]
            feature = np.asarray(tree["feature"])
            threshold = np.asarray(tree["threshold"])
            left, right = np.asarray(tree["left"]), np.asarray(tree["right"])
            leaf = np.asarray(tree["leaf"])
            while active.any():
                r = everyone[active]
                f = feature[node[r]]
                child = np.where(x[r, f] <= threshold[node[r]], left[node[r]], right[node[r]])
                np.add.at(columns, (r, f), scale * (expected[child] - expected[node[r]]))
                node[r] = child
                active[r] = ~leaf[child]
    columns *= sign[:, None]
    baseline *= sign
    return columns, baseline, baseline + columns.sum(axis=1)


def _by_feature(record: ModelRecord, columns: np.ndarray) -> np.ndarray:
    out = np.zeros((len(columns), len(record.features)))
    position = 0
    for i, feature in enumerate(record.features):
        out[:, i] = columns[:, position : position + feature.width].sum(axis=1)
        position += feature.width
    return out


def explain_rows(
    record: ModelRecord, table: Any, outputs: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = matrix(record.features, table, float32=record.model_type in TREES)
    predicted = outputs.get("label") if record.task == CLASSIFICATION else None
    return attributions(record, x, predicted)


def global_attributions(
    record: ModelRecord, table: Any, outputs: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Mean absolute attribution per feature, over ``table`` (the evaluation rows), and per
    predicted class for classifiers: what ML.GLOBAL_EXPLAIN returns."""
    attr, _, _ = explain_rows(record, table, outputs)
    names = [f.name for f in record.features]
    result: dict[str, Any] = {
        "overall": dict(zip(names, np.abs(attr).mean(axis=0).tolist(), strict=True))
    }
    if record.task == CLASSIFICATION:
        by_class = {}
        for i, label in enumerate(record.classes or []):
            mine = outputs["label"] == i
            if mine.any():
                by_class[str(label)] = dict(
                    zip(names, np.abs(attr[mine]).mean(axis=0).tolist(), strict=True)
                )
        result["by_class"] = by_class
    return result


# -- the functions ----------------------------------------------------------------------------


def explain_predict_sql(call: Call) -> str:
    record = call.record
    k = call.settings.get("top_k_features", 5)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ArgumentError(
            f"ML.EXPLAIN_PREDICT: top_k_features must be a positive integer, got {k!r}"
        )
    assert call.data is not None
    columns = call.expander.input_columns(record, call.data, call.function)
    # One read of the input: its own columns, then the model's features.
    features = ", ".join(
        f"{sql} AS {quote(f'__sqlml_feature{i}')}" for i, sql in enumerate(record.feature_sql())
    )
    both = call.expander.fetch(
        f"SELECT *, {features} FROM ({call.data}) AS __sqlml_in", f"The input of {call.function}"
    )
    inputs = both.select(list(range(len(columns))))
    table = pa.table({f.name: both.column(len(columns) + i) for i, f in enumerate(record.features)})
    outputs = call.runtime.run([table.column(f.name) for f in record.features])
    # A binary classifier's threshold picks the label, whose class is explained.
    from sqlml.table_functions import thresholded

    outputs = thresholded(outputs, call.threshold())
    attr, baseline, prediction = explain_rows(record, table, outputs)
    names = [f.name for f in record.features]
    scored = call.runtime.to_arrow(outputs)
    result_columns = list(output_columns(record))
    predictions = [scored.field(c).to_pylist() for c in range(len(result_columns))]
    originals = [inputs.column(j).to_pylist() for j in range(inputs.num_columns)]
    rows = []
    for i in range(table.num_rows):
        order = np.argsort(-np.abs(attr[i]), kind="stable")[:k]
        top = [{"feature": names[j], "attribution": float(attr[i, j])} for j in order]
        error = abs(float(attr[i].sum()) - float(prediction[i] - baseline[i]))
        rows.append(
            [v[i] for v in predictions]
            + [top, float(baseline[i]), float(prediction[i]), error]
            + [v[i] for v in originals]
        )
    all_columns = (
        result_columns
        + [
            ("top_feature_attributions", "STRUCT(feature VARCHAR, attribution DOUBLE)[]"),
            ("baseline_prediction_value", "DOUBLE"),
            ("prediction_value", "DOUBLE"),
            ("approximation_error", "DOUBLE"),
        ]
        + [(c.name, c.sql_type) for c in columns]
    )
    return tables.table_sql(all_columns, rows)


def global_explain_sql(call: Call) -> str:
    record = call.record
    stored = record.metadata.get("global_explain")
    if stored is None:
        raise ArgumentError(
            f"ML.GLOBAL_EXPLAIN: model {record.qualified} was trained without "
            "enable_global_explain; train it again with OPTIONS (enable_global_explain = TRUE)"
        )
    by_class = call.settings.get("class_level_explain", False)
    if by_class:
        if record.task != CLASSIFICATION:
            raise ArgumentError("ML.GLOBAL_EXPLAIN: class_level_explain applies to classifiers")
        rows = [
            [label, feature, value]
            for label, values in stored["by_class"].items()
            for feature, value in sorted(values.items(), key=lambda kv: -kv[1])
        ]
        return tables.table_sql(
            [("class_label", "VARCHAR"), ("feature", "VARCHAR"), ("attribution", "DOUBLE")], rows
        )
    rows = [[f, v] for f, v in sorted(stored["overall"].items(), key=lambda kv: -kv[1])]
    return tables.table_sql([("feature", "VARCHAR"), ("attribution", "DOUBLE")], rows)


def register_functions(register: Callable[[str, Spec], None], supervised: frozenset[str]) -> None:
    from sqlml.table_functions import Spec

    needs = "linear_reg, logistic_reg, boosted tree and random forest"
    register(
        "EXPLAIN_PREDICT",
        Spec(explain_predict_sql, "required", frozenset({"top_k_features", "threshold"}),
             model_types=LINEAR | TREES, needs=needs),
    )  # fmt: skip
    register(
        "GLOBAL_EXPLAIN",
        Spec(global_explain_sql, "none", frozenset({"class_level_explain"}),
             model_types=LINEAR | TREES, needs=needs),
    )  # fmt: skip
