"""``sqlml build``: throwaway projects in tmp_path, and the repository's own sql/ project."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

import sqlml
from sqlml.project import build, load
from sqlml.project.command import main
from tests.conftest import PENGUINS_CSV, snapshot

REPO = Path(__file__).resolve().parent.parent

# File names sort in the wrong order on purpose: the order must come from the SQL.
PROJECT = {
    "z_birds.sql": "CREATE TABLE birds AS\n"
    "SELECT * FROM read_csv('data/birds.csv', nullstr = 'NA') WHERE body_mass_g IS NOT NULL;\n",
    "y_clean.sql": "CREATE OR REPLACE TABLE clean AS\n"
    "SELECT species, island, sex, flipper_length_mm, bill_length_mm, body_mass_g\n"
    "FROM birds WHERE sex IS NOT NULL",
    "x_islands.sql": "CREATE TABLE islands AS SELECT island, count(*) AS n FROM birds GROUP BY island",
    "b_model.sql": "-- the weight model\n"
    "CREATE OR REPLACE MODEL mass\n"
    "OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])\n"
    "AS SELECT * FROM clean;",
    "a_scored.sql": "CREATE TABLE scored AS SELECT species, mass(c) AS predicted FROM clean AS c",
    "c_eval/eval.sql": "CREATE VIEW reports.fit AS SELECT * FROM ML.EVALUATE(MODEL mass)",
    "tests/mass_fits.sql": "SELECT * FROM ML.EVALUATE(MODEL mass) WHERE r2_score < 0.5",
}
ORDER = ["birds", "islands", "clean", "mass", "scored", "reports.fit", "mass_fits"]


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = write(tmp_path / "project", PROJECT)
    (root / "data").mkdir()
    shutil.copy(PENGUINS_CSV, root / "data" / "birds.csv")
    return root


@pytest.fixture
def db():
    with sqlml.connect() as con:
        yield con


def statuses(result) -> dict[str, tuple[str, str]]:
    return {r.name: (r.status, r.reason) for r in result.results}


def model_version(con, name: str = "mass") -> int:
    return con.sql(f"SELECT version FROM (SHOW MODELS) WHERE name = '{name}'").fetchall()[0][0]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_order_comes_from_what_the_sql_reads(project, db):
    result = build(db, project)
    assert [r.name for r in result.results] == ORDER
    assert statuses(result) == {
        **{name: ("built", "new") for name in ORDER[:-1]},
        "mass_fits": ("passed", ""),
    }
    assert [r.kind for r in result.results] == [
        "table", "table", "table", "model", "table", "view", "test"
    ]  # fmt: skip
    assert result.ok
    # The tables hold what their SQL says, read from the file relative to the project.
    assert db.sql("SELECT count(*) FROM birds").fetchall() == [(342,)]
    assert db.sql("SELECT count(*) FROM clean").fetchall() == [(333,)]
    assert db.sql("SELECT count(*), count(predicted) FROM scored").fetchall() == [(333, 333)]
    expected = db.sql("SELECT mass(c) FROM clean c").fetchall()
    assert db.sql("SELECT predicted FROM scored").fetchall() == expected
    assert (
        db.sql("SELECT r2_score FROM reports.fit").fetchall()
        == db.sql("SELECT r2_score FROM ML.EVALUATE(MODEL mass)").fetchall()
    )
    metric = result["mass"].metric
    assert (metric.name, metric.version, metric.previous) == ("r2_score", 1, None)
    assert metric.value == pytest.approx(
        db.sql("SELECT r2_score FROM reports.fit").fetchall()[0][0]
    )
    # DuckDB's file_search_path is as it was.
    assert db.sql("SELECT current_setting('file_search_path')").fetchall() == [("",)]
    state = db.sql("SELECT node, kind, path FROM sqlml.build_state ORDER BY node").fetchall()
    assert state == [
        ("main.birds", "table", "z_birds.sql"),
        ("main.clean", "table", "y_clean.sql"),
        ("main.islands", "table", "x_islands.sql"),
        ("main.mass", "model", "b_model.sql"),
        ("main.scored", "table", "a_scored.sql"),
        ("reports.fit", "view", "c_eval/eval.sql"),
    ]


def test_an_unchanged_project_is_skipped(project, db):
    build(db, project)
    before = snapshot(db)
    result = build(db, project)
    assert statuses(result) == {
        **{name: ("skipped", "unchanged") for name in ORDER[:-1]},
        "mass_fits": ("passed", ""),
    }
    assert snapshot(db) == before  # nothing rewritten, no model version added
    assert model_version(db) == 1
    assert result["mass"].metric.version == 1


def test_an_edit_rebuilds_the_node_and_its_downstream(project, db):
    build(db, project)
    edit(project / "y_clean.sql", "sex IS NOT NULL", "sex IS NOT NULL AND island <> 'Torgersen'")
    result = build(db, project)
    assert statuses(result) == {
        "birds": ("skipped", "unchanged"),
        "islands": ("skipped", "unchanged"),
        "clean": ("built", "sql changed"),
        "mass": ("built", "upstream changed: clean"),
        "scored": ("built", "upstream changed: clean, mass"),
        "reports.fit": ("built", "upstream changed: mass"),
        "mass_fits": ("passed", ""),
    }
    assert db.sql("SELECT count(*) FROM clean").fetchall() == [(286,)]
    assert db.sql("SELECT count(*) FROM scored").fetchall() == [(286,)]
    assert model_version(db) == 2  # retrained, once
    metric = result["mass"].metric
    assert (metric.version, metric.previous_version) == (2, 1)
    versions = dict(db.sql("SELECT version, key_metric_value FROM sqlml.model_versions").fetchall())
    assert metric.previous == pytest.approx(versions[1])
    assert metric.change == pytest.approx(versions[2] - versions[1])
    assert metric.change != 0
    # Whitespace or a comment is an edit too; the next build then skips again.
    assert statuses(build(db, project))["clean"] == ("skipped", "unchanged")


def test_changed_data_rebuilds_what_reads_it(project, db, tmp_path):
    write(project, {"w_priced.sql": "CREATE TABLE priced AS SELECT c.species, "
                    "r.rate * c.body_mass_g AS price FROM clean c JOIN rates r USING (species)"})  # fmt: skip
    db.sql("CREATE TABLE rates AS SELECT * FROM (VALUES ('Adelie', 2.0), ('Gentoo', 3.0)) "
           "t(species, rate)")  # fmt: skip
    build(db, project)
    assert db.sql("SELECT count(*) FROM priced").fetchall() == [(265,)]
    assert statuses(build(db, project))["priced"] == ("skipped", "unchanged")

    db.sql("INSERT INTO rates VALUES ('Chinstrap', 1.5)")  # outside the project
    result = build(db, project)
    assert statuses(result)["priced"] == ("built", "data changed: rates")
    assert statuses(result)["clean"] == ("skipped", "unchanged")
    assert db.sql("SELECT count(*) FROM priced").fetchall() == [(333,)]

    # The seed file changes: the seed and everything after it is rebuilt.
    csv = project / "data" / "birds.csv"
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:101]))
    weighed = db.sql(
        f"SELECT count(*) FROM read_csv('{csv}', nullstr = 'NA') WHERE body_mass_g IS NOT NULL"
    ).fetchall()
    assert weighed[0][0] < 100
    result = build(db, project)
    assert statuses(result)["birds"] == ("built", "data changed: data/birds.csv")
    assert statuses(result)["clean"] == ("built", "upstream changed: birds")
    assert statuses(result)["priced"] == ("built", "upstream changed: clean")
    assert db.sql("SELECT count(*) FROM birds").fetchall() == weighed
    assert model_version(db) == 2


def test_a_dropped_object_is_rebuilt(project, db):
    build(db, project)
    db.sql("DROP TABLE islands")
    db.sql("DROP MODEL mass")
    result = build(db, project)
    assert statuses(result)["islands"] == ("built", "missing from the database")
    assert statuses(result)["mass"] == ("built", "missing from the database")
    # A retrained model is another model: what reads it is rebuilt too.
    assert statuses(result)["scored"] == ("built", "upstream changed: mass")
    assert db.sql("SELECT count(*) FROM islands").fetchall() == [(3,)]


def test_a_node_rebuilt_for_any_reason_rebuilds_its_downstream(project, db):
    build(db, project)
    db.sql("DROP MODEL mass")
    plan = build(db, project, dry_run=True)
    assert statuses(plan) == {
        "birds": ("would skip", "unchanged"),
        "islands": ("would skip", "unchanged"),
        "clean": ("would skip", "unchanged"),
        "mass": ("would build", "missing from the database"),
        "scored": ("would build", "upstream changed: mass"),
        "reports.fit": ("would build", "upstream changed: mass"),
        "mass_fits": ("would run", ""),
    }
    # Rebuilt alone, its downstream is rebuilt by the next build (the fingerprint says so).
    result = build(db, project, select=["mass"])
    assert statuses(result) == {
        "mass": ("built", "missing from the database"),
        "mass_fits": ("passed", ""),
    }
    assert model_version(db) == 1  # a new model, as version 1
    result = build(db, project)
    assert statuses(result) == {
        "birds": ("skipped", "unchanged"),
        "islands": ("skipped", "unchanged"),
        "clean": ("skipped", "unchanged"),
        "mass": ("skipped", "unchanged"),
        "scored": ("built", "upstream changed: mass"),
        "reports.fit": ("built", "upstream changed: mass"),
        "mass_fits": ("passed", ""),
    }
    assert db.sql("SELECT predicted FROM scored").fetchall() == (
        db.sql("SELECT mass(c) FROM clean c").fetchall()
    )
    # Nothing changed since: nothing is rebuilt.
    before = snapshot(db)
    assert statuses(build(db, project)) == {
        **{name: ("skipped", "unchanged") for name in ORDER[:-1]},
        "mass_fits": ("passed", ""),
    }
    assert snapshot(db) == before

    # A table dropped by hand: rebuilt, then everything that reads it, directly or not.
    db.sql("DROP TABLE clean")
    result = build(db, project)
    assert statuses(result) == {
        "birds": ("skipped", "unchanged"),
        "islands": ("skipped", "unchanged"),
        "clean": ("built", "missing from the database"),
        "mass": ("built", "upstream changed: clean"),
        "scored": ("built", "upstream changed: clean, mass"),
        "reports.fit": ("built", "upstream changed: mass"),
        "mass_fits": ("passed", ""),
    }
    assert model_version(db) == 2
    assert db.sql("SELECT count(*) FROM clean").fetchall() == [(333,)]
    assert db.sql("SELECT count(*) FROM scored").fetchall() == [(333,)]


def test_a_failing_data_test_fails_the_build_with_its_rows(project, db, capsys):
    write(project, {"tests/sub/no_gentoo.sql": "SELECT species, island, count(*) AS n FROM clean "
                    "WHERE species = 'Gentoo' GROUP BY ALL"})  # fmt: skip
    result = build(db, project)
    assert not result.ok
    failing = result["sub/no_gentoo"]
    assert (failing.kind, failing.status, failing.path) == (
        "test",
        "failed",
        "tests/sub/no_gentoo.sql",
    )
    expected = db.sql("SELECT 'Gentoo', 'Biscoe', count(*) FROM clean WHERE species = 'Gentoo'")
    assert failing.columns == ["species", "island", "n"]
    assert failing.rows == expected.fetchall()
    assert failing.row_count == 1
    assert result["mass_fits"].status == "passed"
    assert [r.status for r in result.results[:-2]] == ["built"] * 6  # tests don't undo nodes

    # A test that cannot run fails the build too.
    write(project, {"tests/broken.sql": "SELECT * FROM birds WHERE wingspan > 1"})
    result = build(db, project)
    assert (result["broken"].status, result["sub/no_gentoo"].status) == ("failed", "failed")
    assert 'Referenced column "wingspan" not found' in result["broken"].error
    (project / "tests" / "broken.sql").unlink()

    # The command: exit status 1, the test named, its rows shown.
    assert main([str(project), "--db", ":memory:"]) == 1
    out = capsys.readouterr().out
    gentoo = expected.fetchall()[0][2]
    assert "FAILED test sub/no_gentoo (tests/sub/no_gentoo.sql): returned 1 row" in out
    assert re.search(rf"Gentoo\s+Biscoe\s+{gentoo}\n", out)
    assert out.rstrip().endswith("Build FAILED: 6 nodes built, 1 test passed, 1 test failed")


# After an edit to clean (which then fails) and to islands: what every node does.
CLEAN_FAILED = {
    "birds": ("skipped", "unchanged"),
    "islands": ("built", "sql changed"),
    "clean": ("failed", "sql changed"),
    "mass": ("skipped", "upstream failed: clean"),
    "scored": ("skipped", "upstream failed: clean"),
    "reports.fit": ("skipped", "upstream failed: clean"),
    "mass_fits": ("skipped", "upstream failed: clean"),
}


def test_a_failing_node_keeps_its_previous_result_and_skips_downstream(project, db):
    build(db, project)
    before = snapshot(db)
    edit(project / "y_clean.sql", "bill_length_mm,", "bill_length_mm, beak_colour,")
    edit(project / "x_islands.sql", "count(*) AS n", "count(*) AS birds")  # independent
    result = build(db, project)
    assert not result.ok
    assert statuses(result) == CLEAN_FAILED
    assert "beak_colour" in result["clean"].error
    after = snapshot(db)
    for table in ("main.clean", "main.scored", "main.birds"):
        assert after["tables"][table] == before["tables"][table]
    assert db.sql("SELECT column_name FROM (DESCRIBE islands)").fetchall() == [
        ("island",),
        ("birds",),
    ]
    assert model_version(db) == 1
    state = dict(db.sql("SELECT node, fingerprint FROM sqlml.build_state").fetchall())
    old_state = dict((r[0], r[3]) for r in before["tables"]["sqlml.build_state"])
    assert state["main.clean"] == old_state["main.clean"]  # its failure recorded nothing

    # Fixed, the node and its downstream run; the model's failure keeps its version.
    edit(project / "y_clean.sql", "bill_length_mm, beak_colour,", "bill_length_mm,")
    edit(project / "b_model.sql", "['body_mass_g']", "['weight']")
    result = build(db, project)
    assert statuses(result)["clean"] == ("skipped", "unchanged")
    assert statuses(result)["mass"] == ("failed", "sql changed")
    assert "weight" in result["mass"].error
    assert statuses(result)["scored"] == ("skipped", "upstream failed: mass")
    assert model_version(db) == 1
    assert db.sql("SELECT count(*) FROM sqlml.model_versions").fetchall() == [(1,)]


def test_a_cycle_is_an_error_naming_the_files(tmp_path, db):
    root = write(tmp_path / "p", {
        "one.sql": "CREATE TABLE a AS SELECT * FROM c",
        "two.sql": "CREATE TABLE b AS SELECT * FROM a",
        "sub/three.sql": "CREATE VIEW c AS SELECT * FROM b JOIN base USING (id)",
        "base.sql": "CREATE TABLE base AS SELECT 1 AS id",
    })  # fmt: skip
    before = snapshot(db)
    with pytest.raises(sqlml.ProjectError) as info:
        build(db, root)
    assert str(info.value) == (
        "These files read each other in a cycle: one.sql (a) reads sub/three.sql (c) reads "
        "two.sql (b) reads one.sql (a). Break the cycle: no node can be built before the others"
    )
    assert snapshot(db) == before
    assert main([str(root), "--db", ":memory:"]) == 1


def test_a_node_reading_itself_is_an_error(tmp_path, db):
    root = write(tmp_path / "p", {"t.sql": "CREATE OR REPLACE TABLE t AS SELECT * FROM t"})
    with pytest.raises(sqlml.ProjectError, match=r"^t\.sql reads t, the name it makes itself"):
        build(db, root)


def test_two_files_making_one_name_is_an_error(tmp_path, db):
    root = write(tmp_path / "p", {
        "first.sql": "CREATE TABLE main.Totals AS SELECT 1 AS x",
        "more/second.sql": "CREATE VIEW totals AS SELECT 2 AS x",
    })  # fmt: skip
    with pytest.raises(sqlml.ProjectError) as info:
        build(db, root)
    assert str(info.value) == (
        "Two files make totals: first.sql and more/second.sql. Each name is made by one file; "
        "rename or remove one"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("CREATE TABLE a AS SELECT 1; CREATE TABLE b AS SELECT 2",
         "bad.sql holds 2 statements; a project file holds exactly one statement"),
        ("-- nothing yet\n", "bad.sql holds no statement"),
        ("SELECT 1", "bad.sql: starts 'SELECT 1'; a node file holds one CREATE [OR REPLACE] "
         "TABLE|VIEW|MODEL [IF NOT EXISTS] name ... AS <query> statement"),
        ("CREATE TABLE t (id INTEGER)", "bad.sql: TABLE without AS <query>"),
        ("CREATE TEMP TABLE t AS SELECT 1", "bad.sql: a temporary table is gone"),
        ("CREATE MACRO twice(x) AS x * 2", "bad.sql: starts 'CREATE MACRO twice'"),
        ("CREATE VIEW v AS SELECT * FROM read_csv('data/x.csv')",
         "bad.sql: the view v reads 'data/x.csv' by a relative path"),
        ("CREATE TABLE t AS SELECT FROM WHERE", "bad.sql: cannot read this SQL"),
        # What sqlglot reads but DuckDB does not: DuckDB's error, at the file's line, before
        # anything is built (good.sql included).
        ("-- two commas\nCREATE VIEW v AS\nSELECT\n    x,,\n    1 FROM g",
         'bad.sql: Parser Error: syntax error at or near ","\n\nLINE 4:     x,,'),
        ("CREATE TABLE t AS\nSELECT * FROM ML.PREDICT(MODEL m,\n  TABLE g)\nWHERE x IN (1,, 2)",
         'bad.sql: Parser Error: syntax error at or near ","\n\nLINE 4: WHERE x IN (1,, 2)'),
        ("CREATE MODEL m OPTIONS (model_type = 'linear_reg')\nAS SELECT x,, 1 AS label FROM g",
         'bad.sql: Parser Error: syntax error at or near ","\n\nLINE 2:    SELECT x,,'),
        ("CREATE TABLE t AS SELECT 1 AS a,\n  'open AS b",
         "bad.sql: Parser Error: unterminated string literal\n\nLINE 2:   'open AS b"),
    ],
)  # fmt: skip
def test_a_file_that_is_not_one_create_statement_is_an_error(tmp_path, db, text, message):
    root = write(tmp_path / "p", {"good.sql": "CREATE TABLE g AS SELECT 1 AS x", "bad.sql": text})
    before = snapshot(db)
    with pytest.raises(sqlml.ProjectError) as info:
        build(db, root)
    assert str(info.value).startswith(message)
    assert snapshot(db) == before


def test_a_data_test_must_be_a_query(tmp_path, db):
    root = write(tmp_path / "p", {"g.sql": "CREATE TABLE g AS SELECT 1 AS x",
                                  "tests/t.sql": "CREATE TABLE x AS SELECT 1"})  # fmt: skip
    with pytest.raises(sqlml.ProjectError, match=r"^tests/t\.sql: a data test is one query"):
        build(db, root)


def test_select_a_node_and_its_downstream(project, db):
    with pytest.raises(sqlml.ProjectError) as info:
        build(db, project, select=["clean"])  # birds was never built
    assert str(info.value) == (
        "y_clean.sql reads birds, which is not in the database yet and not selected: build it "
        "first, or select it too (--select +clean selects everything clean reads)"
    )
    result = build(db, project, select=["+clean"])
    assert statuses(result) == {"birds": ("built", "new"), "clean": ("built", "new")}
    result = build(db, project, select=["clean+", "islands"])
    assert statuses(result) == {
        "islands": ("built", "new"),
        "clean": ("skipped", "unchanged"),
        "mass": ("built", "new"),
        "scored": ("built", "new"),
        "reports.fit": ("built", "new"),
        "mass_fits": ("passed", ""),
    }

    edit(project / "y_clean.sql", "sex IS NOT NULL", "sex = 'male'")
    edit(project / "x_islands.sql", "count(*) AS n", "count(*) AS birds")
    result = build(db, project, select=["clean"])
    assert statuses(result) == {"clean": ("built", "sql changed")}  # tests read the model only
    assert model_version(db) == 1
    result = build(db, project, select=["y_clean.sql+"])  # a file's path works too
    assert statuses(result)["clean"] == ("skipped", "unchanged")
    assert statuses(result)["mass"] == ("built", "upstream changed: clean")
    assert "islands" not in statuses(result)
    assert statuses(build(db, project))["islands"] == ("built", "sql changed")

    with pytest.raises(
        sqlml.ProjectError, match=r"^--select clen: no node of the project makes clen"
    ):
        build(db, project, select=["clen"])


def test_a_data_test_reading_a_node_not_built_is_skipped(project, db, tmp_path, capsys):
    write(project, {"tests/every_bird_scored.sql": "SELECT species FROM clean "
                    "ANTI JOIN scored USING (species)"})  # fmt: skip
    # scored is neither selected nor in the database yet: the test cannot run.
    plan = build(db, project, select=["+clean"], dry_run=True)
    assert statuses(plan) == {
        "birds": ("would build", "new"),
        "clean": ("would build", "new"),
        "every_bird_scored": ("would skip", "not in the database yet and not selected: scored"),
    }
    result = build(db, project, select=["+clean"])
    assert result.ok
    assert statuses(result) == {
        "birds": ("built", "new"),
        "clean": ("built", "new"),
        "every_bird_scored": ("skipped", "not in the database yet and not selected: scored"),
    }
    assert db.sql("SELECT count(*) FROM clean").fetchall() == [(333,)]
    assert db.sql(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'scored'"
    ).fetchall() == [(0,)]
    # Once it is built, the test runs even when scored is not selected.
    build(db, project)
    assert statuses(build(db, project, select=["clean"])) == {
        "clean": ("skipped", "unchanged"),
        "every_bird_scored": ("passed", ""),
    }
    # A test reading a node that failed in this build is skipped too, and says why.
    edit(project / "y_clean.sql", "bill_length_mm,", "bill_length_mm, beak_colour,")
    result = build(db, project, select=["clean"])
    assert statuses(result) == {
        "clean": ("failed", "sql changed"),
        "every_bird_scored": ("skipped", "upstream failed: clean"),
    }

    # The command, into a new file. clean fails: the test says so, not that scored is missing.
    db_path = tmp_path / "new.duckdb"
    assert main([str(project), "--db", str(db_path), "--select", "+clean"]) == 1
    out = capsys.readouterr().out
    assert summary_rows(out) == [
        ("birds", "table", "built"),
        ("clean", "table", "failed"),
        ("every_bird_scored", "test", "skipped"),
    ]
    assert re.search(r"\nevery_bird_scored\s+test\s+skipped\s+upstream failed: clean\n", out)
    assert out.rstrip().endswith("Build FAILED: 1 node built, 1 node failed, 1 test skipped")
    # Fixed: exit status 0, the test skipped with its reason.
    edit(project / "y_clean.sql", "bill_length_mm, beak_colour,", "bill_length_mm,")
    assert main([str(project), "--db", str(db_path), "--select", "+clean"]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"\nevery_bird_scored\s+test\s+skipped\s+not in the database yet and not selected: "
        r"scored\n",
        out,
    )
    assert out.rstrip().endswith("Build succeeded: 1 node built, 1 node skipped, 1 test skipped")
    with sqlml.connect(db_path) as con:
        assert sorted(con.sql("SELECT node FROM sqlml.build_state").fetchall()) == [
            ("main.birds",), ("main.clean",)
        ]  # fmt: skip


def test_dry_run_plans_and_changes_nothing(project, db, capsys):
    before = snapshot(db)
    result = build(db, project, dry_run=True)
    assert statuses(result) == {
        **{name: ("would build", "new") for name in ORDER[:-1]},
        "mass_fits": ("would run", ""),
    }
    assert snapshot(db) == before  # not even the catalog

    build(db, project)
    edit(project / "y_clean.sql", "sex IS NOT NULL", "sex = 'female'")
    before = snapshot(db)
    result = build(db, project, dry_run=True)
    assert statuses(result) == {
        "birds": ("would skip", "unchanged"),
        "islands": ("would skip", "unchanged"),
        "clean": ("would build", "sql changed"),
        "mass": ("would build", "upstream changed: clean"),
        "scored": ("would build", "upstream changed: clean, mass"),
        "reports.fit": ("would build", "upstream changed: mass"),
        "mass_fits": ("would run", ""),
    }
    assert snapshot(db) == before


def test_dry_run_command_leaves_the_file_alone(project, tmp_path, capsys):
    db_path = tmp_path / "built.duckdb"
    assert main([str(project), "--db", str(db_path), "--dry-run"]) == 0
    assert not db_path.exists()
    out = capsys.readouterr().out
    assert re.search(r"clean\s+table\s+would build\s+new\n", out)
    assert out.rstrip().endswith(
        "Plan: 6 nodes would build, 1 test would run (dry run: nothing ran)"
    )

    assert main([str(project), "--db", str(db_path)]) == 0
    capsys.readouterr()
    raw = sqlml.connect(db_path)
    before = snapshot(raw)
    raw.close()
    (project / "x_islands.sql").write_text(
        "CREATE TABLE islands AS SELECT DISTINCT island FROM birds"
    )
    assert main([str(project), "--db", str(db_path), "--dry-run"]) == 0
    assert re.search(r"islands\s+table\s+would build\s+sql changed\n", capsys.readouterr().out)
    with sqlml.connect(db_path) as raw:
        assert snapshot(raw) == before


def test_full_refresh_rebuilds_everything(project, db):
    build(db, project)
    result = build(db, project, full_refresh=True)
    assert statuses(result) == {
        **{name: ("built", "full refresh") for name in ORDER[:-1]},
        "mass_fits": ("passed", ""),
    }
    assert model_version(db) == 2
    metric = result["mass"].metric
    assert (metric.version, metric.previous_version, metric.change) == (2, 1, 0.0)  # same data


def test_a_view_that_becomes_a_table(project, db):
    build(db, project)
    edit(project / "c_eval/eval.sql", "CREATE VIEW", "CREATE TABLE")
    result = build(db, project)
    assert statuses(result)["reports.fit"] == ("built", "sql changed")
    kinds = db.sql(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'reports' UNION ALL "
        "SELECT view_name FROM duckdb_views() WHERE schema_name = 'reports'"
    ).fetchall()
    assert kinds == [("fit",)]  # the view is gone, a table took its place


def test_models_read_by_function_inside_ml_and_in_training_queries(tmp_path, db):
    db.sql(f"CREATE TABLE penguins AS FROM read_csv('{PENGUINS_CSV}', nullstr = 'NA')")
    root = write(tmp_path / "p", {
        "1.sql": "CREATE MODEL kind OPTIONS (model_type = 'logistic_reg', "
        "input_label_cols = ['species']) AS SELECT species, island, flipper_length_mm FROM penguins",
        "2.sql": "CREATE VIEW probs AS SELECT kind_probs(p) AS probs FROM penguins p",
        "3.sql": "CREATE MODEL stacked OPTIONS (model_type = 'linear_reg', "
        "input_label_cols = ['body_mass_g']) AS SELECT body_mass_g, predicted_species "
        "FROM ML.PREDICT(MODEL kind, (WITH w AS (SELECT * FROM weighed) SELECT * FROM w))",
        "0.sql": "CREATE TABLE weighed AS SELECT * FROM penguins WHERE body_mass_g IS NOT NULL",
    })  # fmt: skip
    result = build(db, root)
    assert [r.name for r in result.results] == ["weighed", "kind", "probs", "stacked"]
    state = dict(db.sql("SELECT node, inputs FROM sqlml.build_state").fetchall())
    assert sorted(json.loads(state["main.stacked"])) == ["node:main.kind", "node:main.weighed"]
    assert sorted(json.loads(state["main.probs"])) == ["node:main.kind", "relation:main.penguins"]


def test_an_imported_model_path_is_relative_to_the_project(tmp_path, db):
    db.sql(f"CREATE TABLE penguins AS FROM read_csv('{PENGUINS_CSV}', nullstr = 'NA')")
    root = write(tmp_path / "p", {
        "imported.sql": "CREATE MODEL IF NOT EXISTS zoo.imported "
        "OPTIONS (model_type = 'onnx', model_path = 'onnx/flipper.onnx')",
        "scores.sql": "CREATE TABLE scores AS SELECT zoo.imported(p) AS grams FROM penguins p",
    })  # fmt: skip
    (root / "onnx").mkdir()
    for features in ("flipper_length_mm", "flipper_length_mm, sex"):
        db.sql(
            "CREATE OR REPLACE MODEL trained OPTIONS (model_type = 'linear_reg', "
            f"input_label_cols = ['body_mass_g']) AS SELECT body_mass_g, {features} FROM penguins"
        )
        db.sql(f"EXPORT MODEL trained OPTIONS (uri = '{root / 'onnx' / 'flipper.onnx'}')")
        result = build(db, root)
        assert result.ok
        np.testing.assert_allclose(
            db.sql("SELECT grams FROM scores").fetchnumpy()["grams"],
            db.sql("SELECT trained(p) AS grams FROM penguins p").fetchnumpy()["grams"],
            rtol=1e-9,
        )
    assert statuses(result) == {
        "zoo.imported": ("built", "data changed: onnx/flipper.onnx"),
        "scores": ("built", "upstream changed: zoo.imported"),
    }
    assert model_version(db, "imported") == 2


def summary_rows(text: str) -> list[tuple[str, str, str]]:
    """(node, kind, status) of each row of a printed summary."""
    body = text.split("\n-----", 1)[1].split("\n\n", 1)[0]
    return [tuple(re.split(r"\s{2,}", line)[:3]) for line in body.splitlines()[1:]]


def test_the_repository_sql_project_as_the_readme_shows(tmp_path, capsys):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## SQL projects: `sqlml build`")[1].split("\n## ")[0]
    # The project tree in the README is the sql/ folder as it is.
    tree = re.search(r"```text\n(sql/\n.*?)```", section, re.DOTALL).group(1)
    listed, folders = set(), []
    for line in tree.splitlines()[1:]:
        name = re.sub(r"\s+#.*$", "", line.split("── ")[-1]).strip()
        depth = line.index("── ") // 4
        folders = [*folders[:depth], name]
        if not name.endswith("/"):
            listed.add("".join(folders))
    actual = {p.relative_to(REPO / "sql").as_posix() for p in (REPO / "sql").rglob("*")}
    assert listed == {name for name in actual if (REPO / "sql" / name).is_file()}

    # Its command builds it as the README's summary shows.
    command = re.search(r"```sh\n(sqlml build sql --db demo.duckdb)\n```", section).group(1)
    shown = re.search(r"```text\n(node .*?)```", section, re.DOTALL).group(1)
    db_path = tmp_path / "demo.duckdb"
    argv = command.split()[2:]
    argv[argv.index("demo.duckdb")] = str(db_path)
    argv[argv.index("sql")] = str(REPO / "sql")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert summary_rows(out) == summary_rows(shown)
    assert len(summary_rows(out)) == 12
    assert out.rstrip().endswith(shown.rstrip().splitlines()[-1])
    with sqlml.connect(db_path) as con:
        assert con.sql("SELECT name FROM (SHOW MODELS) ORDER BY name").fetchall() == [
            ("penguin_groups",), ("penguin_mass",), ("penguin_species",)
        ]  # fmt: skip
        assert con.sql("SELECT count(*) FROM species_predictions").fetchall() == [(342,)]

    # Again: nothing to do. The Python example plans the same.
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("Build succeeded: 8 nodes skipped, 4 tests passed")
    result = build(db_path, REPO / "sql", select=["stg_penguins+"], dry_run=True)
    assert result.ok
    assert list(result.statuses().items())[:2] == [
        ("stg_penguins", "would skip"), ("penguin_features", "would skip")
    ]  # fmt: skip
    assert set(result.statuses().values()) == {"would skip", "would run"}
    assert "penguins" not in result.statuses()


# -- what a statement reads: CTE scopes --------------------------------------------------------


def test_a_cte_body_reads_the_table_its_name_hides(tmp_path, db):
    # DuckDB binds stg inside the non-recursive CTE's own body to the table stg.
    root = write(tmp_path / "p", {
        "a.sql": "CREATE TABLE a AS WITH stg AS (SELECT * FROM stg WHERE x > 0) "
        "SELECT count(*) AS n FROM stg",
        "z_stg.sql": "CREATE TABLE stg AS SELECT * FROM range(-2, 3) t(x)",
    })  # fmt: skip
    result = build(db, root)
    assert statuses(result) == {"stg": ("built", "new"), "a": ("built", "new")}
    assert db.sql("SELECT n FROM a").fetchall() == [(2,)]
    edit(root / "z_stg.sql", "range(-2, 3)", "range(-2, 6)")
    result = build(db, root)
    assert statuses(result) == {
        "stg": ("built", "sql changed"),
        "a": ("built", "upstream changed: stg"),
    }
    assert db.sql("SELECT n FROM a").fetchall() == [(5,)]


@pytest.mark.parametrize(
    ("query", "reads"),
    [
        ("WITH stg AS (SELECT * FROM stg WHERE x > 0) SELECT * FROM stg", {"main.stg"}),
        ("SELECT * FROM (WITH b AS (SELECT 1 AS y) SELECT * FROM b) JOIN b USING (y)",
         {"main.b"}),
        ("WITH a AS (SELECT * FROM b), b AS (SELECT 1 AS y) SELECT * FROM a", {"main.b"}),
        ("WITH a AS (SELECT * FROM t), b AS (SELECT * FROM a) SELECT * FROM b", {"main.t"}),
        ("WITH b AS (SELECT 1 AS y) SELECT * FROM main.b, (SELECT * FROM b) s", {"main.b"}),
        ("WITH B AS (SELECT * FROM t) SELECT * FROM \"b\" WHERE y IN (SELECT y FROM b)",
         {"main.t"}),
        ("WITH a AS (WITH a AS (SELECT * FROM t) SELECT * FROM a) SELECT * FROM a", {"main.t"}),
        ("WITH RECURSIVE r AS (SELECT 1 AS x UNION ALL SELECT x + 1 FROM r WHERE x < 3) "
         "SELECT * FROM r", set()),
        # The anchor of a recursive CTE reads the table; so does a body that is no UNION.
        ("WITH RECURSIVE r AS (SELECT * FROM r UNION ALL SELECT x + 1 FROM r WHERE x < 3) "
         "SELECT * FROM r", {"main.r"}),
        ("WITH RECURSIVE r AS (SELECT * FROM r WHERE x > 0) SELECT * FROM r", {"main.r"}),
        # A query argument of an ML call sees the CTEs around the call.
        ("WITH w AS (SELECT * FROM t) SELECT * FROM ML.PREDICT(MODEL m, (SELECT * FROM w)) "
         "JOIN (SELECT * FROM ML.PREDICT(MODEL m, (SELECT * FROM v))) USING (x)",
         {"main.t", "main.v"}),
    ],
)  # fmt: skip
def test_cte_names_follow_duckdbs_scopes(tmp_path, query, reads):
    root = write(tmp_path / "p", {"node.sql": f"CREATE VIEW node AS {query}"})
    node = load(root).nodes["main.node"]
    assert node.reads == reads


def test_the_cte_scopes_are_duckdbs():
    """The scopes above are DuckDB's: tables hold x = 1; a CTE read instead would differ."""
    con = duckdb.connect()
    for table in ("stg", "b", "r"):
        con.execute(f"CREATE TABLE {table} AS SELECT 1 AS x")
    cases = {
        "WITH stg AS (SELECT x + 1 AS x FROM stg) SELECT list(x) FROM stg": [2],
        "SELECT list(b.x) FROM (WITH b AS (SELECT 2 AS x) SELECT * FROM b) s, b": [1],
        "WITH a AS (SELECT * FROM b), b AS (SELECT 2 AS x) SELECT list(x) FROM a": [1],
        "WITH RECURSIVE r AS (SELECT x FROM r UNION ALL SELECT x + 1 FROM r WHERE x < 3) "
        "SELECT list(x) FROM r": [1, 2, 3],
        "WITH RECURSIVE r AS (SELECT x + 1 AS x FROM r WHERE x > 0) SELECT list(x) FROM r": [2],
    }
    for query, expected in cases.items():
        assert con.execute(query).fetchall() == [(expected,)], query


