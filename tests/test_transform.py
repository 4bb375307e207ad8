"""TRANSFORM and BigQuery ML's preprocessing functions: statistics fitted on the training
rows and replayed identically by every way of calling the model."""

from __future__ import annotations

import re

import numpy as np
import pytest

import sqlml
from tests.conftest import snapshot

TRANSFORM = """
CREATE OR REPLACE MODEL t
TRANSFORM (
    ML.STANDARD_SCALER(flipper_length_mm) OVER () AS flipper,
    ML.MIN_MAX_SCALER(bill_length_mm) OVER () AS bill_01,
    ML.MAX_ABS_SCALER(bill_depth_mm) OVER () AS depth_abs,
    ML.ROBUST_SCALER(bill_depth_mm) OVER () AS depth_robust,
    ML.IMPUTER(sex, 'most_frequent') OVER () AS sex,
    ML.QUANTILE_BUCKETIZE(bill_length_mm, 4) OVER () AS bill_quartile,
    ML.BUCKETIZE(flipper_length_mm, [190, 210]) AS flipper_bin,
    ML.FEATURE_CROSS(STRUCT(island, species)) AS cross,
    ML.POLYNOMIAL_EXPAND(STRUCT(bill_depth_mm AS d, flipper_length_mm AS f), 2) AS poly,
    body_mass_g
)
OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
AS SELECT * FROM penguins WHERE body_mass_g IS NOT NULL
"""
TRAINING_ROWS = "(SELECT * FROM penguins WHERE body_mass_g IS NOT NULL)"
INPUTS = [
    "species",
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "sex",
]


@pytest.fixture
def model(con):
    con.sql(TRANSFORM)
    return con


def test_fitted_statistics_are_the_training_rows(model):
    """ML.TRANSFORM's output equals each function's definition computed by DuckDB over the
    training rows (known answers, not the implementation)."""
    got = model.sql(
        "SELECT flipper, bill_01, depth_abs, depth_robust, sex, bill_quartile, flipper_bin, "
        "cross_island_species, poly_d, poly_f, poly_d_d, poly_d_f, poly_f_f, body_mass_g "
        f"FROM ML.TRANSFORM(MODEL t, {TRAINING_ROWS})"
    ).fetchall()
    expected = model.sql(
        f"""WITH s AS (SELECT avg(flipper_length_mm) AS fm, stddev_samp(flipper_length_mm) AS fs,
                min(bill_length_mm) AS bmin, max(bill_length_mm) AS bmax,
                max(abs(bill_depth_mm)) AS dabs, median(bill_depth_mm) AS dmed,
                quantile_cont(bill_depth_mm, 0.75) - quantile_cont(bill_depth_mm, 0.25) AS diqr,
                mode(sex) AS sex_mode,
                quantile_cont(bill_length_mm, [0.25, 0.5, 0.75]) AS q
              FROM {TRAINING_ROWS})
            SELECT (flipper_length_mm - fm) / fs, (bill_length_mm - bmin) / (bmax - bmin),
                bill_depth_mm / dabs, (bill_depth_mm - dmed) / diqr, coalesce(sex, sex_mode),
                CASE WHEN bill_length_mm IS NULL THEN NULL
                     WHEN bill_length_mm < q[1] THEN 'bin_1' WHEN bill_length_mm < q[2] THEN 'bin_2'
                     WHEN bill_length_mm < q[3] THEN 'bin_3' ELSE 'bin_4' END,
                CASE WHEN flipper_length_mm < 190 THEN 'bin_1'
                     WHEN flipper_length_mm < 210 THEN 'bin_2' ELSE 'bin_3' END,
                island || '_' || species,
                bill_depth_mm, flipper_length_mm, bill_depth_mm * bill_depth_mm,
                bill_depth_mm * flipper_length_mm, flipper_length_mm * flipper_length_mm,
                body_mass_g
            FROM {TRAINING_ROWS}, s"""
    ).fetchall()
    assert len(got) == len(expected) == 342
    for row, want in zip(got, expected, strict=True):
        assert row[4:8] == want[4:8]  # text: exactly
        np.testing.assert_allclose(
            [v if v is not None else np.nan for v in row[:4] + row[8:]],
            [v if v is not None else np.nan for v in want[:4] + want[8:]],
            rtol=1e-12,
        )
    # The quartile buckets hold a quarter of the rows each.
    counts = model.sql(
        f"SELECT bill_quartile, count(*) FROM ML.TRANSFORM(MODEL t, {TRAINING_ROWS}) "
        "GROUP BY ALL ORDER BY 1"
    ).fetchall()
    assert [c for c, _ in counts] == ["bin_1", "bin_2", "bin_3", "bin_4"]
    assert all(80 <= n <= 92 for _, n in counts)


