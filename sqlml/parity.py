"""Before a model is stored: does the ONNX graph predict what scikit-learn predicts?

Compared on a sample of training rows plus two made-up rows (every feature NULL; every
text feature a value never seen in training), through the same Arrow-to-ONNX path the SQL
functions use. The figure is stored with the model; a disagreement beyond the tolerance
refuses the model.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pyarrow as pa

from sqlml.errors import ParityError
from sqlml.families import (
    ANOMALY_DETECTION,
    CLASSIFICATION,
    CLUSTERING,
    DIMENSIONALITY_REDUCTION,
)
from sqlml.runtime import ModelRuntime

SAMPLE_ROWS = 1000
# Relative tolerance by precision: doubles agree to rounding; trees run on float32 and sum
# float32 leaf values.
TOLERANCE = {"float64": 1e-9, "float32": 1e-4}
UNSEEN = "\x01sqlml-unseen"


def sample(data: pa.Table, train_rows: np.ndarray, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    picked = train_rows
    if len(train_rows) > SAMPLE_ROWS:
        picked = np.sort(rng.choice(train_rows, SAMPLE_ROWS, replace=False))
    rows = data.take(pa.array(picked))
    nulls = pa.table({f.name: pa.nulls(1, f.type) for f in data.schema}, schema=data.schema)
    unseen = pa.table(
        {
            f.name: pa.array([UNSEEN], f.type)
            if pa.types.is_string(f.type)
            else pa.nulls(1, f.type)
            for f in data.schema
        },
        schema=data.schema,
    )
    return pa.concat_tables([rows, nulls, unseen])


def check(pipeline: Any, runtime: ModelRuntime, rows: pa.Table, float32: bool) -> dict[str, Any]:
    """Compare the two on ``rows`` (feature columns in model order); raise on disagreement."""
    task = runtime.record.task
    precision = "float32" if float32 else "float64"
    rtol = TOLERANCE[precision]
    onnx = runtime.run([rows.column(f.name) for f in runtime.record.features])
    labels_agree = None
    if task == CLASSIFICATION:
        expected, got = pipeline.predict_proba(rows), onnx["probabilities"]
        labels_agree = _labels_agree(pipeline.predict(rows), onnx["label"], expected, rtol)
    elif task == CLUSTERING:
        expected, got = pipeline.transform(rows), onnx["distances"]
        labels_agree = _labels_agree(pipeline.predict(rows), onnx["label"], -expected, rtol)
    elif task == DIMENSIONALITY_REDUCTION:
        expected, got = pipeline.transform(rows), onnx["components"]
    elif task == ANOMALY_DETECTION:
        expected, got = pipeline.decision_function(rows), onnx["scores"]
        same = np.asarray(pipeline.predict(rows)) == onnx["label"]
        # A score within the tolerance of the threshold may fall either side.
        labels_agree = float((same | (np.abs(expected) <= rtol)).mean())
    else:
        expected, got = pipeline.predict(rows), onnx["prediction"]
    expected = np.asarray(expected, dtype=np.float64).reshape(got.shape)
    diff = np.abs(expected - got)
    scale = 1.0 + np.abs(expected)
    figure = {
        "rows": rows.num_rows,
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "max_rel_diff": float((diff / scale).max()) if diff.size else 0.0,
        "label_agreement": labels_agree,
        "tolerance": rtol,
        "precision": precision,
    }
    bad = int(np.sum(np.any((diff > rtol * scale).reshape(len(diff), -1), axis=1)))
    if bad or (labels_agree is not None and labels_agree < 1.0):
        raise ParityError(
            f"The ONNX form of model {runtime.record.qualified} disagrees with scikit-learn on "
            f"{bad or 'the labels of some'} of {rows.num_rows} sample rows (largest difference "
            f"{figure['max_abs_diff']:.3g}, tolerance {rtol:g} relative). The model was not "
            "stored; please report this with the training query"
        )
    return figure


def _labels_agree(expected: np.ndarray, got: np.ndarray, scores: np.ndarray, rtol: float) -> float:
    """Share of rows with the same label, counting near-ties (within tolerance) as agreeing."""
    same = np.asarray(expected) == got
    if scores.shape[1] > 1:
        top2 = np.sort(scores, axis=1)[:, -2:]
        tie = (top2[:, 1] - top2[:, 0]) <= rtol * (1.0 + np.abs(top2[:, 1]))
        same = same | tie
    return float(same.mean())


def check_sql(
    con: Any, model: Any, runtime: ModelRuntime, rows: pa.Table, float32: bool
) -> dict[str, Any]:
    """Compare the model compiled to SQL (run by DuckDB) with the ONNX model on ``rows``.
    Returns the figure, with ``ok`` False on a disagreement."""
    from sqlml.catalog import quote

    record = runtime.record
    view = f"__sqlml_parity_{uuid.uuid4().hex}"
    raw = model.raw([quote(f.name) for f in record.features])
    values = model.probabilities(raw) if record.task == CLASSIFICATION else raw
    first = model.outputs(raw)[0]  # the label, centroid id or prediction
    select = ", ".join(f"{v} AS v{i}" for i, v in enumerate(values))
    con.register(view, rows)
    try:
        result = con.execute(f"SELECT {select}, {first} AS first FROM {quote(view)}").fetchall()
    finally:
        con.unregister(view)
    got = np.array([row[:-1] for row in result], dtype=np.float64)
    got_first = np.array([row[-1] for row in result], dtype=object)
    onnx = runtime.run([rows.column(f.name) for f in record.features])
    want_first = None
    if record.task == CLASSIFICATION:
        want_first = np.array(runtime.to_arrow(onnx).field(0).to_pylist(), dtype=object)
    elif record.task == CLUSTERING:
        want_first = onnx["label"] + 1
    return _compare(record.task, onnx, got, got_first, want_first, float32)


def check_runtime(
    scorer: ModelRuntime, reference: ModelRuntime, rows: pa.Table, float32: bool
) -> dict[str, Any]:
    """Compare another scorer of a model (native.py) with its ONNX runtime on ``rows``.
    Returns the figure, with ``ok`` False on a disagreement."""
    columns = [rows.column(f.name) for f in reference.record.features]
    want, got = reference.run(columns), scorer.run(columns)
    task = reference.record.task
    values = got[VALUES.get(task, "prediction")].reshape(rows.num_rows, -1)
    return _compare(task, want, values, got.get("label"), want.get("label"), float32)


# The output compared, by task (labels are compared apart, allowing near-ties).
VALUES = {
    CLASSIFICATION: "probabilities",
    CLUSTERING: "distances",
    DIMENSIONALITY_REDUCTION: "components",
}


def _compare(
    task: str,
    onnx: dict[str, np.ndarray],
    got: np.ndarray,
    got_first: np.ndarray | None,
    want_first: np.ndarray | None,
    float32: bool,
) -> dict[str, Any]:
    """The figure of ``got`` (rows x values, in the order of VALUES[task]) and the labels or
    centroid ids ``got_first`` against the ONNX outputs."""
    rtol = TOLERANCE["float32" if float32 else "float64"]
    expected = onnx[VALUES.get(task, "prediction")].reshape(len(got), -1)
    labels_agree = None
    if task in (CLASSIFICATION, CLUSTERING):
        scores = expected if task == CLASSIFICATION else -expected
        labels_agree = _labels_agree(want_first, got_first, scores, rtol)
    diff = np.abs(expected - got)
    # Distances near zero lose digits in onnxruntime's |x|^2 - 2x.c + |c|^2: compare them
    # on the scale of the row's distances.
    scale = 1.0 + np.abs(expected).max(axis=1, keepdims=True)
    bad = int(np.sum(np.any(diff > rtol * scale, axis=1)))
    return {
        "ok": bad == 0 and labels_agree in (None, 1.0),
        "rows": len(got),
        "rows_differing": bad,
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "label_agreement": labels_agree,
        "tolerance": rtol,
    }
