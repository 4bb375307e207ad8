"""The SQL surface: Connection.sql/execute, ML functions as table expressions, the model
functions in every clause, plain DuckDB left as it is."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import sqlml
from tests.conftest import load_penguins, snapshot

SPECIES = """CREATE MODEL species OPTIONS (model_type = 'logistic_reg', input_label_cols = ['species'],
                                        l2_reg = 1)
             AS SELECT species, bill_length_mm, bill_depth_mm, island FROM penguins"""


@pytest.fixture
def trained(con):
    con.sql(SPECIES)
    return con


def test_sql_returns_duckdb_relations(trained):
    relation = trained.sql("SELECT * FROM ML.PREDICT(MODEL species, TABLE penguins)")
    assert isinstance(relation, duckdb.DuckDBPyRelation)
    assert relation.columns[:2] == ["predicted_species", "predicted_species_probs"]
    assert relation.columns[2:] == trained.sql("SELECT * FROM penguins").columns
    assert isinstance(relation.df(), pd.DataFrame)
    assert isinstance(relation.arrow(), pa.RecordBatchReader)
    assert len(relation.fetchall()) == 344
    assert "predicted_species" in str(relation)
    assert trained.sql("SHOW MODELS").columns == [
        "schema", "name", "model_type", "label", "feature_count", "training_rows",
        "key_metric", "key_metric_value", "version", "created_at",
    ]  # fmt: skip
    assert trained.sql(SPECIES.replace("MODEL species", "MODEL IF NOT EXISTS species")) is None


def test_predict_keeps_rows_order_and_untouched_columns(trained):
    trained.sql(
        "CREATE TABLE odd AS SELECT 1000 - i AS id, [i, i] AS tags, {'k': i} AS meta, "
        "'Biscoe' AS island, 40.0 + i / 100 AS bill_length_mm, 18.0 AS bill_depth_mm, "
        "NULL AS species FROM range(5000) t(i) ORDER BY random()"
    )
    before = trained.sql("SELECT id, tags, meta FROM odd").fetchall()
    after = trained.sql(
        "SELECT id, tags, meta FROM ML.PREDICT(MODEL species, TABLE odd)"
    ).fetchall()
    assert after == before
    predicted = trained.sql(
        "SELECT predicted_species, species FROM ML.PREDICT(MODEL species, "
        "(SELECT * FROM odd ORDER BY id DESC))"
    ).fetchall()
    assert len(predicted) == 5000
    assert {p for p, _ in predicted} <= {"Adelie", "Chinstrap", "Gentoo"}
    assert all(s is None for _, s in predicted)  # the input's own column passes through


def test_ml_functions_as_table_expressions(trained):
    by_cte = trained.sql(
        """WITH p AS (SELECT * FROM ML.PREDICT(MODEL species, TABLE penguins)),
                e AS (SELECT * FROM ML.EVALUATE(MODEL species)),
                m AS (SHOW MODELS)
           SELECT count(*), any_value(e.accuracy), any_value(m.name)
           FROM p, e, m WHERE p.predicted_species = p.species"""
    ).fetchall()
    accuracy = trained.sql("SELECT accuracy FROM ML.EVALUATE(MODEL species)").fetchall()[0][0]
    assert by_cte == [(round(accuracy * 344), accuracy, "species")]

    joined = trained.sql(
        """SELECT a.predicted_species = b.predicted_species AS same
           FROM ML.PREDICT(MODEL species, (SELECT row_number() OVER () AS k, * FROM penguins)) a
           JOIN ML.PREDICT(MODEL species, (SELECT row_number() OVER () AS k, * FROM penguins)) b
             USING (k)"""
    ).fetchall()
    assert joined == [(True,)] * 344

    trained.sql(
        "CREATE TABLE scored AS SELECT species, predicted_species "
        "FROM ML.PREDICT(MODEL species, (SELECT * FROM penguins WHERE island = 'Dream'))"
    )
    assert trained.sql("SELECT count(*) FROM scored").fetchall() == [(124,)]
    nested = trained.sql(
        """SELECT count(*) FROM ML.PREDICT(MODEL species,
               (SELECT * EXCLUDE (predicted_species, predicted_species_probs)
                FROM ML.PREDICT(MODEL species, TABLE penguins)))"""
    ).fetchall()
    assert nested == [(344,)]
    assert trained.sql(
        "SELECT name FROM (SHOW MODELS) WHERE model_type = 'logistic_reg'"
    ).fetchall() == [("species",)]


def test_model_functions_in_every_clause(trained):
    rows = trained.sql(
        """SELECT species(p) AS guess, count(*) AS n FROM penguins p
           WHERE species(bill_length_mm, bill_depth_mm, island) <> 'Gentoo'
           GROUP BY species(p) ORDER BY guess"""
    ).fetchall()
    assert [g for g, _ in rows] == ["Adelie", "Chinstrap"]
    gentoo = trained.sql("SELECT count(*) FROM penguins p WHERE species(p) = 'Gentoo'").fetchall()
    assert sum(n for _, n in rows) + gentoo[0][0] == 344
    joined = trained.sql(
        """SELECT count(*) FROM penguins a JOIN penguins b
           ON species(a) = b.species AND a.bill_length_mm = b.bill_length_mm"""
    ).fetchall()[0][0]
    assert joined > 300
    trained.sql("CREATE TABLE guesses AS SELECT species_probs(p) AS probs FROM penguins p")
    assert trained.sql("SELECT typeof(probs) FROM guesses LIMIT 1").fetchall() == [
        ('STRUCT("label" VARCHAR, prob DOUBLE)[]',)
    ]


def test_null_arguments_are_imputed_never_a_null_result(con):
    con.sql(
        """CREATE MODEL mass OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
           AS SELECT body_mass_g, flipper_length_mm, sex FROM penguins"""
    )
    mean = con.sql(
        "SELECT avg(flipper_length_mm) FROM penguins WHERE body_mass_g IS NOT NULL"
    ).fetchall()[0][0]
    rows = con.sql(
        f"""SELECT mass(NULL, 'male'), mass({mean!r}, 'male'),
                   mass(200, NULL), mass(200, 'male'), mass(200, 'female'), mass(200, 'unseen'),
                   mass(NULL, NULL)"""
    ).fetchall()[0]
    assert None not in rows
    assert rows[0] == pytest.approx(rows[1], rel=1e-12)  # NULL -> the training mean
    # sex has NULLs in training: NULL is a category of its own, unlike an unseen value.
    assert len({rows[2], rows[3], rows[4], rows[5]}) == 4


def test_predictions_come_back_in_the_labels_type(con):
    con.sql(
        """CREATE TABLE labelled AS SELECT *, body_mass_g > 4200 AS heavy,
                  CAST(year - 2000 AS INTEGER) AS yr, CAST(year AS SMALLINT) AS y16,
                  CAST(species AS ENUM('Adelie', 'Chinstrap', 'Gentoo')) AS kind,
                  CAST(island AS ENUM('Biscoe', 'Dream', 'Torgersen')) AS place,
                  sex = 'male' AS male
           FROM penguins"""
    )
    for label, sql_type, values in [
        ("heavy", "BOOLEAN", {True, False}),
        ("yr", "INTEGER", {7, 8, 9}),
        ("y16", "SMALLINT", {2007, 2008, 2009}),
        ("kind", "VARCHAR", {"Adelie", "Chinstrap", "Gentoo"}),
    ]:
        # BOOLEAN and ENUM features (with NULLs: sex) one-hot encode like VARCHAR.
        con.sql(
            f"""CREATE OR REPLACE MODEL typed OPTIONS (model_type = 'random_forest_classifier',
                    input_label_cols = ['{label}'], num_parallel_tree = 5)
                AS SELECT {label}, bill_length_mm, flipper_length_mm, place, male FROM labelled"""
        )
        relation = con.sql(
            f"SELECT predicted_{label}, predicted_{label}_probs FROM ML.PREDICT(MODEL typed, TABLE labelled)"
        )
        assert [str(t) for t in relation.types] == [
            sql_type,
            f'STRUCT("label" {sql_type}, prob DOUBLE)[]',
        ]
        rows = relation.fetchall()
        assert {r[0] for r in rows} <= values
        assert [i["label"] for i in rows[0][1]] == sorted(values)


def test_dates_and_timestamps_become_numeric_parts(con):
    con.sql(
        """CREATE TABLE days AS
           SELECT CAST(DATE '2023-01-01' + INTERVAL (i) DAY AS DATE) AS day,
                  TIMESTAMP '2023-01-01 00:00:00' + INTERVAL (i * 7) HOUR AS ts,
                  (TIMESTAMPTZ '2023-01-01 00:00:00+00' + INTERVAL (i) MINUTE) AS tz
           FROM range(400) t(i)"""
    )
    # A label that is exactly a linear function of the parts: a linear model recovers it.
    con.sql(
        """CREATE MODEL parts OPTIONS (model_type = 'linear_reg', input_label_cols = ['label'],
                                        data_split_method = 'no_split')
           AS SELECT 3 * month(day) + isodow(day) + hour(ts) + minute(tz) AS label, day, ts, tz
           FROM days"""
    )
    fit = con.sql("SELECT r2_score FROM ML.EVALUATE(MODEL parts)").fetchall()[0][0]
    assert fit == pytest.approx(1.0, abs=1e-9)
    # The model function computes the parts the same way: in-sample rows come back exact.
    rows = con.sql(
        """SELECT 3 * month(day) + isodow(day) + hour(ts) + minute(tz), parts(day, ts, tz)
           FROM days USING SAMPLE 50 ROWS (reservoir, 1)"""
    ).fetchall()
    np.testing.assert_allclose([r[1] for r in rows], [r[0] for r in rows], atol=1e-6)
    described = dict(
        (name, value)
        for section, name, value in con.sql("DESCRIBE MODEL parts").fetchall()
        if section == "feature"
    )
    assert described["day"].startswith("DATE: parts unix_days, year, month, day, day_of_week")


def test_multiple_statements_and_plain_duckdb_as_written(con):
    result = con.sql(
        """CREATE TABLE t AS SELECT 1 AS label, 2.0 AS x UNION ALL SELECT 3, 4.0 UNION ALL SELECT 5, 7.0;
           CREATE MODEL m OPTIONS (model_type = 'linear_reg') AS SELECT * FROM t;
           -- DuckDB syntax that sqlglot does not know stays as written:
           SELECT list_transform([1, 2], lambda v: v * 10) AS model, COLUMNS('predicted_.*')
           FROM ML.PREDICT(MODEL m, (FROM t SELECT x))"""
    )
    assert result.columns == ["model", "predicted_label"]
    rows = result.fetchall()
    assert [r[0] for r in rows] == [[10, 20]] * 3
    np.testing.assert_allclose(
        [r[1] for r in rows], np.polyval(np.polyfit([2, 4, 7], [1, 3, 5], 1), [2, 4, 7])
    )


def test_execute_and_fetch(trained):
    assert trained.execute("SHOW MODELS").fetchall()[0][:3] == ("main", "species", "logistic_reg")
    assert trained.execute(
        "SELECT count(*) FROM penguins WHERE bill_length_mm > ?", [40]
    ).fetchone() == (242,)
    assert trained.execute("SELECT 'model' AS m").fetchall() == [("model",)]
    # A statement with no result has none in every form, not the previous statement's.
    dropped = trained.execute("DROP MODEL species")
    assert dropped.fetchall() == []
    assert dropped.description is None
    assert dropped.df().shape == (0, 0)
    assert dropped.arrow().num_columns == 0
    assert trained.execute("SELECT 'model' AS m").df()["m"].tolist() == ["model"]
    assert trained.execute("SHOW MODELS").fetchall() == []


def test_explain_prepare_and_parameters_around_ml_calls(trained):
    # EXPLAIN and PREPARE are commands to sqlglot (the rest one string): the calls inside
    # them are found all the same, and DuckDB explains or prepares the rewritten query.
    plan = trained.sql(
        "EXPLAIN SELECT predicted_species FROM ML.PREDICT(MODEL species, TABLE penguins)"
    ).fetchall()
    assert "__sqlml_" in "".join(str(part) for row in plan for part in row)
    analyzed = trained.sql("EXPLAIN ANALYZE SELECT * FROM ML.EVALUATE(MODEL species)")
    assert analyzed.fetchall()[0][0] == "analyzed_plan"
    assert trained.sql("EXPLAIN SELECT 42").fetchall() == duckdb.sql("EXPLAIN SELECT 42").fetchall()

    def by_hand(island: str, species: str | None = None) -> int:
        return trained.execute(
            "SELECT count(*) FROM penguins WHERE island = $1 AND "
            "species(bill_length_mm, bill_depth_mm, island) = coalesce($2, "
            "species(bill_length_mm, bill_depth_mm, island))",
            [island, species],
        ).fetchall()[0][0]

    trained.sql(
        "PREPARE q AS SELECT count(*) FROM ML.PREDICT(MODEL species, "
        "(SELECT * FROM penguins WHERE island = $1))"
    )
    assert trained.sql("EXECUTE q('Dream')").fetchall() == [(by_hand("Dream"),)] == [(124,)]
    assert trained.sql("EXECUTE q('Biscoe')").fetchall() == [(by_hand("Biscoe"),)] == [(168,)]
    # Parameters in the input query and around it, positional and named.
    inside_and_out = (
        "SELECT count(*) FROM ML.PREDICT(MODEL species, "
        "(SELECT * FROM penguins WHERE island = {})) WHERE predicted_species = {}"
    )
    expected = by_hand("Dream", "Adelie")
    assert 0 < expected < 124
    positional = trained.execute(inside_and_out.format("?", "?"), ["Dream", "Adelie"])
    assert positional.fetchall() == [(expected,)]
    named = trained.execute(
        inside_and_out.format("$island", "$species"), {"island": "Dream", "species": "Adelie"}
    )
    assert named.fetchall() == [(expected,)]
    # A function that reads its input while the statement is rewritten cannot take them.
    with pytest.raises(sqlml.QueryError) as caught:
        trained.execute(
            "SELECT * FROM ML.EVALUATE(MODEL species, (SELECT * FROM penguins WHERE island = ?))",
            ["Dream"],
        )
    assert str(caught.value) == (
        "The input of ML.EVALUATE(MODEL main.species) uses query parameters (?, $1 or $name), "
        "which have no values yet: this function reads its input while the statement is "
        "prepared. Write the values into the query"
    )


@pytest.mark.parametrize("inference", ["sql", "native"])
def test_parameters_as_the_input_columns_of_ml_predict(con, inference):
    """A parameter, cast (`?::DOUBLE`) or not, and an untyped NULL make an input column as
    DuckDB binds them: the same prediction as the model function's."""
    con.sql(
        "CREATE MODEL mass OPTIONS (model_type = 'boosted_tree_regressor', max_iterations = 5, "
        f"input_label_cols = ['body_mass_g'], inference = '{inference}') "
        "AS SELECT bill_length_mm, island, body_mass_g FROM penguins"
    )
    expected = con.sql("SELECT mass(40.5, NULL)").fetchall()
    for column in ("?::DOUBLE", "?", "$1::DOUBLE", "$1"):
        scored = con.execute(
            "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL mass, "
            f"(SELECT {column} AS bill_length_mm, NULL AS island))",
            [40.5],
        )
        assert scored.fetchall() == expected, column


