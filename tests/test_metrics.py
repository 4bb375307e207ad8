"""sqlml's metrics against scikit-learn's on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from sqlml import metrics


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def test_regression(rng):
    y = rng.gamma(2.0, 3.0, 500)
    predicted = np.abs(y + rng.normal(0, 1.5, 500))
    got = metrics.regression(y, predicted)
    assert got == pytest.approx(
        {
            "mean_absolute_error": sk.mean_absolute_error(y, predicted),
            "mean_squared_error": sk.mean_squared_error(y, predicted),
            "mean_squared_log_error": sk.mean_squared_log_error(y, predicted),
            "median_absolute_error": sk.median_absolute_error(y, predicted),
            "r2_score": sk.r2_score(y, predicted),
            "explained_variance": sk.explained_variance_score(y, predicted),
        },
        rel=1e-12,
    )
    # Undefined metrics are NULL, not an error.
    assert metrics.regression(y - 10, predicted)["mean_squared_log_error"] is None
    constant = metrics.regression(np.full(5, 2.0), np.arange(5.0))
    assert constant["r2_score"] is None and constant["explained_variance"] is None


def test_binary_classification(rng):
    y = rng.integers(0, 2, 400)
    p1 = np.clip(0.3 * y + rng.random(400) * 0.7, 0, 1)
    p1[:50] = 0.5  # ties
    probabilities = np.column_stack([1 - p1, p1])
    predicted = probabilities.argmax(axis=1)
    got = metrics.classification(y, predicted, probabilities)
    assert got == pytest.approx(
        {
            "precision": sk.precision_score(y, predicted),
            "recall": sk.recall_score(y, predicted),
            "accuracy": sk.accuracy_score(y, predicted),
            "f1_score": sk.f1_score(y, predicted),
            "log_loss": sk.log_loss(y, probabilities),
            "roc_auc": sk.roc_auc_score(y, p1),
        },
        rel=1e-12,
    )


def test_multiclass_classification_is_macro_averaged(rng):
    y = rng.integers(0, 4, 600)
    raw = rng.random((600, 4)) + np.eye(4)[y] * 0.8
    probabilities = raw / raw.sum(axis=1, keepdims=True)
    predicted = probabilities.argmax(axis=1)
    got = metrics.classification(y, predicted, probabilities)
    assert got == pytest.approx(
        {
            "precision": sk.precision_score(y, predicted, average="macro"),
            "recall": sk.recall_score(y, predicted, average="macro"),
            "accuracy": sk.accuracy_score(y, predicted),
            "f1_score": sk.f1_score(y, predicted, average="macro"),
            "log_loss": sk.log_loss(y, probabilities),
            "roc_auc": sk.roc_auc_score(y, probabilities, multi_class="ovr", average="macro"),
        },
        rel=1e-12,
    )


def test_labels_the_model_never_saw_count_as_errors(rng):
    y = np.array([0, 1, 1, -1, 0, 1])  # -1: a label outside the model's classes
    probabilities = np.array(
        [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5], [0.3, 0.7], [0.1, 0.9]]
    )
    predicted = probabilities.argmax(axis=1)
    got = metrics.classification(y, predicted, probabilities)
    assert got["accuracy"] == pytest.approx(3 / 6)
    known = y >= 0
    assert got["log_loss"] == pytest.approx(sk.log_loss(y[known], probabilities[known]))
    assert got["roc_auc"] == pytest.approx(sk.roc_auc_score(y[known], probabilities[known, 1]))
    assert (
        metrics.classification(np.zeros(3, int), np.zeros(3, int), np.full((3, 2), 0.5))["roc_auc"]
        is None
    )


def test_clustering_matches_davies_bouldin_at_the_cluster_means(rng):
    x = np.vstack([rng.normal(c, 1.0, (100, 3)) for c in (0, 4, 9)])
    labels = np.repeat([0, 1, 2], 100)
    centroids = np.array([x[labels == c].mean(axis=0) for c in range(3)])
    distances = np.linalg.norm(x[:, None, :] - centroids[None, :, :], axis=2)
    got = metrics.clustering(labels, distances, centroids)
    assert got["davies_bouldin_index"] == pytest.approx(
        sk.davies_bouldin_score(x, labels), rel=1e-12
    )
    assert got["mean_squared_distance"] == pytest.approx(
        np.mean(distances[np.arange(300), labels] ** 2), rel=1e-12
    )