# -- unexpected errors and Ctrl-C --------------------------------------------------------------


def fail_on(monkeypatch, marker: str, error: BaseException) -> None:
    """Statements holding ``marker`` run, then raise ``error`` (inside the node's transaction),
    whether the build runs them with sql() (models) or execute() (tables and views)."""
    for method in ("sql", "execute"):
        run = getattr(sqlml.Connection, method)

        def failing(self, query, *args, run=run, **kwargs):
            result = run(self, query, *args, **kwargs)
            if marker in query:
                raise error
            return result

        monkeypatch.setattr(sqlml.Connection, method, failing)


def test_any_exception_fails_only_its_node(project, db, monkeypatch):
    build(db, project)
    before = snapshot(db)
    edit(project / "y_clean.sql", "sex IS NOT NULL", "sex = 'male'")
    edit(project / "x_islands.sql", "count(*) AS n", "count(*) AS birds")
    fail_on(monkeypatch, "TABLE clean", ValueError("not a sqlml error"))
    result = build(db, project)
    assert not result.ok and not result.interrupted
    assert statuses(result) == CLEAN_FAILED
    assert result["clean"].error == "ValueError: not a sqlml error"
    assert snapshot(db)["tables"]["main.clean"] == before["tables"]["main.clean"]


@pytest.mark.parametrize(
    "error",
    # Ctrl-C in Python code; DuckDB's own error when it sees the SIGINT during a query.
    [KeyboardInterrupt(), RuntimeError("Query interrupted")],
    ids=["KeyboardInterrupt", "duckdb"],
)
def test_ctrl_c_stops_the_build_and_keeps_the_previous_result(project, db, monkeypatch, error):
    build(db, project)
    before = snapshot(db)
    edit(project / "y_clean.sql", "sex IS NOT NULL", "sex = 'male'")
    fail_on(monkeypatch, "TABLE clean", error)
    result = build(db, project, full_refresh=True)
    assert result.interrupted and not result.ok
    assert statuses(result) == {
        "birds": ("built", "full refresh"),
        "islands": ("built", "full refresh"),
        "clean": ("interrupted", "full refresh"),
        "mass": ("skipped", "build interrupted"),
        "scored": ("skipped", "build interrupted"),
        "reports.fit": ("skipped", "build interrupted"),
        "mass_fits": ("skipped", "build interrupted"),
    }
    assert result["clean"].error is None
    after = snapshot(db)
    assert after["tables"]["main.clean"] == before["tables"]["main.clean"]  # rolled back
    state = dict(db.sql("SELECT node, sql_sha256 FROM sqlml.build_state").fetchall())
    old_state = dict((r[0], r[4]) for r in before["tables"]["sqlml.build_state"])
    assert state["main.clean"] == old_state["main.clean"]
    assert db.sql("SELECT current_setting('file_search_path')").fetchall() == [("",)]


