"""ML.DETECT_ANOMALIES for kmeans, pca and isolation_forest models.

Each model scores how unusual a row is, and at training sqlml keeps the quantiles of that
score over the training rows; ``STRUCT(c AS contamination)`` then flags the rows scoring
above the (1 - c) quantile, so that about a share c of rows like the training rows are
anomalies:

- kmeans: ``normalized_distance``, the smallest over the centroids of the distance to the
  centroid divided by the root mean square distance of the training rows in its cluster;
- pca: ``mean_squared_error`` of the row rebuilt from its principal components, in the
  standardized feature space;
- isolation_forest: ``anomaly_score`` (is_anomaly follows the model's own threshold when no
  contamination is given).

The result is SQL over ML.PREDICT, so it streams like ML.PREDICT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from sqlml import compiler
from sqlml.catalog import ModelRecord, quote
from sqlml.errors import ArgumentError
from sqlml.families import ANOMALY_DETECTION, CLUSTERING, DIMENSIONALITY_REDUCTION
from sqlml.features import CATEGORICAL, matrix

if TYPE_CHECKING:
    import pyarrow as pa

    from sqlml.table_functions import Call, Spec

QUANTILES = np.linspace(0.0, 1.0, 1001)
SCORE = {
    CLUSTERING: "normalized_distance",
    DIMENSIONALITY_REDUCTION: "mean_squared_error",
    ANOMALY_DETECTION: "anomaly_score",
}


def training_scores(
    record: ModelRecord, outputs: dict[str, np.ndarray], table: pa.Table
) -> dict[str, Any]:
    """What DETECT_ANOMALIES keeps from the training rows: cluster scales (kmeans) and the
    quantiles of the score."""
    kept: dict[str, Any] = {}
    if record.task == CLUSTERING:
        distances = outputs["distances"]
        nearest = distances[np.arange(len(distances)), outputs["label"]]
        scales = []
        for c in range(distances.shape[1]):
            mine = nearest[outputs["label"] == c]
            rms = float(np.sqrt(np.mean(mine**2))) if len(mine) else 0.0
            scales.append(rms if rms > 0 else 1.0)
        kept["scales"] = scales
        scores = np.min(distances / np.asarray(scales), axis=1)
    elif record.task == DIMENSIONALITY_REDUCTION:
        parameters = record.metadata["parameters"]
        x = matrix(record.features, table)
        rebuilt = outputs["components"] @ np.asarray(parameters["components"]) + np.asarray(
            parameters["mean"]
        )
        scores = np.mean((x - rebuilt) ** 2, axis=1)
    else:
        scores = -(outputs["scores"] + record.metadata["parameters"]["offset"])
    kept["quantiles"] = np.quantile(scores, QUANTILES).tolist()
    return kept


def threshold(record: ModelRecord, contamination: float) -> float:
    quantiles = record.metadata["anomaly"]["quantiles"]
    return float(np.interp(1.0 - contamination, QUANTILES, quantiles))


def _score_sql(record: ModelRecord) -> str:
    """The score over ML.PREDICT's columns and the input's."""
    if record.task == CLUSTERING:
        scales = record.metadata["anomaly"]["scales"]
        case = " ".join(
            f"WHEN {i} THEN {compiler.number(s)}" for i, s in enumerate(scales, start=1)
        )
        return (
            "list_min(list_transform(nearest_centroids_distance, "
            f"lambda p: p.distance / (CASE p.centroid_id {case} END)))"
        )
    if record.task == DIMENSIONALITY_REDUCTION:
        parameters = record.metadata["parameters"]
        components = np.asarray(parameters["components"])
        x = _encoded_columns(record)
        terms = []
        for j, (value, mean) in enumerate(zip(x, parameters["mean"], strict=True)):
            rebuilt = " + ".join(
                f"principal_component_{k + 1} * {compiler.number(w)}"
                for k, w in enumerate(components[:, j])
            )
            terms.append(f"pow({value} - ({compiler.number(mean)} + {rebuilt}), 2)")
        return f"(({' + '.join(terms)}) / {len(terms)}e0)"
    return "anomaly_score"


def _encoded_columns(record: ModelRecord) -> list[str]:
    """The model matrix's columns as SQL over the input columns."""
    columns = []
    for feature, arg in zip(record.features, record.feature_sql(), strict=True):
        if feature.kind == CATEGORICAL:
            columns += [
                f"(CASE WHEN {compiler.category_test(arg, c)} THEN 1e0 ELSE 0e0 END)"
                for c in feature.categories
            ]
        else:
            for value, (mean, scale) in zip(
                compiler.numeric_values(feature, arg), compiler.scaling(feature), strict=True
            ):
                columns.append(f"(({value} - {compiler.number(mean)}) / {compiler.number(scale)})")
    return columns


def detect_anomalies_sql(call: Call) -> str:
    record = call.record
    contamination = call.settings.get("contamination")
    if contamination is None and record.task != ANOMALY_DETECTION:
        raise ArgumentError(
            f"ML.DETECT_ANOMALIES(MODEL {record.qualified}, ...) needs "
            "STRUCT(<share> AS contamination), e.g. STRUCT(0.02 AS contamination)"
        )
    if contamination is not None and (
        isinstance(contamination, bool)
        or not isinstance(contamination, int | float)
        or not 0.0 < contamination <= 0.5
    ):
        raise ArgumentError(
            "ML.DETECT_ANOMALIES: contamination must be a number in (0, 0.5], "
            f"got {contamination!r}"
        )
    assert call.data is not None
    call.expander.input_columns(record, call.data, call.function)
    predicted = call.expander.functions.predict_sql(record, call.data)
    score = SCORE[record.task]
    outputs = [quote(name) for name in _prediction_columns(record)]
    if contamination is None:  # isolation forest, the model's own threshold
        flag = "is_anomaly"
    else:
        flag = f"__sqlml_score > {compiler.number(threshold(record, contamination))}"
    return (
        f"(SELECT {flag} AS is_anomaly, __sqlml_score AS {score}, "
        f"* EXCLUDE ({', '.join(outputs)}, __sqlml_score) FROM "
        f"(SELECT *, {_score_sql(record)} AS __sqlml_score FROM {predicted}))"
    )


def _prediction_columns(record: ModelRecord) -> list[str]:
    from sqlml.runtime import output_columns

    return [name for name, _ in output_columns(record)]


def register_functions(register: Callable[[str, Spec], None], supervised: frozenset[str]) -> None:
    from sqlml.table_functions import Spec

    register(
        "DETECT_ANOMALIES",
        Spec(
            detect_anomalies_sql,
            "required",
            frozenset({"contamination"}),
            frozenset(SCORE),
            needs="kmeans, pca and isolation_forest",
        ),
    )
