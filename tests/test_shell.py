"""The interactive shell driven as a person would, through a pseudo-terminal (pexpect);
its highlighting and completion as functions; and the README's example, run."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

import sqlml
from sqlml.prompt import completions, highlight, ready_to_run

SQLML = Path(sys.executable).parent / "sqlml"
README = Path(__file__).resolve().parent.parent / "README.md"
TIMEOUT = 30  # the machine is shared; a normal run takes a fraction of this
# prompt_toolkit turns bracketed paste on as each prompt starts; the prompt text alone is
# also redrawn while a line is typed, so it cannot tell a new prompt from an old one.
NEW_PROMPT = "\x1b[?2004h"
RUNNING = "\x1b[?2004l"  # ... and off once the line is accepted


class Session:
    """A shell on a pseudo-terminal: type lines, wait for what they print."""

    def __init__(self, child: pexpect.spawn):
        self.child = child

    def wait_prompt(self) -> str:
        """Wait for a new prompt; return everything printed since the last wait."""
        self.child.expect_exact(NEW_PROMPT)
        printed = self.child.before
        self.child.expect_exact("sqlml> ")
        return printed

    def type(self, text: str) -> None:
        self.child.send(text)

    def enter(self, line: str) -> None:
        self.child.send(line + "\r")

    def run(self, line: str) -> str:
        """Type a line at a prompt, press Enter; what it printed, up to the next prompt."""
        self.enter(line)
        self.child.expect_exact(RUNNING)  # the typed text is drawn before this
        return plain(self.wait_prompt())


def plain(text: str) -> str:
    """Terminal output without escape sequences and carriage returns."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def session(model_db: Path, tmp_path: Path, home: Path) -> Iterator[Session]:
    db = tmp_path / "penguins.duckdb"
    shutil.copy(model_db, db)
    env = {
        **os.environ,
        "HOME": str(home),
        "SQLML_HISTORY": str(home / "history"),
        "SQLML_PROGRESS": "0",
        "TERM": "xterm",
        "PROMPT_TOOLKIT_NO_CPR": "1",  # no cursor-position queries nobody answers
    }
    child = pexpect.spawn(
        str(SQLML),
        [str(db)],
        env=env,
        cwd=str(tmp_path),
        dimensions=(24, 200),
        encoding="utf-8",
        timeout=TIMEOUT,
    )
    shell = Session(child)
    banner = shell.wait_prompt()
    assert f"sqlml {sqlml.__version__}" in banner
    yield shell
    if child.isalive():
        child.terminate(force=True)
    child.close()


def test_multiline_statement_runs_at_semicolon(session: Session, home: Path) -> None:
    session.enter("SELECT 40 +")
    session.child.expect_exact("  ...> ")  # a continuation line, nothing run yet
    session.enter("  2 AS answer")
    session.child.expect_exact("  ...> ")
    assert "42" not in plain(session.child.before)
    printed = session.run(";")
    assert "│ answer │\n│ int32  │\n├────────┤\n│     42 │" in printed
    session.enter(".exit")
    session.child.expect(pexpect.EOF)
    session.child.close()
    assert session.child.exitstatus == 0
    history = (home / "history").read_text()
    assert "\n+SELECT 40 +\n+  2 AS answer\n+;\n" in history
    assert "\n+.exit\n" in history


