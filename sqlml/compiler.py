"""Models as plain DuckDB SQL.

A model family that can be written as SQL gives, from its fitted parameters, the *raw
scores* of a row as SQL expressions over the feature arguments (``Family.compile_sql``):
a regression value, a linear score per class, class probabilities, distances to
centroids. This module writes the preprocessing those expressions start from and the
output columns they end in, so that the SQL computes what the ONNX graph computes:

- the same preprocessing (NULL/NaN to the mean, standardization, one-hot, date parts),
- the same link functions (skl2onnx's logistic pair, softmax),
- the same tie-breaking (the first class or centroid wins).

DuckDB then scores with its own vectorized, multi-threaded engine, and the model works
from any DuckDB client, with no Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sqlml.catalog import quote
from sqlml.families import CLASSIFICATION, CLUSTERING
from sqlml.features import CATEGORICAL, DATE_TYPES, DATETIME, FLOAT32_OVERFLOW, Feature, type_id

FLOAT32_MAX = 3.4028234663852886e38  # the largest finite float32

# How the raw scores of a classifier become probabilities.
LOGISTIC_PAIR = "logistic_pair"  # one linear score z: skl2onnx's [sigmoid(-z), sigmoid(z)] / sum
LOGIT = "logit"  # one score z: [1 - sigmoid(z), sigmoid(z)]
SOFTMAX = "softmax"  # one score per class
OVR = "ovr"  # one score per class, each through a sigmoid, then normalized (SGD one-vs-rest)
PROBABILITIES = "probabilities"  # already one probability per class


def number(value: float) -> str:
    """A DOUBLE literal that reads back as exactly ``value``."""
    if math.isnan(value):
        return "'NaN'::DOUBLE"
    if math.isinf(value):
        return "'Infinity'::DOUBLE" if value > 0 else "'-Infinity'::DOUBLE"
    text = repr(float(value))
    return text if "e" in text else text + "e0"  # an exponent makes DuckDB read a DOUBLE


def string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def literal(value: Any, sql_type: str) -> str:
    """A label value as a SQL literal of the label's type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"CAST({value} AS {sql_type})"
    return f"CAST({string(str(value))} AS {sql_type})"


# -- preprocessing -----------------------------------------------------------------------------


def numeric_values(feature: Feature, arg: str) -> list[str]:
    """The numeric input columns of a numeric or date/time feature, NULL and NaN replaced by
    the training mean; not standardized (the scorers fold the scaling into their constants,
    which saves DuckDB two operations per value)."""
    values = []
    for i, value in enumerate(raw_numeric_values(feature, arg)):
        mean = number(feature.means[i])
        values.append(f"(CASE WHEN {value} IS NULL OR isnan({value}) THEN {mean} ELSE {value} END)")
    return values


def raw_numeric_values(feature: Feature, arg: str) -> list[str]:
    """The numeric input columns of a numeric or date/time feature, as they come."""
    if feature.kind == DATETIME:
        return _datetime_parts(feature, arg)
    return [f"CAST({arg} AS DOUBLE)"]


def float32_at_most(value: str, threshold: float) -> str:
    """Whether ``value`` (a DOUBLE, neither NULL nor NaN) rounded to float32 is <= the
    threshold, as trees split float32 values. Written as one DOUBLE comparison, with no
    cast: float32(v) <= t exactly when v rounds to at most the largest float32 f <= t, that
    is when v lies below the midpoint between f and the next float32 (on the midpoint,
    when rounding half to even picks f). So values beyond float32's range compare as the
    +-infinity they round to (DuckDB's cast to FLOAT would refuse them)."""
    if math.isnan(threshold):
        return "false"
    if threshold == math.inf:
        return "true"
    if threshold < -FLOAT32_MAX:  # only -infinity is below: values that round to it
        return f"({value} <= {number(-FLOAT32_OVERFLOW)})"
    if threshold >= FLOAT32_MAX:  # all but +infinity; FLOAT32_MAX is odd, ties round up
        return f"({value} < {number(FLOAT32_OVERFLOW)})"
    low = np.float32(threshold)  # the nearest float32; then the largest one <= threshold
    if float(low) > threshold:  # (compared as doubles: float32 > float compares in float32)
        low = np.nextafter(low, np.float32(-np.inf))
    high = np.nextafter(low, np.float32(np.inf))
    midpoint = (float(low) + float(high)) / 2  # exact in double
    even = int(np.asarray(low).view(np.uint32)) & 1 == 0
    return f"({value} {'<=' if even else '<'} {number(midpoint)})"


