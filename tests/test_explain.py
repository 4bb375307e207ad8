"""ML.EXPLAIN_PREDICT and ML.GLOBAL_EXPLAIN: exact attributions for linear models, path
attributions for trees; in both, a row's attributions add up to its prediction minus the
baseline."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import sqlml
from tests.conftest import load_breast_cancer

LABELLED = "(SELECT * FROM penguins WHERE body_mass_g IS NOT NULL)"
FEATURES = ["flipper_length_mm", "bill_depth_mm", "species", "sex"]


def explain(con: sqlml.Connection, model: str, data: str, k: int, prediction: str) -> list:
    return con.sql(
        f"""SELECT {prediction}, top_feature_attributions, baseline_prediction_value,
                   prediction_value, approximation_error
            FROM ML.EXPLAIN_PREDICT(MODEL {model}, {data}, STRUCT({k} AS top_k_features))"""
    ).fetchall()


def create(con: sqlml.Connection, model_type: str, label: str, extra: str = "") -> None:
    con.sql(
        f"""CREATE OR REPLACE MODEL m OPTIONS (model_type = '{model_type}',
                input_label_cols = ['{label}'], enable_global_explain = TRUE {extra})
            AS SELECT {label}, {", ".join(FEATURES)} FROM penguins"""
    )


def test_linear_attributions_are_exact(con):
    create(con, "linear_reg", "body_mass_g")
    rows = explain(con, "m", LABELLED, 4, "predicted_body_mass_g")
    assert len(rows) == 342
    baselines = {round(b, 9) for _, _, b, _, _ in rows}
    assert len(baselines) == 1  # one baseline: the model at the mean training row
    # For a linear model the prediction at the mean row is the mean prediction.
    mean = con.sql(
        f"SELECT avg(predicted_body_mass_g) FROM ML.PREDICT(MODEL m, {LABELLED})"
    ).fetchall()[0][0]
    assert rows[0][2] == pytest.approx(mean, rel=1e-9)
    for predicted, top, baseline, value, error in rows:
        assert value == pytest.approx(predicted, rel=1e-12)
        total = sum(a["attribution"] for a in top)
        assert baseline + total == pytest.approx(value, rel=1e-12)
        assert error < 1e-9 * abs(value)
        assert sorted(a["feature"] for a in top) == sorted(FEATURES)
        magnitudes = [abs(a["attribution"]) for a in top]
        assert magnitudes == sorted(magnitudes, reverse=True)


def test_logistic_attributions_explain_the_logit():
    con = sqlml.connect()
    load_breast_cancer(con)
    con.sql(
        """CREATE MODEL c OPTIONS (model_type = 'logistic_reg', input_label_cols = ['diagnosis'],
               l2_reg = 10)
           AS SELECT diagnosis, mean_radius, mean_texture, worst_concavity FROM breast_cancer"""
    )
    rows = con.sql(
        """SELECT predicted_diagnosis, predicted_diagnosis_probs, top_feature_attributions,
                  baseline_prediction_value, prediction_value
           FROM ML.EXPLAIN_PREDICT(MODEL c, TABLE breast_cancer, STRUCT(3 AS top_k_features))"""
    ).fetchall()
    for label, probs, top, baseline, value in rows:
        p = next(item["prob"] for item in probs if item["label"] == label)
        assert value == pytest.approx(math.log(p / (1 - p)), rel=1e-9, abs=1e-9)
        assert baseline + sum(a["attribution"] for a in top) == pytest.approx(value, abs=1e-9)

    # STRUCT(threshold) as in ML.PREDICT: the label it picks is the one explained.
    settings = "STRUCT(3 AS top_k_features, 0.9 AS threshold)"
    high = con.sql(
        f"""SELECT predicted_diagnosis, predicted_diagnosis_probs, top_feature_attributions,
                   baseline_prediction_value, prediction_value
            FROM ML.EXPLAIN_PREDICT(MODEL c, TABLE breast_cancer, {settings})"""
    ).fetchall()
    predicted = con.sql(
        "SELECT predicted_diagnosis FROM ML.PREDICT(MODEL c, TABLE breast_cancer, "
        "STRUCT(0.9 AS threshold))"
    ).fetchall()
    assert [r[0] for r in high] == [r[0] for r in predicted]
    assert sum(a[0] != b[0] for a, b in zip(rows, high, strict=True)) > 0  # it moved some
    for label, probs, top, baseline, value in high:
        p = next(item["prob"] for item in probs if item["label"] == label)
        assert value == pytest.approx(math.log(p / (1 - p)), rel=1e-9, abs=1e-9)
        assert baseline + sum(a["attribution"] for a in top) == pytest.approx(value, abs=1e-9)
    con.close()


@pytest.mark.parametrize(
    ("model_type", "label", "prediction"),
    [
        ("boosted_tree_regressor", "body_mass_g", "predicted_body_mass_g"),
        ("random_forest_regressor", "body_mass_g", "predicted_body_mass_g"),
        (
            "random_forest_classifier",
            "island",
            "list_filter(predicted_island_probs, lambda x: x.label = predicted_island)[1].prob",
        ),
    ],
)
def test_tree_attributions_add_up_to_the_prediction(con, model_type, label, prediction):
    create(con, model_type, label, ", num_parallel_tree = 20" if "forest" in model_type else "")
    rows = explain(con, "m", LABELLED, 4, prediction)
    for predicted, top, baseline, value, error in rows:
        assert value == pytest.approx(predicted, rel=1e-5)  # trees score in float32
        assert baseline + sum(a["attribution"] for a in top) == pytest.approx(value, rel=1e-9)
        assert error < 1e-9 * max(abs(value), 1.0)
    # Fewer features asked for: the largest ones, the same values.
    top2 = explain(con, "m", LABELLED, 2, prediction)
    for (_, full, *_), (_, short, *_) in zip(rows, top2, strict=True):
        assert short == full[:2]


def test_global_explain_is_the_mean_absolute_attribution(con):
    create(con, "boosted_tree_regressor", "body_mass_g")
    stored = dict(con.sql("SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL m)").fetchall())
    assert list(stored) == sorted(stored, key=lambda f: -stored[f])  # largest first
    # Under 500 rows nothing is held out: the evaluation rows are the training rows.
    recomputed = dict(
        con.sql(
            f"""SELECT a.feature, avg(abs(a.attribution)) FROM (
                    SELECT unnest(top_feature_attributions) AS a
                    FROM ML.EXPLAIN_PREDICT(MODEL m, {LABELLED}, STRUCT(4 AS top_k_features)))
                GROUP BY ALL"""
        ).fetchall()
    )
    assert stored.keys() == recomputed.keys()
    for feature, value in stored.items():
        assert value == pytest.approx(recomputed[feature], rel=1e-9)


def test_global_explain_per_class(con):
    create(con, "logistic_reg", "island")
    rows = con.sql(
        "SELECT class_label, feature, attribution FROM "
        "ML.GLOBAL_EXPLAIN(MODEL m, STRUCT(TRUE AS class_level_explain))"
    ).fetchall()
    assert {c for c, _, _ in rows} == {"Biscoe", "Dream", "Torgersen"}
    assert len(rows) == 3 * len(FEATURES)
    assert all(a >= 0 for _, _, a in rows)


def test_explanation_errors(con):
    con.sql(
        "CREATE MODEL plain OPTIONS (model_type = 'linear_reg', input_label_cols = "
        "['body_mass_g']) AS SELECT body_mass_g, flipper_length_mm FROM penguins"
    )
    with pytest.raises(sqlml.ArgumentError, match="trained without enable_global_explain"):
        con.sql("SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL plain)")
    with pytest.raises(sqlml.ArgumentError, match="top_k_features must be a positive integer"):
        con.sql(
            "SELECT * FROM ML.EXPLAIN_PREDICT(MODEL plain, TABLE penguins, "
            "STRUCT(0 AS top_k_features))"
        )
    with pytest.raises(sqlml.ArgumentError, match=r"ML.EXPLAIN_PREDICT\(MODEL main.plain, ...\) "
                       "needs input rows"):  # fmt: skip
        con.sql("SELECT * FROM ML.EXPLAIN_PREDICT(MODEL plain)")
    con.sql(
        "CREATE MODEL km OPTIONS (model_type = 'kmeans') AS SELECT bill_length_mm FROM penguins"
    )
    with pytest.raises(
        sqlml.ModelTypeError, match=re.escape("ML.EXPLAIN_PREDICT applies to linear_reg")
    ):
        con.sql("SELECT * FROM ML.EXPLAIN_PREDICT(MODEL km, TABLE penguins)")
    with pytest.raises(sqlml.OptionError, match="enable_global_explain: sqlml explains"):
        con.sql(
            "CREATE MODEL d OPTIONS (model_type = 'dnn_regressor', input_label_cols = "
            "['body_mass_g'], enable_global_explain = TRUE) AS SELECT * FROM penguins"
        )
    np.testing.assert_equal(con.sql("SELECT count(*) FROM sqlml.models").fetchall(), [(2,)])
