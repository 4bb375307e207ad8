"""ML.DETECT_ANOMALIES for kmeans, pca and isolation_forest models."""

from __future__ import annotations

import re

import numpy as np
import pytest

import sqlml

COMPLETE = "(SELECT * FROM penguins WHERE sex IS NOT NULL)"  # 333 rows, no NULL
NUMERIC = "bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g"


def share(con: sqlml.Connection, sql: str) -> float:
    return con.sql(f"SELECT avg(is_anomaly::INT) FROM {sql}").fetchall()[0][0]


def test_kmeans_normalized_distance(con):
    con.sql(
        f"CREATE MODEL km OPTIONS (model_type = 'kmeans', num_clusters = 3) "
        f"AS SELECT {NUMERIC} FROM {COMPLETE}"
    )
    rows = con.sql(
        f"SELECT is_anomaly, normalized_distance, {NUMERIC} FROM "
        f"ML.DETECT_ANOMALIES(MODEL km, STRUCT(0.05 AS contamination), {COMPLETE})"
    ).fetchall()
    flagged = sum(r[0] for r in rows)
    assert abs(flagged - 0.05 * 333) <= 2  # the 95th percentile of the training rows
    # normalized_distance: the distance to each centroid over the root mean square distance
    # of that centroid's training rows, smallest over the centroids.
    predicted = con.sql(
        f"SELECT centroid_id, nearest_centroids_distance FROM ML.PREDICT(MODEL km, {COMPLETE})"
    ).fetchall()
    nearest = {}
    for cluster, distances in predicted:
        nearest.setdefault(cluster, []).append(distances[0]["distance"])
    scale = {c: np.sqrt(np.mean(np.square(d))) for c, d in nearest.items()}
    for (_, normalized, *_), (_, distances) in zip(rows, predicted, strict=True):
        expected = min(d["distance"] / scale[d["centroid_id"]] for d in distances)
        assert normalized == pytest.approx(expected, rel=1e-9)
    threshold = min(n for flag, n, *_ in rows if flag)
    assert all(n < threshold for flag, n, *_ in rows if not flag)


def test_pca_reconstruction_error(con):
    con.sql(
        f"CREATE MODEL pc OPTIONS (model_type = 'pca', num_principal_components = 2) "
        f"AS SELECT {NUMERIC} FROM {COMPLETE}"
    )
    rows = con.sql(
        f"SELECT is_anomaly, mean_squared_error FROM "
        f"ML.DETECT_ANOMALIES(MODEL pc, STRUCT(0.1 AS contamination), {COMPLETE})"
    ).fetchall()
    x = np.array(con.sql(f"SELECT {NUMERIC} FROM {COMPLETE}").fetchall(), dtype=float)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    _, vectors = np.linalg.eigh(np.cov(z, rowvar=False))
    top = vectors[:, ::-1][:, :2]
    rebuilt = z @ top @ top.T
    np.testing.assert_allclose(
        [r[1] for r in rows], np.mean((z - rebuilt) ** 2, axis=1), rtol=1e-7, atol=1e-12
    )
    assert abs(sum(r[0] for r in rows) - 33.3) <= 2


def test_isolation_forest_matches_scikit_learn(con):
    from sklearn.ensemble import IsolationForest

    con.sql(
        f"CREATE MODEL iso OPTIONS (model_type = 'isolation_forest', random_seed = 7) "
        f"AS SELECT {NUMERIC} FROM {COMPLETE}"
    )
    rows = con.sql(
        f"SELECT is_anomaly, anomaly_score FROM ML.DETECT_ANOMALIES(MODEL iso, {COMPLETE})"
    ).fetchall()
    x = np.array(con.sql(f"SELECT {NUMERIC} FROM {COMPLETE}").fetchall(), dtype=float)
    reference = IsolationForest(
        n_estimators=100, max_samples=256, contamination=0.1, random_state=7
    ).fit(x)
    np.testing.assert_allclose([r[1] for r in rows], -reference.score_samples(x), rtol=1e-5)
    assert [r[0] for r in rows] == list(reference.predict(x) == -1)
    assert abs(sum(r[0] for r in rows) - 33.3) <= 2  # contamination 0.1 by default
    # ML.PREDICT gives the same flags; a contamination overrides the model's own.
    predicted = con.sql(f"SELECT is_anomaly FROM ML.PREDICT(MODEL iso, {COMPLETE})").fetchall()
    assert [p[0] for p in predicted] == [r[0] for r in rows]
    assert share(
        con, f"ML.DETECT_ANOMALIES(MODEL iso, STRUCT(0.02 AS contamination), {COMPLETE})"
    ) == pytest.approx(0.02, abs=0.01)


def test_detect_anomalies_errors(con):
    con.sql(f"CREATE MODEL km OPTIONS (model_type = 'kmeans') AS SELECT {NUMERIC} FROM penguins")
    with pytest.raises(sqlml.ArgumentError, match=r"needs STRUCT\(<share> AS contamination\)"):
        con.sql("SELECT * FROM ML.DETECT_ANOMALIES(MODEL km, TABLE penguins)")
    with pytest.raises(sqlml.ArgumentError, match=r"contamination must be a number in \(0, 0.5\]"):
        con.sql(
            "SELECT * FROM ML.DETECT_ANOMALIES(MODEL km, STRUCT(0.7 AS contamination), "
            "TABLE penguins)"
        )
    with pytest.raises(sqlml.ArgumentError, match="needs input rows"):
        con.sql("SELECT * FROM ML.DETECT_ANOMALIES(MODEL km, STRUCT(0.1 AS contamination))")
    con.sql(
        "CREATE MODEL lin OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g']) "
        "AS SELECT body_mass_g, flipper_length_mm FROM penguins"
    )
    with pytest.raises(
        sqlml.ModelTypeError,
        match=re.escape("ML.DETECT_ANOMALIES applies to kmeans, pca and isolation"),
    ):
        con.sql(
            "SELECT * FROM ML.DETECT_ANOMALIES(MODEL lin, STRUCT(0.1 AS contamination), "
            "TABLE penguins)"
        )