def test_the_command_prints_the_summary_of_an_interrupted_build(project, monkeypatch, capsys):
    fail_on(monkeypatch, "MODEL mass", KeyboardInterrupt())
    assert main([str(project), "--db", ":memory:"]) == 130
    out = capsys.readouterr().out
    assert re.search(r"\nmass\s+model\s+interrupted\s+\d+\.\d\ds\s+new\n", out)
    assert re.search(r"\nscored\s+table\s+skipped\s+build interrupted\n", out)
    assert out.rstrip().endswith(
        "Build INTERRUPTED: 3 nodes built, 1 node interrupted, 2 nodes skipped, 1 test skipped"
    )


def test_ctrl_c_cancels_the_running_query(tmp_path):
    """A real SIGINT to ``sqlml build`` while DuckDB runs a long statement."""
    root = write(tmp_path / "p", {
        "a.sql": "CREATE TABLE a AS SELECT 1 AS x",
        "b_slow.sql": "CREATE TABLE slow AS SELECT sum(l.range * r.range) AS s "
        "FROM range(1000000) l, range(1000000) r, a",
        "c.sql": "CREATE TABLE after AS SELECT * FROM slow",
        "tests/t.sql": "SELECT * FROM after WHERE s < 0",
    })  # fmt: skip
    db_path = tmp_path / "built.duckdb"
    process = subprocess.Popen(
        [sys.executable, "-m", "sqlml", "build", str(root), "--db", str(db_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SQLML_PROGRESS": "1"},  # a line on stderr as each node ends
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # a's line: slow has started
        assert line.startswith("sqlml: build a: done"), line
        time.sleep(0.5)
        started = time.perf_counter()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert time.perf_counter() - started < 30  # the query stopped; it would run for hours
    assert process.returncode == 130, err
    assert summary_rows(out) == [
        ("a", "table", "built"),
        ("slow", "table", "interrupted"),
        ("after", "table", "skipped"),
        ("t", "test", "skipped"),
    ]
    assert out.rstrip().endswith(
        "Build INTERRUPTED: 1 node built, 1 node interrupted, 1 node skipped, 1 test skipped"
    )
    with sqlml.connect(db_path) as con:
        assert con.sql("SELECT node FROM sqlml.build_state").fetchall() == [("main.a",)]
        tables = con.sql("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'")
        assert tables.fetchall() == [("a",)]


# -- files, selection, data tests, output --------------------------------------------------------


def test_a_file_with_a_byte_order_mark(tmp_path, db):
    root = tmp_path / "p"
    root.mkdir()
    (root / "t.sql").write_text("\ufeffCREATE TABLE t AS SELECT 'é' AS x", encoding="utf-8")
    (root / "v.sql").write_bytes(b"\xef\xbb\xbfCREATE VIEW v AS SELECT * FROM t")
    result = build(db, root)
    assert statuses(result) == {"t": ("built", "new"), "v": ("built", "new")}
    assert db.sql("SELECT x FROM v").fetchall() == [("é",)]


def test_a_bad_selection_creates_no_database_file(project, tmp_path, capsys):
    db_path = tmp_path / "new.duckdb"
    assert main([str(project), "--db", str(db_path), "--select", "clean"]) == 1
    assert capsys.readouterr().err == (
        "Error: y_clean.sql reads birds, which is not in the database yet and not selected: "
        "build it first, or select it too (--select +clean selects everything clean reads)\n"
    )
    assert not db_path.exists()
    assert main([str(project), "--db", str(db_path), "--select", "+clean"]) == 0
    assert db_path.exists()


def test_a_data_test_runs_its_query_once(tmp_path, db, capsys):
    root = write(tmp_path / "p", {
        "n.sql": "CREATE TABLE n AS SELECT range AS i FROM range(25)",
        "tests/few.sql": "SELECT tick(i) AS i, 'line\nbreak' AS note FROM n ORDER BY i DESC",
    })  # fmt: skip
    calls = []

    def tick(i: int) -> int:
        calls.append(i)
        return i

    db.duckdb.create_function("tick", tick, ["BIGINT"], "BIGINT", side_effects=True)
    result = build(db, root)
    assert len(calls) == 25  # each row once: the query ran once
    failing = result["few"]
    assert (failing.columns, failing.row_count) == (["i", "note"], 25)
    assert failing.rows == [(i, "line\nbreak") for i in range(24, 14, -1)]
    # The command prints them with the line break escaped.
    from sqlml.project.command import print_result

    out = io.StringIO()
    print_result(result, out)
    assert "Offending rows (the first 10):\ni   note\n--  -----------\n24  line\\nbreak\n" in (
        out.getvalue()
    )


def test_the_summary_shows_a_models_change_from_the_version_it_replaced(project, tmp_path, capsys):
    db_path = tmp_path / "built.duckdb"
    assert main([str(project), "--db", str(db_path)]) == 0
    edit(project / "y_clean.sql", "sex IS NOT NULL", "sex IS NOT NULL AND island <> 'Dream'")
    assert main([str(project), "--db", str(db_path)]) == 0
    out = capsys.readouterr().out
    with sqlml.connect(db_path) as con:
        first, second = con.sql(
            "SELECT key_metric_value FROM sqlml.model_versions ORDER BY version"
        ).fetchall()
    shown = f"r2_score {second[0]:.4f} (v2, {second[0] - first[0]:+.4f} from v1)"
    assert re.search(rf"\nmass\s+model\s+built\s+\S+\s+{re.escape(shown)}\s+upstream", out)


def test_names_holding_dots(tmp_path, db):
    db.sql('CREATE TABLE "raw.rates" AS SELECT 2 AS rate')
    root = write(tmp_path / "p", {
        "a.sql": 'CREATE TABLE "a.b" AS SELECT rate * 10 AS x FROM "raw.rates"',
        "v.sql": 'CREATE VIEW "s.1"."v.w" AS SELECT x + 1 AS y FROM "a.b"',
    })  # fmt: skip
    result = build(db, root)
    assert statuses(result) == {'"a.b"': ("built", "new"), '"s.1"."v.w"': ("built", "new")}
    assert db.sql('SELECT y FROM "s.1"."v.w"').fetchall() == [(21,)]
    assert sorted(db.sql("SELECT node FROM sqlml.build_state").fetchall()) == [
        ('"s.1"."v.w"',), ('main."a.b"',)
    ]  # fmt: skip
    assert statuses(build(db, root)) == {
        '"a.b"': ("skipped", "unchanged"), '"s.1"."v.w"': ("skipped", "unchanged")
    }  # fmt: skip
    db.sql('UPDATE "raw.rates" SET rate = 3')
    result = build(db, root)
    assert statuses(result) == {
        '"a.b"': ("built", 'data changed: "raw.rates"'),
        '"s.1"."v.w"': ("built", 'upstream changed: "a.b"'),
    }
    assert db.sql('SELECT y FROM "s.1"."v.w"').fetchall() == [(31,)]
    db.sql('DROP VIEW "s.1"."v.w"')
    assert statuses(build(db, root))['"s.1"."v.w"'] == ("built", "missing from the database")
    assert statuses(build(db, root, select=['"s.1"."v.w"'])) == {
        '"s.1"."v.w"': ("skipped", "unchanged")
    }


def test_output_into_a_closed_pipe(project, monkeypatch, capfd):
    import sqlml.project.command as command

    def closed(result, out):
        raise BrokenPipeError(32, "Broken pipe")  # as `sqlml build ... | head -1` may

    monkeypatch.setattr(command, "print_result", closed)
    assert main([str(project), "--db", ":memory:", "--select", "+islands"]) == 0
    print("a later error", file=sys.stderr)  # stderr still shows it
    print("nothing more on the closed pipe")
    assert capfd.readouterr() == ("", "a later error\n")


def test_an_error_while_building_gives_the_files_line(tmp_path, db):
    """DuckDB numbers lines from the start of the SQL it is given: a node's statement is
    given to it on the lines where it stands in its file."""
    root = write(
        tmp_path / "p",
        {
            "birds.sql": "CREATE TABLE birds AS SELECT 1.0 AS x, 2.0 AS y",
            "fit.sql": "-- a model\n-- of y\n\nCREATE MODEL fit\n"
            "OPTIONS (model_type = 'linear_reg', input_label_cols = ['y'])\n"
            "AS SELECT x,\n  no_such_column, y FROM birds",
            "odd.sql": "-- a view\n\nCREATE VIEW odd AS\nSELECT x,\n  nothing_here FROM birds",
        },
    )
    result = build(db, root)
    assert "LINE 7:   no_such_column, y FROM birds" in result["fit"].error
    assert "LINE 5:   nothing_here FROM birds" in result["odd"].error