def test_statistics_are_fixed_at_training(model):
    """Replayed on other rows, the TRANSFORM keeps the training statistics."""
    one = model.sql(
        "SELECT flipper, bill_01 FROM ML.TRANSFORM(MODEL t, "
        "(SELECT 200 AS flipper_length_mm, 70.0 AS bill_length_mm, 18.0 AS bill_depth_mm, "
        "'male' AS sex, 'Dream' AS island, 'Adelie' AS species))"
    ).fetchall()
    mean, std = model.sql(
        f"SELECT avg(flipper_length_mm), stddev_samp(flipper_length_mm) FROM {TRAINING_ROWS}"
    ).fetchall()[0]
    assert one[0][0] == pytest.approx((200 - mean) / std, rel=1e-12)
    assert one[0][1] == 1.0  # above the training maximum: capped, as in BigQuery


def test_model_takes_the_columns_the_transform_reads(model):
    assert [name for s, name, _ in model.sql("DESCRIBE MODEL t").fetchall() if s == "input"] == (
        INPUTS
    )
    # Only those columns are needed, in any order, whatever else comes along.
    narrow = f"(SELECT {', '.join(reversed(INPUTS))} FROM penguins)"
    predicted = model.sql(
        f"SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL t, {narrow})"
    ).fetchall()
    assert (
        predicted
        == model.sql(
            "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL t, TABLE penguins)"
        ).fetchall()
    )
    # The model function takes the same columns, by name or as a row.
    args = ", ".join(f"{c} := {c}" for c in INPUTS)
    assert model.sql(f"SELECT t({args}) FROM penguins").fetchall() == predicted
    assert model.sql("SELECT t(p) FROM penguins p").fetchall() == predicted
    with pytest.raises(sqlml.ColumnNotFound, match="the input has no column sex"):
        model.sql("SELECT * FROM ML.PREDICT(MODEL t, (SELECT * EXCLUDE (sex) FROM penguins))")


def test_transform_equals_the_same_features_computed_by_hand(model):
    """Parity of two paths: a model with TRANSFORM, and one trained on the transformed rows
    with no TRANSFORM, predict the same."""
    model.sql(
        f"""CREATE TABLE transformed AS SELECT * FROM ML.TRANSFORM(MODEL t, {TRAINING_ROWS})"""
    )
    model.sql(
        "CREATE MODEL plain OPTIONS (model_type = 'linear_reg', input_label_cols = "
        "['body_mass_g']) AS SELECT * FROM transformed"
    )
    with_transform = model.sql(
        f"SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL t, {TRAINING_ROWS})"
    ).fetchall()
    by_hand = model.sql(
        "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL plain, TABLE transformed)"
    ).fetchall()
    np.testing.assert_allclose(with_transform, by_hand, rtol=1e-9)
    # ML.EVALUATE on the raw rows applies the TRANSFORM to the label too.
    np.testing.assert_allclose(
        model.sql(f"SELECT * FROM ML.EVALUATE(MODEL t, {TRAINING_ROWS})").fetchall(),
        model.sql("SELECT * FROM ML.EVALUATE(MODEL plain, TABLE transformed)").fetchall(),
        rtol=1e-9,
    )


