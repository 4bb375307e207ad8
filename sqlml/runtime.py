"""Scoring a stored model: Arrow columns in, onnxruntime, Arrow results out.

One :class:`ModelRuntime` per model version; its onnxruntime session is created once, on
first use, and shared by every call and thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlml.catalog import ModelRecord
from sqlml.errors import DataError
from sqlml.families import (
    ANOMALY_DETECTION,
    CLASSIFICATION,
    CLUSTERING,
    DIMENSIONALITY_REDUCTION,
    IMPORTED,
)
from sqlml.features import CATEGORICAL, category_codes, input_values, numeric_values
from sqlml.onnx_export import with_category_codes

THREADS = os.cpu_count() or 1
PARALLEL_ROWS = 65_536  # a batch larger than this is scored on every core

# DuckDB type id -> Arrow type, for labels given back in their own type.
_ARROW_LABEL_TYPES = {
    "varchar": pa.string(),
    "enum": pa.string(),
    "boolean": pa.bool_(),
    "tinyint": pa.int8(),
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "utinyint": pa.uint8(),
    "usmallint": pa.uint16(),
    "uinteger": pa.uint32(),
    "ubigint": pa.uint64(),
}


def label_arrow_type(type_id: str) -> pa.DataType:
    return _ARROW_LABEL_TYPES[type_id]


def output_columns(record: ModelRecord) -> list[tuple[str, str]]:
    """(column name, SQL type) of what ML.PREDICT adds, in order."""
    if record.task == IMPORTED:
        return [(o["column"], o["sql_type"]) for o in record.metadata["imported"]["outputs"]]
    if record.task == DIMENSIONALITY_REDUCTION:
        count = len(record.metadata["parameters"]["components"])
        return [(f"principal_component_{i}", "DOUBLE") for i in range(1, count + 1)]
    if record.task == ANOMALY_DETECTION:
        return [("is_anomaly", "BOOLEAN"), ("anomaly_score", "DOUBLE")]
    if record.task == CLUSTERING:
        return [
            ("centroid_id", "BIGINT"),
            ("nearest_centroids_distance", "STRUCT(centroid_id BIGINT, distance DOUBLE)[]"),
        ]
    label = record.label
    assert label is not None
    predicted = f"predicted_{label['name']}"
    if record.task == CLASSIFICATION:
        sql_type = label["output_type"]
        return [
            (predicted, sql_type),
            (f"{predicted}_probs", f"STRUCT(label {sql_type}, prob DOUBLE)[]"),
        ]
    return [(predicted, "DOUBLE")]


def runtime_for(record: ModelRecord, load: Callable[[], bytes]) -> ModelRuntime:
    """The runtime of a stored version: a model sqlml trained (or exported and imported
    again), scored by onnxruntime or natively (native.py), or an ONNX file from elsewhere."""
    if record.task == IMPORTED:
        return ImportedRuntime(record, load)
    if record.metadata.get("inference", {}).get("path") == "native":
        from sqlml.native import NativeRuntime

        return NativeRuntime(record, load)
    return ModelRuntime(record, load)


class ModelRuntime:
    """Runs one model version. ``load`` fetches the ONNX bytes when first needed."""

    def __init__(self, record: ModelRecord, load: Callable[[], bytes]):
        self.record = record
        self._load: Callable[[], bytes] | None = load
        self._session: Any = None
        self._lock = threading.Lock()
        self._outputs: dict[str, str] = record.metadata["onnx"]["outputs"]
        self._columns = output_columns(record)
        self._categories: dict[str, pa.Array] = {}
        self._list_parts: dict[int, tuple[pa.Array, pa.Array]] = {}
        if record.task == IMPORTED:
            return
        if record.task == CLASSIFICATION:
            assert record.label is not None
            self._classes = pa.array(record.classes, label_arrow_type(record.label["type_id"]))
            # Labels of a plain type are looked up in NumPy: for one DuckDB vector, pyarrow's
            # take cost 27 us against NumPy's 10 us (measured).
            kind = self._classes.type
            plain = pa.types.is_boolean(kind) or pa.types.is_integer(kind)
            self._class_values = self._classes.to_numpy(zero_copy_only=False) if plain else None
        self._categories = {
            f.name: pa.array(f.categories, pa.string())
            for f in record.features
            if f.kind == CATEGORICAL
        }

    @property
    def session(self) -> Any:
        if self._session is None:
            with self._lock:
                if self._session is None:
                    import onnxruntime as ort

                    options = ort.SessionOptions()
                    options.log_severity_level = 3
                    # One thread per call: DuckDB already calls the UDF from every core,
                    # and big batches from Python are split across threads (run()).
                    options.intra_op_num_threads = 1
                    options.inter_op_num_threads = 1
                    assert self._load is not None
                    model = self._load()
                    if self._categories:  # (empty for imported models)
                        model = with_category_codes(model, self.record.features)
                    self._session = ort.InferenceSession(
                        model, options, providers=["CPUExecutionProvider"]
                    )
                    self._load = None  # the session keeps its own copy of the model
        return self._session

    def feed(self, columns: Sequence[pa.Array | pa.ChunkedArray]) -> dict[str, np.ndarray]:
        """The session's inputs. Text columns go in as category codes, looked up in Arrow:
        no Python string per row (see onnx_export.with_category_codes)."""
        feed = {}
        for feature, column in zip(self.record.features, columns, strict=True):
            categories = self._categories.get(feature.name)
            if categories is None:
                feed[feature.name] = input_values(feature, column)
            else:
                feed[feature.name] = category_codes(column, categories).reshape(-1, 1)
        return feed

    def run(self, columns: Sequence[pa.Array | pa.ChunkedArray]) -> dict[str, np.ndarray]:
        """Model outputs by role (see onnx_export), as float64 / int64 arrays."""
        rows = len(columns[0]) if len(columns) else 0
        if rows == 0:
            return self._empty()
        if rows <= PARALLEL_ROWS:
            return self._run(columns)
        # A big batch from Python (ML.EVALUATE, parity): onnxruntime releases the GIL, so
        # slices run in parallel threads, one per core.
        step = -(-rows // THREADS)
        slices = [[c.slice(i, step) for c in columns] for i in range(0, rows, step)]
        with ThreadPoolExecutor(THREADS) as pool:
            parts = list(pool.map(self._run, slices))
        return {role: np.concatenate([p[role] for p in parts]) for role in parts[0]}

    def _run(self, columns: Sequence[pa.Array | pa.ChunkedArray]) -> dict[str, np.ndarray]:
        roles = list(self._outputs)
        values = self.session.run([self._outputs[r] for r in roles], self.feed(columns))
        result = {}
        for role, value in zip(roles, values, strict=True):
            dtype = np.int64 if role == "label" else np.float64
            result[role] = np.asarray(value, dtype=dtype)
        for role in ("prediction", "label", "scores"):  # one value per row
            if role in result:
                result[role] = result[role].reshape(-1)
        return result

    def _empty(self) -> dict[str, np.ndarray]:
        widths = {CLUSTERING: "centroids", DIMENSIONALITY_REDUCTION: "components"}
        key = widths.get(self.record.task)
        if key:
            width = len(self.record.metadata["parameters"][key])
        else:
            width = len(self.record.classes or [])
        return {
            role: np.zeros(0, np.int64)
            if role == "label"
            else np.zeros((0, width) if role in ("probabilities", "distances", "components") else 0)
            for role in self._outputs
        }

    # -- Arrow results -----------------------------------------------------------------

    def output_array(self, outputs: dict[str, np.ndarray], index: int) -> pa.Array:
        """One column ML.PREDICT adds (see output_columns), as an Arrow array."""
        task = self.record.task
        if task == DIMENSIONALITY_REDUCTION:
            return pa.array(outputs["components"][:, index], pa.float64())
        if task == ANOMALY_DETECTION:
            if index == 0:
                return pa.array(outputs["label"] == -1, pa.bool_())
            offset = self.record.metadata["parameters"]["offset"]
            return pa.array(-(outputs["scores"] + offset), pa.float64())
        if task == CLUSTERING:
            if index == 0:
                return pa.array(outputs["label"] + 1, pa.int64())
            return _ranked_list(outputs["distances"], "centroid_id", "distance", ascending=True)
        if task == CLASSIFICATION:
            if index == 0:
                if self._class_values is not None:
                    return pa.array(self._class_values[outputs["label"]], self._classes.type)
                return self._classes.take(pa.array(outputs["label"]))
            return self._class_list(outputs["probabilities"])
        return pa.array(outputs["prediction"], pa.float64())

    def _class_list(self, probabilities: np.ndarray) -> pa.ListArray:
        """Per row, a LIST of STRUCT(label, prob) in class order. The labels and offsets
        are the same for every DuckDB vector of a given length: made once per length."""
        rows, k = probabilities.shape
        parts = self._list_parts.get(rows)
        if parts is None:
            labels = self._classes.take(pa.array(np.tile(np.arange(k), rows)))
            parts = (labels, list_offsets(rows, k))
            if len(self._list_parts) < 8:
                self._list_parts[rows] = parts
        labels, offsets = parts
        items = pa.StructArray.from_arrays(
            [labels, pa.array(probabilities.reshape(-1), pa.float64())], names=["label", "prob"]
        )
        return pa.ListArray.from_arrays(offsets, items)

    def to_arrow(self, outputs: dict[str, np.ndarray]) -> pa.StructArray:
        """The columns ML.PREDICT adds, as one struct array."""
        names = [name for name, _ in self._columns]
        arrays = [self.output_array(outputs, i) for i in range(len(names))]
        return pa.StructArray.from_arrays(arrays, names=names)

    def function_array(self, outputs: dict[str, np.ndarray], index: int) -> pa.Array:
        """What the model's SQL function number ``index`` returns (see
        functions.function_outputs)."""
        if self.record.task == DIMENSIONALITY_REDUCTION:
            return number_lists(outputs["components"])
        if self.record.task == ANOMALY_DETECTION:
            return self.output_array(outputs, 1)
        return self.output_array(outputs, index)

    def __call__(self, *columns: pa.Array | pa.ChunkedArray) -> pa.StructArray:
        return self.to_arrow(self.run(columns))


class ImportedRuntime(ModelRuntime):
    """An ONNX model from elsewhere: each input fed from the column of its name, each
    output a column ``predicted_<output>`` (see onnx_import)."""

    def feed(self, columns: Sequence[pa.Array | pa.ChunkedArray]) -> dict[str, np.ndarray]:
        inputs = self.record.metadata["imported"]["inputs"]
        return {
            spec["name"]: _tensor(spec, column, self.record.qualified)
            for spec, column in zip(inputs, columns, strict=True)
        }

    def _run(self, columns: Sequence[pa.Array | pa.ChunkedArray]) -> dict[str, np.ndarray]:
        outputs = self.record.metadata["imported"]["outputs"]
        values = self.session.run([o["name"] for o in outputs], self.feed(columns))
        return {o["name"]: np.asarray(v) for o, v in zip(outputs, values, strict=True)}

    def _empty(self) -> dict[str, np.ndarray]:
        return {
            o["name"]: np.zeros((0,) if o["width"] is None else (0, o["width"] or 0))
            for o in self.record.metadata["imported"]["outputs"]
        }

    def output_array(self, outputs: dict[str, np.ndarray], index: int) -> pa.Array:
        spec = self.record.metadata["imported"]["outputs"][index]
        value = outputs[spec["name"]]
        rows = value.shape[0] if value.ndim else 0
        if spec["width"] is None:
            flat = value.reshape(rows)
            return pa.array(flat.astype(object) if flat.dtype == object else flat)
        return number_lists(value.reshape(rows, -1))

    def function_array(self, outputs: dict[str, np.ndarray], index: int) -> pa.Array:
        return self.output_array(outputs, index)


def _tensor(spec: dict[str, Any], column: pa.Array | pa.ChunkedArray, model: str) -> np.ndarray:
    """One column as the input tensor ``spec`` describes; NULL only where it can be NaN."""
    dtype = np.dtype(object) if spec["dtype"] == "object" else np.dtype(spec["dtype"])
    width = spec["width"]
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if width is not None:  # a LIST column, one list of ``width`` numbers per row
        lengths = pc.list_value_length(column)
        if column.null_count or not pc.all(pc.equal(lengths, width)).as_py():
            raise DataError(
                f"Input {spec['name']} of model {model} takes a list of {width} numbers per "
                "row; a row has a NULL list or another length"
            )
        column = pc.list_flatten(column)
    if column.null_count and dtype.kind != "f":
        raise DataError(
            f"Input {spec['name']} of model {model} is {spec['sql_type']} and cannot be NULL; "
            f"fill it, e.g. coalesce({spec['name']}, ...)"
        )
    if dtype.kind == "O":
        strings = pc.cast(column, pa.string()).to_numpy(zero_copy_only=False)
        values = np.asarray(strings, dtype=object)
    elif dtype.kind == "f":
        values = numeric_values(column).astype(dtype)  # NULL -> NaN
    else:
        values = np.asarray(column.to_numpy(zero_copy_only=False)).astype(dtype)
    return values.reshape([-1 if d is None else d for d in spec["shape"]])


def list_offsets(rows: int, k: int) -> pa.Array:
    """The offsets of ``rows`` lists of ``k`` items each."""
    return pa.array(np.arange(0, rows * k + 1, k, dtype=np.int32))


def number_lists(matrix: np.ndarray) -> pa.ListArray:
    """Per row of ``matrix``, a LIST of its numbers as DOUBLE."""
    rows, k = matrix.shape
    values = pa.array(matrix.reshape(-1).astype(np.float64, copy=False))
    return pa.ListArray.from_arrays(list_offsets(rows, k), values)


def _ranked_list(
    values: np.ndarray, id_name: str, value_name: str, *, ascending: bool
) -> pa.ListArray:
    """Per row, a LIST of STRUCT(id (1-based), value) sorted by value."""
    rows, k = values.shape
    order = np.argsort(values if ascending else -values, axis=1, kind="stable")
    ranked = np.take_along_axis(values, order, axis=1)
    items = pa.StructArray.from_arrays(
        [pa.array(order.reshape(-1) + 1, pa.int64()), pa.array(ranked.reshape(-1), pa.float64())],
        names=[id_name, value_name],
    )
    return pa.ListArray.from_arrays(list_offsets(rows, k), items)
