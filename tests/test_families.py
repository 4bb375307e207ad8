"""Each model type and solver: ONNX parity recorded, PREDICT and the function agree, the
option mapping to scikit-learn gives the estimator it promises."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from sklearn import linear_model

import sqlml
from sqlml import families
from sqlml.planner import TrainingPlan
from sqlml.trainer import split
from tests.reference import design_matrix

ALL_TYPES = {
    "linear_reg": "body_mass_g",
    "logistic_reg": "species",
    "boosted_tree_regressor": "body_mass_g",
    "boosted_tree_classifier": "sex",
    "random_forest_regressor": "bill_depth_mm",
    "random_forest_classifier": "island",
    "kmeans": None,
    "dnn_classifier": "species",
    "dnn_regressor": "flipper_length_mm",
    "pca": None,
    "isolation_forest": None,
}
# What ML.PREDICT's first column is, and the model function's value that equals it.
FIRST_OUTPUT = {
    "kmeans": ("centroid_id", "m(p)"),
    "pca": ("principal_component_1", "m(p)[1]"),
    "isolation_forest": ("anomaly_score", "m(p)"),
}


def describe(con: sqlml.Connection, model: str, section: str) -> dict[str, str]:
    rows = con.sql(f"DESCRIBE MODEL {model}").fetchall()
    return {name: value for s, name, value in rows if s == section}


def test_every_model_type_is_registered():
    # Every type sqlml trains, and 'onnx' for imported models (test_onnx_files.py).
    assert sorted(f.model_type for f in families.all_families()) == sorted([*ALL_TYPES, "onnx"])


@pytest.mark.parametrize("model_type", sorted(ALL_TYPES))
def test_every_model_type_end_to_end(con, model_type):
    label = ALL_TYPES[model_type]
    options = f"model_type = '{model_type}'"
    if label:
        options += f", input_label_cols = ['{label}']"
    if model_type == "pca":
        options += ", num_principal_components = 3"
    con.sql(f"CREATE MODEL m OPTIONS ({options}) AS SELECT * FROM penguins")

    training = describe(con, "m", "training")
    nulls = 0 if label in (None, "species", "island") else 2 if label != "sex" else 11
    assert int(training["rows_null_label"]) == nulls
    assert int(training["rows_train"]) == 344 - nulls

    parity = describe(con, "m", "parity")
    precision = "float32" if "tree" in model_type or "forest" in model_type else "float64"
    assert parity["precision"] == precision
    # Every training row, plus a row of NULLs and one of unseen values.
    assert int(parity["rows"]) == 344 - nulls + 2
    assert float(parity["max_rel_diff"]) <= float(parity["tolerance"])
    assert parity["label_agreement"] in ("1.0", None)

    first, function = FIRST_OUTPUT.get(model_type, (f"predicted_{label}", "m(p)"))
    predicted = con.sql(f"SELECT {first} FROM ML.PREDICT(MODEL m, TABLE penguins)").fetchall()
    assert predicted == con.sql(f"SELECT {function} FROM penguins p").fetchall()
    assert None not in {row[0] for row in predicted}
    metrics = con.sql("SELECT * FROM ML.EVALUATE(MODEL m)").df()
    assert len(metrics) == 1 and metrics.notna().all(axis=None)


def test_sessions_are_made_once_per_model_version(con, monkeypatch):
    made = []
    real = onnxruntime.InferenceSession

    def counting(*args, **kwargs):
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", counting)
    con.sql(
        "CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g']) "
        "AS SELECT * FROM penguins"
    )
    made.clear()
    con.sql("CREATE TABLE many AS SELECT p.* FROM penguins p, range(30)")  # 10,320 rows
    for _ in range(3):
        con.sql("SELECT sum(m(p)) FROM many p").fetchall()
        con.sql("SELECT count(*) FROM ML.PREDICT(MODEL m, TABLE many)").fetchall()
    assert len(made) == 0  # the session made for the parity check is reused
    con.sql(
        "CREATE OR REPLACE MODEL m OPTIONS (model_type = 'linear_reg', "
        "input_label_cols = ['body_mass_g']) AS SELECT * FROM penguins"
    )
    made.clear()
    reopened = sqlml.connect(con.duckdb)  # a new registry: loads lazily, once
    for _ in range(3):
        reopened.sql("SELECT sum(m(p)) FROM many p").fetchall()
    assert len(made) <= 1


def test_models_in_another_schema(con):
    con.sql("CREATE SCHEMA lab")
    con.sql(
        "CREATE MODEL lab.mass OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g']) "
        "AS SELECT body_mass_g, flipper_length_mm FROM penguins"
    )
    assert con.sql("SELECT schema, name FROM (SHOW MODELS)").fetchall() == [("lab", "mass")]
    by_function = con.sql("SELECT lab.mass(flipper_length_mm) FROM penguins").fetchall()
    by_predict = con.sql(
        "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL lab.mass, TABLE penguins)"
    ).fetchall()
    assert by_function == by_predict
    functions = con.sql(
        "SELECT DISTINCT schema_name FROM duckdb_functions() WHERE function_name = 'mass'"
    ).fetchall()
    assert functions == [("lab",)]
    with pytest.raises(sqlml.ModelNotFound):
        con.sql("SELECT * FROM ML.EVALUATE(MODEL mass)")
    con.sql("DROP MODEL lab.mass")
    assert con.sql("SHOW MODELS").fetchall() == []


def test_l1_and_gradient_descent_map_to_their_estimators(con):
    train = con.sql("SELECT * FROM penguins WHERE body_mass_g IS NOT NULL").df()
    numeric = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
    x = design_matrix(train, train, numeric, [], standardize=True)
    y = train["body_mass_g"].to_numpy(float)
    n = len(y)
    for options, estimator, reference in [
        ("l1_reg = 500", "ElasticNet", linear_model.ElasticNet(alpha=500 / (2 * n), l1_ratio=1.0)),
        (
            "l1_reg = 500, l2_reg = 100",
            "ElasticNet",
            linear_model.ElasticNet(alpha=700 / (2 * n), l1_ratio=500 / 700),
        ),
        ("l2_reg = 100", "Ridge", linear_model.Ridge(alpha=100)),
    ]:
        con.sql(
            f"""CREATE OR REPLACE MODEL m OPTIONS (model_type = 'linear_reg',
                    input_label_cols = ['body_mass_g'], {options})
                AS SELECT body_mass_g, {", ".join(numeric)} FROM penguins"""
        )
        assert describe(con, "m", "training")["estimator"] == estimator
        reference.set_params(**({"max_iter": 100} if estimator == "ElasticNet" else {}))
        expected = reference.fit(x, y).predict(x)
        got = con.sql(
            "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL m, "
            "(SELECT * FROM penguins WHERE body_mass_g IS NOT NULL))"
        ).fetchall()
        np.testing.assert_allclose([r[0] for r in got], expected, rtol=1e-9)

    for model_type, label, estimator in [
        ("linear_reg", "body_mass_g", "SGDRegressor"),
        ("logistic_reg", "species", "SGDClassifier"),
    ]:
        con.sql(
            f"""CREATE OR REPLACE MODEL m OPTIONS (model_type = '{model_type}',
                    input_label_cols = ['{label}'], optimize_strategy = 'batch_gradient_descent',
                    learn_rate_strategy = 'constant', learn_rate = 0.01, max_iterations = 50)
                AS SELECT {label}, {", ".join(numeric)} FROM penguins"""
        )
        assert describe(con, "m", "training")["estimator"] == estimator
        params = describe(con, "m", "option")
        assert params["optimize_strategy"] == '"batch_gradient_descent"'

    con.sql(
        """CREATE OR REPLACE MODEL m OPTIONS (model_type = 'logistic_reg', l1_reg = 2,
               input_label_cols = ['species'], max_iterations = 500)
           AS SELECT species, bill_length_mm, flipper_length_mm FROM penguins"""
    )
    assert describe(con, "m", "training")["estimator"] == "LogisticRegression"
    accuracy = con.sql("SELECT accuracy FROM ML.EVALUATE(MODEL m)").fetchall()[0][0]
    assert accuracy > 0.9


def test_exact_boosting_for_subsample(con):
    con.sql(
        """CREATE MODEL m OPTIONS (model_type = 'boosted_tree_classifier', subsample = 0.7,
               input_label_cols = ['species'], max_iterations = 10)
           AS SELECT * FROM penguins"""
    )
    assert describe(con, "m", "training")["estimator"] == "GradientBoostingClassifier"
    with pytest.raises(sqlml.OptionError, match="tree_method='exact'"):
        con.sql(
            """CREATE OR REPLACE MODEL m OPTIONS (model_type = 'boosted_tree_classifier',
                   subsample = 0.7, tree_method = 'hist', input_label_cols = ['species'])
               AS SELECT * FROM penguins"""
        )


@pytest.mark.parametrize(
    ("rows", "method", "fraction", "held_out"),
    [
        (499, "auto_split", 0.2, 0),
        (500, "auto_split", 0.2, 100),
        (50_000, "auto_split", 0.2, 10_000),
        (50_001, "auto_split", 0.2, 10_000),
        (1_000_000, "auto_split", 0.2, 10_000),
        (1_000, "random", 0.35, 350),
        (1_000, "no_split", 0.2, 0),
    ],
)
def test_data_split(rows, method, fraction, held_out):
    plan = TrainingPlan.__new__(TrainingPlan)
    plan.schema, plan.name = "main", "m"
    plan.options = {
        "data_split_method": method,
        "data_split_eval_fraction": fraction,
        "random_seed": 1,
    }
    train, evaluation, test = split(rows, plan)
    assert len(test) == 0
    assert len(evaluation) == held_out
    assert len(train) + len(evaluation) == rows
    assert np.all(np.diff(train) > 0) and np.all(np.diff(evaluation) > 0)  # query order kept
    assert not set(train) & set(evaluation)
