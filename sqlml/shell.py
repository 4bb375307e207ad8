"""What the ``sqlml`` command runs: SQL and DuckDB-style dot commands, from any source.

One path for everything: ``-c``, ``-f``, standard input, ``--init``, ``~/.sqlmlrc``,
``.read`` and the interactive prompt all hand lines to :meth:`Shell.run_lines`, which
gathers SQL up to a ``;`` that ends a statement (:func:`statement_state`), runs it through
:meth:`sqlml.Connection.sql` and prints each query's result (:func:`sqlml.output.render`).
No terminal is needed here; :mod:`sqlml.prompt` adds the interactive prompt.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TextIO

import duckdb

from sqlml import output
from sqlml.connection import Connection, connect
from sqlml.errors import CommandError, Error, ParseError
from sqlml.interrupt import InterruptGuard
from sqlml.parser import Source, split_statements

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


EMPTY, INCOMPLETE, COMPLETE = "empty", "incomplete", "complete"


class ShellExit(Exception):
    """``.exit [CODE]``: leave the shell (or stop the script) with this status."""

    def __init__(self, code: int = EXIT_OK):
        super().__init__(code)
        self.code = code


class _Reported(Exception):
    """A nested script (``.read``) failed and has said why already."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def statement_state(sql: str) -> str:
    """EMPTY (only blanks and comments), COMPLETE (the last token is a ``;``) or INCOMPLETE
    (anything else, including an unterminated string or comment)."""
    try:
        tokens = Source.of(sql).tokens
    except ParseError:
        return INCOMPLETE
    if not tokens:
        return EMPTY
    return COMPLETE if tokens[-1].text == ";" else INCOMPLETE


def is_dot_command(text: str) -> bool:
    return text.lstrip().startswith(".")


