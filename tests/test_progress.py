"""Progress while training: phases, counts and summaries through the console; the live line
on a terminal, the notebook display, and turning it off."""

from __future__ import annotations

import io
import re
import sys

import pytest

import sqlml
from sqlml import console as console_module
from sqlml.console import NotebookConsole, SilentConsole, TerminalConsole, default_console
from tests.conftest import load_penguins, snapshot

PHASES = [
    "planning",
    "reading features",
    "fitting",
    "converting to ONNX",
    "checking parity",
    "evaluating",
    "choosing inference",
    "storing",
]
BOOSTED = """CREATE OR REPLACE MODEL mass
OPTIONS (model_type = 'boosted_tree_regressor', input_label_cols = ['body_mass_g'],
         tree_method = 'exact', subsample = 0.8, max_iterations = 5)
AS SELECT * FROM penguins WHERE body_mass_g IS NOT NULL"""
LINEAR = """CREATE OR REPLACE MODEL mass
OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
AS SELECT * FROM penguins WHERE body_mass_g IS NOT NULL"""


def connect(console: sqlml.Console) -> sqlml.Connection:
    con = sqlml.connect(console=console)
    load_penguins(con)
    return con


def test_plain_lines_name_every_phase_and_count_iterations():
    stream = io.StringIO()
    with connect(TerminalConsole(stream, live=False)) as con:
        con.sql(BOOSTED)
    lines = stream.getvalue().splitlines()
    started = [m.group(1) for line in lines if (m := re.fullmatch(r"sqlml: (.+) \.\.\.", line))]
    assert started == PHASES
    ended = [
        m.group(1) for line in lines[:-1] if (m := re.fullmatch(r"sqlml: (.+) done in .*", line))
    ]
    assert ended == PHASES
    counts = [line for line in lines if "iterations" in line]
    assert counts == [f"sqlml:   {i} of 5 iterations" for i in range(1, 6)]
    summary = lines[-1]
    assert summary.startswith("sqlml: CREATE MODEL main.mass: done in ")
    # The summary lists the phases in order with their durations.
    assert re.findall(r"([a-zA-Z][a-zA-Z ]*?) \d+\.\d\ds", summary.split("(", 1)[1]) == PHASES


def test_live_line_redraws_in_place_and_ends_with_the_summary():
    stream = io.StringIO()
    with connect(TerminalConsole(stream, live=True, interval=0.01)) as con:
        con.sql(BOOSTED)
    text = stream.getvalue()
    body, summary = text.rsplit("\r", 1)
    assert summary.startswith("sqlml: CREATE MODEL main.mass: done in ")
    assert summary.endswith(")\n")
    assert "\n" not in body  # the live line never scrolls
    frames = [f.rstrip() for f in body.split("\r") if f.strip()]
    assert all(f.startswith("sqlml: CREATE MODEL main.mass") for f in frames)
    assert any(re.search(r"fitting \d+\.\ds · \d/5 iterations", f) for f in frames)
    assert any("converting to ONNX" in f for f in frames)
    # Cleared before the summary: the last frame is overwritten with spaces.
    assert body.split("\r")[-1].strip() == ""


def test_the_live_line_ticks_only_while_a_task_runs():
    """The ticker thread is stopped after the summary is written: a tick in between must
    draw nothing after the summary."""
    import threading
    import time

    stream = io.StringIO()
    console = TerminalConsole(stream, live=True, interval=0.001)
    with console.task("CREATE MODEL m"), console.phase("fitting"):
        pass
    written = stream.getvalue()
    console._stop.clear()  # as if the ticker outlived the task
    ticker = threading.Thread(target=console._tick)
    ticker.start()
    time.sleep(0.05)
    console._stop.set()
    ticker.join()
    assert stream.getvalue() == written
    assert written.endswith(")\n")


def test_tuning_counts_trials():
    stream = io.StringIO()
    with connect(TerminalConsole(stream, live=False)) as con:
        con.sql(
            """CREATE MODEL tuned
            OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'],
                     num_trials = 3, l2_reg = HPARAM_RANGE(0, 10),
                     data_split_method = 'random', data_split_eval_fraction = 0.3)
            AS SELECT * FROM penguins WHERE body_mass_g IS NOT NULL"""
        )
    counts = [line for line in stream.getvalue().splitlines() if "trials" in line]
    assert counts[0] == "sqlml: tuning: 3 trials ..."
    assert counts[1:4] == [f"sqlml:   {i} of 3 trials" for i in range(1, 4)]


def test_a_failed_training_says_so_in_its_summary():
    stream = io.StringIO()
    with connect(TerminalConsole(stream, live=False)) as con, pytest.raises(sqlml.DataError):
        con.sql(
            "CREATE MODEL one OPTIONS (model_type = 'logistic_reg', "
            "input_label_cols = ['species']) AS SELECT * FROM penguins WHERE species = 'Adelie'"
        )
    last = stream.getvalue().splitlines()[-1]
    assert re.fullmatch(r"sqlml: CREATE MODEL main\.one: failed in \d+\.\d\ds \(planning .*", last)