def scaling(feature: Feature) -> list[tuple[float, float]]:
    """(mean, scale) of each numeric input column: the model sees (value - mean) / scale."""
    scales = feature.scales or [1.0] * len(feature.means)
    means = feature.means if feature.scales else [0.0] * len(feature.means)
    return list(zip(means, scales, strict=True))


def category_value(arg: str) -> str:
    """A categorical argument as the string the model compares (booleans as 'true'/'false')."""
    return f"CAST({arg} AS VARCHAR)"


def category_test(arg: str, category: str | None) -> str:
    """Whether the row's value is this category (the one-hot column is 1)."""
    value = category_value(arg)
    return f"{value} IS NULL" if category is None else f"{value} = {string(category)}"


def category_case(
    arg: str,
    weights: Sequence[float],
    categories: Sequence[str | None],
    unseen: float = 0.0,
) -> str:
    """A number per category of a categorical feature (its one-hot block dotted with
    ``weights``), ``unseen`` for a value never seen in training."""
    branches = [
        f"WHEN {category_test(arg, category)} THEN {number(weight)}"
        for category, weight in zip(categories, weights, strict=True)
    ]
    return f"(CASE {' '.join(branches)} ELSE {number(unseen)} END)"


def _datetime_parts(feature: Feature, arg: str) -> list[str]:
    tid = type_id(feature.sql_type)
    if tid in DATE_TYPES:
        moment = f"CAST({arg} AS DATE)"
        epoch = f"(epoch({moment}) / 86400e0)"
    elif tid == "timestamp with time zone":
        moment = f"timezone('UTC', CAST({arg} AS TIMESTAMPTZ))"  # parts in UTC
        epoch = f"epoch({moment})"
    else:
        moment = f"CAST({arg} AS TIMESTAMP)"
        epoch = f"epoch({moment})"
    parts = {
        "unix_days": epoch,
        "unix_seconds": epoch,
        "year": f"year({moment})",
        "month": f"month({moment})",
        "day": f"day({moment})",
        "day_of_week": f"isodow({moment})",
        "day_of_year": f"dayofyear({moment})",
        "hour": f"hour({moment})",
        "minute": f"minute({moment})",
        "second": f"second({moment})",
    }
    return [f"CAST({parts[p]} AS DOUBLE)" for p in feature.parts]


def columns(features: list[Feature], args: list[str]) -> list[tuple[Feature, str, int]]:
    """Each model matrix column as (feature, argument, index within the feature)."""
    return [(f, a, i) for f, a in zip(features, args, strict=True) for i in range(f.width)]


def linear_scores(
    features: list[Feature], args: list[str], coef: list[list[float]], intercept: list[float]
) -> list[str]:
    """intercept + coef . x for each row of ``coef``, x the model matrix row. Standardization
    is folded in: w * (v - m) / s = (w / s) * v - w * m / s."""
    scores = []
    for weights, bias in zip(coef, intercept, strict=True):
        terms, position = [], 0
        for feature, arg in zip(features, args, strict=True):
            block = weights[position : position + feature.width]
            position += feature.width
            if feature.kind == CATEGORICAL:
                terms.append(category_case(arg, block, feature.categories))
                continue
            values = numeric_values(feature, arg)
            for value, weight, (mean, scale) in zip(values, block, scaling(feature), strict=True):
                terms.append(f"{value} * {number(weight / scale)}")
                bias -= weight * mean / scale
        scores.append(f"(({' + '.join(terms)}) + {number(bias)})")
    return scores


# -- outputs -----------------------------------------------------------------------------------