def test_an_input_column_named_like_sqlmls_own_is_refused(trained):
    before = snapshot(trained)
    with pytest.raises(sqlml.ArgumentError) as caught:
        trained.sql(
            "SELECT * FROM ML.PREDICT(MODEL species, (SELECT *, 1 AS __sqlml_raw0 FROM penguins))"
        )
    assert str(caught.value) == (
        "ML.PREDICT(MODEL main.species): the input's column __sqlml_raw0 has a name sqlml "
        "keeps for its own columns (__sqlml_...); rename it, e.g. SELECT * RENAME "
        '("__sqlml_raw0" AS other_name)'
    )
    assert snapshot(trained) == before


def test_wrapping_an_existing_duckdb_connection(db_path):
    raw = duckdb.connect(str(db_path))
    load_penguins(raw)
    con = sqlml.connect(raw)
    assert con.duckdb is raw
    con.sql(SPECIES)
    assert raw.sql("SELECT species(p) FROM penguins p LIMIT 1").fetchall() == [("Adelie",)]
    con.close()
    assert raw.sql("SELECT count(*) FROM penguins").fetchall() == [(344,)]  # still open
    with sqlml.connect(raw) as again:  # registers the functions again
        assert again.sql("SELECT species(p) FROM penguins p LIMIT 1").fetchall() == [("Adelie",)]
    raw.close()


