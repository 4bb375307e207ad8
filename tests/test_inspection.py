"""What a model says about itself: ML.FEATURE_INFO, ML.WEIGHTS, ML.FEATURE_IMPORTANCE,
ML.TRAINING_INFO, ML.CENTROIDS, ML.PRINCIPAL_COMPONENTS, ML.PRINCIPAL_COMPONENT_INFO;
each checked against an answer computed another way."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import sqlml

LABELLED = "(SELECT * FROM penguins WHERE body_mass_g IS NOT NULL)"
COMPLETE = "(SELECT * FROM penguins WHERE sex IS NOT NULL)"  # no NULL anywhere: 333 rows


def test_feature_info_matches_duckdb_aggregates(con):
    con.sql(
        f"""CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
            AS SELECT body_mass_g, bill_length_mm, flipper_length_mm, island, sex
            FROM {LABELLED}"""
    )
    info = {r[0]: r[1:] for r in con.sql("SELECT * FROM ML.FEATURE_INFO(MODEL m)").fetchall()}
    assert list(info) == ["bill_length_mm", "flipper_length_mm", "island", "sex"]
    for column in ("bill_length_mm", "flipper_length_mm"):
        expected = con.sql(
            f"""SELECT min({column}), max({column}), avg({column}), median({column}),
                       stddev_samp({column}), NULL, count(*) - count({column}), 1
                FROM {LABELLED}"""
        ).fetchall()[0]
        np.testing.assert_allclose(
            np.array(info[column], dtype=float), np.array(expected, dtype=float), rtol=1e-12
        )
    # Text: distinct values and NULLs; one dimension per category (NULL is one for sex).
    assert info["island"][5:] == (3, 0, 3)
    assert info["sex"][5:] == (2, 9, 3)


def test_weights_rebuild_the_predictions(con):
    con.sql(
        f"""CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
            AS SELECT body_mass_g, flipper_length_mm, bill_depth_mm, island FROM {COMPLETE}"""
    )
    weights = {
        name: (weight, {c["category"]: c["weight"] for c in categories})
        for name, weight, categories in con.sql("SELECT * FROM ML.WEIGHTS(MODEL m)").fetchall()
    }
    assert list(weights) == ["flipper_length_mm", "bill_depth_mm", "island", "__INTERCEPT__"]
    rows = con.sql(
        f"SELECT flipper_length_mm, bill_depth_mm, island, predicted_body_mass_g "
        f"FROM ML.PREDICT(MODEL m, {COMPLETE})"
    ).fetchall()
    for flipper, depth, island, predicted in rows:
        rebuilt = (
            weights["__INTERCEPT__"][0]
            + weights["flipper_length_mm"][0] * flipper
            + weights["bill_depth_mm"][0] * depth
            + weights["island"][1][island]
        )
        assert rebuilt == pytest.approx(predicted, rel=1e-9)
    # Standardized: each weight times the input's (population) standard deviation.
    standardized = dict(
        (name, weight)
        for name, weight, _ in con.sql(
            "SELECT * FROM ML.WEIGHTS(MODEL m, STRUCT(TRUE AS standardize))"
        ).fetchall()
    )
    std = con.sql(f"SELECT stddev_pop(flipper_length_mm) FROM {COMPLETE}").fetchall()[0][0]
    assert standardized["flipper_length_mm"] == pytest.approx(
        weights["flipper_length_mm"][0] * std, rel=1e-9
    )


def test_weights_of_a_multiclass_model_per_class(con):
    con.sql(
        """CREATE MODEL s OPTIONS (model_type = 'logistic_reg', input_label_cols = ['species'])
           AS SELECT species, bill_length_mm, flipper_length_mm FROM penguins"""
    )
    rows = con.sql("SELECT class_label, processed_input FROM ML.WEIGHTS(MODEL s)").fetchall()
    assert rows == [
        (c, f) for c in ("Adelie", "Chinstrap", "Gentoo")
        for f in ("bill_length_mm", "flipper_length_mm", "__INTERCEPT__")
    ]  # fmt: skip


@pytest.mark.parametrize("method", ["hist", "exact"])
def test_feature_importance_of_a_stump(con, method):
    """One tree of one split: importance_weight 1 on the feature split, cover the training
    rows, gain the reduction of the squared error, recomputed from the predictions."""
    extra = ", l2_reg = 0" if method == "hist" else ", subsample = 1.0"
    con.sql(
        f"""CREATE MODEL stump OPTIONS (model_type = 'boosted_tree_regressor',
                input_label_cols = ['body_mass_g'], max_iterations = 1, max_tree_depth = 1,
                learn_rate = 1.0, early_stop = FALSE, tree_method = '{method}' {extra})
            AS SELECT body_mass_g, flipper_length_mm, bill_depth_mm FROM {LABELLED}"""
    )
    rows = con.sql("SELECT * FROM ML.FEATURE_IMPORTANCE(MODEL stump)").fetchall()
    assert [r[:2] for r in rows] == [("flipper_length_mm", 1), ("bill_depth_mm", 0)]
    reduction = con.sql(
        f"""WITH p AS (SELECT body_mass_g AS y, predicted_body_mass_g AS side
                       FROM ML.PREDICT(MODEL stump, {LABELLED}))
            SELECT (SELECT sum(pow(y - (SELECT avg(y) FROM p), 2)) FROM p)
                   - sum(pow(y - mean_y, 2))
            FROM (SELECT y, avg(y) OVER (PARTITION BY side) AS mean_y FROM p)"""
    ).fetchall()[0][0]
    assert rows[0][2] == pytest.approx(reduction, rel=1e-6)
    assert rows[0][3] == 342


def test_feature_importance_ranks_what_matters(con):
    con.sql(
        f"""CREATE MODEL forest OPTIONS (model_type = 'random_forest_regressor',
                input_label_cols = ['body_mass_g'], num_parallel_tree = 20)
            AS SELECT body_mass_g, species, flipper_length_mm, year FROM {LABELLED}"""
    )
    rows = con.sql(
        "SELECT feature, importance_weight * importance_gain AS total "
        "FROM ML.FEATURE_IMPORTANCE(MODEL forest) ORDER BY total DESC"
    ).fetchall()
    assert rows[-1][0] == "year"  # the year a penguin was measured says least about its mass


def test_training_info_per_boosting_round(con):
    con.sql(
        f"""CREATE MODEL b OPTIONS (model_type = 'boosted_tree_regressor',
                input_label_cols = ['body_mass_g'], max_iterations = 15, learn_rate = 0.3,
                early_stop = FALSE, data_split_method = 'random', data_split_eval_fraction = 0.25)
            AS SELECT body_mass_g, flipper_length_mm, species, sex FROM {LABELLED}"""
    )
    rows = con.sql("SELECT * FROM ML.TRAINING_INFO(MODEL b) ORDER BY iteration").fetchall()
    assert [r[1] for r in rows] == list(range(15))
    losses = [r[2] for r in rows]
    assert all(a >= b for a, b in itertools.pairwise(losses))  # training loss falls
    assert all(r[3] is not None for r in rows)  # an evaluation loss every round
    assert {r[4] for r in rows} == {0.3}
    # The last training loss is the mean squared error on the training rows; the last
    # evaluation loss the one ML.EVALUATE reports for the held-out rows.
    mse = con.sql("SELECT mean_squared_error FROM ML.EVALUATE(MODEL b)").fetchall()[0][0]
    assert rows[-1][3] == pytest.approx(mse, rel=1e-5)


def test_dnn_regressor_learns_a_label_in_the_thousands(con):
    """With its defaults, the network is fitted on the standardized label and scaled back
    (it reached ~25 g of penguins' ~4,200 g before: r2 -27). Its loss curve is in the
    label's units: half the squared error, about half ML.EVALUATE's on the training rows."""
    con.sql(
        f"""CREATE MODEL d OPTIONS (model_type = 'dnn_regressor', input_label_cols = ['body_mass_g'],
                data_split_method = 'no_split')
            AS SELECT body_mass_g, flipper_length_mm, bill_length_mm, species, sex FROM {LABELLED}"""
    )
    r2, mse = con.sql("SELECT r2_score, mean_squared_error FROM ML.EVALUATE(MODEL d)").fetchall()[0]
    assert r2 > 0.8
    mean = con.sql(
        f"SELECT avg(predicted_body_mass_g) / avg(body_mass_g) FROM ML.PREDICT(MODEL d, {LABELLED})"
    ).fetchall()[0][0]
    assert mean == pytest.approx(1.0, abs=0.01)
    last = con.sql(
        "SELECT loss FROM ML.TRAINING_INFO(MODEL d) ORDER BY iteration DESC LIMIT 1"
    ).fetchall()[0][0]
    assert 0.5 * mse / 1.5 < last < 0.5 * mse * 1.5


@pytest.mark.parametrize("model_type", ["boosted_tree_regressor", "dnn_regressor"])
def test_early_stop_and_min_rel_progress(con, model_type):
    def rounds(options: str) -> int:
        con.sql(
            f"""CREATE OR REPLACE MODEL e OPTIONS (model_type = '{model_type}',
                    input_label_cols = ['body_mass_g'], max_iterations = 60, {options})
                AS SELECT body_mass_g, flipper_length_mm, species, sex FROM {LABELLED}"""
        )
        return con.sql("SELECT count(*) FROM ML.TRAINING_INFO(MODEL e)").fetchall()[0][0]

    everything = rounds("early_stop = FALSE")
    fine = rounds("early_stop = TRUE, min_rel_progress = 0.001")
    coarse = rounds("early_stop = TRUE, min_rel_progress = 0.05")
    assert everything == 60
    assert coarse < fine <= everything


def test_centroids_are_the_mean_of_their_rows(con):
    con.sql(
        f"""CREATE MODEL km OPTIONS (model_type = 'kmeans', num_clusters = 3, max_iterations = 100)
            AS SELECT bill_length_mm, flipper_length_mm FROM {COMPLETE}"""
    )
    centroids = con.sql(
        "SELECT centroid_id, feature, numerical_value FROM ML.CENTROIDS(MODEL km) ORDER BY ALL"
    ).fetchall()
    means = con.sql(
        f"""SELECT centroid_id, avg(bill_length_mm), avg(flipper_length_mm)
            FROM ML.PREDICT(MODEL km, {COMPLETE}) GROUP BY ALL ORDER BY 1"""
    ).fetchall()
    expected = sorted(
        (c, f, v)
        for c, bill, flipper in means
        for f, v in (("bill_length_mm", bill), ("flipper_length_mm", flipper))
    )
    assert [r[:2] for r in centroids] == [r[:2] for r in expected]
    np.testing.assert_allclose([r[2] for r in centroids], [r[2] for r in expected], rtol=1e-6)


def test_principal_components_are_the_correlation_eigenvectors(con):
    columns = "bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g"
    con.sql(
        f"""CREATE MODEL pc OPTIONS (model_type = 'pca', num_principal_components = 3)
            AS SELECT {columns} FROM {COMPLETE}"""
    )
    x = np.array(con.sql(f"SELECT {columns} FROM {COMPLETE}").fetchall(), dtype=float)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(z, rowvar=False))
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]

    info = con.sql("SELECT * FROM ML.PRINCIPAL_COMPONENT_INFO(MODEL pc)").fetchall()
    assert [r[0] for r in info] == [1, 2, 3]
    np.testing.assert_allclose([r[1] for r in info], eigenvalues[:3], rtol=1e-9)
    ratios = eigenvalues / eigenvalues.sum()
    np.testing.assert_allclose([r[2] for r in info], ratios[:3], rtol=1e-9)
    np.testing.assert_allclose([r[3] for r in info], np.cumsum(ratios)[:3], rtol=1e-9)

    loadings = con.sql(
        "SELECT principal_component_id, numerical_value FROM ML.PRINCIPAL_COMPONENTS(MODEL pc)"
    ).fetchall()
    matrix = np.array([v for _, v in loadings]).reshape(3, 4)
    for k in range(3):  # an eigenvector is defined up to its sign
        assert abs(matrix[k] @ eigenvectors[:, k]) == pytest.approx(1.0, rel=1e-9)
    # ML.PREDICT projects the standardized rows on them.
    projected = np.array(
        con.sql(
            "SELECT principal_component_1, principal_component_2, principal_component_3 "
            f"FROM ML.PREDICT(MODEL pc, {COMPLETE})"
        ).fetchall()
    )
    np.testing.assert_allclose(projected, z @ matrix.T, atol=1e-9)
    total = con.sql("SELECT * FROM ML.EVALUATE(MODEL pc)").fetchall()[0][0]
    assert total == pytest.approx(np.cumsum(ratios)[2], rel=1e-9)


def test_explained_variance_ratio_picks_the_component_count(con):
    con.sql(
        f"""CREATE MODEL pc OPTIONS (model_type = 'pca', pca_explained_variance_ratio = 0.9)
            AS SELECT bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g
            FROM {COMPLETE}"""
    )
    info = con.sql("SELECT * FROM ML.PRINCIPAL_COMPONENT_INFO(MODEL pc)").fetchall()
    assert info[-1][3] >= 0.9 and (len(info) == 1 or info[-2][3] < 0.9)


@pytest.mark.parametrize(
    ("sql", "error", "message"),
    [
        (
            "SELECT * FROM ML.WEIGHTS(MODEL km)",
            sqlml.ModelTypeError,
            "ML.WEIGHTS applies to linear_reg and logistic_reg models; model main.km is a "
            "kmeans model",
        ),
        (
            "SELECT * FROM ML.FEATURE_IMPORTANCE(MODEL km)",
            sqlml.ModelTypeError,
            "ML.FEATURE_IMPORTANCE applies to boosted tree and random forest models",
        ),
        (
            "SELECT * FROM ML.PRINCIPAL_COMPONENTS(MODEL km)",
            sqlml.ModelTypeError,
            "ML.PRINCIPAL_COMPONENTS applies to pca models",
        ),
        (
            "SELECT * FROM ML.CENTROIDS(MODEL km, TABLE penguins)",
            sqlml.ArgumentError,
            "ML.CENTROIDS takes no input rows",
        ),
        (
            "SELECT * FROM ML.CENTROIDS(MODEL km, STRUCT(1 AS top_k))",
            sqlml.ArgumentError,
            "ML.CENTROIDS has no setting top_k; its settings: standardize",
        ),
        (
            "SELECT * FROM ML.FEATURE_INFO(MODEL nope)",
            sqlml.ModelNotFound,
            "Model main.nope does not exist. Models here: main.km",
        ),
    ],
)
def test_inspection_errors(con, sql, error, message):
    con.sql(
        "CREATE MODEL km OPTIONS (model_type = 'kmeans') AS SELECT bill_length_mm FROM penguins"
    )
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        con.sql(sql)