def test_dot_commands(session: Session, tmp_path: Path) -> None:
    assert session.run(".tables") == "penguins\n"
    session.run(".mode csv")
    printed = session.run("SELECT species, count(*) AS n FROM penguins GROUP BY species ORDER BY species;")  # fmt: skip
    assert printed == "species,n\nAdelie,152\nChinstrap,68\nGentoo,124\n"
    session.run(".timer on")
    assert re.fullmatch(
        r"x\n1\nRun Time \(s\): real \d+\.\d{3} user \d+\.\d{6} sys \d+\.\d{6}\n",
        session.run("SELECT 1 AS x;"),
    )
    session.run(".timer off")
    session.run(".mode duckbox")
    session.run(".maxrows 4")
    printed = session.run("SELECT range AS i FROM range(100);")
    shown = re.findall(r"│\s+(\d+) │", printed)
    assert shown == ["0", "1", "98", "99"]
    session.run(".mode csv")
    # A model trained at the prompt is listed and described.
    session.enter("CREATE MODEL penguin_flipper")
    session.enter("OPTIONS (model_type = 'linear_reg', input_label_cols = ['flipper_length_mm'])")
    printed = session.run("AS SELECT flipper_length_mm, body_mass_g FROM penguins;")
    assert printed == ""  # CREATE MODEL prints nothing (progress is off)
    models = session.run(".models").splitlines()
    assert [line.split(",")[1] for line in models[1:]] == ["penguin_flipper", "penguin_mass"]
    assert models[1].split(",")[:4] == ["main", "penguin_flipper", "linear_reg", "flipper_length_mm"]  # fmt: skip
    described = session.run(".describe penguin_flipper").splitlines()
    assert described[:2] == ["section,name,value", "model,name,main.penguin_flipper"]
    assert "label,flipper_length_mm,BIGINT" in described
    script = tmp_path / "script.sql"
    script.write_text(".mode markdown\nSELECT 'from a file' AS source;\n")
    assert session.run(f".read {script}") == "| source      |\n|-------------|\n| from a file |\n"
    other = tmp_path / "other.duckdb"
    session.run(f".open {other}")
    session.run("CREATE TABLE only_here AS SELECT 1 AS a;")
    assert session.run(".tables") == "only_here\n"
    assert other.exists()


def test_errors_are_reported_and_the_shell_goes_on(session: Session) -> None:
    printed = session.run(".frobnicate")
    assert printed.startswith("Error: Unknown command .frobnicate. Valid commands: .describe,")
    printed = session.run("SELECT * FROM ML.EVALUATE(MODEL nope);")
    assert printed == "Error: Model main.nope does not exist. Models here: main.penguin_mass\n"
    printed = session.run("SELECT * FROM no_such_table;")
    assert printed.startswith("Error: Catalog Error: Table with name no_such_table does not exist!")
    assert "Traceback" not in printed
    session.run(".mode csv")
    assert session.run("SELECT 'still here' AS s;") == "s\nstill here\n"


def test_ctrl_c_cancels_the_query_not_the_shell(session: Session) -> None:
    session.enter("SELECT sum(range) FROM range(1000000000000);")  # hours of work
    session.child.expect_exact(RUNNING)
    time.sleep(1.0)  # let it start
    started = time.monotonic()
    session.child.sendintr()
    assert plain(session.wait_prompt()).endswith("Interrupted\n")
    assert time.monotonic() - started < TIMEOUT
    session.run(".mode csv")
    assert session.run("SELECT 6 * 7 AS answer;") == "answer\n42\n"
    # Ctrl-C at the prompt clears the line being typed.
    session.type("SELECT 'half a line")
    session.child.sendintr()
    session.wait_prompt()
    assert session.run("SELECT 'clean' AS s;") == "s\nclean\n"
    # Ctrl-D leaves with status 0.
    session.child.sendeof()
    session.child.expect(pexpect.EOF)
    session.child.close()
    assert session.child.exitstatus == 0


def test_tab_completes_a_model_name(session: Session, home: Path) -> None:
    session.run(".mode csv")
    session.type("SELECT round(r2_score, 3) AS r2 FROM ML.EVALUATE(MODEL penguin_m")
    session.type("\t")
    session.child.expect_exact("ass")  # the rest of penguin_mass appears
    assert session.run(");") == "r2\n0.874\n"
    session.enter(".exit")
    session.child.expect(pexpect.EOF)
    assert "MODEL penguin_mass);" in (home / "history").read_text()


# -- highlighting and completion as functions --------------------------------------------