def split_input(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Input lines as ("dot", line) and ("sql", text) commands, as DuckDB's shell reads them:
    a line starting with ``.`` outside a statement is a dot command; SQL runs once a line
    ends a statement with ``;``. SQL left without one at the end runs as it is."""
    pending: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if is_dot_command(line) and (not pending or statement_state("\n".join(pending)) == EMPTY):
            pending = []
            yield "dot", line.strip()
            continue
        pending.append(line)
        # Only a line holding a ';' can end a statement: no tokenizing on every line.
        if ";" in line and statement_state("\n".join(pending)) == COMPLETE:
            yield "sql", "\n".join(pending)
            pending = []
    if pending and statement_state("\n".join(pending)) != EMPTY:
        yield "sql", "\n".join(pending)


class Shell:
    """A connection, the output settings, and the commands that change them."""

    def __init__(
        self,
        database: str = ":memory:",
        *,
        out: TextIO,
        err: TextIO,
        debug: bool = False,
    ):
        self.database = database
        self.con: Connection = connect(database)
        self.out = out
        self.err = err
        self.debug = debug
        self.mode = "duckbox"
        self.max_rows = output.DEFAULT_MAX_ROWS
        self.timer = False
        self.changed = True  # the catalog may have changed: completion names are stale
        self.commands: dict[str, tuple[Callable[[list[str]], None], str, str]] = {
            ".describe": (self._describe, "MODEL", "describe a model (DESCRIBE MODEL)"),
            ".exit": (self._exit, "?CODE?", "leave the shell, with exit status CODE"),
            ".help": (self._help, "", "show this message"),
            ".maxrows": (self._maxrows, "N", "show at most N rows in duckbox mode"),
            ".mode": (self._mode, "MODE", "output mode: " + "|".join(output.MODES)),
            ".models": (self._models, "", "list the models (SHOW MODELS)"),
            ".open": (self._open, "?FILE?", "close this database and open FILE"),
            ".quit": (self._exit, "?CODE?", "the same as .exit"),
            ".read": (self._read, "FILE", "run the SQL and dot commands in FILE"),
            ".schema": (self._schema, "?PATTERN?", "CREATE statements of tables and views"),
            ".tables": (self._tables, "?PATTERN?", "list tables and views"),
            ".timer": (self._timer, "on|off", "print how long each statement takes"),
        }

    def close(self) -> None:
        self.con.close()

    # -- running --------------------------------------------------------------------------

    def run_lines(self, lines: Iterable[str], *, bail: bool) -> int:
        """Run SQL and dot commands; report each error on ``err``. ``bail``: stop at the
        first error or interrupt and return its status (scripts); otherwise carry on
        (the prompt). Raises :class:`ShellExit` for ``.exit``."""
        status = EXIT_OK
        commands = split_input(lines)
        while True:
            try:  # reading the next command tokenizes: a Ctrl-C may land there too
                kind, text = next(commands)
            except StopIteration:
                return status
            except KeyboardInterrupt:
                self.say_interrupted()
                return EXIT_INTERRUPTED
            status = self.run_command(kind, text)
            if status != EXIT_OK and bail:
                return status

    def run_command(self, kind: str, text: str) -> int:
        """Run one ("sql", text) or ("dot", line) command; report a failure, return status."""
        guard = InterruptGuard(lambda: self.con.duckdb.interrupt())
        try:
            with guard:
                if kind == "dot":
                    self.run_dot(text)
                else:
                    self.run_sql(text)
        except ShellExit:
            raise
        except _Reported as e:
            return e.status
        except KeyboardInterrupt:
            self.say_interrupted()
            return EXIT_INTERRUPTED
        except Exception as e:
            if guard.fired:  # DuckDB's own error for a query stopped by Ctrl-C
                self.say_interrupted()
                return EXIT_INTERRUPTED
            self._report(e)
            return EXIT_ERROR
        finally:
            self.changed = True
        return EXIT_OK

    def run_sql(self, sql: str) -> None:
        """Run statements one by one; print each query's result in the current mode."""
        script = split_statements(sql)
        if script is None:  # DuckDB's alone, and not tokenizable: DuckDB runs it whole
            self._timed(lambda: self._show(self.con.sql(sql), ""))
            return
        for statement in script:
            self._timed(lambda s=statement: self._show(self.con.sql(s.text), s.first_word))

    def run_dot(self, line: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError as e:
            raise CommandError(f"Cannot read {line!r}: {e}") from None
        name, args = words[0].lower(), words[1:]
        if name not in self.commands:
            raise CommandError(
                f"Unknown command {words[0]}. Valid commands: {', '.join(self.commands)}"
                " (.help explains them)"
            )
        self.commands[name][0](args)

    def _timed(self, run: Callable[[], None]) -> None:
        started, times = time.perf_counter(), os.times()
        run()
        if self.timer:
            ended = os.times()
            self._print(
                f"Run Time (s): real {time.perf_counter() - started:.3f}"
                f" user {ended.user - times.user:.6f} sys {ended.system - times.system:.6f}"
            )

    def _show(self, result: duckdb.DuckDBPyRelation | None, first_word: str) -> None:
        if not output.has_rows(result, first_word):
            return
        width = shutil.get_terminal_size().columns if self.out.isatty() else None
        self._print(output.render(result, self.mode, max_rows=self.max_rows, max_width=width))

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _report(self, error: BaseException) -> None:
        if self.debug:
            traceback.print_exception(error, file=self.err)
        known = isinstance(error, Error | duckdb.Error | OSError)
        message = str(error) if known else f"{type(error).__name__}: {error}"
        self.err.write(f"Error: {message}\n")
        self.err.flush()

    def say_interrupted(self) -> None:
        self.out.flush()
        self.err.write("Interrupted\n")
        self.err.flush()

    # -- dot commands ---------------------------------------------------------------------

    def _arguments(self, name: str, args: list[str], lo: int, hi: int) -> None:
        if not lo <= len(args) <= hi:
            usage = self.commands[name][1]
            raise CommandError(f"Usage: {name} {usage}".rstrip())

    def _help(self, args: list[str]) -> None:
        self._arguments(".help", args, 0, 0)
        width = max(len(f"{n} {u}") for n, (_, u, _) in self.commands.items())
        lines = [f"{f'{n} {u}'.ljust(width)}  {text}" for n, (_, u, text) in self.commands.items()]
        lines.append("SQL runs when a line ends a statement with ';'.")
        self._print("\n".join(lines))

    def _exit(self, args: list[str]) -> None:
        self._arguments(".exit", args, 0, 1)
        if args and not (args[0].isdigit() and int(args[0]) <= 255):
            raise CommandError(f"Exit status must be a number from 0 to 255, not {args[0]!r}")
        raise ShellExit(int(args[0]) if args else EXIT_OK)

    def _mode(self, args: list[str]) -> None:
        self._arguments(".mode", args, 0, 1)
        if not args:
            self._print(f"current output mode: {self.mode}")
            return
        mode = args[0].lower()
        if mode not in output.MODES:
            raise CommandError(f"Unknown mode {args[0]!r}: use one of {', '.join(output.MODES)}")
        self.mode = mode

    def _timer(self, args: list[str]) -> None:
        self._arguments(".timer", args, 1, 1)
        setting = args[0].lower()
        if setting not in ("on", "off"):
            raise CommandError(f"Use .timer on or .timer off, not {args[0]!r}")
        self.timer = setting == "on"

    def _maxrows(self, args: list[str]) -> None:
        self._arguments(".maxrows", args, 0, 1)
        if not args:
            self._print(f"current max rows: {self.max_rows}")
            return
        if not args[0].isdigit() or int(args[0]) < 1:
            raise CommandError(f".maxrows needs a whole number of rows, 1 or more, not {args[0]!r}")
        self.max_rows = int(args[0])

    def _models(self, args: list[str]) -> None:
        self._arguments(".models", args, 0, 0)
        self.run_sql("SHOW MODELS")

    def _describe(self, args: list[str]) -> None:
        self._arguments(".describe", args, 1, 1)
        self.run_sql(f"DESCRIBE MODEL {args[0]}")

    def _read(self, args: list[str]) -> None:
        self._arguments(".read", args, 1, 1)
        lines = read_lines(Path(args[0]))
        status = self.run_lines(lines, bail=True)
        if status != EXIT_OK:
            raise _Reported(status)

    def _open(self, args: list[str]) -> None:
        self._arguments(".open", args, 0, 1)
        database = args[0] if args else ":memory:"
        con = connect(database)  # opened before the old one closes: a failure keeps it
        self.con.close()
        self.con, self.database = con, database

    def _relations(self, pattern: str | None) -> list[tuple[str, str, str]]:
        """(name, shown name, CREATE statement) of the current database's tables and views,
        sqlml's own catalog left out."""
        return self.con.duckdb.execute(
            """
            WITH relations AS (
                SELECT schema_name, table_name AS name, sql FROM duckdb_tables()
                WHERE NOT internal AND database_name = current_database()
                UNION ALL
                SELECT schema_name, view_name, sql FROM duckdb_views()
                WHERE NOT internal AND database_name = current_database())
            SELECT name,
                   CASE WHEN schema_name = current_schema() THEN name
                        ELSE schema_name || '.' || name END AS shown,
                   sql
            FROM relations
            WHERE schema_name <> 'sqlml' AND ($pattern IS NULL OR name LIKE $pattern)
            ORDER BY shown""",
            {"pattern": pattern},
        ).fetchall()

    def _tables(self, args: list[str]) -> None:
        self._arguments(".tables", args, 0, 1)
        names = [shown for _, shown, _ in self._relations(args[0] if args else None)]
        if not names:
            return
        # In columns, as DuckDB's and SQLite's shells do.
        width = max(len(n) for n in names) + 2
        total = shutil.get_terminal_size().columns if self.out.isatty() else 80
        per_line = max(1, total // width)
        lines = [
            "".join(n.ljust(width) for n in names[i : i + per_line]).rstrip()
            for i in range(0, len(names), per_line)
        ]
        self._print("\n".join(lines))

    def _schema(self, args: list[str]) -> None:
        self._arguments(".schema", args, 0, 1)
        statements = [sql for _, _, sql in self._relations(args[0] if args else None)]
        if statements:
            self._print("\n".join(statements))

    def completion_names(self) -> dict[str, list[str]]:
        """Tables and views, their columns, and models, for the prompt's completion."""
        con = self.con.duckdb
        tables = [shown for _, shown, _ in self._relations(None)]
        columns = [
            row[0]
            for row in con.execute(
                "SELECT DISTINCT column_name FROM duckdb_columns() "
                "WHERE NOT internal AND schema_name <> 'sqlml' ORDER BY 1"
            ).fetchall()
        ]
        current = self.con.current_schema()
        models = [
            r.name if r.schema == current else f"{r.schema}.{r.name}"
            for r in self.con.catalog.all_current()
        ]
        self.changed = False
        return {"tables": tables, "columns": columns, "models": models}


def read_lines(path: Path) -> list[str]:
    """The lines of a script file; an unreadable one is a :class:`CommandError`."""
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise CommandError(f"Cannot read {path}: {reason}") from None
