"""An independent, hand-written version of sqlml's automatic preprocessing, in pandas and
NumPy, to check sqlml's models against scikit-learn estimators fitted by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd


def design_matrix(
    train: pd.DataFrame,
    data: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    standardize: bool,
    float32: bool = False,
    order: list[str] | None = None,
) -> np.ndarray:
    """Columns in ``order`` (default: numeric then categorical); numeric: NULL -> mean of
    ``train`` (then standardized with the population std); categorical: one column per
    value seen in ``train`` (sorted, NULL last)."""
    blocks = []
    for name in order or numeric + categorical:
        if name in numeric:
            values = train[name].astype("float64")
            mean = values.mean()
            column = data[name].astype("float64").fillna(mean).to_numpy()
            if standardize:
                std = values.fillna(mean).to_numpy().std()
                column = (column - mean) / (std if std > 0 else 1.0)
            blocks.append(column.reshape(-1, 1))
        else:
            seen = train[name].astype(object).where(train[name].notna(), None)
            categories = sorted({v for v in seen if v is not None})
            has_null = any(v is None for v in seen)
            values = data[name].astype(object).where(data[name].notna(), None)
            for category in categories:
                blocks.append(np.array([v == category for v in values], float).reshape(-1, 1))
            if has_null:
                blocks.append(np.array([v is None for v in values], float).reshape(-1, 1))
    matrix = np.hstack(blocks)
    return matrix.astype(np.float32).astype(np.float64) if float32 else matrix
