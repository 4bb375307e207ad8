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
    # A file written by format 1 had no model_trials table (nor format 3's build_state).
    raw = duckdb.connect(str(db_path))
    raw.execute("DROP TABLE sqlml.model_trials")
    raw.execute("DROP TABLE sqlml.build_state")
    raw.execute("UPDATE sqlml.catalog_info SET value = '1' WHERE key = 'format_version'")
    raw.close()
    with pytest.raises(sqlml.CatalogError, match="open it once without read_only"):
        sqlml.connect(db_path, read_only=True)
    with sqlml.connect(db_path) as con:
        assert con.sql("SELECT value FROM sqlml.catalog_info").fetchall() == [("3",)]
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
    raw.execute("UPDATE sqlml.catalog_info SET value = '2' WHERE key = 'format_version'")
    raw.close()
    project = tmp_path / "project"
    project.mkdir()
    (project / "heavy.sql").write_text(
        "CREATE TABLE heavy AS SELECT * FROM penguins WHERE body_mass_g > 5000"
    )
    with sqlml.connect(db_path) as con:
        assert con.sql("SELECT value FROM sqlml.catalog_info").fetchall() == [("3",)]
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

    # A later release: format 4 adds a column; opening a format-3 file migrates it.
    def add_notes(raw: duckdb.DuckDBPyConnection) -> None:
        raw.execute("ALTER TABLE sqlml.model_versions ADD COLUMN notes VARCHAR DEFAULT ''")

    monkeypatch.setattr(catalog, "FORMAT_VERSION", 4)
    monkeypatch.setitem(catalog.MIGRATIONS, 3, add_notes)
    with sqlml.connect(db_path) as con:
        assert con.sql("SELECT value FROM sqlml.catalog_info").fetchall() == [("4",)]
        assert con.sql("SELECT notes FROM sqlml.model_versions").fetchall() == [("",)]
        assert con.sql("SELECT mass(p) FROM penguins p").fetchall() == expected


def test_read_only_database_predicts(db_path):
    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(MASS.format(replace="", features="flipper_length_mm"))
        expected = con.sql("SELECT mass(p) FROM penguins p").fetchall()
    with sqlml.connect(db_path, read_only=True) as con:
        assert con.sql("SELECT mass(p) FROM penguins p").fetchall() == expected
        with pytest.raises(sqlml.CatalogError, match=r"Storing model main\.mass2 failed"):
            con.sql(
                MASS.format(replace="", features="flipper_length_mm").replace("mass\n", "mass2\n")
            )
