"""The scikit-learn transformer that fits and applies the preprocessing of ``features``.

Imported only when a model trains (it imports scikit-learn).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.base import BaseEstimator, TransformerMixin

from sqlml.errors import DataError
from sqlml.features import (
    CATEGORICAL,
    NULL_TOKEN,
    Feature,
    matrix,
    numeric_matrix,
    string_values,
)

# One-hot encoding is dense; refuse a training matrix larger than this.
MAX_MATRIX_BYTES = 4 * 2**30


@dataclass
class RowSelection:
    """Some rows of an Arrow table, taken a column at a time when asked for: training on
    all but the held-out rows without copying the whole table first."""

    table: pa.Table
    rows: np.ndarray

    @property
    def num_rows(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name).take(pa.array(self.rows))


class FeaturePreprocessor(TransformerMixin, BaseEstimator):
    """Arrow table of raw columns -> float64 model matrix.

    ``fit`` computes means, scales and categories into ``features_``; ``transform`` applies
    them exactly as the ONNX graph does.
    """

    def __init__(self, features: list[Feature], standardize: bool = False, float32: bool = False):
        self.features = features
        self.standardize = standardize
        self.float32 = float32

    @classmethod
    def fitted(
        cls, features: list[Feature], standardize: bool, float32: bool
    ) -> FeaturePreprocessor:
        """A preprocessor whose statistics were computed elsewhere (streaming training)."""
        preprocessor = cls(features=features, standardize=standardize, float32=float32)
        preprocessor.features_ = features
        preprocessor.n_features_out_ = sum(f.width for f in features)
        return preprocessor

    def fit(self, X: pa.Table | RowSelection, y: Any = None) -> FeaturePreprocessor:
        fitted = copy.deepcopy(self.features)
        for feature in fitted:
            column = X.column(feature.name)
            feature.null_count = column.null_count
            if feature.kind == CATEGORICAL:
                values = pc.unique(string_values(column)).to_pylist()
                feature.categories = sorted(
                    (None if v == NULL_TOKEN else v for v in values),
                    key=lambda v: (v is None, v),
                )
                continue
            matrix = numeric_matrix(feature, column)
            missing = np.isnan(matrix)
            counts = (~missing).sum(axis=0)
            sums = np.where(missing, 0.0, matrix).sum(axis=0)
            means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
            feature.means = [float(m) for m in means]
            if self.standardize:
                scales = np.where(missing, means, matrix).std(axis=0)
                feature.scales = [float(s) if np.isfinite(s) and s > 0 else 1.0 for s in scales]
        width = sum(f.width for f in fitted)
        if X.num_rows * width * 8 > MAX_MATRIX_BYTES:
            widest = max(fitted, key=lambda f: f.width)
            raise DataError(
                f"The training matrix would be {X.num_rows:,} rows x {width:,} columns "
                f"({X.num_rows * width * 8 / 2**30:.1f} GiB); column {widest.name!r} alone "
                f"one-hot encodes to {widest.width:,} columns. Leave identifier-like columns "
                "out of the training query, or group rare values before training"
            )
        self.features_ = fitted
        self.n_features_out_ = width
        return self

    def transform(self, X: pa.Table | RowSelection) -> np.ndarray:
        return matrix(self.features_, X, self.float32)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array([n for f in self.features_ for n in f.encoded_names()], dtype=object)