def test_transform_of_a_tree_model_runs_through_onnx(con):
    """The TRANSFORM is replayed as SQL before onnxruntime as well."""
    con.sql(
        """CREATE MODEL tree TRANSFORM (ML.STANDARD_SCALER(flipper_length_mm) OVER () AS f,
               ML.LABEL_ENCODER(island) OVER () AS island_code, island, species)
           OPTIONS (model_type = 'boosted_tree_classifier', input_label_cols = ['species'],
                    inference = 'onnx')
           AS SELECT * FROM penguins"""
    )
    codes = con.sql(
        "SELECT DISTINCT island, island_code FROM ML.TRANSFORM(MODEL tree, TABLE penguins) "
        "ORDER BY 1"
    ).fetchall()
    assert codes == [("Biscoe", 1), ("Dream", 2), ("Torgersen", 3)]  # sorted vocabulary
    predicted = con.sql(
        "SELECT predicted_species FROM ML.PREDICT(MODEL tree, TABLE penguins)"
    ).fetchall()
    assert predicted == con.sql("SELECT tree(p) FROM penguins p").fetchall()
    accuracy = con.sql("SELECT accuracy FROM ML.EVALUATE(MODEL tree, TABLE penguins)")
    assert accuracy.fetchall()[0][0] > 0.85


def test_encoders_follow_bigquery(con):
    """BigQuery ML's documented example: ML.LABEL_ENCODER(f, 2, 2) keeps the two most
    frequent values seen at least twice; NULL and the rest encode to 0."""
    con.sql(
        "CREATE TABLE letters AS SELECT * FROM (VALUES (NULL), ('a'), ('b'), ('b'), ('c'), "
        "('c'), ('c'), ('d'), ('d')) v(f)"
    )
    con.sql("CREATE TABLE letters_y AS SELECT f, row_number() OVER () * 1.0 AS y FROM letters")
    con.sql(
        """CREATE MODEL enc TRANSFORM (ML.LABEL_ENCODER(f, 2, 2) OVER () AS code,
               ML.ONE_HOT_ENCODER(f, 'none', 32000, 2) OVER () AS hot, f, y)
           OPTIONS (model_type = 'linear_reg', input_label_cols = ['y'])
           AS SELECT * FROM letters_y"""
    )
    rows = con.sql(
        "SELECT f, code, hot FROM ML.TRANSFORM(MODEL enc, TABLE letters) ORDER BY f NULLS FIRST"
    ).fetchall()
    assert rows == [
        (None, 0, None),
        ("a", 0, None),
        ("b", 1, "b"),
        ("b", 1, "b"),
        ("c", 2, "c"),
        ("c", 2, "c"),
        ("c", 2, "c"),
        ("d", 0, "d"),
        ("d", 0, "d"),
    ]


