"""The metrics ML.EVALUATE reports, with BigQuery ML's names.

Computed from the model's own outputs (what onnxruntime returns), both when a model is
trained (on the held-out rows) and when ML.EVALUATE is given data, so the two agree.
A metric that is undefined on the given rows (r2 with a constant label, roc_auc with one
class, msle with negative values) is NULL.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sqlml.families import (
    ANOMALY_DETECTION,
    CLASSIFICATION,
    CLUSTERING,
    DIMENSIONALITY_REDUCTION,
    REGRESSION,
)

METRICS = {
    REGRESSION: (
        "mean_absolute_error",
        "mean_squared_error",
        "mean_squared_log_error",
        "median_absolute_error",
        "r2_score",
        "explained_variance",
    ),
    CLASSIFICATION: ("precision", "recall", "accuracy", "f1_score", "log_loss", "roc_auc"),
    CLUSTERING: ("davies_bouldin_index", "mean_squared_distance"),
    DIMENSIONALITY_REDUCTION: ("total_explained_variance_ratio",),
    ANOMALY_DETECTION: ("anomaly_rate",),
}

Metrics = dict[str, float | None]


def regression(y: np.ndarray, predicted: np.ndarray) -> Metrics:
    error = y - predicted
    total = np.sum((y - y.mean()) ** 2)
    variance = np.var(y)
    msle = None
    if np.all(y >= 0) and np.all(predicted >= 0):
        msle = float(np.mean((np.log1p(y) - np.log1p(predicted)) ** 2))
    return {
        "mean_absolute_error": float(np.mean(np.abs(error))),
        "mean_squared_error": float(np.mean(error**2)),
        "mean_squared_log_error": msle,
        "median_absolute_error": float(np.median(np.abs(error))),
        "r2_score": float(1 - np.sum(error**2) / total) if total > 0 else None,
        "explained_variance": float(1 - np.var(error) / variance) if variance > 0 else None,
    }


def classification(y: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray) -> Metrics:
    """``y`` holds class indices (-1 for a label the model never saw), ``predicted`` the
    predicted indices. Binary models score the second class as the positive one; multiclass
    precision, recall, f1 and roc_auc are macro averages, as in BigQuery ML."""
    k = probabilities.shape[1]
    if k == 2:
        precision, recall, f1 = _precision_recall_f1(y, predicted, 1)
    else:
        present = np.union1d(y[y >= 0], predicted)
        scores = np.array([_precision_recall_f1(y, predicted, c) for c in present])
        precision, recall, f1 = (float(v) for v in scores.mean(axis=0))
    known = y >= 0
    return {
        "precision": precision,
        "recall": recall,
        "accuracy": float(np.mean(predicted == y)),
        "f1_score": f1,
        "log_loss": log_loss(y[known], probabilities[known]) if known.any() else None,
        "roc_auc": _roc_auc(y[known], probabilities[known]),
    }


def clustering(labels: np.ndarray, distances: np.ndarray, centroids: np.ndarray) -> Metrics:
    """Davies-Bouldin index over the model's centroids and the mean squared distance to the
    nearest centroid, both in the model's (standardized) feature space."""
    nearest = distances[np.arange(len(labels)), labels]
    present = np.unique(labels)
    index = None
    if len(present) >= 2:
        spread = np.array([nearest[labels == c].mean() for c in present])
        centers = centroids[present]
        separation = np.linalg.norm(centers[:, None, :] - centers[None, :, :], axis=2)
        with np.errstate(divide="ignore"):
            ratio = (spread[:, None] + spread[None, :]) / separation
        np.fill_diagonal(ratio, -np.inf)
        index = float(np.mean(ratio.max(axis=1)))
    return {
        "davies_bouldin_index": index,
        "mean_squared_distance": float(np.mean(nearest**2)),
    }


def _precision_recall_f1(y: np.ndarray, predicted: np.ndarray, c: int) -> tuple[float, ...]:
    tp = float(np.sum((predicted == c) & (y == c)))
    fp = float(np.sum((predicted == c) & (y != c)))
    fn = float(np.sum((predicted != c) & (y == c)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


# The smallest probability a log loss takes the log of: a saturated model (probabilities
# of exactly 0 and 1) costs -log(1e-15) ~ 34.5 per row it gets wrong. ML.TRAINING_INFO's
# losses, the tuning trials (inspection._loss) and streaming's progress clip at the same
# 1e-15, so they agree with ML.EVALUATE on the same rows.
LOG_LOSS_CLIP = 1e-15


def log_loss(y: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean negative log probability of each row's class (``y``: class indices, every one
    a column of ``probabilities``); each row's probabilities normalized to sum to 1, then
    clipped to [LOG_LOSS_CLIP, 1]."""
    p = probabilities / probabilities.sum(axis=1, keepdims=True)
    chosen = np.clip(p[np.arange(len(y)), y], LOG_LOSS_CLIP, 1.0)
    return float(-np.mean(np.log(chosen)))


def _roc_auc(y: np.ndarray, probabilities: np.ndarray) -> float | None:
    k = probabilities.shape[1]
    classes = [1] if k == 2 else range(k)
    aucs = [auc for c in classes if (auc := _binary_auc(y == c, probabilities[:, c])) is not None]
    return float(np.mean(aucs)) if aucs else None


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties averaged."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    # Start of each run of equal values, and the mean 1-based rank of the run.
    starts = np.r_[0, np.nonzero(np.diff(ordered))[0] + 1]
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def evaluate(
    task: str, outputs: dict[str, np.ndarray], y: np.ndarray | None, centroids: Any = None
) -> Metrics:
    """The task's metrics from the model outputs (see ``runtime.ModelRuntime.run``)."""
    if task == REGRESSION:
        assert y is not None
        return regression(y, outputs["prediction"])
    if task == CLASSIFICATION:
        assert y is not None
        return classification(y, outputs["label"], outputs["probabilities"])
    if task == ANOMALY_DETECTION:
        return {"anomaly_rate": float(np.mean(outputs["label"] == -1))}
    if task == DIMENSIONALITY_REDUCTION:
        raise AssertionError("pca metrics need the model matrix: metrics.explained_variance")
    return clustering(outputs["label"], outputs["distances"], np.asarray(centroids))


def explained_variance(x: np.ndarray, components: np.ndarray, mean: np.ndarray) -> Metrics:
    """The share of the variance of the (preprocessed) rows ``x`` that the components keep."""
    centered = x - mean
    total = float(np.sum(np.var(centered, axis=0)))
    kept = float(np.sum(np.var(centered @ components.T, axis=0)))
    return {"total_explained_variance_ratio": kept / total if total > 0 else None}
