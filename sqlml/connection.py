"""A DuckDB connection that also understands sqlml's ML statements."""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import duckdb
from sqlglot import exp

from sqlml import python_scan, statements, views
from sqlml.catalog import Catalog, ModelRecord, fail_transaction, open_transaction
from sqlml.console import (
    Console,
    SilentConsole,
    TerminalConsole,
    WarningsOnly,
    default_console,
)
from sqlml.errors import Error, OptionError, QueryError
from sqlml.functions import FunctionRegistry
from sqlml.parser import (
    CreateModel,
    DescribeModel,
    DropModel,
    ExportModel,
    SetSetting,
    ShowModels,
    Statement,
    may_contain_ml,
    split_statements,
)
from sqlml.query import QueryExpander

# Connections still open at exit are closed then: DuckDB complains at interpreter exit about
# Python UDFs left registered on an open connection.
_OPEN: weakref.WeakSet[Connection] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for connection in list(_OPEN):
        connection.close()


def connect(
    database: str | duckdb.DuckDBPyConnection = ":memory:",
    *,
    read_only: bool = False,
    config: dict[str, Any] | None = None,
    console: Console | None = None,
) -> Connection:
    """Open a DuckDB database (a file path or ``":memory:"``), or wrap an open DuckDB
    connection, with sqlml's statements and the stored models' SQL functions."""
    if isinstance(database, duckdb.DuckDBPyConnection):
        return Connection(database, owned=False, console=console)
    con = duckdb.connect(str(database), read_only=read_only, config=config or {})
    try:
        return Connection(con, owned=True, read_only=read_only, console=console)
    except BaseException:
        con.close()
        raise


