"""Splits, class weights, thresholds: ML.EVALUATE, ML.CONFUSION_MATRIX, ML.ROC_CURVE and
ML.PREDICT's settings, on the breast cancer data scikit-learn ships (569 rows, binary)."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

import sqlml
from tests.conftest import load_breast_cancer, load_penguins, snapshot

FEATURES = "mean_radius, mean_texture, mean_smoothness, worst_concavity"


@pytest.fixture(scope="module")
def bc():
    con = sqlml.connect()
    load_breast_cancer(con)
    con.sql("CREATE TABLE bc AS SELECT row_number() OVER () AS id, * FROM breast_cancer")
    # Evaluation rows chosen by the data: every fifth row.
    con.sql(
        f"""CREATE MODEL c OPTIONS (model_type = 'logistic_reg', input_label_cols = ['diagnosis'],
                l2_reg = 10, data_split_method = 'custom', data_split_col = 'is_eval')
            AS SELECT diagnosis, {FEATURES}, id % 5 = 0 AS is_eval FROM bc"""
    )
    yield con
    con.close()


def describe(con: sqlml.Connection, model: str, section: str) -> dict[str, str]:
    rows = con.sql(f"DESCRIBE MODEL {model}").fetchall()
    return {name: value for s, name, value in rows if s == section}


EVAL_ROWS = "(SELECT * FROM bc WHERE id % 5 = 0)"


def test_custom_split_holds_out_the_flagged_rows(bc):
    training = describe(bc, "c", "training")
    assert int(training["rows_eval"]) == 569 // 5
    assert int(training["rows_train"]) == 569 - 569 // 5
    assert list(describe(bc, "c", "feature")) == FEATURES.split(", ")  # never is_eval
    # Without data, ML.EVALUATE reports on exactly those rows.
    stored = bc.sql("SELECT * FROM ML.EVALUATE(MODEL c)").fetchall()
    again = bc.sql(f"SELECT * FROM ML.EVALUATE(MODEL c, {EVAL_ROWS})").fetchall()
    np.testing.assert_allclose(stored, again, rtol=1e-12)


def test_confusion_matrix_counts_the_evaluation_rows(bc):
    matrix = bc.sql(
        "SELECT expected_label, benign, malignant FROM ML.CONFUSION_MATRIX(MODEL c) "
        "ORDER BY expected_label"
    ).fetchall()
    assert sum(b + m for _, b, m in matrix) == 569 // 5
    expected = bc.sql(
        f"""SELECT diagnosis, count(*) FILTER (predicted_diagnosis = 'benign'),
                   count(*) FILTER (predicted_diagnosis = 'malignant')
            FROM ML.PREDICT(MODEL c, {EVAL_ROWS}) GROUP BY ALL ORDER BY 1"""
    ).fetchall()
    assert matrix == expected
    # Given rows, it counts those; a threshold moves rows between the columns.
    high = bc.sql(
        "SELECT sum(benign), sum(malignant) FROM "
        "ML.CONFUSION_MATRIX(MODEL c, TABLE bc, STRUCT(0.9 AS threshold))"
    ).fetchall()[0]
    positive = bc.sql(
        "SELECT count(*) FROM ML.PREDICT(MODEL c, TABLE bc) "
        "WHERE predicted_diagnosis_probs[2].prob > 0.9"
    ).fetchall()[0][0]
    assert high == (569 - positive, positive)


def test_a_higher_threshold_never_raises_recall(bc):
    thresholds = [round(0.05 * i, 2) for i in range(1, 20)]
    recalls = [
        bc.sql(
            f"SELECT recall FROM ML.EVALUATE(MODEL c, TABLE bc, STRUCT({t} AS threshold))"
        ).fetchall()[0][0]
        for t in thresholds
    ]
    assert all(a >= b for a, b in itertools.pairwise(recalls))
    assert recalls[0] > recalls[-1]  # and the threshold does move it
    # ML.ROC_CURVE agrees at the same thresholds, and its counts add up to the rows.
    curve = bc.sql(
        f"SELECT threshold, recall, true_positives + false_positives + true_negatives + "
        f"false_negatives FROM ML.ROC_CURVE(MODEL c, TABLE bc, {thresholds}) ORDER BY threshold"
    ).fetchall()
    assert [t for t, _, _ in curve] == thresholds
    np.testing.assert_allclose([r for _, r, _ in curve], recalls, rtol=1e-12)
    assert {n for _, _, n in curve} == {569}


def test_roc_curve_without_data_uses_the_evaluation_rows(bc):
    stored = bc.sql(
        "SELECT * FROM ML.ROC_CURVE(MODEL c, GENERATE_ARRAY(0.1, 0.9, 0.2)) ORDER BY threshold"
    ).fetchall()
    again = bc.sql(
        f"SELECT * FROM ML.ROC_CURVE(MODEL c, {EVAL_ROWS}, GENERATE_ARRAY(0.1, 0.9, 0.2)) "
        "ORDER BY threshold"
    ).fetchall()
    assert [r[0] for r in stored] == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert stored == again
    # Default thresholds: about a hundred, from the predicted probabilities, FPR falling.
    curve = bc.sql("SELECT false_positive_rate FROM ML.ROC_CURVE(MODEL c) ORDER BY threshold")
    rates = [r[0] for r in curve.fetchall()]
    assert 20 <= len(rates) <= 101
    assert all(a >= b for a, b in itertools.pairwise(rates))


def test_predict_threshold_and_keep_original_columns(bc):
    rows = bc.sql(
        "SELECT predicted_diagnosis, predicted_diagnosis_probs[2].prob FROM "
        "ML.PREDICT(MODEL c, TABLE bc, STRUCT(0.8 AS threshold))"
    ).fetchall()
    assert {label for label, p in rows if p > 0.8} == {"malignant"}
    assert {label for label, p in rows if p <= 0.8} == {"benign"}
    narrow = bc.sql(
        "SELECT * FROM ML.PREDICT(MODEL c, TABLE bc, STRUCT(FALSE AS keep_original_columns))"
    )
    assert narrow.columns == ["predicted_diagnosis", "predicted_diagnosis_probs"]
    assert len(narrow.fetchall()) == 569


def test_threshold_errors(bc):
    with pytest.raises(sqlml.ArgumentError, match=r"threshold must be a number in \[0, 1\]"):
        bc.sql("SELECT * FROM ML.EVALUATE(MODEL c, STRUCT(1.5 AS threshold))")
    with pytest.raises(
        sqlml.ArgumentError, match="has no setting thresold; its settings: threshold"
    ):
        bc.sql("SELECT * FROM ML.EVALUATE(MODEL c, STRUCT(0.5 AS thresold))")
    load_penguins(bc)
    bc.sql(
        "CREATE MODEL species OPTIONS (model_type = 'logistic_reg', input_label_cols = "
        "['species']) AS SELECT species, bill_length_mm, flipper_length_mm FROM penguins"
    )
    with pytest.raises(sqlml.ArgumentError, match="threshold applies to binary classifiers"):
        bc.sql("SELECT * FROM ML.PREDICT(MODEL species, TABLE penguins, STRUCT(0.5 AS threshold))")
    with pytest.raises(
        sqlml.ModelTypeError, match=re.escape("ML.ROC_CURVE applies to binary classifiers")
    ):
        bc.sql("SELECT * FROM ML.ROC_CURVE(MODEL species, TABLE penguins)")
    with pytest.raises(sqlml.ArgumentError, match="thresholds as one array"):
        bc.sql("SELECT * FROM ML.ROC_CURVE(MODEL c, TABLE bc, 0.5)")


def test_class_weights(bc):
    def train(options: str) -> int:
        """Train w; how many of the 212 malignant rows it finds."""
        bc.sql(
            f"""CREATE OR REPLACE MODEL w OPTIONS (model_type = 'logistic_reg',
                    input_label_cols = ['diagnosis'], l2_reg = 10,
                    data_split_method = 'no_split' {options})
                AS SELECT diagnosis, {FEATURES} FROM bc"""
        )
        return bc.sql(
            "SELECT malignant FROM ML.CONFUSION_MATRIX(MODEL w, TABLE bc) "
            "WHERE expected_label = 'malignant'"
        ).fetchall()[0][0]

    plain = train("")
    heavy = train(", class_weights = [STRUCT('benign', 1.0), STRUCT('malignant', 10.0)]")
    assert heavy > plain + 10  # weighting the malignant class finds more of it
    assert heavy >= 200

    # auto_class_weights is class_weights with n / (classes * count): the same model.
    counts = dict(bc.sql("SELECT diagnosis, count(*) FROM bc GROUP BY ALL").fetchall())
    weights = ", ".join(f"STRUCT('{c}', {569 / (2 * n)!r})" for c, n in counts.items())
    train(f", class_weights = [{weights}]")
    explicit = bc.sql("SELECT w_probs(b)[2].prob FROM bc b").fetchall()
    train(", auto_class_weights = TRUE")
    np.testing.assert_allclose(
        bc.sql("SELECT w_probs(b)[2].prob FROM bc b").fetchall(), explicit, rtol=1e-9
    )


def test_class_weight_errors_store_nothing(bc):
    before = snapshot(bc)
    with pytest.raises(sqlml.OptionError, match="class_weights names Dodo, not a class"):
        bc.sql(
            f"""CREATE MODEL bad OPTIONS (model_type = 'logistic_reg',
                    input_label_cols = ['diagnosis'],
                    class_weights = [STRUCT('benign', 1.0), STRUCT('Dodo', 3.0)])
                AS SELECT diagnosis, {FEATURES} FROM bc"""
        )
    with pytest.raises(sqlml.OptionError, match="auto_class_weights or class_weights, not both"):
        bc.sql(
            f"""CREATE MODEL bad OPTIONS (model_type = 'logistic_reg',
                    input_label_cols = ['diagnosis'], auto_class_weights = TRUE,
                    class_weights = [STRUCT('benign', 1.0)])
                AS SELECT diagnosis, {FEATURES} FROM bc"""
        )
    assert snapshot(bc) == before


def test_custom_split_evaluates_rows_flagged_true_or_null():
    """As in BigQuery ML: FALSE trains, TRUE and NULL evaluate."""
    con = sqlml.connect()
    load_penguins(con)
    con.sql(
        """CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'],
               data_split_method = 'custom', data_split_col = 'held')
           AS SELECT body_mass_g, flipper_length_mm,
                     CASE WHEN sex IS NOT NULL THEN year = 2009 END AS held
              FROM penguins WHERE body_mass_g IS NOT NULL"""
    )
    counts = con.sql(
        """SELECT count(*) FILTER (sex IS NOT NULL AND year <> 2009),
                  count(*) FILTER (sex IS NULL OR year = 2009)
           FROM penguins WHERE body_mass_g IS NOT NULL"""
    ).fetchall()[0]
    assert (
        counts[1] > 0
        and con.sql("SELECT count(*) FROM penguins WHERE sex IS NULL").fetchall()[0][0] == 11
    )
    training = describe(con, "m", "training")
    assert (int(training["rows_train"]), int(training["rows_eval"])) == counts
    evaluated = (
        "(SELECT * FROM penguins WHERE body_mass_g IS NOT NULL AND (sex IS NULL OR year = 2009))"
    )
    np.testing.assert_allclose(
        con.sql("SELECT * FROM ML.EVALUATE(MODEL m)").fetchall(),
        con.sql(f"SELECT * FROM ML.EVALUATE(MODEL m, {evaluated})").fetchall(),
        rtol=1e-12,
    )
    before = snapshot(con)
    with pytest.raises(
        sqlml.DataError,
        match=(
            r"^data_split_col held is TRUE or NULL for every row of model main.none_left: no row "
            r"is left to train on \(FALSE marks a training row\)$"
        ),
    ):
        con.sql(
            """CREATE MODEL none_left OPTIONS (model_type = 'linear_reg',
                   input_label_cols = ['body_mass_g'], data_split_method = 'custom',
                   data_split_col = 'held')
               AS SELECT body_mass_g, flipper_length_mm, CASE WHEN year = 0 THEN FALSE END AS held
                  FROM penguins WHERE body_mass_g IS NOT NULL"""
        )
    assert snapshot(con) == before
    con.close()


def test_transform_star_leaves_the_split_column_out():
    """The split column is read from the query, before the TRANSFORM: `*` does not pass it
    through (it would be a feature, and the model would need it to predict), and listing
    it is refused, naming it."""
    con = sqlml.connect()
    load_penguins(con)
    query = (
        "AS SELECT body_mass_g, flipper_length_mm, bill_length_mm, year = 2009 AS held "
        "FROM penguins WHERE body_mass_g IS NOT NULL"
    )
    split = "data_split_method = 'custom', data_split_col = 'held'"
    con.sql(
        f"""CREATE MODEL m
            TRANSFORM (ML.STANDARD_SCALER(flipper_length_mm) OVER () AS flipper,
                       * EXCEPT (flipper_length_mm))
            OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'], {split})
            {query}"""
    )
    assert list(describe(con, "m", "feature")) == ["flipper", "bill_length_mm"]
    assert list(describe(con, "m", "input")) == ["flipper_length_mm", "bill_length_mm"]
    training = describe(con, "m", "training")
    assert (
        int(training["rows_eval"])
        == con.sql(
            "SELECT count(*) FROM penguins WHERE body_mass_g IS NOT NULL AND year = 2009"
        ).fetchall()[0][0]
    )
    # It predicts from the features alone.
    assert (
        len(
            con.sql(
                "SELECT * FROM ML.PREDICT(MODEL m, (SELECT flipper_length_mm, bill_length_mm FROM penguins))"
            ).fetchall()
        )
        == 344
    )
    before = snapshot(con)
    with pytest.raises(sqlml.OptionError) as caught:
        con.sql(
            f"""CREATE MODEL listed TRANSFORM (flipper_length_mm, held, body_mass_g)
                OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'], {split})
                {query}"""
        )
    assert str(caught.value) == (
        "data_split_col 'held' of model main.listed is also an output of its TRANSFORM; the "
        "split is read from the query, before the TRANSFORM, and is never a feature: leave "
        "held out of the TRANSFORM list"
    )
    assert snapshot(con) == before
    con.close()


def test_seq_split_evaluates_on_the_latest_rows():
    con = sqlml.connect()
    load_penguins(con)
    con.sql("CREATE TABLE p AS SELECT row_number() OVER () AS id, * FROM penguins")
    con.sql(
        """CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'],
               data_split_method = 'seq', data_split_col = 'id',
               data_split_eval_fraction = 0.2, data_split_test_fraction = 0.1)
           AS SELECT body_mass_g, flipper_length_mm, species, id FROM p
              WHERE body_mass_g IS NOT NULL"""
    )
    training = describe(con, "m", "training")
    n = 342
    n_eval, n_test = round(n * 0.2), round(n * 0.1)
    assert (int(training["rows_eval"]), int(training["rows_test"])) == (n_eval, n_test)
    assert describe(con, "m", "metric")["evaluated_on"] == "test_rows"
    assert "id" not in describe(con, "m", "feature")
    # The test rows are the last by id; the metrics without data are on them.
    last = f"(SELECT * FROM p WHERE body_mass_g IS NOT NULL ORDER BY id OFFSET {n - n_test})"
    np.testing.assert_allclose(
        con.sql("SELECT * FROM ML.EVALUATE(MODEL m)").fetchall(),
        con.sql(f"SELECT * FROM ML.EVALUATE(MODEL m, {last})").fetchall(),
        rtol=1e-12,
    )
    con.close()


def test_confusion_matrix_of_an_empty_string_class(con):
    """DuckDB cannot name a column with the empty string: that class's column is "_"."""
    con.sql(
        "CREATE MODEL sexed OPTIONS (model_type = 'logistic_reg', input_label_cols = ['sex']) "
        "AS SELECT coalesce(sex, '') AS sex, body_mass_g, bill_depth_mm FROM penguins"
    )
    rows = "(SELECT * REPLACE (coalesce(sex, '') AS sex) FROM penguins)"
    matrix = con.sql(f"SELECT * FROM ML.CONFUSION_MATRIX(MODEL sexed, {rows})")
    assert matrix.columns == ["expected_label", "_", "female", "male"]
    counts = con.sql(
        f"""SELECT sex, count(*) FILTER (predicted_sex = ''),
                   count(*) FILTER (predicted_sex = 'female'),
                   count(*) FILTER (predicted_sex = 'male')
            FROM ML.PREDICT(MODEL sexed, {rows}) GROUP BY ALL ORDER BY 1"""
    ).fetchall()
    rows = matrix.fetchall()
    assert rows == counts
    assert sum(sum(r[1:]) for r in rows) == 344
