"""Features: how each SQL column type becomes model input, and the preprocessing fitted on it.

The same facts (means, scales, categories) drive three things that must agree exactly:
the scikit-learn transformer used for training, the ONNX graph built in ``onnx_export``,
and the Arrow-to-NumPy feeding in ``runtime``.

- numeric (integers, decimals, floats): NULL and NaN become the training mean; standardized
  for the families that ask for it.
- VARCHAR, BOOLEAN, ENUM: one-hot; NULL is a category of its own; an unseen category
  encodes as all zeros.
- DATE and TIMESTAMP: numeric parts (Unix time, year, month, day, day of week, day of
  year, and for timestamps hour, minute, second, in UTC), then treated as numeric.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sqlml.errors import UnsupportedType

NUMERIC = "numeric"
CATEGORICAL = "categorical"
DATETIME = "datetime"

NUMERIC_TYPES = frozenset(
    {
        "tinyint", "smallint", "integer", "bigint", "hugeint",
        "utinyint", "usmallint", "uinteger", "ubigint", "uhugeint",
        "float", "double", "decimal",
    }
)  # fmt: skip
INTEGER_TYPES = NUMERIC_TYPES - {"float", "double", "decimal", "hugeint", "uhugeint"}
CATEGORICAL_TYPES = frozenset({"varchar", "boolean", "enum"})
DATE_TYPES = frozenset({"date"})
TIMESTAMP_TYPES = frozenset(
    {"timestamp", "timestamp with time zone", "timestamp_s", "timestamp_ms", "timestamp_ns"}
)

DATE_PARTS = ("unix_days", "year", "month", "day", "day_of_week", "day_of_year")
TIMESTAMP_PARTS = (
    "unix_seconds", "year", "month", "day", "day_of_week", "day_of_year",
    "hour", "minute", "second",
)  # fmt: skip

# How NULL travels in a string tensor (ONNX strings cannot be null).
NULL_TOKEN = "\x00"

# Doubles from this magnitude on round to infinity as float32 (the largest float32 is
# 2^128 - 2^104; halfway to 2^128 rounds to even, up).
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103


def type_id(sql_type: Any) -> str:
    """DuckDB's type id ('decimal', 'varchar', ...) of a DuckDBPyType or its string."""
    tid = getattr(sql_type, "id", None)
    if tid is not None:
        return str(tid)
    text = str(sql_type).lower()
    for prefix in ("decimal", "enum"):
        if text.startswith(prefix):
            return prefix
    return text


def kind_of(sql_type: Any) -> str | None:
    tid = type_id(sql_type)
    if tid in NUMERIC_TYPES:
        return NUMERIC
    if tid in CATEGORICAL_TYPES:
        return CATEGORICAL
    if tid in DATE_TYPES or tid in TIMESTAMP_TYPES:
        return DATETIME
    return None


@dataclass
class Feature:
    """One input column and, once fitted, its preprocessing."""

    name: str
    sql_type: str
    kind: str
    parts: list[str] = field(default_factory=list)
    # Fitted: imputation value and scale per numeric input column, categories (as the
    # strings the model sees; None stands for NULL).
    means: list[float] = field(default_factory=list)
    scales: list[float] | None = None
    categories: list[str | None] = field(default_factory=list)
    null_count: int = 0

    @classmethod
    def from_column(cls, name: str, sql_type: Any, *, model: str | None = None) -> Feature:
        kind = kind_of(sql_type)
        if kind is None:
            where = f" of model {model}" if model else ""
            raise UnsupportedType(
                f"Column {name!r}{where} has type {sql_type}, which sqlml cannot use as a "
                "feature. Supported: numbers, VARCHAR, BOOLEAN, ENUM, DATE and TIMESTAMP. "
                f"Leave it out of the query or convert it, e.g. CAST({name} AS VARCHAR)"
            )
        parts: list[str] = []
        if kind == DATETIME:
            parts = list(DATE_PARTS if type_id(sql_type) in DATE_TYPES else TIMESTAMP_PARTS)
        return cls(name=name, sql_type=str(sql_type), kind=kind, parts=parts)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Feature:
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def width(self) -> int:
        """Number of model columns this feature encodes to."""
        if self.kind == CATEGORICAL:
            return len(self.categories)
        return len(self.parts) if self.kind == DATETIME else 1

    @property
    def onnx_type(self) -> str:
        return "string" if self.kind == CATEGORICAL else "double"

    @property
    def input_width(self) -> int:
        """Columns of this feature's ONNX input tensor."""
        return len(self.parts) if self.kind == DATETIME else 1

    def encoded_names(self) -> list[str]:
        if self.kind == CATEGORICAL:
            return [f"{self.name}={'NULL' if c is None else c}" for c in self.categories]
        if self.kind == DATETIME:
            return [f"{self.name}.{part}" for part in self.parts]
        return [self.name]

    def describe(self) -> str:
        """How the column is preprocessed, in words (DESCRIBE MODEL)."""
        if self.kind == CATEGORICAL:
            shown = ", ".join("NULL" if c is None else repr(c) for c in self.categories[:8])
            more = f", ... ({len(self.categories)} in all)" if len(self.categories) > 8 else ""
            return (
                f"one-hot over {len(self.categories)} categories ({shown}{more}); NULL is a "
                "category; unseen values encode as zeros"
            )
        scaled = "; standardized" if self.scales is not None else ""
        if self.kind == DATETIME:
            return f"parts {', '.join(self.parts)} (UTC); NULL -> training mean{scaled}"
        mean = f" {self.means[0]:.6g}" if self.means else ""
        return f"NULL -> training mean{mean}{scaled}"