def test_set_sqlml_progress_false_silences_progress_but_not_warnings():
    stream = io.StringIO()
    with connect(TerminalConsole(stream, live=False)) as con:
        con.sql("SET sqlml_progress = false")
        con.sql(LINEAR)
        assert stream.getvalue() == ""
        con.sql(
            "CREATE MODEL slow OPTIONS (model_type = 'logistic_reg', input_label_cols = ['sex'], "
            "max_iterations = 1) AS SELECT sex, bill_length_mm, body_mass_g FROM penguins"
        )
        lines = stream.getvalue().splitlines()
        assert lines[0].startswith("sqlml: warning: model main.slow: ConvergenceWarning: lbfgs")
        assert not [line for line in lines if line.endswith(" ...") or "done in" in line]

        stream.truncate(0)
        stream.seek(0)
        con.sql("RESET sqlml_progress")
        con.sql(LINEAR)
        assert "sqlml: fitting ..." in stream.getvalue().splitlines()


def test_set_sqlml_progress_true_reports_even_without_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.delenv(console_module.PROGRESS_ENV, raising=False)
    with connect(None) as con:
        assert isinstance(con.console, SilentConsole)  # stderr is no terminal
        con.sql("SET SESSION sqlml_progress TO 'on'")
        con.sql(LINEAR)
        assert "sqlml: CREATE MODEL main.mass: done in " in stream.getvalue()
        # RESET goes back to how the connection started: silent.
        con.sql("RESET sqlml_progress")
        assert isinstance(con.console, SilentConsole)
        stream.seek(0)
        stream.truncate()
        con.sql(LINEAR)
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("statement", "error", "message"),
    [
        ("SET sqlml_progres = false", sqlml.OptionError, "Unknown setting sqlml_progres; sqlml's settings: sqlml_progress"),
        ("SET sqlml_progress = 5", sqlml.OptionError, "SET sqlml_progress takes true or false, not 5"),
        ("SET sqlml_progress", sqlml.ParseError, "Expected = or TO after SET sqlml_progress"),
    ],
)  # fmt: skip
def test_bad_settings_are_errors_that_change_nothing(con, statement, error, message):
    before = snapshot(con)
    with pytest.raises(error, match=re.escape(message)):
        con.sql(statement)
    assert snapshot(con) == before
    assert con._progress is True


def test_duckdb_settings_stay_duckdbs(con):
    con.sql("SET threads = 1")
    assert con.sql("SELECT current_setting('threads')").fetchall() == [(1,)]
    con.sql("RESET threads")
    assert con.sql("SELECT 1 AS sqlml_progress").fetchall() == [(1,)]


@pytest.mark.parametrize(
    ("env", "tty", "expected"),
    [
        ("0", True, SilentConsole),
        ("off", True, SilentConsole),
        ("", False, SilentConsole),
        ("", True, TerminalConsole),
        ("1", False, TerminalConsole),
    ],
)
def test_default_console(monkeypatch, env, tty, expected):
    class Stderr(io.StringIO):
        def isatty(self) -> bool:
            return tty

    monkeypatch.setattr(sys, "stderr", Stderr())
    monkeypatch.setenv(console_module.PROGRESS_ENV, env)
    monkeypatch.setattr(console_module, "in_notebook", lambda: False)
    chosen = default_console()
    assert type(chosen) is expected
    if expected is TerminalConsole:
        assert chosen.live is tty


def test_notebook_console_updates_one_display_in_place(monkeypatch):
    import IPython.display

    shown: list[dict] = []
    updates: list[dict] = []

    class Handle:
        def update(self, bundle, raw):
            updates.append(bundle)

    def display(bundle, raw, display_id=None):
        shown.append(bundle)
        return Handle() if display_id else None

    monkeypatch.setattr(IPython.display, "display", display)
    with connect(NotebookConsole()) as con:
        con.sql(BOOSTED)
    assert len(shown) == 1  # one display area per statement
    assert shown[0]["text/plain"].startswith("CREATE MODEL main.mass")
    final = updates[-1]
    assert final["text/plain"].startswith("CREATE MODEL main.mass: done in ")
    assert "<progress" not in final["text/html"]
    assert "sqlml: CREATE MODEL main.mass: done in" in final["text/html"]


def test_default_console_in_a_notebook_kernel(monkeypatch):
    class ZMQInteractiveShell:  # the kernel's shell class, by name
        pass

    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: ZMQInteractiveShell())
    monkeypatch.delenv(console_module.PROGRESS_ENV, raising=False)
    assert isinstance(default_console(), NotebookConsole)
    monkeypatch.setenv(console_module.PROGRESS_ENV, "0")
    assert isinstance(default_console(), SilentConsole)


def test_streaming_counts_epochs():
    stream = io.StringIO()
    with connect(TerminalConsole(stream, live=False)) as con:
        con.sql(
            """CREATE MODEL streamed
            OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'],
                     streaming = TRUE, max_iterations = 4, early_stop = FALSE, batch_size = 100)
            AS SELECT bill_length_mm, flipper_length_mm, body_mass_g FROM penguins
               WHERE body_mass_g IS NOT NULL"""
        )
    counts = [line for line in stream.getvalue().splitlines() if "epochs" in line]
    assert counts == [f"sqlml:   {i} of 4 epochs (at most)" for i in range(1, 5)]
    assert "sqlml: computing statistics ..." in stream.getvalue().splitlines()