def test_highlight_styles_sql() -> None:
    fragments = highlight("SELECT 'a;b', 42 -- note\nFROM ML.PREDICT(MODEL m, TABLE t)")
    assert "".join(text for _, text in fragments) == (
        "SELECT 'a;b', 42 -- note\nFROM ML.PREDICT(MODEL m, TABLE t)"
    )
    styled = {text: style for style, text in fragments if style}
    assert styled == {
        "SELECT": "class:sql.keyword",
        "'a;b'": "class:sql.string",
        "42": "class:sql.number",
        " -- note\n": "class:sql.comment",
        "FROM": "class:sql.keyword",
        "ML": "class:sql.keyword",
        "PREDICT": "class:sql.keyword",
        "MODEL": "class:sql.keyword",
        "TABLE": "class:sql.keyword",
    }
    assert highlight("SELECT 'open") == [("", "SELECT 'open")]
    assert highlight(".mode csv") == [("class:sql.dot-command", ".mode csv")]


NAMES = {
    "tables": ["penguins", "orders", "staging.penguins_raw", "staging.people"],
    "columns": ["species", "island", "body_mass_g"],
    "models": ["penguin_mass", "penguin_species", "staging.penguin_sex"],
    "keywords": ["SELECT", "SET", "SHOW", "MODEL", "ML.PREDICT"],
    "functions": ["sum", "species_fn"],
    "commands": [".describe", ".mode", ".models", ".tables"],
    "modes": ["duckbox", "box", "csv"],
}


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        ("SELECT * FROM ML.EVALUATE(MODEL peng", (-4, ["penguin_mass", "penguin_species"])),
        ("SELECT * FROM pen", (-3, ["penguins"])),
        ("SELECT pen", (-3, ["penguins", "penguin_mass", "penguin_species"])),
        ("SELECT spe", (-3, ["species", "species_fn"])),
        ("se", (-2, ["select", "set"])),
        ("SE", (-2, ["SELECT", "SET"])),
        ("SELECT * FROM ML.PRE", (-3, ["PREDICT"])),
        ("SELECT p.isl", (-3, ["island"])),
        # schema.: that schema's tables (after FROM), models (after MODEL), or both
        ("SELECT * FROM staging.pe", (-2, ["penguins_raw", "people"])),
        ("SELECT * FROM ML.PREDICT(MODEL Staging.", (0, ["penguin_sex"])),
        ("SELECT staging.peng", (-4, ["penguins_raw", "penguin_sex"])),
        (".mo", (-3, [".mode", ".models"])),
        (".mode c", (-1, ["csv"])),
        (".describe penguin_s", (-9, ["penguin_species"])),
        ("SELECT ", (0, [])),
    ],
)
def test_completions(before: str, expected: tuple[int, list[str]]) -> None:
    start, found = completions(before, NAMES)
    assert (start, [text for text, _ in found]) == expected


def test_enter_runs_only_complete_input() -> None:
    assert ready_to_run("SELECT 1;")
    assert ready_to_run(".tables")
    assert ready_to_run("   ")
    assert not ready_to_run("SELECT 1")
    assert not ready_to_run("SELECT ';")
    assert not ready_to_run("SELECT 1; SELECT")


# -- the README's example ---------------------------------------------------------------


def test_readme_example(tmp_path: Path) -> None:
    text = README.read_text()
    section = text[text.index("## The shell") : text.index("## SQL projects")]
    match = re.search(
        r"```sh\n(sqlml penguins\.duckdb -c .*?)\n```\n\n```text\n(.*?)```", section, re.S
    )
    assert match is not None, "the README's shell example is missing"
    command, expected = match.groups()
    args = shlex.split(command)
    assert args[0] == "sqlml"
    (tmp_path / "sql" / "seeds").mkdir(parents=True)
    shutil.copy(README.parent / "sql" / "seeds" / "penguins.csv", tmp_path / "sql" / "seeds")
    env = {**os.environ, "HOME": str(tmp_path), "SQLML_PROGRESS": "0"}
    result = subprocess.run(
        [str(SQLML), *args[1:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == expected
    assert (tmp_path / "penguins.duckdb").exists()
