"""The catalog inside the database file: versions, reopening, other processes, format."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import duckdb
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import sqlml
from sqlml import catalog
from sqlml.features import input_values
from sqlml.functions import udf_name
from sqlml.project import build
from tests.conftest import load_penguins, snapshot

MASS = """CREATE {replace} MODEL mass
          OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
          AS SELECT body_mass_g, {features} FROM penguins"""


def test_model_is_usable_from_another_process(db_path):
    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(MASS.format(replace="", features="flipper_length_mm, species, sex"))
        con.sql(
            "CREATE MODEL kind OPTIONS (model_type = 'boosted_tree_classifier', "
            "input_label_cols = ['species']) AS SELECT species, bill_length_mm, island FROM penguins"
        )
        here = {
            "predict": con.sql(
                "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL mass, TABLE penguins)"
            ).fetchall(),
            "function": con.sql("SELECT kind(p) FROM penguins p").fetchall(),
            "evaluate": con.sql("SELECT * FROM ML.EVALUATE(MODEL kind)").fetchall(),
        }
    script = textwrap.dedent(
        f"""
        import json, sqlml
        con = sqlml.connect({str(db_path)!r})
        print(json.dumps({{
            "predict": con.sql("SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL mass, TABLE penguins)").fetchall(),
            "function": con.sql("SELECT kind(p) FROM penguins p").fetchall(),
            "evaluate": con.sql("SELECT * FROM ML.EVALUATE(MODEL kind)").fetchall(),
        }}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    there = json.loads(result.stdout)
    assert there == json.loads(json.dumps(here))
    assert result.stderr == ""  # nothing printed, no leak warnings at exit


def test_replace_adds_an_immutable_version_and_functions_follow(con):
    con.sql(MASS.format(replace="", features="flipper_length_mm"))
    v1 = con.sql("SELECT mass(p) FROM penguins p").fetchall()
    stored_v1 = con.sql(
        "SELECT onnx_sha256, metadata FROM sqlml.model_versions WHERE version = 1"
    ).fetchall()

    con.sql(MASS.format(replace="OR REPLACE", features="flipper_length_mm, species"))
    # The same function name now needs the new version's features, at once.
    with pytest.raises(duckdb.BinderException):
        con.sql("SELECT mass(flipper_length_mm) FROM penguins").fetchall()
    v2 = con.sql("SELECT mass(flipper_length_mm, species) FROM penguins").fetchall()
    assert v2 != v1
    assert con.sql("SELECT mass(p) FROM penguins p").fetchall() == v2

    versions = con.sql(
        "SELECT version, feature_count FROM sqlml.model_versions ORDER BY version"
    ).fetchall()
    assert versions == [(1, 1), (2, 2)]
    assert (
        con.sql(
            "SELECT onnx_sha256, metadata FROM sqlml.model_versions WHERE version = 1"
        ).fetchall()
        == stored_v1
    )
    assert con.sql("SELECT name, version FROM (SHOW MODELS)").fetchall() == [("mass", 2)]
    assert (
        con.sql(
            "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL mass, TABLE penguins)"
        ).fetchall()
        == v2
    )


def test_drop_model_removes_model_functions_and_versions(con):
    before = snapshot(con)
    con.sql(MASS.format(replace="", features="flipper_length_mm"))
    con.sql(MASS.format(replace="OR REPLACE", features="flipper_length_mm, island"))
    con.sql("DROP MODEL mass")
    after = snapshot(con)
    # Only the (now empty) catalog tables remain.
    assert after["functions"] == before["functions"]
    assert after["tables"]["sqlml.model_versions"] == []
    assert after["tables"]["sqlml.models"] == []
    with pytest.raises(duckdb.CatalogException):
        con.sql("SELECT mass(p) FROM penguins p").fetchall()
    con.sql(MASS.format(replace="", features="flipper_length_mm"))
    assert con.sql("SELECT version FROM (SHOW MODELS)").fetchall() == [(1,)]


def test_plain_duckdb_use_leaves_the_file_alone(db_path):
    with sqlml.connect(db_path) as con:
        con.sql("CREATE TABLE t AS SELECT 1 AS model")
        con.sql("SELECT * FROM (SHOW MODELS)").fetchall()
        con.sql("SELECT model FROM t").fetchall()
    raw = duckdb.connect(str(db_path))
    assert (
        raw.sql("SELECT schema_name FROM duckdb_schemas() WHERE schema_name = 'sqlml'").fetchall()
        == []
    )
    raw.close()


def test_stored_model_is_onnx_and_json_runnable_without_sqlml(con):
    con.sql(MASS.format(replace="", features="flipper_length_mm, species, sex"))
    blob, metadata = con.sql("SELECT onnx, metadata FROM sqlml.model_versions").fetchall()[0]
    model = onnx.load_model_from_string(bytes(blob))
    onnx.checker.check_model(model)
    meta = json.loads(metadata)
    assert meta["format_version"] == catalog.FORMAT_VERSION
    assert [f["name"] for f in meta["features"]] == ["flipper_length_mm", "species", "sex"]
    assert {p.key for p in model.metadata_props} >= {"sqlml.features", "sqlml.label"}

    # Plain onnxruntime, fed the raw columns, predicts what ML.PREDICT predicts.
    table = con.sql("SELECT flipper_length_mm, species, sex FROM penguins").to_arrow_table()
    features = [sqlml.catalog.Feature.from_dict(f) for f in meta["features"]]
    session = ort.InferenceSession(bytes(blob), providers=["CPUExecutionProvider"])
    feed = {f.name: input_values(f, table.column(f.name)) for f in features}
    [prediction] = session.run(["prediction"], feed)
    expected = con.sql(
        "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL mass, TABLE penguins)"
    ).fetchall()
    # ML.PREDICT runs this linear model as SQL: the same numbers up to rounding.
    np.testing.assert_allclose(prediction.ravel(), [r[0] for r in expected], rtol=1e-12)


def test_newer_catalog_format_is_refused(db_path):
    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(MASS.format(replace="", features="flipper_length_mm"))
        con.sql("UPDATE sqlml.catalog_info SET value = '99' WHERE key = 'format_version'")
    raw = duckdb.connect(str(db_path))
    before = snapshot(raw)
    raw.close()
    with pytest.raises(sqlml.CatalogError, match="format 99, newer than this sqlml understands"):
        sqlml.connect(db_path)
    raw = duckdb.connect(str(db_path))
    assert snapshot(raw) == before
    raw.close()


def test_format_1_catalog_is_migrated_to_the_current_format(db_path):
    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(MASS.format(replace="", features="flipper_length_mm"))
        expected = con.sql("SELECT mass(p) FROM penguins p").fetchall()
    # A file written by format 1 had no model_trials table (nor format 3's build_state, nor
    # format 4's views).
    raw = duckdb.connect(str(db_path))
    raw.execute("DROP TABLE sqlml.model_trials")
    raw.execute("DROP TABLE sqlml.build_state")
    raw.execute("DROP TABLE sqlml.views")
    raw.execute("UPDATE sqlml.catalog_info SET value = '1' WHERE key = 'format_version'")
    raw.close()
    with pytest.raises(sqlml.CatalogError, match="open it once without read_only"):
        sqlml.connect(db_path, read_only=True)
    with sqlml.connect(db_path) as con:
        assert con.sql("SELECT value FROM sqlml.catalog_info").fetchall() == [("4",)]
        assert con.sql("SELECT count(*) FROM sqlml.model_trials").fetchall() == [(0,)]
        assert con.sql("SELECT count(*) FROM sqlml.build_state").fetchall() == [(0,)]
        assert con.sql("SELECT mass(p) FROM penguins p").fetchall() == expected
        con.sql("DROP MODEL mass")  # DROP reaches the migrated table
        assert con.sql("SELECT count(*) FROM sqlml.models").fetchall() == [(0,)]


def test_format_2_catalog_gains_the_build_state(db_path, tmp_path):
    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(MASS.format(replace="", features="flipper_length_mm"))
    raw = duckdb.connect(str(db_path))
    raw.execute("DROP TABLE sqlml.build_state")
    raw.execute("DROP TABLE sqlml.views")
    raw.execute("UPDATE sqlml.catalog_info SET value = '2' WHERE key = 'format_version'")
    raw.close()
    project = tmp_path / "project"
    project.mkdir()
    (project / "heavy.sql").write_text(
        "CREATE TABLE heavy AS SELECT * FROM penguins WHERE body_mass_g > 5000"
    )
    with sqlml.connect(db_path) as con:
        assert con.sql("SELECT value FROM sqlml.catalog_info").fetchall() == [("4",)]
        result = build(con, project)
        assert [(r.name, r.status) for r in result.results] == [("heavy", "built")]
        assert con.sql("SELECT node, kind, path FROM sqlml.build_state").fetchall() == [
            ("main.heavy", "table", "heavy.sql")
        ]
        assert con.sql("SELECT version FROM (SHOW MODELS)").fetchall() == [(1,)]


def test_later_format_migrations_run_in_order(db_path, monkeypatch):
    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(MASS.format(replace="", features="flipper_length_mm"))
        expected = con.sql("SELECT mass(p) FROM penguins p").fetchall()

    # A later release: format 5 adds a column; opening a format-4 file migrates it.
    def add_notes(raw: duckdb.DuckDBPyConnection) -> None:
        raw.execute("ALTER TABLE sqlml.model_versions ADD COLUMN notes VARCHAR DEFAULT ''")

    monkeypatch.setattr(catalog, "FORMAT_VERSION", 5)
    monkeypatch.setitem(catalog.MIGRATIONS, 4, add_notes)
    with sqlml.connect(db_path) as con:
        assert con.sql("SELECT value FROM sqlml.catalog_info").fetchall() == [("5",)]
        assert con.sql("SELECT notes FROM sqlml.model_versions").fetchall() == [("",)]
        assert con.sql("SELECT mass(p) FROM penguins p").fetchall() == expected


def test_read_only_database_predicts(db_path):
    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(MASS.format(replace="", features="flipper_length_mm"))
        expected = con.sql("SELECT mass(p) FROM penguins p").fetchall()
    with sqlml.connect(db_path, read_only=True) as con:
        assert con.sql("SELECT mass(p) FROM penguins p").fetchall() == expected
        with pytest.raises(
            sqlml.CatalogError, match=r"Cannot create model main\.mass2: .* read-only"
        ):
            con.sql(
                MASS.format(replace="", features="flipper_length_mm").replace("mass\n", "mass2\n")
            )


# -- the caller's transactions -----------------------------------------------------------------

KIND = """CREATE {replace} MODEL kind
          OPTIONS (model_type = 'boosted_tree_classifier', input_label_cols = ['species'],
                   max_iterations = {rounds})
          AS SELECT species, bill_length_mm, body_mass_g FROM penguins"""
# A model scored from Python (native trees) and one in SQL (linear): its statements to
# create and to replace it, ML.PREDICT, its functions over the table and over constants (a
# prepared statement that reads no table is not bound again when the macro changes).
SCORED = {
    "kind": (
        KIND.format(replace="", rounds=5),
        KIND.format(replace="OR REPLACE", rounds=9),
        "SELECT predicted_species, predicted_species_probs FROM ML.PREDICT(MODEL kind, "
        "TABLE penguins) ORDER BY ALL",
        "SELECT kind(p), kind_probs(p) FROM penguins p ORDER BY ALL",
        "SELECT kind(45.0, 4000.0)",
    ),
    "mass": (
        MASS.format(replace="", features="flipper_length_mm"),
        MASS.format(replace="OR REPLACE", features="flipper_length_mm")
        + " WHERE island = 'Biscoe'",
        "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL mass, TABLE penguins) ORDER BY 1",
        "SELECT mass(p) FROM penguins p ORDER BY 1",
        "SELECT mass(200.0)",
    ),
}


def _litter() -> None:
    """Reuse freed memory: a UDF left without its Python function would call one of these."""
    import gc

    litter = [lambda *a: 1 for _ in range(20_000)]
    gc.collect()
    del litter


@pytest.mark.parametrize("change", ["drop", "replace"])
@pytest.mark.parametrize("model", sorted(SCORED))
def test_a_rolled_back_drop_or_replace_changes_nothing(con, model, change):
    """DuckDB's Python UDFs do not roll back: removed in the transaction, one would come back
    without its function; registered in it, the connection would keep its name."""
    create, replace, predict, function, constant = SCORED[model]
    con.sql(create)
    raw = con.duckdb
    raw.execute(f"PREPARE before AS {constant}")
    expected = con.sql(predict).fetchall(), con.sql(function).fetchall()
    expected_constant = con.sql(constant).fetchall()
    state = snapshot(con)

    con.sql("BEGIN")
    con.sql(f"DROP MODEL {model}" if change == "drop" else replace)
    if change == "drop":
        with pytest.raises(sqlml.ModelNotFound):
            con.sql(predict)
    else:
        assert con.sql(predict).fetchall() != expected[0]
    con.sql("ROLLBACK")
    _litter()

    assert (con.sql(predict).fetchall(), con.sql(function).fetchall()) == expected
    assert raw.execute("EXECUTE before").fetchall() == expected_constant
    assert snapshot(con) == state


@pytest.mark.parametrize("model", sorted(SCORED))
def test_a_replace_committed_in_a_transaction_retires_the_old_version(con, model):
    create, replace, predict, _, constant = SCORED[model]
    con.sql(create)
    raw = con.duckdb
    raw.execute(f"PREPARE before AS {constant}")
    old, old_constant = con.sql(predict).fetchall(), con.sql(constant).fetchall()
    con.sql("BEGIN")
    con.sql(replace)
    con.sql("COMMIT")
    new = con.sql(predict).fetchall()
    assert new != old
    # Never the old version's answer: DuckDB binds the statement again, or the guard fails it.
    try:
        answer = raw.execute("EXECUTE before").fetchall()
    except duckdb.InvalidInputException as e:
        assert "replaced or dropped after this statement was prepared" in str(e)
    else:
        assert answer == con.sql(constant).fetchall() != old_constant
    udfs = con.sql(
        f"""SELECT DISTINCT regexp_extract(function_name, '_v(\\d+)_', 1) FROM duckdb_functions()
            WHERE function_name LIKE '\\_\\_sqlml\\_main\\_{model}\\_%' ESCAPE '\\'"""
    ).fetchall()
    assert udfs == ([("2",)] if model == "kind" else [])  # the linear model is SQL


def test_a_model_created_in_a_rolled_back_transaction_can_be_created_again(con):
    state = snapshot(con)
    con.sql("BEGIN")
    con.sql(KIND.format(replace="", rounds=5))
    con.sql("ROLLBACK")
    con.sql("SELECT 1")  # the first statement after the transaction settles the UDFs
    assert snapshot(con) == state

    # The same rows and seed make the same version, with the same UDF names.
    con.sql(KIND.format(replace="", rounds=5))
    scored = con.sql(SCORED["kind"][2]).fetchall()
    assert scored == con.sql(SCORED["kind"][3]).fetchall()
    assert len(scored) == 344

    # Again inside a transaction on the same connection: DuckDB cannot register a name
    # twice on one connection, and each training run gives its UDFs their own names.
    con.sql("DROP MODEL kind")
    con.sql("BEGIN")
    con.sql(KIND.format(replace="", rounds=5))
    con.sql("COMMIT")
    assert con.sql(SCORED["kind"][2]).fetchall() == scored


# -- views over ML functions ---------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(SCORED))
def test_a_view_over_ml_predict_follows_its_model(db_path, model):
    """As in BigQuery ML: after CREATE OR REPLACE MODEL a view reads the new version; after
    DROP MODEL it fails naming the model, and works again once the model is created."""
    create, replace, predict, _, _ = SCORED[model]
    view = f"CREATE VIEW scored AS {predict}"
    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(create)
        con.sql(view)
        old = con.sql(predict).fetchall()
        assert con.sql("SELECT * FROM scored").fetchall() == old

        con.sql(replace)
        new = con.sql(predict).fetchall()
        names = [c[0] for c in con.sql(predict).description]
        assert new != old
        assert con.sql("SELECT * FROM scored").fetchall() == new

        con.sql(f"DROP MODEL {model}")
        with pytest.raises(
            duckdb.InvalidInputException,
            match=f"View main.scored reads model main.{model}, which was dropped: create the "
            "model again",
        ):
            con.sql("SELECT * FROM scored").fetchall()
        assert [c[0] for c in con.sql("SELECT * FROM scored LIMIT 0").description] == names
        con.sql(replace)
        assert con.sql("SELECT * FROM scored").fetchall() == new

        # A rolled-back replace leaves the view as it was.
        con.sql("BEGIN")
        con.sql(" ".join(create.split()).replace("CREATE MODEL", "CREATE OR REPLACE MODEL"))
        assert con.sql("SELECT * FROM scored").fetchall() == old
        con.sql("ROLLBACK")
        assert con.sql("SELECT * FROM scored").fetchall() == new
    if model == "mass":  # scored in SQL: the view needs no sqlml
        with duckdb.connect(str(db_path), read_only=True) as plain:
            assert plain.sql("SELECT * FROM scored").fetchall() == new


def test_a_view_replaced_or_dropped_by_hand_is_left_alone(con):
    create, replace, predict, _, _ = SCORED["mass"]
    con.sql(create)
    con.sql(f"CREATE VIEW kept AS {predict}")
    con.sql(f"CREATE VIEW mine AS {predict}")
    con.sql(f"CREATE VIEW gone AS {predict}")
    con.sql("CREATE OR REPLACE VIEW mine AS SELECT 42 AS answer")
    con.sql("DROP VIEW gone")
    con.sql(replace)
    assert con.sql("SELECT * FROM mine").fetchall() == [(42,)]
    assert con.sql("SELECT count(*) FROM duckdb_views() WHERE view_name = 'gone'").fetchall() == [
        (0,)
    ]
    assert con.sql("SELECT * FROM kept").fetchall() == con.sql(predict).fetchall()
    assert con.sql("SELECT view_name FROM sqlml.views").fetchall() == [("kept",)]
    # Views over the model functions need no record: DuckDB binds the macro again.
    con.sql("CREATE VIEW by_function AS SELECT mass(p) AS m FROM penguins p")
    assert con.sql("SELECT count(*) FROM sqlml.views").fetchall() == [(1,)]


def test_format_3_catalog_gains_keys_and_the_views_table(db_path):
    """A format-3 file: no keys (two connections could store one version twice, as one
    did here) and no views table."""
    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(MASS.format(replace="", features="flipper_length_mm"))
        expected = con.sql("SELECT mass(p) FROM penguins p").fetchall()
    raw = duckdb.connect(str(db_path))
    for table in ("models", "model_versions", "model_trials"):
        raw.execute(f"CREATE TABLE sqlml.{table}_3 AS SELECT * FROM sqlml.{table}")
        raw.execute(f"DROP TABLE sqlml.{table}")
        raw.execute(f"ALTER TABLE sqlml.{table}_3 RENAME TO {table}")
    raw.execute("DROP TABLE sqlml.views")
    raw.execute(  # the race's loser: an older row of the same version, and its models row
        "INSERT INTO sqlml.model_versions SELECT * REPLACE (created_at - INTERVAL 1 MINUTE "
        "AS created_at, 'other' AS onnx_sha256) FROM sqlml.model_versions"
    )
    raw.execute("INSERT INTO sqlml.models SELECT * FROM sqlml.models")
    raw.execute("UPDATE sqlml.catalog_info SET value = '3' WHERE key = 'format_version'")
    raw.close()

    with sqlml.connect(db_path) as con:
        assert con.sql("SELECT value FROM sqlml.catalog_info").fetchall() == [("4",)]
        keys = con.sql(
            """SELECT table_name, constraint_column_names FROM duckdb_constraints()
               WHERE schema_name = 'sqlml' AND constraint_type = 'PRIMARY KEY' ORDER BY 1"""
        ).fetchall()
        assert keys == [
            ("model_trials", ["schema_name", "model_name", "version", "trial_id"]),
            ("model_versions", ["schema_name", "model_name", "version"]),
            ("models", ["schema_name", "model_name"]),
            ("views", ["schema_name", "view_name"]),
        ]
        assert con.sql("SELECT onnx_sha256 <> 'other' FROM sqlml.model_versions").fetchall() == [
            (True,)
        ]
        assert con.sql("SELECT count(*) FROM sqlml.models").fetchall() == [(1,)]
        assert con.sql("SELECT mass(p) FROM penguins p").fetchall() == expected
        with pytest.raises(duckdb.ConstraintException, match="primary key"):
            con.sql("INSERT INTO sqlml.model_versions SELECT * FROM sqlml.model_versions")
        con.sql(f"CREATE VIEW scored AS {SCORED['mass'][2]}")
        assert con.sql("SELECT view_name, models FROM sqlml.views").fetchall() == [
            ("scored", ["main.mass"])
        ]


ONNX_LINE = """CREATE {replace} MODEL line OPTIONS (model_type = 'linear_reg', inference = 'onnx',
               input_label_cols = ['y']) AS SELECT x, {slope} * x + 1 AS y FROM range(50) r(x)"""


def test_a_script_that_rolls_back_settles_before_its_next_statement(con):
    con.sql(ONNX_LINE.format(replace="", slope=2))
    assert con.sql("SELECT line(3.0)").fetchall() == [(pytest.approx(7.0),)]
    replace = ONNX_LINE.format(replace="OR REPLACE", slope=5)
    assert con.sql(f"BEGIN; {replace}; ROLLBACK; SELECT line(3.0)").fetchall() == [
        (pytest.approx(7.0),)
    ]
    con.sql(f"BEGIN; {replace}")
    assert con.sql("ROLLBACK; SELECT line(3.0)").fetchall() == [(pytest.approx(7.0),)]
    # A model created and rolled back in one script can be created again in the same one.
    con.sql("DROP MODEL line")
    create = ONNX_LINE.format(replace="", slope=2)
    con.sql(f"BEGIN; {create}; ROLLBACK; {create}")
    assert con.sql("SELECT line(3.0)").fetchall() == [(pytest.approx(7.0),)]


def test_a_version_first_registered_in_a_rolled_back_transaction_scores_after_it():
    """The connection registers, inside the caller's transaction, a version another
    connection trained: the ROLLBACK takes that UDF away, and it is registered again."""
    raw = duckdb.connect()
    reader = sqlml.connect(raw.cursor())
    trainer = sqlml.connect(raw.cursor())
    trainer.sql(ONNX_LINE.format(replace="", slope=2))
    trainer.close()
    predict = "SELECT predicted_y FROM ML.PREDICT(MODEL line, (SELECT 3.0 AS x))"
    reader.sql("BEGIN")
    assert reader.sql(predict).fetchall() == [(pytest.approx(7.0),)]
    reader.sql("ROLLBACK")
    assert reader.sql(predict).fetchall() == [(pytest.approx(7.0),)]
    assert reader.sql("SELECT line(3.0)").fetchall() == [(pytest.approx(7.0),)]
    reader.close()
    raw.close()


def test_a_failing_ml_statement_fails_the_callers_transaction(con):
    """As a failing DuckDB statement does: its COMMIT then rolls back."""
    con.sql("BEGIN")
    con.sql("CREATE TABLE made_in_it AS SELECT 1 AS a")
    with pytest.raises(sqlml.ModelNotFound):
        con.sql("SELECT * FROM ML.PREDICT(MODEL nosuch, TABLE made_in_it)")
    with pytest.raises(duckdb.TransactionException, match="transaction is aborted"):
        con.sql("SELECT 1").fetchall()
    con.sql("COMMIT")
    assert con.sql(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'made_in_it'"
    ).fetchall() == [(0,)]


def test_closing_a_connection_leaves_anothers_transaction_and_result_alone():
    """The second connection scores with the first one's UDF; when the first closes, the
    second registers its own, on its own cursor: not in its transaction (a catalog write
    there would fail it) and not on its connection (that would drop its pending result)."""
    raw = duckdb.connect()
    first = sqlml.connect(raw.cursor())
    second = sqlml.connect(raw.cursor())
    first.sql(ONNX_LINE.format(replace="", slope=2))
    second.sql("CREATE TABLE kept (i INTEGER)")
    second.sql("BEGIN")
    second.sql("INSERT INTO kept VALUES (1)")
    second.execute("SELECT 42 AS answer")
    first.close()
    assert second.fetchall() == [(42,)]
    second.sql("COMMIT")
    assert second.sql("SELECT * FROM kept").fetchall() == [(1,)]
    assert second.sql("SELECT line(3.0)").fetchall() == [(pytest.approx(7.0),)]
    second.close()
    raw.close()


def test_a_udf_outliving_its_registry_never_calls_freed_memory():
    """DuckDB's catalog entry of a Python UDF does not own the function. A wrapped
    connection dropped without close(), and one closed inside a transaction that then
    rolls back, leave entries behind: calling them must not crash the process (in a
    subprocess: a crash would end the test run)."""
    script = textwrap.dedent(
        """
        import gc, duckdb, sqlml
        from tests.test_catalog import ONNX_LINE, _litter
        raw = duckdb.connect()
        sqlml.connect(raw).sql(ONNX_LINE.format(replace="", slope=2))  # never closed
        gc.collect(); _litter()
        print(raw.execute("SELECT line(3.0)").fetchall())
        other = duckdb.connect()
        wrapped = sqlml.connect(other)
        wrapped.sql(ONNX_LINE.format(replace="", slope=3))
        other.execute("BEGIN")
        wrapped.sql(ONNX_LINE.format(replace="OR REPLACE", slope=4))
        wrapped.close()  # inside the transaction
        other.execute("ROLLBACK")
        del wrapped; gc.collect(); _litter()
        try:
            print(other.execute("SELECT line(3.0)").fetchall())
        except duckdb.Error as e:
            print(type(e).__name__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.split("\n")
    assert lines[0] == "[(7.0,)]"
    assert lines[1] == "[(10.0,)]" or lines[1].endswith("Exception")  # scored, or an error


def test_a_view_that_cannot_follow_fails_saying_why_and_the_model_change_stands(con):
    create, replace, _, _, _ = SCORED["mass"]
    con.sql(create)
    con.sql("CREATE TABLE birds AS SELECT * FROM penguins")
    con.sql(
        "CREATE VIEW scored AS SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL mass, "
        "TABLE birds)"
    )
    con.sql("DROP TABLE birds")  # DuckDB cannot bind the view's input any more
    con.sql(replace)
    assert con.sql("SELECT version FROM (SHOW MODELS)").fetchall() == [(2,)]
    with pytest.raises(
        duckdb.InvalidInputException,
        match=r"(?s)View main\.scored could not follow model main\.mass: .*birds.* Create the "
        "view again",
    ):
        con.sql("SELECT * FROM scored").fetchall()


def test_a_view_over_two_models_names_the_one_dropped(con):
    con.sql(MASS.format(replace="", features="flipper_length_mm"))
    con.sql(KIND.format(replace="", rounds=5))
    con.sql(
        """CREATE VIEW both_models AS
           SELECT m.predicted_body_mass_g, k.predicted_species
           FROM ML.PREDICT(MODEL mass, TABLE penguins) m
           POSITIONAL JOIN ML.PREDICT(MODEL kind, TABLE penguins) k"""
    )
    assert con.sql("SELECT models FROM sqlml.views").fetchall() == [(["main.kind", "main.mass"],)]
    con.sql("DROP MODEL kind")
    con.sql(MASS.format(replace="OR REPLACE", features="flipper_length_mm, island"))
    with pytest.raises(duckdb.InvalidInputException, match=r"reads model main\.kind, which"):
        con.sql("SELECT * FROM both_models").fetchall()
    con.sql(KIND.format(replace="", rounds=5))
    assert len(con.sql("SELECT * FROM both_models").fetchall()) == 344


def test_view_names_resolve_as_duckdb_resolves_them(con, tmp_path):
    """``x.v``: x a schema of this database, else a database; only views in this database
    are followed (a model lives in the database that holds it)."""
    create, replace, predict, _, _ = SCORED["mass"]
    con.sql(create)
    con.sql("CREATE SCHEMA reports")
    con.sql(f"ATTACH '{tmp_path / 'other.duckdb'}' AS other")
    con.sql(f"CREATE VIEW memory.here AS {predict}")  # this database's name: schema main
    con.sql(f"CREATE VIEW reports.there AS {predict}")
    con.sql(f"CREATE VIEW other.elsewhere AS {predict}")
    assert con.sql("SELECT schema_name, view_name FROM sqlml.views ORDER BY ALL").fetchall() == [
        ("main", "here"),
        ("reports", "there"),
    ]
    old = con.sql(predict).fetchall()
    con.sql(replace)
    new = con.sql(predict).fetchall()
    assert con.sql("SELECT * FROM here").fetchall() == new
    assert con.sql("SELECT * FROM reports.there").fetchall() == new
    assert con.sql("SELECT * FROM other.elsewhere").fetchall() == old  # not followed


def test_a_view_follows_with_its_names_resolved_where_it_was_created(con):
    create, replace, _, _, _ = SCORED["mass"]
    con.sql(create)
    con.sql("CREATE SCHEMA field")
    con.sql("CREATE TABLE field.birds AS SELECT * FROM penguins WHERE island = 'Dream'")
    con.sql("USE field")
    con.sql(
        "CREATE VIEW scored AS SELECT predicted_body_mass_g FROM "
        "ML.PREDICT(MODEL main.mass, TABLE birds)"  # field.birds
    )
    con.sql("USE main")
    con.sql(replace)
    expected = con.sql(
        "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL mass, TABLE field.birds)"
    ).fetchall()
    assert con.sql("SELECT * FROM field.scored").fetchall() == expected
    assert len(expected) == 124
    assert con.sql("SELECT current_schema()").fetchall() == [("main",)]


def test_a_view_renamed_the_way_dbt_does_it_still_follows(con):
    """dbt-duckdb creates a view under a temporary name, then renames it over the old one."""
    create, replace, predict, _, _ = SCORED["mass"]
    con.sql(create)
    con.sql(f"CREATE VIEW scored__dbt_tmp AS {predict}")
    con.sql("ALTER VIEW scored__dbt_tmp RENAME TO scored")
    con.sql(replace)
    assert con.sql("SELECT * FROM scored").fetchall() == con.sql(predict).fetchall()
    assert con.sql("SELECT view_name, models FROM sqlml.views").fetchall() == [
        ("scored", ["main.mass"])
    ]


def test_a_view_and_a_change_of_its_model_at_the_same_time_cannot_both_commit():
    """One connection creates a view over a model while another replaces the model: the
    replacing one cannot follow a view not committed yet, so one of the two fails."""
    raw = duckdb.connect()
    first, second = sqlml.connect(raw.cursor()), sqlml.connect(raw.cursor())
    load_penguins(first)
    create, replace, predict, _, _ = SCORED["mass"]
    first.sql(create)
    first.sql("BEGIN")
    first.sql(f"CREATE VIEW scored AS {predict}")
    with pytest.raises(sqlml.CatalogError, match=r"Storing model main\.mass failed: .*Conflict"):
        second.sql(replace)
    first.sql("COMMIT")
    assert first.sql("SELECT * FROM scored").fetchall() == first.sql(predict).fetchall()
    # The other way round.
    first.sql("BEGIN")
    first.sql(replace)
    with pytest.raises(sqlml.QueryError, match="Conflict"):
        second.sql(f"CREATE VIEW later AS {predict}")
    first.sql("COMMIT")
    assert first.sql("SELECT * FROM scored").fetchall() == first.sql(predict).fetchall()
    assert first.sql("SELECT view_name FROM sqlml.views").fetchall() == [("scored",)]
    first.close()
    second.close()
    raw.close()


def test_a_rollback_sqlml_did_not_see_is_repaired_when_it_connects_again():
    """The change rolled back on the DuckDB connection itself after sqlml closed: the next
    sqlml connection on it brings the generation back, so the model's function scores."""
    raw = duckdb.connect()
    first = sqlml.connect(raw)
    load_penguins(first)
    create, replace, _, function, _ = SCORED["mass"]
    first.sql(create)
    expected = raw.sql(function).fetchall()
    raw.begin()
    first.sql(replace)
    first.close()
    raw.rollback()
    with pytest.raises(duckdb.InvalidInputException, match="replaced or dropped"):
        raw.sql(function).fetchall()
    sqlml.connect(raw)
    assert raw.sql(function).fetchall() == expected
    raw.close()


def test_replace_drop_and_create_in_one_transaction_leave_only_the_new_udfs(con):
    con.sql(ONNX_LINE.format(replace="", slope=2))
    con.sql("BEGIN")
    con.sql(ONNX_LINE.format(replace="OR REPLACE", slope=3))
    con.sql("DROP MODEL line")
    con.sql(ONNX_LINE.format(replace="", slope=4))  # a version 1 again
    con.sql("COMMIT")
    assert con.sql("SELECT line(3.0)").fetchall() == [(pytest.approx(13.0),)]
    udfs = con.sql(
        "SELECT DISTINCT regexp_replace(function_name, '_(\\d+|raw)$', '') FROM duckdb_functions() "
        "WHERE function_name LIKE '\\_\\_sqlml\\_main\\_line\\_%' ESCAPE '\\'"
    ).fetchall()
    assert udfs == [(udf_name(con.catalog.current("main", "line")),)]


def test_a_view_over_a_missing_column_is_a_query_error(con):
    con.sql(SCORED["mass"][0])
    before = snapshot(con)
    with pytest.raises(sqlml.QueryError, match="nowhere"):
        con.sql("CREATE VIEW v AS SELECT nowhere FROM ML.PREDICT(MODEL mass, TABLE penguins)")
    assert snapshot(con) == before
