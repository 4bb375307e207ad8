"""%load_ext sqlml: the %sqlml and %%sqlml magics, run in a real IPython shell."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import sqlml
from tests.conftest import PENGUINS_CSV, load_penguins, snapshot

ROOT = Path(__file__).resolve().parent.parent

TRAIN_SEX = f"""CREATE TABLE penguins AS FROM read_csv('{PENGUINS_CSV}', nullstr = 'NA');
CREATE MODEL sex_model
OPTIONS (model_type = 'logistic_reg', input_label_cols = ['sex'])
AS SELECT species, island, bill_length_mm, bill_depth_mm, body_mass_g, sex FROM penguins;
SELECT * FROM ML.EVALUATE(MODEL sex_model)"""

CLASSIFICATION_METRICS = ["precision", "recall", "accuracy", "f1_score", "log_loss", "roc_auc"]


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[InteractiveShell]:
    """A fresh IPython shell with the extension loaded; its profile and history stay in
    tmp_path."""
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ipython = InteractiveShell.instance(config=config, ipython_dir=str(tmp_path / "ipython"))
    ipython.run_line_magic("load_ext", "sqlml")
    yield ipython
    magics = ipython.magics_manager.registry["SqlmlMagics"]
    if magics.connection is not None and magics._owned:
        magics.connection.close()
    InteractiveShell.clear_instance()


def run(shell: InteractiveShell, cell: str):  # returns IPython's ExecutionResult
    return shell.run_cell(cell, store_history=True)


def test_line_magic_returns_a_dataframe(shell: InteractiveShell) -> None:
    result = run(shell, "%sqlml SELECT 42 AS x, 'a' || 'b' AS y")
    assert result.success
    assert isinstance(result.result, pd.DataFrame)
    assert result.result.to_dict("list") == {"x": [42], "y": ["ab"]}


def test_sql_is_taken_verbatim(shell: InteractiveShell) -> None:
    # IPython would expand $a and {b} from the user's variables in a line magic; SQL keeps them.
    shell.user_ns.update(a="EXPANDED", b="EXPANDED")
    result = run(
        shell, '%sqlml SELECT \'$a {b}\' AS s, "quoted name" FROM (SELECT 1 AS "quoted name")'
    )
    assert result.success
    assert result.result.to_dict("list") == {"s": ["$a {b}"], "quoted name": [1]}


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t (a INTEGER)",
        "CREATE TABLE t AS SELECT 7 AS a",
        "CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (7)",
        "SET threads = 1",
        "CREATE TABLE t (a INTEGER); DROP TABLE t",
        # the last statement's result, not the last query's
        "CREATE TABLE t (a INTEGER); SELECT 1 AS a; INSERT INTO t VALUES (7)",
        "-- nothing but a comment",
    ],
)
def test_statement_without_rows_returns_none(shell: InteractiveShell, sql: str) -> None:
    result = run(shell, f"%%sqlml\n{sql}")
    assert result.success, result.error_in_exec
    assert result.result is None


def test_query_with_a_count_column_returns_its_rows(shell: InteractiveShell) -> None:
    result = run(shell, "%sqlml SELECT 3 AS Count")
    assert result.result.to_dict("list") == {"Count": [3]}
    result = run(shell, "%%sqlml\nCREATE TABLE t AS SELECT 7 AS a;\nSELECT * FROM t")
    assert result.result.to_dict("list") == {"a": [7]}


def test_cell_magic_trains_and_evaluates_on_the_default_connection(
    shell: InteractiveShell,
) -> None:
    result = run(shell, "%%sqlml\n" + TRAIN_SEX)
    assert result.success, result.error_in_exec
    metrics = result.result
    assert list(metrics.columns) == CLASSIFICATION_METRICS

    # The same statements through the Python API give the same model, so the same metrics.
    with sqlml.connect() as con:
        con.sql(TRAIN_SEX)
        expected = con.sql("SELECT * FROM ML.EVALUATE(MODEL sex_model)").df()
    pd.testing.assert_frame_equal(metrics, expected)

    # The default connection lives on between cells: the model is there, and so is its function.
    shown = run(shell, "%sqlml SELECT name, model_type FROM (SHOW MODELS)").result
    assert shown.to_dict("list") == {"name": ["sex_model"], "model_type": ["logistic_reg"]}
    scored = run(
        shell,
        "%sqlml SELECT count(*) FILTER (sex_model(p) = p.sex) AS right, count(sex) AS labelled "
        "FROM penguins AS p",
    ).result
    right, labelled = scored.iloc[0]
    assert labelled == 333
    assert right == pytest.approx(metrics.accuracy.item() * labelled)  # no split under 500 rows


def test_out_stores_the_result(shell: InteractiveShell) -> None:
    result = run(shell, "%%sqlml -o answer\nSELECT 6 * 7 AS x")
    assert result.success
    assert shell.user_ns["answer"].to_dict("list") == {"x": [42]}
    assert shell.user_ns["answer"] is result.result


def test_connection_passed_in_by_name(shell: InteractiveShell) -> None:
    con = sqlml.connect()
    load_penguins(con)
    shell.user_ns["con"] = con
    cell = (
        "%%sqlml -c con\n"
        "CREATE MODEL mass OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])\n"
        "AS SELECT species, flipper_length_mm, body_mass_g FROM penguins"
    )
    result = run(shell, cell)
    assert result.success, result.error_in_exec
    assert result.result is None
    assert con.sql("SELECT name FROM (SHOW MODELS)").fetchall() == [("mass",)]
    evaluated = run(shell, "%sqlml -c con SELECT r2_score FROM ML.EVALUATE(MODEL mass)").result
    assert evaluated.r2_score.item() == pytest.approx(
        con.sql("SELECT r2_score FROM ML.EVALUATE(MODEL mass)").fetchall()[0][0]
    )

    # -c applies to its own statement only: the default connection has no penguins.
    assert not run(shell, "%sqlml SELECT count(*) FROM penguins").success
    # `%sqlml -c con` alone makes con the default.
    assert run(shell, "%sqlml -c con").result is None
    assert run(shell, "%sqlml SELECT count(*) AS n FROM penguins").result.n.item() == 344
    con.close()


def test_duckdb_connection_passed_in_by_name(shell: InteractiveShell) -> None:
    raw = duckdb.connect()
    load_penguins(raw)
    shell.user_ns["raw"] = raw
    cell = (
        "%%sqlml -c raw\n"
        "CREATE MODEL mass OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])\n"
        "AS SELECT species, flipper_length_mm, body_mass_g FROM penguins;\n"
        "SELECT mass('Gentoo', 220) AS grams"
    )
    result = run(shell, cell)
    assert result.success, result.error_in_exec
    # The model is stored in the DuckDB connection's database.
    with sqlml.connect(raw) as wrapped:
        assert wrapped.sql("SELECT name FROM (SHOW MODELS)").fetchall() == [("mass",)]
        expected = wrapped.sql("SELECT mass('Gentoo', 220)").fetchall()[0][0]
    assert result.result.grams.item() == pytest.approx(expected)
    assert 5000 < expected < 6000  # a Gentoo with long flippers is heavy
    raw.close()


def test_connect_opens_a_file_and_closes_it_when_replaced(
    shell: InteractiveShell, tmp_path: Path
) -> None:
    path = tmp_path / "notebook.duckdb"
    assert run(shell, f"%sqlml --connect {path}").result is None
    assert run(shell, "%sqlml CREATE TABLE kept AS SELECT 1 AS a").success
    # A new --connect closes the file the extension opened, so others can open it.
    assert run(shell, "%sqlml --connect :memory: SELECT 2 AS b").result.b.item() == 2
    with duckdb.connect(str(path)) as other:
        assert other.sql("FROM kept").fetchall() == [(1,)]


def test_sqlml_error_shows_the_message_without_traceback_and_changes_nothing(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    con = sqlml.connect()
    load_penguins(con)
    shell.user_ns["con"] = con
    before = snapshot(con)
    cell = (
        "%%sqlml -c con -o model_result\n"
        "CREATE MODEL sex_model\n"
        "OPTIONS (model_type = 'logistic_reg', input_label_cols = ['sex'], max_iteration = 5)\n"
        "AS SELECT * FROM penguins"
    )
    capsys.readouterr()
    result = run(shell, cell)
    out, err = capsys.readouterr()

    assert not result.success  # the cell fails, so "Run All" stops at it
    assert isinstance(result.error_in_exec, sqlml.OptionError)
    message = str(result.error_in_exec)
    assert message.startswith(
        "Unknown option 'max_iteration' for model_type 'logistic_reg'. Valid options: "
    )
    assert "max_iterations" in message
    assert (out + err).strip() == f"OptionError: {message}"
    assert "Traceback" not in out + err
    assert "model_result" not in shell.user_ns
    assert snapshot(con) == before
    con.close()


def test_duckdb_error_shows_the_message_without_traceback(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    result = run(shell, "%sqlml -o rows SELECT * FROM no_such_table")
    out, err = capsys.readouterr()
    assert isinstance(result.error_in_exec, duckdb.CatalogException)
    assert (out + err).strip() == str(result.error_in_exec)
    assert (out + err).startswith("Catalog Error: Table with name no_such_table does not exist!")
    assert "rows" not in shell.user_ns


def test_notebook_dataframes_are_read_by_name(shell: InteractiveShell) -> None:
    """As in DuckDB, a DataFrame in the notebook is a table: queried, trained on, scored."""
    shell.user_ns["frame"] = pd.read_csv(PENGUINS_CSV, na_values="NA")
    result = run(
        shell,
        "%%sqlml\n"
        "CREATE MODEL mass OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])\n"
        "AS SELECT body_mass_g, flipper_length_mm FROM frame WHERE body_mass_g IS NOT NULL;\n"
        "SELECT count(*) AS n, count(predicted_body_mass_g) AS scored\n"
        "FROM ML.PREDICT(MODEL mass, (SELECT * FROM frame))",
    )
    assert result.success, result.error_in_exec
    assert result.result.to_dict("list") == {"n": [344], "scored": [344]}


def test_errors_give_the_line_in_the_cell(shell: InteractiveShell) -> None:
    """Each statement runs on its own lines of the cell, so DuckDB's and sqlml's errors
    count lines from the top of the cell."""
    plain = run(shell, "%%sqlml\nSELECT 1;\n\nSELECT *\nFROM range(3) WHERE x =")
    assert "LINE 4: FROM range(3) WHERE x =" in str(plain.error_in_exec)
    ml = run(
        shell,
        "%%sqlml\nSELECT 1;\n\nSELECT *\nFROM ML.PREDICT(MODEL m (SELECT 1))",
    )
    assert isinstance(ml.error_in_exec, sqlml.ParseError)
    assert "(line 4, column" in str(ml.error_in_exec)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("%sqlml", "UsageError: %sqlml needs SQL to run, e.g. %sqlml SELECT 42"),
        (
            "%%sqlml SELECT 1\nSELECT 2",
            "UsageError: %%sqlml takes only options on its first line, not 'SELECT 1': "
            "write the SQL in the cell below it",
        ),
        (
            "%sqlml -c missing SELECT 1",
            "UsageError: -c missing: no variable named 'missing' in the notebook",
        ),
        (
            "%sqlml -c number SELECT 1",
            "UsageError: -c number: 'number' is not a connection (its type is int); "
            "pass a sqlml.connect(...) or duckdb.connect(...) result",
        ),
        ("%sqlml --bogus 1 SELECT 1", "UsageError: unrecognized arguments: --bogus"),
        (
            "%sqlml --connect x.duckdb -c number SELECT 1",
            "UsageError: give either --connect PATH or -c NAME, not both",
        ),
    ],
)
def test_usage_errors(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], cell: str, message: str
) -> None:
    shell.user_ns["number"] = 3
    capsys.readouterr()
    result = run(shell, cell)
    out, err = capsys.readouterr()
    assert not result.success
    assert (out + err).strip() == message


def readme_cells() -> list[str]:
    """The ```ipython blocks of the README's Notebooks section, one cell each."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Notebooks\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```ipython\n(.*?)```", section, flags=re.DOTALL)


def test_readme_example_runs(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    cells = readme_cells()
    assert cells[0] == "%load_ext sqlml\n"
    training = [cell for cell in cells if cell.startswith("%%sqlml\n")]
    assert len(training) == 1
    monkeypatch.chdir(ROOT)  # the README reads sql/seeds/penguins.csv
    results = []
    for cell in cells:
        result = run(shell, cell)
        assert result.success, f"{cell}\n{result.error_in_exec!r}"
        results.append(result.result)

    # The training cell shows the model's evaluation: the same as its statements give
    # through the Python API.
    evaluation = results[cells.index(training[0])]
    with sqlml.connect() as con:
        con.sql(training[0].removeprefix("%%sqlml\n"))
        expected = con.sql("SELECT * FROM ML.EVALUATE(MODEL penguin_sex)").df()
        predicted = con.sql("SELECT penguin_sex(p) FROM penguins AS p LIMIT 3").fetchall()
    assert list(evaluation.columns) == CLASSIFICATION_METRICS
    pd.testing.assert_frame_equal(evaluation, expected)
    # The last cell scores three penguins with the model's function.
    scored = results[-1]
    assert list(scored.columns) == ["species", "body_mass_g", "sex"]
    assert [(sex,) for sex in scored.sex] == predicted


def test_import_sqlml_does_not_import_ipython() -> None:
    code = "import sys, sqlml; print(sorted(m for m in ('IPython', 'sqlml.magics') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