def test_context_manager_closes(db_path):
    with sqlml.connect(db_path) as con:
        con.sql("CREATE TABLE t AS SELECT 1 AS a")
    with pytest.raises(duckdb.ConnectionException):
        con.duckdb.sql("SELECT 1")


def test_import_does_not_load_heavy_libraries():
    import subprocess
    import sys

    code = (
        "import sys, sqlml; "
        "print(sorted(m for m in ('sklearn', 'skl2onnx', 'onnx', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_scoring_a_stored_model_does_not_load_scikit_learn(db_path):
    """Training needs scikit-learn and skl2onnx; ML.PREDICT, ML.EVALUATE, the model
    functions and the inspection functions on a stored model do not."""
    import subprocess
    import sys

    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(
            "CREATE MODEL kind OPTIONS (model_type = 'boosted_tree_classifier', "
            "input_label_cols = ['species'], max_iterations = 5) AS SELECT * FROM penguins"
        )
    code = (
        f"import sys, sqlml; con = sqlml.connect({str(db_path)!r}); "
        "con.sql('SELECT count(*) FROM ML.PREDICT(MODEL kind, TABLE penguins)').fetchall(); "
        "con.sql('SELECT * FROM ML.EVALUATE(MODEL kind, TABLE penguins)').fetchall(); "
        "con.sql('SELECT * FROM ML.FEATURE_IMPORTANCE(MODEL kind)').fetchall(); "
        "con.sql('SELECT kind(p) FROM penguins p').fetchall(); "
        "print(sorted(m for m in ('sklearn', 'skl2onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_date_parts_match_duckdb(con):
    from sqlml.features import DATE_PARTS, TIMESTAMP_PARTS, datetime_values

    con.sql(
        """CREATE TABLE moments AS
           SELECT CAST(DATE '1969-12-25' + INTERVAL (i * 37) DAY AS DATE) AS d,
                  TIMESTAMP '1969-12-31 23:59:30' + INTERVAL (i * 86461) SECOND AS ts,
                  TIMESTAMPTZ '2000-02-28 22:00:00+00' + INTERVAL (i * 3671) SECOND AS tz
           FROM range(1000) t(i) UNION ALL SELECT NULL, NULL, NULL"""
    )
    table = con.sql("SELECT * FROM moments").to_arrow_table()
    utc = "tz AT TIME ZONE 'UTC'"
    expected = con.sql(
        f"""SELECT epoch(d) / 86400, year(d), month(d), day(d), isodow(d), dayofyear(d),
                   epoch(ts), year(ts), month(ts), day(ts), isodow(ts), dayofyear(ts), hour(ts),
                   minute(ts), second(ts),
                   epoch(tz), year({utc}), month({utc}), day({utc}), isodow({utc}),
                   dayofyear({utc}), hour({utc}), minute({utc}), second({utc})
            FROM moments"""
    ).fetchnumpy()
    got = np.hstack(
        [
            datetime_values(table.column("d"), list(DATE_PARTS)),
            datetime_values(table.column("ts"), list(TIMESTAMP_PARTS)),
            datetime_values(table.column("tz"), list(TIMESTAMP_PARTS)),
        ]
    )
    want = np.column_stack([np.asarray(v, dtype=float) for v in expected.values()])
    np.testing.assert_allclose(got[:-1], want[:-1], rtol=0, atol=1e-9)
    assert np.isnan(got[-1]).all()  # NULL in every part


EXTREMES = [
    "1e300",
    "-1e300",
    "'inf'",
    "'-inf'",
    "3.4028235e38",
    "-3.4028236e38",
    "172",
    "200.5",
    "NULL",
]


@pytest.mark.parametrize(
    ("model_type", "label"),
    [("boosted_tree_regressor", "body_mass_g"), ("random_forest_classifier", "species")],
)
def test_trees_in_sql_native_and_onnx_agree_beyond_float32(con, model_type, label):
    """Trees split float32 values: beyond float32's range an input is +-infinity in the
    ONNX graph and in native code, and SQL must score it the same (DuckDB's own cast to
    FLOAT refuses it). The native path does so without a numpy overflow warning."""
    import warnings

    size = "num_parallel_tree = 3" if model_type.startswith("random") else "max_iterations = 3"
    for inference in ("sql", "native", "onnx"):  # asked for by name: refused if not taken
        con.sql(
            f"CREATE MODEL t_{inference} OPTIONS (model_type = '{model_type}', input_label_cols "
            f"= ['{label}'], {size}, max_tree_depth = 2, inference = '{inference}') "
            f"AS SELECT {label}, flipper_length_mm, bill_length_mm FROM penguins"
        )
    values = ", ".join(f"({v}::DOUBLE)" for v in EXTREMES)
    scored = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for inference in ("sql", "native", "onnx"):
            scored[inference] = con.sql(
                f"SELECT t_{inference}(v, v), t_{inference}(v, 45e0), t_{inference}(200e0, v) "
                f"FROM (VALUES {values}) AS x(v)"
            ).fetchall()
    assert [str(w.message) for w in caught] == []
    if label == "species":
        assert scored["sql"] == scored["native"] == scored["onnx"]
    else:  # onnxruntime sums the trees in float32
        assert np.asarray(scored["sql"]) == pytest.approx(np.asarray(scored["onnx"]), rel=1e-6)
        assert np.asarray(scored["sql"]) == pytest.approx(np.asarray(scored["native"]), rel=1e-12)
    big, huge_negative = scored["sql"][0], scored["sql"][1]
    assert scored["sql"][2] == big and scored["sql"][3] == huge_negative  # like +-inf


@pytest.mark.parametrize("rounding", ["down", "nearest"])
def test_tree_sql_and_native_round_thresholds_as_the_stored_onnx(rounding):
    """The ONNX graph holds float32 thresholds: rounded down since sqlml mends histogram
    boosting's, rounded to nearest in models stored before. SQL and native code follow
    what the model's parameters say, so each agrees with its own graph: at a threshold
    whose nearest float32 lies above it, that float32 goes right, or (stored before) left."""
    from sqlml.families.trees import compile_trees
    from sqlml.features import NUMERIC, Feature
    from sqlml.native import TreeArrays

    threshold = 42.39999961853027  # between 42.3 and 42.5; its nearest float32 is above
    above = np.float32(threshold)
    assert float(above) > threshold
    tree = {
        "gain": [1.0, 0.0, 0.0], "feature": [0, 0, 0], "threshold": [threshold, 0.0, 0.0],
        "left": [1, -1, -1], "right": [2, -1, -1], "leaf": [False, True, True],
        "value": [[0.0], [-1.0], [1.0]], "cover": [2.0, 1.0, 1.0], "outputs": [0],
    }  # fmt: skip
    parameters = {
        "trees": [tree], "base": [0.0], "scale": 1.0, "link": None,
        "float32_thresholds": rounding,
    }  # fmt: skip
    feature = Feature(name="x", sql_type="DOUBLE", kind=NUMERIC, means=[0.0])
    values = [42.3, threshold, float(np.nextafter(above, np.float32(0))), float(above), 42.4]
    values += [float(np.nextafter(above, np.float32(np.inf))), 42.5]
    raw, _ = compile_trees(parameters, [feature])
    [expression] = raw(["x"])
    in_sql = [
        row[0]
        for row in duckdb.sql(
            f"SELECT {expression} FROM (SELECT unnest($v::DOUBLE[]) AS x)", params={"v": values}
        ).fetchall()
    ]
    native = TreeArrays(parameters).raw(np.asarray([values]))[:, 0].tolist()
    assert in_sql == native
    # The threshold itself, float32(42.4) and 42.4 round to the float32 above the
    # threshold: right when the graph's threshold is rounded down (where scikit-learn,
    # trained on float32-rounded features, puts that float32), left in a graph rounded to
    # nearest.
    if rounding == "down":
        assert in_sql == [-1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    else:
        assert in_sql == [-1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0]


def test_tree_sql_comparisons_round_like_float32():
    """compiler.float32_at_most compares a DOUBLE as float32 would, thresholds anywhere:
    around each threshold, its float32 neighbours and the midpoints between them."""
    from sqlml import compiler

    big = float(np.finfo(np.float32).max)
    thresholds = [0.0, -0.0, 0.1, -0.1, 1e-45, -1e-45, 1e-50, 0.5, 172.5, big, -big]
    thresholds += [3.4e38, 1e300, -1e300, float("inf"), float("-inf"), float("nan")]
    thresholds += [float(np.float32(v)) for v in (0.1, 172.5, 1 / 3)]
    values = [0.0, 1e-46, 7e-46, -7e-46, 1e300, -1e300, float("inf"), float("-inf"), big]
    values += [3.4028235677973366e38, -3.4028235677973366e38, 3.4028235677973362e38]
    with np.errstate(over="ignore"):  # numpy's float32 overflows to inf: the reference
        for threshold in thresholds:
            around = []
            if np.isfinite(threshold):
                low = np.float32(threshold)
                if float(low) > threshold:
                    low = np.nextafter(low, np.float32(-np.inf))
                high = np.nextafter(low, np.float32(np.inf))
                around = [threshold, float(low), float(high), (float(low) + float(high)) / 2]
                for x in list(around):
                    for direction in (np.inf, -np.inf):
                        for _ in range(3):
                            x = float(np.nextafter(x, direction))
                            around.append(x)
            checked = [v for v in values + around if not np.isnan(v)]
            condition = compiler.float32_at_most("v", threshold)
            [(got,)] = duckdb.sql(
                f"SELECT list_transform(?::DOUBLE[], lambda v: {condition})", params=[checked]
            ).fetchall()
            want = [float(np.float32(v)) <= threshold for v in checked]
            assert got == want, (threshold, condition)


def test_python_variables_are_tables_as_in_duckdb():
    """DuckDB reads a DataFrame or Arrow table named in SQL from the caller's variables;
    through sqlml too, in every statement that reads rows: queries, training (its
    TRANSFORM and streaming included), ML functions, model functions."""
    import pyarrow as pa
    from sklearn.datasets import load_diabetes

    diabetes = load_diabetes(as_frame=True).frame  # a local variable of this test
    arrow = pa.Table.from_pandas(diabetes)  # noqa: F841 (read by DuckDB, by name)
    con = sqlml.connect()
    assert con.sql("SELECT count(*) FROM diabetes").fetchall() == [(442,)]
    assert con.execute("SELECT count(*) FROM arrow").fetchall() == [(442,)]
    con.sql(
        """CREATE MODEL d TRANSFORM (ML.STANDARD_SCALER(bmi) OVER () AS bmi, bp, target)
           OPTIONS (model_type = 'linear_reg', input_label_cols = ['target'])
           AS SELECT * FROM diabetes"""
    )
    con.sql(
        """CREATE MODEL s OPTIONS (model_type = 'linear_reg', input_label_cols = ['target'],
               streaming = TRUE, optimize_strategy = 'batch_gradient_descent')
           AS SELECT bmi, bp, target FROM arrow"""
    )
    predicted = con.sql("SELECT predicted_target FROM ML.PREDICT(MODEL d, TABLE diabetes)")
    by_function = con.sql("SELECT d(x) FROM diabetes AS x").fetchall()
    assert predicted.fetchall() == by_function
    [(r2,)] = con.sql("SELECT r2_score FROM ML.EVALUATE(MODEL d, TABLE arrow)").fetchall()
    stored = con.sql("SELECT r2_score FROM ML.EVALUATE(MODEL d)").fetchall()[0][0]
    assert 0.3 < r2 < 0.6 and stored == pytest.approx(r2, rel=1e-12)  # no split: the same rows
    assert con.sql("SELECT count(s(x)) FROM arrow AS x").fetchall() == [(442,)]
    # A table of the name comes first, as in DuckDB; a name that is neither stays an error
    # (sqlml's own variables are never read).
    con.sql("CREATE TABLE diabetes AS SELECT 1 AS bmi")
    assert con.sql("SELECT count(*) FROM diabetes").fetchall() == [(1,)]
    for sql in (
        "SELECT * FROM data",
        "CREATE MODEL x OPTIONS (model_type = 'kmeans') AS SELECT * FROM data",
        "SELECT * FROM ML.PREDICT(MODEL d, TABLE data)",
    ):
        with pytest.raises((duckdb.CatalogException, sqlml.QueryError), match="data does not"):
            con.sql(sql)
    con.close()