@dataclass
class CompiledModel:
    """The SQL of a model: raw scores from feature arguments, output columns from scores."""

    raw: Callable[[list[str]], list[str]]
    link: str | None
    task: str
    classes: list[Any] | None
    label_type: str | None

    def probabilities(self, raw: list[str]) -> list[str]:
        if self.link == LOGISTIC_PAIR:
            [z] = raw
            up, down = f"(1e0 / (1e0 + exp(-{z})))", f"(1e0 / (1e0 + exp({z})))"
            return [f"({down} / ({down} + {up}))", f"({up} / ({down} + {up}))"]
        if self.link == LOGIT:
            [z] = raw
            p = f"(1e0 / (1e0 + exp(-{z})))"
            return [f"(1e0 - {p})", p]
        if self.link == SOFTMAX:
            top = f"greatest({', '.join(raw)})"
            exps = [f"exp({z} - {top})" for z in raw]
            total = f"({' + '.join(exps)})"
            return [f"({e} / {total})" for e in exps]
        if self.link == OVR:
            ps = [f"(1e0 / (1e0 + exp(-{z})))" for z in raw]
            total = f"({' + '.join(ps)})"
            return [f"({p} / {total})" for p in ps]
        return raw

    def outputs(self, raw: list[str]) -> list[str]:
        """The expressions of the columns ML.PREDICT adds (runtime.output_columns order)."""
        if self.task == CLUSTERING:
            ids = list(range(1, len(raw) + 1))
            nearest = _first_best(raw, [str(i) for i in ids], smallest=True)
            pairs = ", ".join(f"{{'d': {d}, 'id': {i}}}" for d, i in zip(raw, ids, strict=True))
            ranked = (
                f"list_transform(list_sort([{pairs}]), "
                "lambda p: {'centroid_id': p.id::BIGINT, 'distance': p.d})"
            )
            return [f"CAST({nearest} AS BIGINT)", ranked]
        if self.task == CLASSIFICATION:
            assert self.classes is not None and self.label_type is not None
            labels = [literal(c, self.label_type) for c in self.classes]
            probs = self.probabilities(raw)
            if self.link == LOGISTIC_PAIR:  # skl2onnx takes the argmax of (-z, z)
                label = f"(CASE WHEN {raw[0]} > 0e0 THEN {labels[1]} ELSE {labels[0]} END)"
            elif self.link == SOFTMAX:
                label = _first_best(raw, labels, smallest=False)
            else:
                label = _first_best(probs, labels, smallest=False)
            items = ", ".join(
                f"{{'label': {c}, 'prob': {p}}}" for c, p in zip(labels, probs, strict=True)
            )
            return [label, f"[{items}]"]
        return raw


def _first_best(values: list[str], results: list[str], *, smallest: bool) -> str:
    """The result of the first value that is largest (or smallest), like ArgMax/ArgMin."""
    if len(values) == 1:
        return results[0]
    op = "<=" if smallest else ">="
    branches = []
    for i, value in enumerate(values[:-1]):
        rest = values[i + 1 :]
        test = " AND ".join(f"{value} {op} {other}" for other in rest)
        branches.append(f"WHEN {test} THEN {results[i]}")
    return f"(CASE {' '.join(branches)} ELSE {results[-1]} END)"


def predict_sql(
    compiled: CompiledModel,
    features: list[str],
    data: str,
    names: list[str],
    scores: str | None = None,
    count: int = 1,
) -> str:
    """ML.PREDICT as two projections: the raw scores once per row, then the outputs.
    ``features``: the SQL of each feature over the input's columns. ``scores``: SQL giving
    the ``count`` raw scores instead of ``compiled.raw`` (a native model's UDF: one DOUBLE,
    or a list when there are several)."""
    if scores is None:
        raw = compiled.raw(features)
        columns = [f"__sqlml_raw{i}" for i in range(len(raw))]
        refs = columns
        scored = ", ".join(f"{expr} AS {ref}" for expr, ref in zip(raw, refs, strict=True))
    else:
        columns = ["__sqlml_raw"]
        refs = ["__sqlml_raw"] if count == 1 else [f"__sqlml_raw[{i}]" for i in range(1, count + 1)]
        scored = f"{scores} AS __sqlml_raw"
    outputs = ", ".join(
        f"{expr} AS {quote(name)}" for expr, name in zip(compiled.outputs(refs), names, strict=True)
    )
    return (
        f"(SELECT {outputs}, * EXCLUDE ({', '.join(columns)}) FROM "
        f"(SELECT *, {scored} FROM ({data}) AS __sqlml_in) AS __sqlml_scored)"
    )


def compile_record(record: Any, family: Any) -> CompiledModel:
    """The SQL of a stored model version, from the parameters kept in its metadata."""
    meta = record.metadata
    raw, link = family.compile_sql(meta["parameters"], record.features)
    label = meta.get("label") or {}
    return CompiledModel(
        raw=raw,
        link=link,
        task=meta["task"],
        classes=meta.get("classes"),
        label_type=label.get("output_type"),
    )
