"""Every model type end to end on real data: CREATE MODEL, ML.EVALUATE, ML.PREDICT and the
model's SQL function, checked against scikit-learn fitted by hand on the same rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import cluster, ensemble, linear_model, metrics

import sqlml
from tests.conftest import PENGUIN_FEATURES, load_breast_cancer
from tests.reference import design_matrix

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
CATEGORICAL = ["island", "sex"]


def penguins_frame(con: sqlml.Connection, where: str = "true") -> pd.DataFrame:
    return con.sql(f"SELECT * FROM penguins WHERE {where}").df()


def predictions(con: sqlml.Connection, model: str, column: str) -> np.ndarray:
    rows = con.sql(f"SELECT {column} FROM ML.PREDICT(MODEL {model}, TABLE penguins)").fetchall()
    return np.array([r[0] for r in rows])


def test_linear_reg_matches_least_squares_by_hand(con):
    con.sql(
        """CREATE MODEL mass OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
           AS SELECT * FROM penguins WHERE body_mass_g IS NOT NULL"""
    )
    train = penguins_frame(con, "body_mass_g IS NOT NULL")
    features = [c for c in train.columns if c != "body_mass_g"]
    numeric = [c for c in features if c in NUMERIC]
    categorical = [c for c in features if c not in NUMERIC]
    everything = penguins_frame(con)
    x_train = design_matrix(train, train, numeric, categorical, standardize=True, order=features)
    x_all = design_matrix(train, everything, numeric, categorical, standardize=True, order=features)
    coef, *_ = np.linalg.lstsq(
        np.hstack([x_train, np.ones((len(x_train), 1))]), train["body_mass_g"], rcond=None
    )
    expected = np.hstack([x_all, np.ones((len(x_all), 1))]) @ coef

    got = predictions(con, "mass", "predicted_body_mass_g")
    np.testing.assert_allclose(got, expected, rtol=1e-9)

    # 342 rows < 500: AUTO_SPLIT holds nothing out; the stored metrics are on training rows.
    stored = con.sql("SELECT * FROM ML.EVALUATE(MODEL mass)").df().iloc[0]
    fitted = got[everything["body_mass_g"].notna().to_numpy()]
    y = train["body_mass_g"].to_numpy(float)
    assert stored["r2_score"] == pytest.approx(metrics.r2_score(y, fitted), rel=1e-9)
    assert stored["mean_absolute_error"] == pytest.approx(
        metrics.mean_absolute_error(y, fitted), rel=1e-9
    )
    assert stored["mean_squared_log_error"] == pytest.approx(
        metrics.mean_squared_log_error(y, fitted), rel=1e-9
    )
    assert stored["median_absolute_error"] == pytest.approx(
        metrics.median_absolute_error(y, fitted), rel=1e-9
    )
    assert stored["explained_variance"] == pytest.approx(
        metrics.explained_variance_score(y, fitted), rel=1e-9
    )
    assert 0.85 < stored["r2_score"] < 0.9  # body mass from the other measurements

    # The model function gives the same numbers, called by columns or with the whole row.
    by_columns = con.sql(
        "SELECT mass(species, island, bill_length_mm, bill_depth_mm, flipper_length_mm, sex, year) "
        "FROM penguins"
    ).fetchall()
    by_row = con.sql("SELECT mass(p) FROM penguins AS p").fetchall()
    np.testing.assert_allclose([r[0] for r in by_columns], expected, rtol=1e-9)
    assert by_row == by_columns


def test_logistic_reg_matches_sklearn_by_hand(con):
    con.sql(
        """CREATE MODEL species OPTIONS (model_type = 'logistic_reg', input_label_cols = ['species'],
                                          l2_reg = 0.5)
           AS SELECT * FROM penguins"""
    )
    train = penguins_frame(con)
    x = design_matrix(train, train, NUMERIC, CATEGORICAL, standardize=True, order=PENGUIN_FEATURES)
    # l2_reg is on the sum of losses: C = 1 / (2 * l2_reg).
    reference = linear_model.LogisticRegression(C=1.0, max_iter=100, random_state=0).fit(
        x, train["species"]
    )
    expected = reference.predict_proba(x)

    rows = con.sql(
        "SELECT predicted_species, predicted_species_probs FROM ML.PREDICT(MODEL species, TABLE penguins)"
    ).fetchall()
    probs = np.array([[item["prob"] for item in r[1]] for r in rows])
    assert [item["label"] for item in rows[0][1]] == ["Adelie", "Chinstrap", "Gentoo"]
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    assert [r[0] for r in rows] == list(reference.predict(x))

    stored = con.sql("SELECT * FROM ML.EVALUATE(MODEL species)").df().iloc[0]
    y = train["species"].to_numpy()
    predicted = np.array([r[0] for r in rows])
    assert stored["accuracy"] == pytest.approx(metrics.accuracy_score(y, predicted))
    assert stored["precision"] == pytest.approx(
        metrics.precision_score(y, predicted, average="macro")
    )
    assert stored["recall"] == pytest.approx(metrics.recall_score(y, predicted, average="macro"))
    assert stored["f1_score"] == pytest.approx(metrics.f1_score(y, predicted, average="macro"))
    assert stored["log_loss"] == pytest.approx(metrics.log_loss(y, probs), rel=1e-6)
    assert stored["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    )

    # <name>_probs gives the same list; the label function the same class.
    funcs = con.sql("SELECT species(p), species_probs(p) FROM penguins p").fetchall()
    assert [(a, b) for a, b in funcs] == rows


def test_boosted_tree_classifier_on_held_out_rows():
    con = sqlml.connect()
    load_breast_cancer(con)
    con.sql(
        """CREATE MODEL cancer OPTIONS (model_type = 'boosted_tree_classifier',
                                         input_label_cols = ['diagnosis'])
           AS SELECT * FROM breast_cancer"""
    )
    description = dict(
        (name, value)
        for section, name, value in con.sql("DESCRIBE MODEL cancer").fetchall()
        if section == "training"
    )
    # 569 rows: AUTO_SPLIT holds out 20%.
    assert description["rows_train"] == "455"
    assert description["rows_eval"] == "114"

    frame = con.sql("SELECT * FROM breast_cancer").df()
    features = [c for c in frame.columns if c != "diagnosis"]
    held_out = np.zeros(len(frame), bool)
    held_out[np.random.default_rng(0).permutation(len(frame))[:114]] = True
    train, test = frame[~held_out], frame[held_out]
    x_train = design_matrix(train, train, features, [], standardize=False, float32=True)
    x_test = design_matrix(train, test, features, [], standardize=False, float32=True)
    y_train = (train["diagnosis"] == "malignant").astype(int)  # classes sorted: benign, malignant
    prior = y_train.mean()
    baseline = -(prior * math.log(prior) + (1 - prior) * math.log(1 - prior))
    reference = ensemble.HistGradientBoostingClassifier(
        learning_rate=0.3, max_iter=20, max_depth=6, max_leaf_nodes=None, min_samples_leaf=1,
        l2_regularization=1.0, early_stopping=True, validation_fraction=None,
        n_iter_no_change=1, tol=0.01 * baseline, random_state=0,
    ).fit(x_train, y_train)  # fmt: skip
    expected = reference.predict_proba(x_test)[:, 1]

    stored = con.sql("SELECT * FROM ML.EVALUATE(MODEL cancer)").df().iloc[0]
    assert stored["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(test["diagnosis"] == "malignant", expected), abs=1e-6
    )
    assert stored["accuracy"] > 0.9

    # The same metrics when the held-out rows are given explicitly.
    con.duckdb.register("test_rows", test)
    given = con.sql("SELECT * FROM ML.EVALUATE(MODEL cancer, TABLE test_rows)").df().iloc[0]
    pd.testing.assert_series_equal(given, stored, rtol=1e-12)
    con.close()


def test_boosted_tree_regressor_matches_sklearn_by_hand(con):
    con.sql(
        """CREATE MODEL mass OPTIONS (model_type = 'boosted_tree_regressor',
                                       input_label_cols = ['body_mass_g'], max_iterations = 30,
                                       early_stop = FALSE, max_tree_depth = 3)
           AS SELECT * EXCLUDE (species) FROM penguins WHERE body_mass_g IS NOT NULL"""
    )
    train = penguins_frame(con, "body_mass_g IS NOT NULL")
    features = [c for c in PENGUIN_FEATURES if c != "body_mass_g"]
    numeric = [c for c in features if c in NUMERIC]
    x = design_matrix(train, train, numeric, CATEGORICAL, standardize=False, float32=True,
                      order=features)  # fmt: skip
    reference = ensemble.HistGradientBoostingRegressor(
        learning_rate=0.3, max_iter=30, max_depth=3, max_leaf_nodes=None, min_samples_leaf=1,
        l2_regularization=1.0, early_stopping=False, random_state=0,
    ).fit(x, train["body_mass_g"])  # fmt: skip
    got = con.sql(
        "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL mass, "
        "(SELECT * FROM penguins WHERE body_mass_g IS NOT NULL))"
    ).fetchall()
    np.testing.assert_allclose([r[0] for r in got], reference.predict(x), rtol=1e-5)


@pytest.mark.parametrize("model_type", ["random_forest_regressor", "random_forest_classifier"])
def test_random_forest_matches_sklearn_by_hand(con, model_type):
    classifier = model_type.endswith("classifier")
    label = "sex" if classifier else "flipper_length_mm"
    con.sql(
        f"""CREATE MODEL forest OPTIONS (model_type = '{model_type}', input_label_cols = ['{label}'],
                                         num_parallel_tree = 25, max_tree_depth = 8)
            AS SELECT * EXCLUDE (species) FROM penguins WHERE {label} IS NOT NULL"""
    )
    train = penguins_frame(con, f"{label} IS NOT NULL")
    features = [c for c in PENGUIN_FEATURES if c != label]
    numeric = [c for c in features if c in NUMERIC]
    categorical = [c for c in features if c not in NUMERIC]
    x = design_matrix(train, train, numeric, categorical, standardize=False, float32=True,
                      order=features)  # fmt: skip
    cls = ensemble.RandomForestClassifier if classifier else ensemble.RandomForestRegressor
    reference = cls(
        n_estimators=25, max_depth=8, min_samples_leaf=1, max_features=1.0, max_samples=0.8,
        n_jobs=-1, random_state=0,
    )  # fmt: skip
    y = train[label].to_numpy()
    if classifier:
        y = (y == "male").astype(int)  # classes sorted: female, male
    reference.fit(x, y)
    query = f"(SELECT * FROM penguins WHERE {label} IS NOT NULL)"
    if classifier:
        rows = con.sql(
            f"SELECT predicted_sex, predicted_sex_probs FROM ML.PREDICT(MODEL forest, {query})"
        ).fetchall()
        probs = np.array([[i["prob"] for i in r[1]] for r in rows])
        np.testing.assert_allclose(probs, reference.predict_proba(x), atol=1e-5)
        assert [r[0] for r in rows] == ["male" if p else "female" for p in reference.predict(x)]
    else:
        rows = con.sql(
            f"SELECT predicted_{label} FROM ML.PREDICT(MODEL forest, {query})"
        ).fetchall()
        np.testing.assert_allclose([r[0] for r in rows], reference.predict(x), rtol=1e-5)


def test_kmeans_matches_sklearn_by_hand(con):
    columns = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    con.sql(
        f"""CREATE MODEL groups OPTIONS (model_type = 'kmeans', num_clusters = 3)
            AS SELECT {", ".join(columns)} FROM penguins"""
    )
    frame = penguins_frame(con)
    x = design_matrix(frame, frame, columns, [], standardize=True)
    reference = cluster.KMeans(n_clusters=3, n_init=1, max_iter=20, tol=0.01, random_state=0).fit(x)

    rows = con.sql(
        "SELECT centroid_id, nearest_centroids_distance FROM ML.PREDICT(MODEL groups, TABLE penguins)"
    ).fetchall()
    assert [r[0] for r in rows] == list(reference.predict(x) + 1)  # 1-based, as BigQuery
    distances = reference.transform(x)
    for (centroid, nearest), row in zip(rows, distances, strict=True):
        assert nearest[0]["centroid_id"] == centroid
        assert [d["distance"] for d in nearest] == sorted(d["distance"] for d in nearest)
        got = {d["centroid_id"]: d["distance"] for d in nearest}
        np.testing.assert_allclose([got[i + 1] for i in range(3)], row, rtol=1e-9)

    stored = con.sql("SELECT * FROM ML.EVALUATE(MODEL groups)").df().iloc[0]
    nearest = distances.min(axis=1)
    assert stored["mean_squared_distance"] == pytest.approx(np.mean(nearest**2), rel=1e-9)
    # With Lloyd's algorithm converged, the centroids are the cluster means, where the
    # Davies-Bouldin index computed from the model equals scikit-learn's.
    assert stored["davies_bouldin_index"] == pytest.approx(
        metrics.davies_bouldin_score(x, reference.labels_), rel=1e-2
    )
    assert con.sql("SELECT count(DISTINCT groups(p)) FROM penguins p").fetchall() == [(3,)]


def test_same_seed_same_model_other_seed_other_split():
    def train(seed: int) -> list[tuple]:
        con = sqlml.connect()
        load_breast_cancer(con)
        con.sql(
            f"""CREATE MODEL m OPTIONS (model_type = 'random_forest_classifier',
                    input_label_cols = ['diagnosis'], num_parallel_tree = 10, random_seed = {seed})
                AS SELECT * FROM breast_cancer"""
        )
        result = con.sql(
            "SELECT predicted_diagnosis_probs FROM ML.PREDICT(MODEL m, TABLE breast_cancer)"
        ).fetchall()
        result.append(con.sql("SELECT * FROM ML.EVALUATE(MODEL m)").fetchall()[0])
        con.close()
        return result

    first, again, other = train(7), train(7), train(8)
    assert first == again
    assert first != other


def test_training_info_and_evaluate_agree_on_log_loss_when_saturated(con):
    """An unregularized logistic regression on breast_cancer predicts probabilities of
    exactly 0 and 1, some wrong: the log loss then depends on where they are clipped, and
    ML.TRAINING_INFO's eval_loss and ML.EVALUATE's log_loss must clip them alike."""
    load_breast_cancer(con)
    con.sql(
        "CREATE MODEL bc OPTIONS (model_type = 'logistic_reg', input_label_cols = ['diagnosis'], "
        "data_split_method = 'custom', data_split_col = 'held_out') "
        "AS SELECT *, mean_radius > 15 AS held_out FROM breast_cancer"
    )
    held_out = "(SELECT * FROM breast_cancer WHERE mean_radius > 15)"
    [(wrong_for_sure,)] = con.sql(
        "SELECT count(*) FROM (SELECT diagnosis, unnest(predicted_diagnosis_probs) AS p "
        f"FROM ML.PREDICT(MODEL bc, {held_out})) WHERE p.label = diagnosis AND p.prob < 1e-15"
    ).fetchall()
    assert wrong_for_sure > 0  # saturated: the clipping counts
    [(eval_loss,)] = con.sql("SELECT eval_loss FROM ML.TRAINING_INFO(MODEL bc)").fetchall()
    [(stored,)] = con.sql("SELECT log_loss FROM ML.EVALUATE(MODEL bc)").fetchall()
    [(given,)] = con.sql(f"SELECT log_loss FROM ML.EVALUATE(MODEL bc, {held_out})").fetchall()
    assert stored == pytest.approx(eval_loss, rel=1e-9)
    assert given == pytest.approx(eval_loss, rel=1e-9)
