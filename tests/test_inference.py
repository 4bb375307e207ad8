"""Models scored as plain SQL against the same models scored by onnxruntime: equal outputs
for every family (with NULLs, NaN and unseen categories), usable from bare DuckDB, never
stale after CREATE OR REPLACE."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import duckdb
import numpy as np
import pytest

import sqlml
from tests.conftest import load_penguins, snapshot

PROBE = """
CREATE TABLE probe AS
SELECT * FROM penguins
UNION ALL SELECT 'Adelie', NULL, NULL, 18.0, 190, 4000, NULL, 2008
UNION ALL SELECT 'Gentoo', 'Atlantis', 45.0, 'NaN'::DOUBLE, NULL, 5000, 'other', NULL
UNION ALL SELECT NULL, 'Dream', 'NaN'::DOUBLE, NULL, 230, NULL, 'female', 2030
"""

CASES = {
    "linear_reg": ("linear_reg", "body_mass_g", ""),
    "linear_reg_sgd": (
        "linear_reg",
        "body_mass_g",
        ", optimize_strategy = 'batch_gradient_descent', max_iterations = 20",
    ),
    "logistic_multiclass": ("logistic_reg", "species", ", l2_reg = 1"),
    "logistic_binary": ("logistic_reg", "sex", ""),
    "logistic_sgd_binary": (
        "logistic_reg",
        "sex",
        ", optimize_strategy = 'batch_gradient_descent', max_iterations = 20",
    ),
    "logistic_sgd_multiclass": (
        "logistic_reg",
        "species",
        ", optimize_strategy = 'batch_gradient_descent', max_iterations = 20",
    ),
    "kmeans": ("kmeans", None, ", num_clusters = 4"),
    "boosted_regressor": ("boosted_tree_regressor", "body_mass_g", ", max_iterations = 5"),
    "boosted_binary": ("boosted_tree_classifier", "sex", ", max_iterations = 5"),
    "boosted_multiclass": ("boosted_tree_classifier", "species", ", max_iterations = 4"),
    "boosted_exact": (
        "boosted_tree_classifier",
        "species",
        ", max_iterations = 3, subsample = 0.8, max_tree_depth = 3",
    ),
    "forest_regressor": (
        "random_forest_regressor",
        "flipper_length_mm",
        ", num_parallel_tree = 4, max_tree_depth = 5",
    ),
    "forest_classifier": (
        "random_forest_classifier",
        "island",
        ", num_parallel_tree = 4, max_tree_depth = 5",
    ),
}
FLOAT32 = {"boosted", "forest"}


def train(con: sqlml.Connection, name: str, case: str, inference: str) -> None:
    model_type, label, extra = CASES[case]
    options = f"model_type = '{model_type}', inference = '{inference}'{extra}"
    if label:
        options += f", input_label_cols = ['{label}']"
    con.sql(f"CREATE OR REPLACE MODEL {name} OPTIONS ({options}) AS SELECT * FROM penguins")


def path(con: sqlml.Connection, model: str) -> str:
    rows = con.sql(f"DESCRIBE MODEL {model}").fetchall()
    return next(v for s, n, v in rows if (s, n) == ("inference", "path"))


def assert_same(sql_rows: list, onnx_rows: list, rtol: float) -> None:
    assert len(sql_rows) == len(onnx_rows)
    for a, b in zip(sql_rows, onnx_rows, strict=True):
        flat_a, flat_b = _flatten(a), _flatten(b)
        numbers = [(x, y) for x, y in zip(flat_a, flat_b, strict=True) if isinstance(x, float)]
        others = [(x, y) for x, y in zip(flat_a, flat_b, strict=True) if not isinstance(x, float)]
        assert all(x == y for x, y in others), (a, b)
        if numbers:
            got, want = np.array(numbers).T
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def _flatten(value: object) -> list:
    if isinstance(value, tuple | list):
        return [item for v in value for item in _flatten(v)]
    if isinstance(value, dict):
        return [item for v in value.values() for item in _flatten(v)]
    return [value]


@pytest.mark.parametrize("case", sorted(CASES))
def test_sql_scores_like_onnx(con, case):
    con.sql(PROBE)
    train(con, "fast", case, "sql")
    train(con, "reference", case, "onnx")
    assert (path(con, "fast"), path(con, "reference")) == ("sql", "onnx")
    rtol = 1e-5 if any(case.startswith(f) for f in FLOAT32) else 1e-9

    fast = con.sql("SELECT * FROM ML.PREDICT(MODEL fast, TABLE probe)").fetchall()
    reference = con.sql("SELECT * FROM ML.PREDICT(MODEL reference, TABLE probe)").fetchall()
    assert_same(fast, reference, rtol)
    assert len(fast) == 347

    functions = ["fast(p)", "reference(p)"]
    if CASES[case][0].endswith("classifier") or CASES[case][0] == "logistic_reg":
        functions += ["fast_probs(p)", "reference_probs(p)"]
    rows = con.sql(f"SELECT {', '.join(functions)} FROM probe p").fetchall()
    for row in rows:
        assert_same([row[0::2]], [row[1::2]], rtol)
        assert None not in row  # NULLs, NaN and unseen values still score


TREE_CASES = sorted(c for c in CASES if c.startswith(("boosted", "forest")))


@pytest.mark.parametrize("case", TREE_CASES)
def test_native_scores_like_onnx(con, case):
    con.sql(PROBE)
    train(con, "fast", case, "native")
    train(con, "reference", case, "onnx")
    assert (path(con, "fast"), path(con, "reference")) == ("native", "onnx")

    fast = con.sql("SELECT * FROM ML.PREDICT(MODEL fast, TABLE probe)").fetchall()
    reference = con.sql("SELECT * FROM ML.PREDICT(MODEL reference, TABLE probe)").fetchall()
    assert len(fast) == 347
    assert_same(fast, reference, 1e-5)

    functions = ["fast(p)", "reference(p)"]
    if CASES[case][0].endswith("classifier"):
        functions += ["fast_probs(p)", "reference_probs(p)"]
    rows = con.sql(f"SELECT {', '.join(functions)} FROM probe p").fetchall()
    for row in rows:
        assert_same([row[0::2]], [row[1::2]], 1e-5)
        assert None not in row  # NULLs, NaN and unseen values still score
    metrics = [
        con.sql(f"SELECT * FROM ML.EVALUATE(MODEL {m})").fetchall() for m in ("fast", "reference")
    ]
    assert_same(metrics[0], metrics[1], 1e-5)


@pytest.mark.parametrize("model_type", ["boosted_tree_classifier", "random_forest_classifier"])
def test_trees_score_the_same_on_every_path_at_their_thresholds(con, model_type):
    """Between two training values lies a split; there, onnxruntime compares float32 values
    with float32 thresholds. A value whose float32 is just above a threshold went left in
    onnxruntime (histogram boosting's thresholds rounded to nearest by skl2onnx) and right
    in SQL and native code. The penguin with a 42.4 mm bill, left out of training, lies
    on the split between 42.3 and 42.5: every path must put it, and every value at and
    around every split, on the same side."""
    size = "max_iterations = 10" if model_type.startswith("boosted") else "num_parallel_tree = 5"
    size += ", max_tree_depth = 6"
    for inference in ("sql", "native", "onnx"):
        con.sql(
            f"CREATE MODEL t_{inference} OPTIONS (model_type = '{model_type}', "
            f"input_label_cols = ['species'], {size}, inference = '{inference}') "
            "AS SELECT species, bill_length_mm, flipper_length_mm FROM penguins "
            "WHERE bill_length_mm IS DISTINCT FROM 42.4"
        )
        assert path(con, f"t_{inference}") == inference
    # At each midpoint between neighbouring training values, and the float32 values on
    # either side of it, for each feature (the other at a training value).
    con.sql(
        """
        CREATE TABLE at_splits AS
        WITH bills AS (SELECT DISTINCT bill_length_mm AS v FROM penguins
                       WHERE v IS NOT NULL AND v <> 42.4),
             midpoints AS (SELECT (v + lead(v) OVER (ORDER BY v)) / 2 AS m FROM bills),
             around AS (SELECT unnest([m, m::FLOAT::DOUBLE, nextafter(m::FLOAT, 'inf'::FLOAT),
                                       nextafter(m::FLOAT, '-inf'::FLOAT)]) AS v
                        FROM midpoints WHERE m IS NOT NULL)
        SELECT v AS bill_length_mm, 195 AS flipper_length_mm FROM around
        UNION ALL SELECT 42.4, 195
        UNION ALL SELECT 45.0, f + d FROM range(170, 232) AS r(f), (VALUES (0.5), (0.25)) AS x(d)
        """
    )
    scored = {
        inference: con.sql(
            f"SELECT predicted_species, predicted_species_probs "
            f"FROM ML.PREDICT(MODEL t_{inference}, TABLE at_splits)"
        ).fetchall()
        for inference in ("sql", "native", "onnx")
    }
    assert len(scored["sql"]) > 400
    assert [r[0] for r in scored["sql"]] == [r[0] for r in scored["onnx"]]
    assert_same(scored["sql"], scored["native"], 1e-9)
    assert_same(scored["sql"], scored["onnx"], 1e-5)
    # And ML.EVALUATE (which scores through the model's path) sees the same probabilities.
    truth = "SELECT 42.4 AS bill_length_mm, 195 AS flipper_length_mm, 'Chinstrap' AS species"
    losses = [
        con.sql(f"SELECT log_loss FROM ML.EVALUATE(MODEL t_{i}, ({truth}))").fetchall()[0][0]
        for i in ("sql", "native", "onnx")
    ]
    assert losses == pytest.approx([losses[0]] * 3, rel=1e-5)


@pytest.mark.parametrize(
    ("model_type", "extra"),
    [
        ("boosted_tree_classifier", "max_iterations = 30, max_tree_depth = 6"),
        ("random_forest_classifier", "num_parallel_tree = 20, max_tree_depth = 10"),
    ],
)
def test_native_scores_like_onnx_on_digits(con, model_type, extra):
    """Ten classes, 64 features, trees of mixed depths: every probability of every row."""
    from sklearn.datasets import load_digits

    digits = load_digits(as_frame=True).frame
    con.duckdb.register("digits_frame", digits)
    con.sql("CREATE TABLE digits AS SELECT * FROM digits_frame")
    for name, inference in (("fast", "native"), ("reference", "onnx")):
        con.sql(
            f"CREATE MODEL {name} OPTIONS (model_type = '{model_type}', {extra}, "
            f"input_label_cols = ['target'], inference = '{inference}') AS SELECT * FROM digits"
        )
    assert path(con, "fast") == "native"
    query = (
        "SELECT predicted_target, [p.prob FOR p IN predicted_target_probs] "
        "FROM ML.PREDICT(MODEL {}, TABLE digits)"
    )
    fast = con.sql(query.format("fast")).fetchall()
    reference = con.sql(query.format("reference")).fetchall()
    assert len(fast) == 1797
    assert [r[0] for r in fast] == [r[0] for r in reference]
    np.testing.assert_allclose(
        np.array([r[1] for r in fast]), np.array([r[1] for r in reference]), atol=1e-5
    )
    accuracy = np.mean([r[0] for r in fast] == digits["target"].to_numpy())
    assert accuracy > 0.9  # a real model, not a constant


def test_native_model_scores_after_reopening(db_path):
    query = "SELECT kind(p), kind_probs(p) FROM penguins p"
    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(
            "CREATE MODEL kind OPTIONS (model_type = 'boosted_tree_classifier', "
            "input_label_cols = ['species'], inference = 'native') AS SELECT * FROM penguins"
        )
        assert path(con, "kind") == "native"
        before = con.sql(query).fetchall()
    with sqlml.connect(db_path) as con:
        assert con.sql(query).fetchall() == before


@pytest.mark.parametrize(
    ("options", "option", "message"),
    [
        (
            "model_type = 'dnn_regressor', inference = 'sql'",
            "inference",
            "inference = 'sql': dnn_regressor has no SQL form (model main.m); use 'auto' or 'onnx'",
        ),
        (
            "model_type = 'linear_reg', inference = 'native'",
            "inference",
            "inference = 'native' scores tree ensembles (boosted_tree_* and random_forest_*), "
            "not linear_reg (model main.m); use 'auto', 'sql' or 'onnx'",
        ),
        (
            "model_type = 'random_forest_regressor', inference = 'native'",
            "max_tree_depth",
            "inference = 'native' takes trees up to 12 levels deep, and model main.m has "
            "max_tree_depth = 20; set max_tree_depth to 12 or less, or use inference = 'auto' "
            "or 'onnx'",
        ),
    ],
)
def test_paths_refused_where_they_cannot_apply(con, options, option, message):
    before = snapshot(con)
    with pytest.raises(sqlml.OptionError) as error:
        con.sql(
            f"CREATE MODEL m OPTIONS ({options}, input_label_cols = ['body_mass_g']) "
            "AS SELECT * FROM penguins"
        )
    assert str(error.value) == message
    assert error.value.option == option
    assert snapshot(con) == before


def test_a_missing_numba_is_remembered(monkeypatch):
    """Asked for on every DuckDB vector: a failed import is not tried again each time."""
    import sys

    from sqlml import native

    monkeypatch.setattr(native, "_kernel", None)
    monkeypatch.setattr(native, "_missing", None)
    monkeypatch.setitem(sys.modules, "sqlml.native_walk", None)  # import raises ImportError
    with pytest.raises(ImportError):
        native.kernel()
    assert native.available() is False
    monkeypatch.delitem(sys.modules, "sqlml.native_walk")  # importable again, not retried
    assert native.available() is False
    monkeypatch.setattr(native, "_missing", None)
    assert native.available() is True


def test_warming_loads_the_walk_that_scoring_calls():
    """The warm-up calls the walk on no rows with the argument types scoring uses, so that
    its machine code is compiled or read from numba's cache ahead of the first query: in a
    fresh process, one version of the walk exists after the warm-up, and still one after a
    model scores."""
    script = textwrap.dedent(
        """
        import numpy as np
        from sqlml import native

        native._load()
        warmed = len(native.kernel().signatures)
        tree = {
            "feature": [0, -2, -2], "threshold": [0.5, 0, 0], "left": [1, -1, -1],
            "right": [2, -1, -1], "leaf": [False, True, True],
            "value": [[0.0], [1.0], [2.0]], "outputs": [0],
        }
        arrays = native.TreeArrays({"trees": [tree], "base": [0.0], "scale": 1.0, "link": None})
        raw = arrays.raw(np.array([[0.2, 0.7]], np.float32))[:, 0].tolist()
        print(warmed, len(native.kernel().signatures), raw)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 1 [1.0, 2.0]"


def test_without_numba_trees_score_with_onnxruntime(con, monkeypatch):
    """numba is what compiles the native scorer: where it cannot be imported, auto picks
    onnxruntime, and a model stored as native scores through its ONNX graph, unchanged."""
    from sqlml import native

    create = (
        "CREATE MODEL mass OPTIONS (model_type = 'boosted_tree_regressor', "
        "input_label_cols = ['body_mass_g']) AS SELECT * FROM penguins"
    )
    con.sql(create)
    for case in ("boosted_binary", "boosted_multiclass", "forest_classifier"):
        train(con, case, case, "native")
    assert path(con, "mass") == "native"
    query = "SELECT mass(p) FROM penguins p"
    predict = [
        f"SELECT * FROM ML.PREDICT(MODEL {m}, TABLE penguins)"
        for m in ("mass", "boosted_binary", "boosted_multiclass", "forest_classifier")
    ]
    native_rows = con.sql(query).fetchall()
    native_predictions = [con.sql(q).fetchall() for q in predict]

    def missing() -> None:
        raise ImportError("No module named 'numba'")

    monkeypatch.setattr(native, "kernel", missing)
    with sqlml.connect() as other:  # a fresh connection: new runtimes
        load_penguins(other)
        other.sql(create)
        assert path(other, "mass") == "onnx"
        reason = other.sql("DESCRIBE MODEL mass").fetchall()
        assert ("inference", "reason", "an ensemble this large scores faster off SQL; not "
                "native: numba, which compiles the native scorer, cannot be imported") in reason  # fmt: skip
    con.functions.unregister_all()  # as a new process would: runtimes built again
    for record in con.catalog.all_current():
        con.functions.register(record)
        assert type(con.functions.runtime(record)).__name__ == "NativeRuntime"
    assert_same(con.sql(query).fetchall(), native_rows, 1e-5)
    for q, rows in zip(predict, native_predictions, strict=True):
        assert_same(con.sql(q).fetchall(), rows, 1e-5)


def test_auto_picks_sql_for_linear_models_and_small_trees(con):
    for model, options, expected in [
        ("a", "model_type = 'linear_reg', input_label_cols = ['body_mass_g']", "sql"),
        ("b", "model_type = 'logistic_reg', input_label_cols = ['species']", "sql"),
        ("c", "model_type = 'kmeans'", "sql"),
        (
            "d",
            "model_type = 'boosted_tree_regressor', input_label_cols = ['body_mass_g']",
            "native",
        ),
        (
            "e",
            "model_type = 'boosted_tree_regressor', input_label_cols = ['body_mass_g'], "
            "max_iterations = 3, max_tree_depth = 2",
            "sql",
        ),
        (
            "f",
            "model_type = 'random_forest_classifier', input_label_cols = ['species'], "
            "max_tree_depth = 8",
            "native",
        ),
    ]:
        con.sql(f"CREATE MODEL {model} OPTIONS ({options}) AS SELECT * FROM penguins")
        assert path(con, model) == expected, model
    # Noise grows trees deeper than the native scorer takes: onnxruntime.
    con.sql(
        "CREATE TABLE noise AS SELECT i::DOUBLE AS x, hash(i) % 1000 AS y FROM range(20000) r(i)"
    )
    con.sql(
        "CREATE MODEL g OPTIONS (model_type = 'random_forest_regressor', input_label_cols = ['y'], "
        "num_parallel_tree = 3) AS SELECT * FROM noise"
    )
    assert path(con, "g") == "onnx"
    reason = dict((n, v) for s, n, v in con.sql("DESCRIBE MODEL g").fetchall() if s == "inference")
    assert reason["reason"].startswith(
        "an ensemble this large scores faster off SQL; not native: its trees are "
    )
    assert reason["reason"].endswith(
        " levels deep; the native scorer takes up to 12 (set max_tree_depth lower)"
    )


def test_models_in_sql_run_in_bare_duckdb(db_path):
    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(PROBE)
        for name, case in [
            ("mass", "linear_reg"),
            ("kind", "logistic_multiclass"),
            ("groups", "kmeans"),
            ("tiny", "boosted_binary"),
        ]:
            train(con, name, case, "sql")
        con.sql(
            "CREATE MODEL heavy OPTIONS (model_type = 'boosted_tree_regressor', "
            "input_label_cols = ['body_mass_g']) AS SELECT * FROM penguins"
        )
        query = "SELECT mass(p), kind(p), kind_probs(p), groups(p), tiny(p) FROM probe p"
        expected = con.sql(query).fetchall()
    script = textwrap.dedent(
        f"""
        import json, sys, duckdb
        con = duckdb.connect({str(db_path)!r}, read_only=True)
        rows = con.sql({query!r}).fetchall()
        try:
            con.sql("SELECT heavy(p) FROM probe p").fetchall()
            error = None
        except duckdb.Error as e:
            error = str(e)
        print(json.dumps({{"rows": rows, "error": error,
                           "sqlml": "sqlml" in sys.modules}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    out = json.loads(result.stdout)
    assert out["sqlml"] is False
    assert out["rows"] == json.loads(json.dumps(expected))
    assert "__sqlml_main_heavy" in out["error"]  # onnxruntime models need sqlml


@pytest.mark.parametrize("inference", ["sql", "onnx"])
def test_model_functions_never_go_stale(con, inference):
    con.sql("CREATE TABLE t AS SELECT range::DOUBLE AS x, range * 2.0 + 1 AS y FROM range(100)")
    create = (
        "CREATE OR REPLACE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['y'], "
        f"inference = '{inference}') AS SELECT x, {{label}} AS y FROM t"
    )
    con.sql(create.format(label="y"))
    raw = con.duckdb
    raw.execute("PREPARE constant AS SELECT m(10.0)")
    raw.execute("PREPARE parameter AS SELECT m($1)")
    raw.execute("PREPARE scan AS SELECT m(x) FROM t WHERE x = 10")
    con.sql("CREATE VIEW v AS SELECT m(10.0) AS y")
    con.sql("CREATE MACRO doubled(a) AS 2 * m(a)")
    relation = con.sql("SELECT m(10.0) AS y")

    def everything() -> list[float]:
        values = [
            raw.execute("EXECUTE constant").fetchall(),
            raw.execute("EXECUTE parameter(10.0)").fetchall(),
            raw.execute("EXECUTE scan").fetchall(),
            con.sql("SELECT * FROM v").fetchall(),
            con.sql("SELECT doubled(10.0) / 2").fetchall(),
            relation.fetchall(),
            con.sql("SELECT list_transform([10.0], lambda a: m(a))[1]").fetchall(),
        ]
        return [round(v[0][0], 6) for v in values]

    assert everything() == [21.0] * 7
    con.sql(create.format(label="y * 3"))
    assert everything() == [63.0] * 7
    con.sql("DROP MODEL m")
    for statement in ("EXECUTE constant", "EXECUTE parameter(1.0)", "EXECUTE scan"):
        with pytest.raises(duckdb.Error):
            raw.execute(statement).fetchall()
    with pytest.raises(duckdb.Error):
        con.sql("SELECT * FROM v").fetchall()


def test_closing_one_of_two_connections_to_a_file_keeps_the_other_scoring(db_path):
    """DuckDB keeps Python UDFs per database, alive only while the connection that made
    them is open: closing it must hand the onnxruntime models to the connections left (in
    a subprocess, since a dangling UDF crashes the process)."""
    script = textwrap.dedent(
        f"""
        import sqlml
        from tests.conftest import load_penguins, snapshot
        first = sqlml.connect({str(db_path)!r})
        load_penguins(first)
        first.sql("CREATE MODEL kind OPTIONS (model_type = 'boosted_tree_classifier', "
                  "input_label_cols = ['species'], max_iterations = 5, inference = 'onnx') "
                  "AS SELECT * FROM penguins")
        query = "SELECT count(*) FROM penguins p WHERE kind(p) = species"
        expected = first.sql(query).fetchall()
        second = sqlml.connect({str(db_path)!r})
        third = sqlml.connect({str(db_path)!r})
        first.close()
        after_first = second.sql(query).fetchall()
        second.close()
        print(expected == after_first == third.sql(query).fetchall(), expected[0][0])
        third.close()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    agree, correct = result.stdout.split()
    assert agree == "True"
    assert 300 < int(correct) <= 344


def test_native_scores_dates_and_booleans_like_onnx(con):
    con.sql(
        "CREATE TABLE dated AS SELECT *, make_date(year, 1 + (bill_depth_mm::INT % 12), 1) AS d, "
        "sex = 'male' AS male FROM penguins"
    )
    con.sql("INSERT INTO dated (species, d, male) VALUES ('Adelie', NULL, NULL)")
    columns = "d, male, island, flipper_length_mm, body_mass_g"
    for name, inference in (("fast", "native"), ("reference", "onnx")):
        con.sql(
            f"CREATE MODEL {name} OPTIONS (model_type = 'boosted_tree_classifier', "
            f"input_label_cols = ['species'], inference = '{inference}') "
            f"AS SELECT species, {columns} FROM dated"
        )
    assert path(con, "fast") == "native"
    query = f"SELECT * FROM ML.PREDICT(MODEL {{}}, (SELECT {columns} FROM dated))"
    fast = con.sql(query.format("fast")).fetchall()
    assert len(fast) == 345
    assert_same(fast, con.sql(query.format("reference")).fetchall(), 1e-5)


def test_native_walk_pads_shallow_leaves():
    """A tree with leaves at depths 1, 2 and 3, walked by eight rows at once and by the
    rows left over: each row ends in the leaf a plain walk reaches."""
    from sqlml.native import TreeArrays

    tree = {  # x0 <= 0.5 ? 1 : (x1 <= 0.25 ? 2 : (x0 <= 0.75 ? 3 : 4))
        "feature": [0, -2, 1, -2, 0, -2, -2],
        "threshold": [0.5, 0, 0.25, 0, 0.75, 0, 0],
        "left": [1, -1, 3, -1, 5, -1, -1],
        "right": [2, -1, 4, -1, 6, -1, -1],
        "leaf": [False, True, False, True, False, True, True],
        "value": [[0.0], [1.0], [0.0], [2.0], [0.0], [3.0], [4.0]],
        "outputs": [0],
    }
    second = {**tree, "value": [[10 * v for v in value] for value in tree["value"]]}
    arrays = TreeArrays(
        {"trees": [tree, second], "base": [0.5], "scale": 2.0, "link": None,
         "float32_thresholds": "nearest"}
    )  # fmt: skip
    assert arrays.depth == 3
    rng = np.random.default_rng(7)
    x = rng.random((11, 2)).astype(np.float32)
    x[0] = [0.5, 0.9]  # on a threshold: goes left
    x[1] = [0.75, 0.25]
    expected = [1.0 if a <= 0.5 else 2.0 if b <= 0.25 else 3.0 if a <= 0.75 else 4.0 for a, b in x]
    raw = arrays.raw(x.T)
    assert raw.shape == (11, 1)
    assert raw[:, 0].tolist() == [0.5 + 2.0 * 11 * e for e in expected]


def test_native_walk_adds_every_value_of_wide_leaves():
    """Leaves holding several values (a forest's class probabilities: native_walk's
    _tree_wide), eight rows at once and the rows left over: each output gets its value."""
    from sqlml.native import TreeArrays

    tree = {  # x0 <= 0.5 ? (1, -1) : (x1 <= 0.25 ? (2, -2) : (3, -3))
        "feature": [0, -2, 1, -2, -2],
        "threshold": [0.5, 0, 0.25, 0, 0],
        "left": [1, -1, 3, -1, -1],
        "right": [2, -1, 4, -1, -1],
        "leaf": [False, True, False, True, True],
        "value": [[0.0, 0.0], [1.0, -1.0], [0.0, 0.0], [2.0, -2.0], [3.0, -3.0]],
        "outputs": [0, 1],
    }
    # A second tree on outputs 1 and 2, splitting on x1 only: (10, 20) or (30, 40).
    second = {
        "feature": [1, -2, -2], "threshold": [0.5, 0, 0], "left": [1, -1, -1],
        "right": [2, -1, -1], "leaf": [False, True, True],
        "value": [[0.0, 0.0], [10.0, 20.0], [30.0, 40.0]], "outputs": [1, 2],
    }  # fmt: skip
    arrays = TreeArrays(
        {"trees": [tree, second], "base": [0.0, 1.0, 2.0], "scale": 0.5, "link": None,
         "float32_thresholds": "nearest"}
    )  # fmt: skip
    assert (arrays.depth, arrays.width) == (2, 2)
    x = np.random.default_rng(3).random((13, 2)).astype(np.float32)
    first = [1.0 if a <= 0.5 else 2.0 if b <= 0.25 else 3.0 for a, b in x]
    low = [b <= 0.5 for _, b in x]
    assert 0 < sum(low) < 13
    raw = arrays.raw(x.T)
    assert raw.shape == (13, 3)
    assert raw[:, 0].tolist() == [0.5 * f for f in first]
    assert raw[:, 1].tolist() == [
        1.0 + 0.5 * (-f + (10.0 if lo else 30.0)) for f, lo in zip(first, low, strict=True)
    ]
    assert raw[:, 2].tolist() == [2.0 + 0.5 * (20.0 if lo else 40.0) for lo in low]


@pytest.mark.parametrize("inference", ["native", "onnx"])
def test_integer_and_boolean_labels_come_back_as_the_classes(con, inference):
    """Integer and boolean labels (looked up in NumPy, not pyarrow) are the classes
    themselves, not their positions: coded 10 / 20 / 30 and -3 / -2 / -1, the same forests
    as with the species' names (same features, same class order); a BOOLEAN label as
    ML.PREDICT gives it (natively, computed in SQL from the raw scores)."""
    con.sql(
        "CREATE TABLE coded AS SELECT *, CASE species WHEN 'Adelie' THEN 10 "
        "WHEN 'Chinstrap' THEN 20 ELSE 30 END AS code, CAST(code / 10 - 4 AS TINYINT) AS minus, "
        "species = 'Gentoo' AS gentoo FROM penguins WHERE species IS NOT NULL"
    )
    labels = ("species", "code", "minus", "gentoo")
    models = (("by_name", "species"), ("by_code", "code"), ("by_minus", "minus"))
    for model, label in (*models, ("by_flag", "gentoo")):
        others = ", ".join(c for c in labels if c != label)
        con.sql(
            f"CREATE MODEL {model} OPTIONS (model_type = 'random_forest_classifier', "
            f"input_label_cols = ['{label}'], num_parallel_tree = 5, max_tree_depth = 8, "
            f"inference = '{inference}') "
            f"AS SELECT * EXCLUDE ({others}) FROM coded"
        )
        assert path(con, model) == inference
    rows = con.sql(
        "SELECT by_name(c), by_code(c), by_minus(c), "
        "(SELECT list(predicted_code) FROM ML.PREDICT(MODEL by_code, TABLE coded)) "
        "FROM coded c"
    ).fetchall()
    names = [r[0] for r in rows]
    codes = {"Adelie": 10, "Chinstrap": 20, "Gentoo": 30}
    assert set(names) == set(codes)
    assert [r[1] for r in rows] == [codes[n] for n in names]
    assert [r[2] for r in rows] == [codes[n] // 10 - 4 for n in names]
    assert rows[0][3] == [codes[n] for n in names]
    flags = con.sql(
        "SELECT list(by_flag(c)), (SELECT list(predicted_gentoo) FROM "
        "ML.PREDICT(MODEL by_flag, TABLE coded)) FROM coded c"
    ).fetchall()[0]
    assert flags[0] == flags[1]
    assert set(flags[0]) == {True, False}
