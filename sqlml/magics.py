"""``%load_ext sqlml``: the ``%sqlml`` line magic and the ``%%sqlml`` cell magic.

Both run SQL, sqlml's statements included, through a :class:`sqlml.Connection` and return
a pandas DataFrame for a query (``None`` for a statement without rows). This module is user
interface code for IPython and Jupyter; ``import sqlml`` never imports it.
"""

from __future__ import annotations

import re
from typing import Any

import duckdb
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

import sqlml
from sqlml import output, python_scan
from sqlml.parser import split_statements

# Leading options of the magic's line: a flag and its value (quoted, or up to a space).
# The SQL after them is kept exactly as typed: shell-style splitting would drop its quotes.
_OPTION = re.compile(
    r"""\s*(?:-[A-Za-z]|--[A-Za-z][\w-]*)(?:=|\s+)(?:"[^"]*"|'[^']*'|\S+)|\s*--?[A-Za-z][\w-]*\s*$"""
)


def _split_options(line: str) -> tuple[str, str]:
    """Split a magic's line into its leading options and the SQL that follows them."""
    end = 0
    while (match := _OPTION.match(line, end)) is not None:
        end = match.end()
    return line[:end], line[end:].strip()


def _quiet(error: BaseException) -> BaseException:
    """Make IPython show ``error`` as its message alone, without a traceback.

    IPython renders an exception with ``_render_traceback_`` through that method; the
    exception keeps its type, so the cell still fails and ``Run All`` stops there."""
    # DuckDB's messages already name their kind ("Catalog Error: ..."); sqlml's get their class.
    text = f"{type(error).__name__}: {error}" if isinstance(error, sqlml.Error) else str(error)
    error._render_traceback_ = lambda: [text]  # type: ignore[attr-defined]
    return error


def _run(con: sqlml.Connection, sql: str) -> Any:
    """Run every statement in turn, as the shell does; the last one's rows as a DataFrame,
    or None when it returned none (CREATE, INSERT, ...)."""
    script = split_statements(sql)
    if script is None:  # not tokenizable, and not sqlml's: DuckDB runs (and reports) it whole
        relation = con.sql(sql)
        return relation.df() if output.has_rows(relation, "") else None
    if not script:  # comments only
        return None
    for statement in script:  # on its lines in the cell: errors give the cell's line
        relation = con.sql(statement.on_its_line(statement.text))
    return relation.df() if output.has_rows(relation, statement.first_word) else None


@magics_class
class SqlmlMagics(Magics):
    """The magics; they keep the notebook's default connection."""

    def __init__(self, shell: Any):
        super().__init__(shell)
        self.connection: sqlml.Connection | None = None
        self._owned = False  # whether self.connection was opened here, and is closed here
        # DuckDB connections passed in by name, wrapped once each: wrapping registers the
        # models' functions. The DuckDB connection is kept so its id cannot be reused.
        self._wrapped: dict[int, tuple[duckdb.DuckDBPyConnection, sqlml.Connection]] = {}

    @no_var_expand  # SQL is taken verbatim: `$1` parameters and `{...}` literals stay
    @magic_arguments()
    @argument(
        "-c",
        "--connection",
        metavar="NAME",
        help="the notebook variable holding the connection to run on (a sqlml or DuckDB "
        "connection); given without SQL, it becomes the default for later magics, which "
        "otherwise is an in-memory database, or the file of --connect",
    )
    @argument(
        "--connect",
        metavar="PATH",
        help="open this DuckDB file (or :memory:) and make it the default connection",
    )
    @argument("-o", "--out", metavar="NAME", help="also store the result in this variable")
    @argument("sql", nargs="*", help="the SQL (line magic); %%%%sqlml takes it from the cell")
    @line_cell_magic
    def sqlml(self, line: str, cell: str | None = None) -> Any:
        """Run SQL and sqlml's statements; return a DataFrame for a query.

        ``%sqlml [options] SQL`` runs one line; ``%%sqlml [options]`` runs the cell below,
        one or several statements separated by ``;``, and returns the last one's result.
        """
        options, sql = _split_options(line)
        args = parse_argstring(self.sqlml, options)
        if cell is not None:
            if sql:
                raise UsageError(
                    f"%%sqlml takes only options on its first line, not {sql!r}: "
                    "write the SQL in the cell below it"
                )
            sql = cell
        if args.connect is not None:
            if args.connection is not None:
                raise UsageError("give either --connect PATH or -c NAME, not both")
            self._open(args.connect)
        con = self._connection(args.connection)
        if not sql.strip():
            if args.connection is not None:  # `%sqlml -c con` alone: the default from now on
                self._use(con, owned=False)
            elif args.connect is None:
                raise UsageError("%sqlml needs SQL to run, e.g. %sqlml SELECT 42")
            return None
        try:
            # The notebook's variables: SELECT * FROM df finds a DataFrame, as in DuckDB.
            with python_scan.namespace(self.shell.user_ns, self.shell.user_ns):
                result = _run(con, sql)
        except (sqlml.Error, duckdb.Error) as error:
            raise _quiet(error) from None
        if args.out is not None:
            self.shell.user_ns[args.out] = result
        return result

    def _open(self, path: str) -> None:
        try:
            connection = sqlml.connect(path)
        except (sqlml.Error, duckdb.Error) as error:
            raise _quiet(error) from None
        self._use(connection, owned=True)

    def _use(self, connection: sqlml.Connection, *, owned: bool) -> None:
        """Make ``connection`` the default; close the one it replaces if opened here."""
        if self.connection is not None and self._owned and self.connection is not connection:
            self.connection.close()
        self.connection = connection
        self._owned = owned

    def _connection(self, name: str | None) -> sqlml.Connection:
        if name is None:
            connection = self.connection
            if connection is None:
                connection = sqlml.connect()
                self._use(connection, owned=True)
            return connection
        if name not in self.shell.user_ns:
            raise UsageError(f"-c {name}: no variable named {name!r} in the notebook")
        value = self.shell.user_ns[name]
        if isinstance(value, sqlml.Connection):
            return value
        if isinstance(value, duckdb.DuckDBPyConnection):
            kept = self._wrapped.get(id(value))
            if kept is None or kept[0] is not value:
                kept = (value, sqlml.connect(value))
                self._wrapped[id(value)] = kept
            return kept[1]
        raise UsageError(
            f"-c {name}: {name!r} is not a connection (its type is {type(value).__name__}); "
            "pass a sqlml.connect(...) or duckdb.connect(...) result"
        )


def load(ipython: Any) -> None:
    """Register the magics on an IPython shell (``%load_ext sqlml`` calls this)."""
    ipython.register_magics(SqlmlMagics(ipython))