def test_preprocessing_functions_in_a_plain_query(con):
    """Outside TRANSFORM they are window functions over the query's result, as in BigQuery."""
    rows = con.sql(
        """SELECT ML.STANDARD_SCALER(flipper_length_mm) OVER () AS z,
                  (flipper_length_mm - avg(flipper_length_mm) OVER ())
                      / stddev_samp(flipper_length_mm) OVER () AS z_by_hand,
                  ML.ROBUST_SCALER(body_mass_g) OVER () AS r,
                  (body_mass_g - median(body_mass_g) OVER ())
                      / (quantile_cont(body_mass_g, 0.75) OVER ()
                         - quantile_cont(body_mass_g, 0.25) OVER ()) AS r_by_hand,
                  ML.IMPUTER(bill_length_mm, 'median') OVER () AS b,
                  coalesce(bill_length_mm, median(bill_length_mm) OVER ()) AS b_by_hand,
                  ML.BUCKETIZE(year, [2008, 2009]) AS year_bin,
                  ML.FEATURE_CROSS(STRUCT(island, sex)).island_sex AS cross
           FROM penguins WHERE sex IS NOT NULL"""
    ).fetchall()
    for z, z2, r, r2, b, b2, year_bin, cross in rows:
        assert z == pytest.approx(z2, rel=1e-12, nan_ok=True)
        assert r == pytest.approx(r2, rel=1e-12, nan_ok=True)
        assert b == pytest.approx(b2)
        assert year_bin in ("bin_1", "bin_2", "bin_3")
        assert cross.count("_") == 1
    # BigQuery ML's examples: exclude_boundaries drops the lowest and highest points.
    assert con.sql(
        "SELECT ML.BUCKETIZE(2.5, [1, 2, 3]), ML.BUCKETIZE(2.5, [1, 2, 3], TRUE), "
        "ML.BUCKETIZE(2.5, [1, 2, 3], FALSE, 'bucket_names'), ML.BUCKETIZE(0.5, [1, 2, 3, 4], TRUE), "
        "ML.BUCKETIZE(9, [1, 2, 3, 4], TRUE), ML.BUCKETIZE(3, [1, 2, 3, 4], TRUE), "
        "ML.BUCKETIZE(9, [1, 2], TRUE)"
    ).fetchall() == [("bin_3", "bin_2", "bin_3", "bin_1", "bin_3", "bin_3", "bin_1")]
    with pytest.raises(sqlml.ArgumentError) as caught:
        con.sql("SELECT ML.BUCKETIZE(2.5, [1, 2, 3], FALSE, 'bucket_ranges')")
    assert str(caught.value) == (
        "ML.BUCKETIZE(x, splits, exclude_boundaries, output_format): sqlml gives bucket names "
        "('bin_1', ...) only, output_format 'bucket_names'"
    )
    with pytest.raises(sqlml.ArgumentError, match=r"exclude_boundaries, is TRUE or FALSE$"):
        con.sql("SELECT ML.BUCKETIZE(2.5, [1, 2, 3], 'yes')")
    with pytest.raises(
        sqlml.ArgumentError, match=re.escape("ML.LABEL_ENCODER is available in a CREATE")
    ):
        con.sql("SELECT ML.LABEL_ENCODER(island) OVER () FROM penguins")
    with pytest.raises(sqlml.ArgumentError, match=r"needs OVER \(\) in a query"):
        con.sql("SELECT ML.STANDARD_SCALER(body_mass_g) FROM penguins")


@pytest.mark.parametrize(
    ("transform", "error", "message"),
    [
        (
            "ML.QUANTILE_BUCKETIZE(bill_length_mm, 1) OVER () AS q, body_mass_g",
            sqlml.ArgumentError,
            "needs a number of buckets n >= 2",
        ),
        (
            "ML.IMPUTER(bill_length_mm, 'mode') OVER () AS b, body_mass_g",
            sqlml.ArgumentError,
            "the strategy is 'mean', 'median' or 'most_frequent'",
        ),
        (
            "ML.STANDARD_SCALER(no_such_column) OVER () AS x, body_mass_g",
            sqlml.QueryError,
            "Fitting ML.STANDARD_SCALER in the TRANSFORM of model main.bad failed",
        ),
        (
            "ML.STANDARD_SCALER(bill_length_mm) AS x, body_mass_g",
            sqlml.ArgumentError,
            r"needs OVER \(\) in TRANSFORM",
        ),
        (
            "ML.POLYNOMIAL_EXPAND(STRUCT(bill_length_mm), 2) AS p, body_mass_g",
            sqlml.ArgumentError,
            "takes STRUCT\\(a, b, ...\\) of at least two columns",
        ),
        (
            "bill_length_mm * 2 AS b2",
            sqlml.ColumnNotFound,
            "pass the label through the TRANSFORM list",
        ),
    ],
)
def test_transform_errors_store_nothing(con, transform, error, message):
    before = snapshot(con)
    with pytest.raises(error, match=message):
        con.sql(
            f"""CREATE MODEL bad TRANSFORM ({transform})
                OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
                AS SELECT * FROM penguins"""
        )
    assert snapshot(con) == before