# -- Arrow to NumPy -------------------------------------------------------------------------


def numeric_values(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float64 values, NaN for NULL."""
    if array.type != pa.float64():
        array = pc.cast(array, pa.float64())
    if array.null_count:
        array = pc.fill_null(array, float("nan"))
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)


def out_of_range(array: pa.Array | pa.ChunkedArray, limit: float = math.inf) -> int:
    """How many values of a numeric column are infinite, or with a finite ``limit`` at least
    that large in magnitude (NULL and NaN never are). Only floating-point columns can hold
    such values; one min/max pass over them, a count only when there are any."""
    if not pa.types.is_floating(array.type) or len(array) == 0:
        return 0
    extremes = pc.min_max(array)
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    if low is None or not (high >= limit or low <= -limit):  # NaN compares False
        return 0
    return pc.sum(pc.greater_equal(pc.abs(array), limit)).as_py() or 0


def encoded_width(features: list[Feature], table: Any) -> int:
    """Columns of the model matrix ``features`` encode the rows of ``table`` to (anything
    with ``column(name)``): before fitting, counting each categorical column's distinct
    values (NULL included) as the fitted one-hot encoding will."""
    width = 0
    for feature in features:
        if feature.kind == CATEGORICAL:
            width += len(pc.unique(string_values(table.column(feature.name))))
        else:
            width += feature.input_width
    return width


def string_values(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The values as strings the model sees (booleans as 'true'/'false'), NULL_TOKEN for NULL."""
    return pc.fill_null(pc.cast(array, pa.string()), NULL_TOKEN)


def category_codes(array: pa.Array | pa.ChunkedArray, categories: pa.Array) -> np.ndarray:
    """int64 position of each value in ``categories`` (which may hold a null: the NULL
    category), -1 for a value never seen in training."""
    if not pa.types.is_string(array.type):
        array = pc.cast(array, pa.string())  # ENUM, BOOLEAN ('true'/'false')
    codes = pc.index_in(array, value_set=categories, skip_nulls=False)
    return np.asarray(pc.fill_null(codes, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def datetime_values(array: pa.Array | pa.ChunkedArray, parts: list[str]) -> np.ndarray:
    """(rows, parts) float64 matrix of date/time parts in UTC, NaN for NULL."""
    arrow_type = array.type
    if pa.types.is_date(arrow_type):
        epoch = pc.divide(pc.cast(pc.cast(array, pa.date32()), pa.int32()), 1.0)
        moments = array
    else:
        if arrow_type.tz is not None:  # stored as UTC instants: dropping the zone keeps UTC
            array = pc.cast(array, pa.timestamp(arrow_type.unit))
        moments = array
        epoch = pc.divide(pc.cast(pc.cast(array, pa.timestamp("us")), pa.int64()), 1e6)
    compute = {
        "unix_days": lambda: epoch,
        "unix_seconds": lambda: epoch,
        "year": lambda: pc.year(moments),
        "month": lambda: pc.month(moments),
        "day": lambda: pc.day(moments),
        "day_of_week": lambda: pc.day_of_week(moments, count_from_zero=False, week_start=1),
        "day_of_year": lambda: pc.day_of_year(moments),
        "hour": lambda: pc.hour(moments),
        "minute": lambda: pc.minute(moments),
        "second": lambda: pc.second(moments),
    }
    return np.column_stack([numeric_values(compute[part]()) for part in parts])


def input_values(feature: Feature, array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The ONNX input tensor of one feature: (rows, width) float64 or object strings."""
    if feature.kind == NUMERIC:
        return numeric_values(array).reshape(-1, 1)
    if feature.kind == DATETIME:
        return datetime_values(array, feature.parts)
    strings = string_values(array).to_numpy(zero_copy_only=False)
    return strings.astype(object).reshape(-1, 1)


def numeric_matrix(feature: Feature, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if feature.kind == DATETIME:
        return datetime_values(column, feature.parts)
    return numeric_values(column).reshape(-1, 1)


def encode(feature: Feature, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if feature.kind == CATEGORICAL:
        strings = string_values(column)
        cats = pa.array([NULL_TOKEN if c is None else c for c in feature.categories], pa.string())
        codes = pc.fill_null(pc.index_in(strings, value_set=cats), -1)
        codes = np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.int64)
        out = np.zeros((len(codes), len(feature.categories)), dtype=np.float64)
        rows = np.nonzero(codes >= 0)[0]
        out[rows, codes[rows]] = 1.0
        return out
    matrix = numeric_matrix(feature, column)
    means = np.asarray(feature.means)
    matrix = np.where(np.isnan(matrix), means, matrix)
    if feature.scales is not None:
        matrix = (matrix - means) / np.asarray(feature.scales)
    return matrix


def matrix(features: list[Feature], table: Any, float32: bool = False) -> np.ndarray:
    """The model matrix of fitted ``features`` for the rows of ``table`` (anything with
    ``num_rows`` and ``column(name)``), filled feature by feature so that the only other
    copy alive is one feature's block."""
    out = np.empty((table.num_rows, sum(f.width for f in features)), dtype=np.float64)
    position = 0
    for feature in features:
        block = encode(feature, table.column(feature.name))
        if float32:
            # What the ONNX graph's Cast to float32 makes, so trees see the same values
            # (beyond float32's range: +-infinity, as intended).
            with np.errstate(over="ignore"):
                block = block.astype(np.float32)
        out[:, position : position + feature.width] = block
        position += feature.width
    return out