class Connection:
    """Use :func:`connect` to make one.

    ``sql()`` and ``execute()`` take DuckDB SQL and sqlml's statements, one or several
    separated by ``;``. Plain DuckDB SQL goes to DuckDB exactly as written.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        *,
        owned: bool,
        read_only: bool = False,
        console: Console | None = None,
    ):
        self.duckdb = con
        self._console = console if console is not None else default_console()
        self._initial_console = self._console  # what RESET sqlml_progress goes back to
        self._progress = True  # SET sqlml_progress
        self._owned = owned
        self._loader: duckdb.DuckDBPyConnection | None = None
        self._loader_lock = threading.Lock()
        self._empty_result = False
        self.catalog = Catalog(con)
        self.functions = self._function_registry(con)
        self.expander = QueryExpander(con, self.catalog, self.functions, self.current_schema)
        if self.catalog.check(read_only=read_only):
            current = self.catalog.all_current()
            for record in current:
                self.functions.register(record)
            self.functions.resync(current)
        _OPEN.add(self)

    # -- DuckDB's interface -------------------------------------------------------------

    def sql(self, query: str, *, params: Any = None) -> duckdb.DuckDBPyRelation | None:
        """Run SQL; for a query, return DuckDB's relation (``.df()``, ``.fetchall()``, ...)."""
        with python_scan.from_caller():
            script = self._script(query)
            if script is None:  # not sqlml's: DuckDB's alone
                return python_scan.run(self.duckdb.sql, query, params=params)
            result = None
            for statement in script:
                self.functions.settle()
                result = self._run(statement, params if len(script) == 1 else None)
            return result

    def execute(
        self, query: str, parameters: Sequence[Any] | dict[str, Any] | None = None
    ) -> Connection:
        """Run SQL and keep its result for ``fetchall()``, ``fetchone()``, ``df()``, ..."""
        with python_scan.from_caller():
            self._empty_result = False
            script = self._script(query)
            if script is None:
                python_scan.run(self.duckdb.execute, query, parameters)
                return self
            for statement in script:
                self.functions.settle()
                sql = self._sql_for(statement)
                if sql is None:
                    self._empty_result = True
                    continue
                self._empty_result = False
                try:
                    python_scan.run(
                        self.duckdb.execute, sql, parameters if len(script) == 1 else None
                    )
                except duckdb.Error as e:
                    if statement.is_plain:
                        raise
                    raise QueryError(str(e)) from e
            return self

    def _script(self, query: str) -> list[Statement] | None:
        """The statements of ``query`` to run one by one, or None to hand it to DuckDB
        whole: SQL with nothing of sqlml's, when no transaction that changed models may
        have ended (ROLLBACK; then a statement: settle in between)."""
        if self.functions.pending:
            self.functions.settle()
        if not self.functions.pending and not may_contain_ml(query):
            return None
        return split_statements(query)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [] if self._empty_result else self.duckdb.fetchall()

    def fetchone(self) -> tuple[Any, ...] | None:
        return None if self._empty_result else self.duckdb.fetchone()

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        return [] if self._empty_result else self.duckdb.fetchmany(size)

    def df(self) -> Any:
        if self._empty_result:  # an ML statement with no result: no columns, no rows
            import pandas as pd

            return pd.DataFrame()
        return self.duckdb.df()

    fetchdf = df

    def arrow(self) -> Any:
        if self._empty_result:
            import pyarrow as pa

            return pa.table({})
        return self.duckdb.to_arrow_table()

    @property
    def description(self) -> Any:
        return None if self._empty_result else self.duckdb.description

    def close(self) -> None:
        """Close the DuckDB connection if sqlml opened it. A wrapped connection stays open,
        without the model functions sqlml registered on it."""
        _OPEN.discard(self)
        if self._loader is not None:
            self._loader.close()
            self._loader = None
        # A UDF dies with the connection that registered it, yet other connections to the
        # same database may call it: remove ours first, and let them register their own.
        with contextlib.suppress(duckdb.Error):  # a DuckDB connection closed already
            if self._owned and open_transaction(self.duckdb) is not None:
                # What closing does anyway, first: UDFs removed inside an open transaction
                # would come back to the catalog at its rollback, without their functions.
                self.duckdb.execute("ROLLBACK")
            created = self.functions.unregister_all()
            for other in list(_OPEN):
                other.functions.adopt(created)
        if self._owned:
            self.duckdb.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def console(self) -> Console:
        """Where training reports its phases and progress (see :mod:`sqlml.console`)."""
        return self._console if self._progress else WarningsOnly(self._console)

    @console.setter
    def console(self, console: Console) -> None:
        self._console = self._initial_console = console

    # -- internals ------------------------------------------------------------------------

    def _set(self, ast: SetSetting) -> None:
        """SET sqlml_progress = true | false; RESET sqlml_progress."""
        name = ast.this
        if name != "sqlml_progress":
            raise OptionError(
                f"Unknown setting {name}; sqlml's settings: sqlml_progress. "
                "Other settings are DuckDB's: their names do not start with sqlml_",
                name,
            )
        value = ast.args.get("expression")
        if value is None:  # RESET: as the connection started
            self._progress = True
            self._console = self._initial_console
            return
        on = _boolean(value)
        if on is None:
            raise OptionError(f"SET {name} takes true or false, not {value.sql()}", name)
        self._progress = on
        if on and isinstance(self._console, SilentConsole):
            # Asked for explicitly: lines on stderr even when it is not a terminal.
            self._console = TerminalConsole()

    def _function_registry(self, con: duckdb.DuckDBPyConnection) -> FunctionRegistry:
        """Where the models' UDFs get registered (sqlml.dbt's plugin registers each once
        for all of dbt's cursors)."""
        return FunctionRegistry(con, self._load_onnx)

    def current_schema(self) -> str:
        return self.duckdb.execute("SELECT current_schema()").fetchall()[0][0]

    def _run(self, statement: Statement, params: Any) -> duckdb.DuckDBPyRelation | None:
        if statement.is_plain:
            text = statement.on_its_line(statement.text)
            return python_scan.run(self.duckdb.sql, text, params=params)
        sql = self._sql_for(statement)
        if sql is None:
            return None
        try:
            return python_scan.run(self.duckdb.sql, sql, params=params)
        except duckdb.Error as e:
            raise QueryError(str(e)) from e

    def _sql_for(self, statement: Statement) -> str | None:
        """Run a DDL statement (None), or return the DuckDB SQL of a query statement. A
        failure fails the caller's open transaction, as a failing DuckDB statement does."""
        try:
            return self._sql_of(statement)
        except BaseException:
            fail_transaction(self.duckdb)
            raise

    def _sql_of(self, statement: Statement) -> str | None:
        ast = statement.ast
        if ast is None:
            if statement.is_plain:
                return statement.on_its_line(statement.text)
            view = views.header(statement.source, statement.lo, statement.hi)
            if view is not None:
                views.create(self, statement, view)
                return None
            expanded = self.expander.expand(statement.source, statement.lo, statement.hi)
            return statement.on_its_line(expanded)
        if isinstance(ast, CreateModel):
            statements.create_model(self, statement)
            return None
        if isinstance(ast, DropModel):
            statements.drop_model(self, statement)
            return None
        if isinstance(ast, ExportModel):
            statements.export_model(self, statement)
            return None
        if isinstance(ast, SetSetting):
            self._set(ast)
            return None
        if isinstance(ast, ShowModels):
            return self.expander.show_models_sql()
        if isinstance(ast, DescribeModel):
            return statements.describe_model_sql(self, statement)
        raise Error(f"Unsupported statement: {statement.text}")

    def _load_onnx(self, record: ModelRecord) -> bytes:
        # Runs inside a UDF call while the main connection executes a query: read through
        # a cursor of our own.
        with self._loader_lock:
            if self._loader is None:
                self._loader = self.duckdb.cursor()
            catalog = Catalog(self._loader)
            if record.trial_id is not None:
                return catalog.trial_onnx_bytes(
                    record.schema, record.name, record.version, record.trial_id
                )
            return catalog.onnx_bytes(record.schema, record.name, record.version)

    def __repr__(self) -> str:
        return f"<sqlml.Connection to {self.duckdb!r}>"


def _boolean(value: exp.Expr) -> bool | None:
    """TRUE/FALSE, 'on'/'off'/'true'/'false', 1/0 as a bool; None for anything else."""
    if isinstance(value, exp.Boolean):
        return bool(value.this)
    if isinstance(value, exp.Literal):
        word = value.this.strip().lower()
        if word in ("true", "on", "yes", "1"):
            return True
        if word in ("false", "off", "no", "0"):
            return False
    return None
