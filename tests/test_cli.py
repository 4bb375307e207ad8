"""The sqlml command without a terminal: -c, -f, standard input, init files, exit status,
and the shell's commands and output modes run in-process (sqlml.shell, sqlml.output)."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

import sqlml
from sqlml.output import render
from sqlml.shell import COMPLETE, EMPTY, INCOMPLETE, Shell, ShellExit, split_input, statement_state

SQLML = Path(sys.executable).parent / "sqlml"

SPECIES_BOX = """\
┌───────────┬───────┐
│  species  │   n   │
│  varchar  │ int64 │
├───────────┼───────┤
│ Adelie    │   152 │
│ Chinstrap │    68 │
│ Gentoo    │   124 │
└───────────┴───────┘
"""
SPECIES_QUERY = "SELECT species, count(*) AS n FROM penguins GROUP BY species ORDER BY species"


@pytest.fixture
def db(model_db: Path, tmp_path: Path) -> Path:
    """A copy of model_db of this test's own: tests may change it."""
    path = tmp_path / "penguins.duckdb"
    shutil.copy(model_db, path)
    return path


def run(
    *args: str | Path,
    home: Path,
    stdin: str | None = None,
    command: list[str | Path] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HOME": str(home),
        "SQLML_HISTORY": str(home / "history"),
        "SQLML_PROGRESS": "0",
    }
    return subprocess.run(
        [*(command or [SQLML]), *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=120,
    )


# -- the command ----------------------------------------------------------------------


def test_c_runs_sql_and_prints_duckbox(db: Path, tmp_path: Path) -> None:
    result = run(db, "-c", SPECIES_QUERY + ";", home=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, SPECIES_BOX, "")


def test_script_runs_the_same_from_f_and_from_stdin(
    db: Path, model_db: Path, tmp_path: Path
) -> None:
    script = tmp_path / "script.sql"
    script.write_text(
        "-- statements span lines and run at ';'\n"
        "CREATE TABLE heavy AS\n"
        "  SELECT species, body_mass_g FROM penguins\n"
        "  WHERE body_mass_g > 6000;  -- a comment after it\n"
        "INSERT INTO heavy VALUES ('Gentoo', 6100);\n"
        ".mode csv\n"
        "SELECT * FROM heavy ORDER BY body_mass_g; SELECT count(*) AS n\n"
        "FROM heavy;\n"
        "SELECT 'no semicolon at the end' AS last\n"
    )
    expected = (
        "species,body_mass_g\nGentoo,6050\nGentoo,6100\nGentoo,6300\n"
        "n\n3\n"
        "last\nno semicolon at the end\n"
    )
    from_file = run(db, "-f", script, home=tmp_path)
    assert (from_file.returncode, from_file.stdout, from_file.stderr) == (0, expected, "")
    fresh = tmp_path / "fresh.duckdb"  # the table exists in db now
    shutil.copy(model_db, fresh)
    piped = run(fresh, stdin=script.read_text(), home=tmp_path)
    assert (piped.returncode, piped.stdout, piped.stderr) == (0, expected, "")


def test_first_error_stops_the_script_with_status_1(db: Path, tmp_path: Path) -> None:
    result = run(
        db,
        stdin="SELECT 1 AS a;\nSELECT * FROM no_such_table;\nCREATE TABLE after_error(x INT);\n",
        home=tmp_path,
    )
    assert result.returncode == 1
    assert result.stdout == "┌───────┐\n│   a   │\n│ int32 │\n├───────┤\n│     1 │\n└───────┘\n"
    assert result.stderr.startswith(
        "Error: Catalog Error: Table with name no_such_table does not exist!"
    )
    assert [line for line in result.stderr.splitlines() if line.startswith("Error")] == [
        "Error: Catalog Error: Table with name no_such_table does not exist!"
    ]
    assert "Traceback" not in result.stderr
    with duckdb.connect(str(db)) as con:  # nothing after the error ran
        tables = con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()
    assert ("after_error",) not in tables


def test_sqlml_error_is_one_line(db: Path, tmp_path: Path) -> None:
    result = run(db, "-c", "SELECT * FROM ML.EVALUATE(MODEL nope)", home=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "Error: Model main.nope does not exist. Models here: main.penguin_mass\n"
    )


def test_debug_shows_the_traceback(db: Path, tmp_path: Path) -> None:
    result = run(db, "--debug", "-c", "SELECT * FROM ML.EVALUATE(MODEL nope)", home=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert "ModelNotFound" in result.stderr
    assert result.stderr.endswith(
        "Error: Model main.nope does not exist. Models here: main.penguin_mass\n"
    )


def test_usage_errors_exit_2_and_change_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new.duckdb"
    both = run(target, "-c", "SELECT 1", "-f", "x.sql", home=tmp_path)
    assert both.returncode == 2
    assert "give -c or -f, not both" in both.stderr
    missing = run(target, "-f", "missing.sql", home=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr == "Error: Cannot read missing.sql: No such file or directory\n"
    unknown = run(target, "--frobnicate", home=tmp_path)
    assert unknown.returncode == 2
    assert "unrecognized arguments: --frobnicate" in unknown.stderr
    missing_init = run(target, "--init", "nope.sql", "-c", "SELECT 1", home=tmp_path)
    assert missing_init.returncode == 2
    assert missing_init.stderr == "Error: Cannot read nope.sql: No such file or directory\n"
    assert not target.exists()


def test_init_file_and_sqlmlrc(db: Path, tmp_path: Path) -> None:
    (tmp_path / ".sqlmlrc").write_text(
        ".mode csv\nCREATE TEMP TABLE greeting AS SELECT 'rc' AS s;\n"
    )
    from_rc = run(db, "-c", "SELECT s FROM greeting", home=tmp_path)
    assert (from_rc.returncode, from_rc.stdout, from_rc.stderr) == (0, "s\nrc\n", "")
    init = tmp_path / "init.sql"
    init.write_text(".mode markdown\n")
    # --init replaces ~/.sqlmlrc: the temp table is not made, the mode is markdown.
    replaced = run(db, "--init", init, "-c", "SELECT 1 AS one", home=tmp_path)
    assert (replaced.returncode, replaced.stdout) == (0, "| one |\n|----:|\n|   1 |\n")
    no_rc = run(db, "--init", init, "-c", "SELECT s FROM greeting", home=tmp_path)
    assert no_rc.returncode == 1
    assert "greeting does not exist" in no_rc.stderr


def test_exit_with_a_status_stops_the_script(tmp_path: Path) -> None:
    result = run(stdin=".mode csv\nSELECT 1 AS a;\n.exit 3\nSELECT 2 AS b;\n", home=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (3, "a\n1\n", "")


def test_ctrl_c_stops_a_script_with_status_130(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "SQLML_PROGRESS": "0"}
    script = ".mode csv\nSELECT 'started' AS s;\nSELECT sum(range) FROM range(1000000000000);\n"
    with subprocess.Popen(
        [SQLML, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        assert child.stdout.readline() == "s\n"
        assert child.stdout.readline() == "started\n"  # the long query is next
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=60) == 130
        assert child.stdout.read() == ""
        assert child.stderr.read() == "Interrupted\n"


def test_python_dash_m_sqlml(tmp_path: Path) -> None:
    result = run(
        "-c", ".mode csv\nSELECT 6 * 7 AS answer", command=[sys.executable, "-m", "sqlml"],
        home=tmp_path,
    )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, "answer\n42\n", "")


# -- the shell's commands, in-process -------------------------------------------------


@pytest.fixture
def shell(db: Path):
    out, err = io.StringIO(), io.StringIO()
    session = Shell(str(db), out=out, err=err)
    yield session
    session.close()


def run_lines(shell: Shell, text: str, *, bail: bool = True) -> tuple[int, str, str]:
    assert isinstance(shell.out, io.StringIO) and isinstance(shell.err, io.StringIO)
    start_out, start_err = shell.out.tell(), shell.err.tell()
    status = shell.run_lines(text.splitlines(), bail=bail)
    return status, shell.out.getvalue()[start_out:], shell.err.getvalue()[start_err:]


def test_tables_and_schema(shell: Shell) -> None:
    run_lines(shell, "CREATE VIEW adelie AS SELECT * FROM penguins WHERE species = 'Adelie';")
    run_lines(shell, "CREATE SCHEMA lab; CREATE TABLE lab.samples(id INTEGER);")
    # sqlml's own catalog (schema sqlml) is not listed.
    assert run_lines(shell, ".tables") == (0, "adelie       lab.samples  penguins\n", "")
    assert run_lines(shell, ".tables pen%") == (0, "penguins\n", "")
    assert run_lines(shell, ".schema samples") == (
        0,
        "CREATE TABLE lab.samples(id INTEGER);\n",
        "",
    )
    _, out, _ = run_lines(shell, ".schema")
    assert out.splitlines() == [
        "CREATE VIEW adelie AS SELECT * FROM penguins WHERE (species = 'Adelie');",
        "CREATE TABLE lab.samples(id INTEGER);",
        "CREATE TABLE penguins(species VARCHAR, island VARCHAR, bill_length_mm DOUBLE, "
        'bill_depth_mm DOUBLE, flipper_length_mm BIGINT, body_mass_g BIGINT, sex VARCHAR, "year" BIGINT);',
    ]


def test_models_and_describe(shell: Shell) -> None:
    run_lines(shell, ".mode csv")
    status, out, err = run_lines(shell, ".models")
    assert (status, err) == (0, "")
    header, row = out.splitlines()
    assert header.split(",")[:6] == [
        "schema", "name", "model_type", "label", "feature_count", "training_rows",
    ]  # fmt: skip
    assert row.split(",")[:6] == ["main", "penguin_mass", "linear_reg", "body_mass_g", "7", "342"]
    status, out, err = run_lines(shell, ".describe penguin_mass")
    assert (status, err) == (0, "")
    assert "model,model_type,linear_reg" in out.splitlines()
    status, out, err = run_lines(shell, ".describe nope")
    assert (status, out) == (1, "")
    assert err == "Error: Model main.nope does not exist. Models here: main.penguin_mass\n"


def test_output_modes(shell: Shell) -> None:
    query = "SELECT species, count(*) AS n FROM penguins GROUP BY species ORDER BY species LIMIT 2;"
    outputs = {}
    for mode in ("duckbox", "box", "csv", "json", "markdown", "line"):
        status, out, err = run_lines(shell, f".mode {mode}\n{query}")
        assert (status, err) == (0, "")
        outputs[mode] = out
    assert outputs["duckbox"] == "\n".join(SPECIES_BOX.splitlines()[:6] + SPECIES_BOX.splitlines()[-1:]) + "\n"  # fmt: skip
    assert outputs["box"] == (
        "┌───────────┬─────┐\n"
        "│  species  │  n  │\n"
        "├───────────┼─────┤\n"
        "│ Adelie    │ 152 │\n"
        "│ Chinstrap │  68 │\n"
        "└───────────┴─────┘\n"
    )
    assert outputs["csv"] == "species,n\nAdelie,152\nChinstrap,68\n"
    assert outputs["json"] == '[{"species":"Adelie","n":152},\n{"species":"Chinstrap","n":68}]\n'
    assert outputs["markdown"] == (
        "| species   |   n |\n|-----------|----:|\n| Adelie    | 152 |\n| Chinstrap |  68 |\n"
    )
    assert (
        outputs["line"] == "species = Adelie\n      n = 152\n\nspecies = Chinstrap\n      n = 68\n"
    )
    assert run_lines(shell, ".mode") == (0, "current output mode: line\n", "")


def test_maxrows_and_timer(shell: Shell) -> None:
    status, out, _ = run_lines(shell, ".maxrows 4\nSELECT range AS i FROM range(10);")
    assert status == 0
    assert out.splitlines()[-2:] == ["   10 rows ", "  (4 shown) "]
    shown = [line for line in out.splitlines() if re.fullmatch(r"│\s+\d+ │", line)]
    assert [line.strip("│ ") for line in shown] == ["0", "1", "8", "9"]
    status, out, _ = run_lines(shell, ".timer on\n.mode csv\nSELECT 1 AS a; SELECT 2 AS b;")
    assert re.fullmatch(
        r"a\n1\nRun Time \(s\): real \d+\.\d{3} user \d+\.\d{6} sys \d+\.\d{6}\n"
        r"b\n2\nRun Time \(s\): real \d+\.\d{3} user \d+\.\d{6} sys \d+\.\d{6}\n",
        out,
    )
    status, out, _ = run_lines(shell, ".timer off\nSELECT 3 AS c;")
    assert out == "c\n3\n"


def test_bad_dot_commands(shell: Shell) -> None:
    valid = ".describe, .exit, .help, .maxrows, .mode, .models, .open, .quit, .read, .schema, .tables, .timer"
    assert run_lines(shell, ".frobnicate") == (
        1,
        "",
        f"Error: Unknown command .frobnicate. Valid commands: {valid} (.help explains them)\n",
    )
    assert run_lines(shell, ".mode html")[2] == (
        "Error: Unknown mode 'html': use one of duckbox, box, csv, json, markdown, line\n"
    )
    assert (
        run_lines(shell, ".timer maybe")[2] == "Error: Use .timer on or .timer off, not 'maybe'\n"
    )
    assert run_lines(shell, ".maxrows 0")[2] == (
        "Error: .maxrows needs a whole number of rows, 1 or more, not '0'\n"
    )
    assert run_lines(shell, ".describe")[2] == "Error: Usage: .describe MODEL\n"
    # Not bailing (the prompt): the next command runs.
    assert run_lines(shell, ".frobnicate\n.mode csv\nSELECT 1 AS a;", bail=False)[1] == "a\n1\n"
    _, out, _ = run_lines(shell, ".help")
    assert [line.split()[0] for line in out.splitlines()[:-1]] == valid.split(", ")


def test_read_runs_a_script_and_stops_at_its_error(shell: Shell, tmp_path: Path) -> None:
    inner = tmp_path / "inner.sql"
    inner.write_text(
        ".mode csv\nSELECT 'inner' AS s;\nSELECT broken FROM nowhere;\nSELECT 'x' AS t;\n"
    )
    status, out, err = run_lines(shell, f".read {inner}\nSELECT 'outer' AS s;")
    assert status == 1
    assert out == "s\ninner\n"  # the rest of the file and the outer script stop
    assert err.startswith("Error: Catalog Error: Table with name nowhere does not exist!")
    assert len([line for line in err.splitlines() if line.startswith("Error")]) == 1
    status, out, err = run_lines(shell, f".read {inner}\nSELECT 'outer' AS s;", bail=False)
    assert out == "s\ninner\ns\nouter\n"  # at the prompt the next command runs
    assert run_lines(shell, ".read missing.sql")[2] == (
        "Error: Cannot read missing.sql: No such file or directory\n"
    )


def test_open_switches_database(shell: Shell, tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    old = shell.con
    assert run_lines(shell, f".open {other}\nCREATE TABLE fresh AS SELECT 1 AS a;\n.tables") == (
        0,
        "fresh\n",
        "",
    )
    with pytest.raises(duckdb.ConnectionException):
        old.duckdb.execute("SELECT 1")  # the first database is closed
    failed = run_lines(shell, f".open {tmp_path}")  # a folder: the current one stays open
    assert failed[0] == 1
    assert failed[2].startswith("Error: ")
    assert run_lines(shell, ".tables") == (0, "fresh\n", "")


def test_exit_raises_shell_exit(shell: Shell) -> None:
    with pytest.raises(ShellExit) as raised:
        run_lines(shell, ".quit 4")
    assert raised.value.code == 4


def test_exit_status_must_fit_a_byte(shell: Shell) -> None:
    status, out, err = run_lines(shell, ".exit 300")
    assert (status, out) == (1, "")
    assert err == "Error: Exit status must be a number from 0 to 255, not '300'\n"


def test_results_shown_like_duckdb(shell: Shell) -> None:
    """Queries print; CREATE, INSERT and SET do not; INSERT ... RETURNING does."""
    run_lines(shell, ".mode csv")
    status, out, err = run_lines(
        shell,
        "CREATE TABLE t(a INTEGER); INSERT INTO t VALUES (1); SET threads = 2;\n"
        "INSERT INTO t VALUES (2) RETURNING a * 10 AS ten;\n"
        "SELECT sum(a) AS total FROM t;",
    )
    assert (status, out, err) == (0, "ten\n20\ntotal\n3\n", "")
    status, out, _ = run_lines(shell, ".mode duckbox\nEXPLAIN SELECT 1;")
    assert out.startswith("╭─ Projection ───╮\n")  # the plan, not a table around it


# -- reading input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "state"),
    [
        ("SELECT 1;", COMPLETE),
        ("SELECT 1; -- done", COMPLETE),
        ("SELECT 1", INCOMPLETE),
        ("SELECT ';", INCOMPLETE),
        ("SELECT 1 /* ; */", INCOMPLETE),
        ("SELECT 1 /* ;", INCOMPLETE),
        ("SELECT $$a;$$;", COMPLETE),
        ("SELECT 1; SELECT", INCOMPLETE),
        ("", EMPTY),
        ("  -- only a comment", EMPTY),
    ],
)
def test_statement_state(sql: str, state: str) -> None:
    assert statement_state(sql) == state


def test_split_input() -> None:
    lines = [
        "-- a comment, then a dot command",
        ".mode csv",
        "SELECT 1,",
        "  2; SELECT 3;",
        "SELECT '.not a command",
        ".still the string';",
        "  .timer on  ",
        "SELECT 4",
    ]
    assert list(split_input(lines)) == [
        ("dot", ".mode csv"),
        ("sql", "SELECT 1,\n  2; SELECT 3;"),
        ("sql", "SELECT '.not a command\n.still the string';"),
        ("dot", ".timer on"),
        ("sql", "SELECT 4"),
    ]


# -- output, as a library -------------------------------------------------------------


@pytest.fixture
def values() -> duckdb.DuckDBPyRelation:
    con = duckdb.connect()
    return con.sql(
        """SELECT * FROM (VALUES
             (1, 'a|b', 1.5::DOUBLE, NULL::INTEGER, [1, 2]),
             (22, 'x,y"z', 'nan'::DOUBLE, 3, []),
             (3, '日本', 2, 4, NULL)) t(id, name, score, n, l)"""
    )


def test_render_csv_and_json_keep_data_exact(values: duckdb.DuckDBPyRelation) -> None:
    assert render(values, "csv") == (
        'id,name,score,n,l\n1,a|b,1.5,,"[1, 2]"\n22,"x,y""z",nan,3,[]\n3,日本,2.0,4,'
    )
    text = render(values, "json")
    # NaN is no JSON: it prints as null, and the text parses as strict JSON.
    import json

    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"not JSON: {c}")) == [
        {"id": 1, "name": "a|b", "score": 1.5, "n": None, "l": [1, 2]},
        {"id": 22, "name": 'x,y"z', "score": None, "n": 3, "l": []},
        {"id": 3, "name": "日本", "score": 2.0, "n": 4, "l": None},
    ]


def test_render_tables_align_and_escape(values: duckdb.DuckDBPyRelation) -> None:
    assert render(values, "box") == (
        "┌────┬───────┬───────┬──────┬────────┐\n"
        "│ id │ name  │ score │  n   │   l    │\n"
        "├────┼───────┼───────┼──────┼────────┤\n"
        "│  1 │ a|b   │   1.5 │ NULL │ [1, 2] │\n"
        '│ 22 │ x,y"z │   nan │    3 │ []     │\n'
        "│  3 │ 日本  │   2.0 │    4 │ NULL   │\n"
        "└────┴───────┴───────┴──────┴────────┘"
    )
    assert render(values, "markdown").splitlines()[:3] == [
        "| id | name  | score |    n | l      |",
        "|---:|-------|------:|-----:|--------|",
        "|  1 | a\\|b  |   1.5 | NULL | [1, 2] |",
    ]


def test_render_rejects_an_unknown_mode(values: duckdb.DuckDBPyRelation) -> None:
    with pytest.raises(sqlml.ArgumentError, match="Unknown output mode 'html'"):
        render(values, "html")
