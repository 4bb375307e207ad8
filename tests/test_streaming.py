"""Training in batches (OPTIONS (streaming = TRUE)): the same kind of model as in memory,
from statistics computed in SQL, with a hash split that every pass agrees on."""

from __future__ import annotations

import pytest

import sqlml
from tests.conftest import load_breast_cancer, snapshot


def describe(con: sqlml.Connection, model: str) -> dict[tuple[str, str], str]:
    return {(s, n): v for s, n, v in con.sql(f"DESCRIBE MODEL {model}").fetchall()}


@pytest.fixture
def cancer():
    con = sqlml.connect()
    load_breast_cancer(con)
    yield con
    con.close()


def test_streaming_logistic_reg_learns_like_in_memory(cancer):
    options = "model_type = 'logistic_reg', input_label_cols = ['diagnosis'], l2_reg = 1"
    cancer.sql(f"CREATE MODEL memory OPTIONS ({options}) AS SELECT * FROM breast_cancer")
    cancer.sql(
        f"CREATE MODEL streamed OPTIONS ({options}, streaming = TRUE, batch_size = 100) "
        "AS SELECT * FROM breast_cancer"
    )
    facts = describe(cancer, "streamed")
    assert facts[("training", "estimator")] == "SGDClassifier"
    assert int(facts[("training", "rows_train")]) + int(facts[("training", "rows_eval")]) == 569
    assert 80 <= int(facts[("training", "rows_eval")]) <= 150  # 20% by hash, about 114
    assert facts[("metric", "evaluated_on")] == "a sample of the held_out_rows"
    # Both models, scored on every row, separate the classes about equally well.
    auc = {
        model: cancer.sql(
            f"SELECT roc_auc FROM ML.EVALUATE(MODEL {model}, TABLE breast_cancer)"
        ).fetchall()[0][0]
        for model in ("memory", "streamed")
    }
    assert auc["memory"] > 0.98
    assert auc["streamed"] == pytest.approx(auc["memory"], abs=0.02)


def test_streaming_statistics_match_in_memory_ones(cancer):
    cancer.sql(
        "CREATE MODEL a OPTIONS (model_type = 'kmeans', num_clusters = 3, streaming = TRUE) "
        "AS SELECT mean_radius, mean_texture, worst_area, diagnosis FROM breast_cancer"
    )
    cancer.sql(
        "CREATE MODEL b OPTIONS (model_type = 'kmeans', num_clusters = 3) "
        "AS SELECT mean_radius, mean_texture, worst_area, diagnosis FROM breast_cancer"
    )
    # No split for kmeans: both see every row, so the preprocessing facts are equal.
    a = cancer.catalog.current("main", "a").metadata["features"]
    b = cancer.catalog.current("main", "b").metadata["features"]
    for fa, fb in zip(a, b, strict=True):
        assert fa["categories"] == fb["categories"]
        assert fa["means"] == pytest.approx(fb["means"], rel=1e-12)
        assert (fa["scales"] or []) == pytest.approx(fb["scales"] or [], rel=1e-9)
    assert describe(cancer, "a")[("training", "estimator")] == "MiniBatchKMeans"
    assert cancer.sql("SELECT count(DISTINCT a(p)) FROM breast_cancer p").fetchall() == [(3,)]


def test_streaming_is_deterministic_and_usable(cancer):
    create = (
        "CREATE OR REPLACE MODEL m OPTIONS (model_type = 'linear_reg', "
        "input_label_cols = ['mean_area'], streaming = TRUE, batch_size = 64, random_seed = 5) "
        "AS SELECT mean_area, mean_radius, mean_perimeter, diagnosis FROM breast_cancer"
    )
    cancer.sql(create)
    first = cancer.sql("SELECT m(p) FROM breast_cancer p").fetchall()
    cancer.sql(create)
    assert cancer.sql("SELECT m(p) FROM breast_cancer p").fetchall() == first
    r2 = cancer.sql("SELECT r2_score FROM ML.EVALUATE(MODEL m)").fetchall()[0][0]
    assert r2 > 0.95  # area from radius and perimeter


def test_streaming_errors(cancer):
    before = snapshot(cancer)
    with pytest.raises(sqlml.OptionError, match="streaming = TRUE trains by gradient descent"):
        cancer.sql(
            "CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['mean_area'], "
            "streaming = TRUE, optimize_strategy = 'normal_equation') AS SELECT * FROM breast_cancer"
        )
    with pytest.raises(sqlml.OptionError, match="Unknown option 'streaming'"):
        cancer.sql(
            "CREATE MODEL m OPTIONS (model_type = 'boosted_tree_classifier', "
            "input_label_cols = ['diagnosis'], streaming = TRUE) AS SELECT * FROM breast_cancer"
        )
    with pytest.raises(sqlml.DataError, match="no rows with a label"):
        cancer.sql(
            "CREATE MODEL m OPTIONS (model_type = 'logistic_reg', input_label_cols = ['d'], "
            "streaming = TRUE) AS SELECT NULL::VARCHAR AS d, mean_area FROM breast_cancer"
        )
    assert snapshot(cancer) == before
