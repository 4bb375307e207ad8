"""The dbt-duckdb plugin: sqlml on the connection dbt runs its SQL on.

DuckDB cannot parse ``CREATE MODEL`` or ``ML.PREDICT(MODEL m, ...)``; a
:class:`sqlml.Connection` can, and passes every other statement to DuckDB as written. So
each cursor dbt-duckdb hands to dbt is wrapped: SQL that may hold sqlml's statements or
ML calls runs through a sqlml Connection on that cursor, the rest goes to the cursor as
before.

dbt-duckdb calls ``configure_cursor`` on every cursor but drops what it returns, so the
plugin wraps ``Environment.initialize_cursor`` (once per process) and wraps the cursors of
environments whose profile lists this plugin; other profiles are left alone.

The UDFs of models scored by onnxruntime need care. A UDF is seen by every connection of
the database, but only by transactions that start after it is registered, and its Python
function goes away when the connection that registered it closes. dbt runs each model in
a transaction on a cursor it closes afterwards. So the stored models' UDFs are registered
on a cursor of dbt's root connection when it opens; a UDF registered later (a model trained in this
run) is registered on the cursor that needs it, inside its transaction, and that cursor is
kept open until dbt closes the root connection, which closes it too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import duckdb
from dbt.adapters.duckdb.environments import Environment
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.events.logging import AdapterLogger

from sqlml.catalog import ModelRecord, transaction
from sqlml.connection import Connection
from sqlml.console import Console
from sqlml.functions import SQL, FunctionRegistry, inference, udf_name
from sqlml.parser import may_contain_ml
from sqlml.runtime import ModelRuntime

_logger = AdapterLogger("sqlml")
_hook_lock = threading.Lock()
_hooked = False


class Plugin(BasePlugin):
    """``plugins: [{module: sqlml.dbt}]`` in a dbt-duckdb profile."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self._lock = threading.RLock()
        self._root: _Root | None = None
        _hook_initialize_cursor()

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        # dbt-duckdb opens a new root connection after closing the last one: start afresh.
        root = _Root(conn)
        with self._lock:
            self._root = root
        # Models trained on parallel dbt threads would race to create the catalog (a DuckDB
        # write-write conflict on schema sqlml): create it now, before any thread runs.
        try:
            with transaction(conn):
                root.connection.catalog.ensure()
        except duckdb.Error as e:  # a read-only database, where nothing trains
            _logger.debug(f"sqlml: no catalog created: {e}")

    def wrap(self, cursor: Any, raw: duckdb.DuckDBPyConnection) -> Any:
        """The cursor dbt gets: ``cursor`` as dbt-duckdb configured it, over the DuckDB
        cursor ``raw``."""
        with self._lock:
            root = self._root
        if root is None:  # a cursor of a connection this plugin did not configure
            return cursor
        return _Cursor(cursor, raw, root)


def _hook_initialize_cursor() -> None:
    global _hooked
    with _hook_lock:
        if _hooked:
            return
        original: Callable[..., Any] = Environment.__dict__["initialize_cursor"].__func__

        def initialize_cursor(cls: type, creds: Any, cursor: Any, *args: Any, **kwargs: Any) -> Any:
            configured = original(cls, creds, cursor, *args, **kwargs)
            plugins = args[0] if args else kwargs.get("plugins")
            for plugin in (plugins or {}).values():
                if isinstance(plugin, Plugin):
                    return plugin.wrap(configured, cursor)
            return configured

        Environment.initialize_cursor = classmethod(initialize_cursor)  # type: ignore[method-assign]
        _hooked = True


class _Root:
    """One root connection of dbt-duckdb: which UDFs are registered on the database, and
    the cursors kept open because they registered some."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.lock = threading.RLock()
        self.udfs: set[str] = set()
        self.kept: list[_Cursor] = []
        self.connection = _Connection(con, self, keep=lambda: None)


class _Cursor:
    """A dbt-duckdb cursor whose ``execute`` understands sqlml's SQL. Everything else (and
    SQL without a hint of sqlml) is the wrapped cursor's, retries included."""

    def __init__(self, cursor: Any, raw: duckdb.DuckDBPyConnection, root: _Root):
        self._cursor = cursor
        self._root = root
        self._kept = False
        self._sqlml = _Connection(raw, root, keep=self._keep)
        self._last: Any = cursor  # whoever ran the last statement holds its result

    def execute(self, sql: str, bindings: Any = None) -> _Cursor:
        if may_contain_ml(sql):
            self._last = self._sqlml
            self._sqlml.execute(sql, bindings)
        else:
            self._last = self._cursor
            if bindings is None:
                self._cursor.execute(sql)
            else:
                self._cursor.execute(sql, bindings)
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._last.fetchall()

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._last.fetchone()

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        return self._last.fetchmany(size)

    @property
    def description(self) -> Any:
        return self._last.description

    def close(self) -> None:
        if self._kept:  # its UDFs serve other cursors: it closes with the root connection
            return
        self._sqlml.close()
        self._cursor.close()

    def _keep(self) -> None:
        if not self._kept:
            self._kept = True
            self._root.kept.append(self)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _DbtConsole(Console):
    """sqlml's warnings go to dbt's log; progress lines would garble dbt's output."""

    def warn(self, message: str) -> None:
        _logger.warning(message)


class _Connection(Connection):
    def __init__(self, con: duckdb.DuckDBPyConnection, root: _Root, keep: Callable[[], None]):
        self._root = root
        self._keep = keep
        super().__init__(con, owned=False, console=_DbtConsole())

    def _function_registry(self, con: duckdb.DuckDBPyConnection) -> FunctionRegistry:
        return _Functions(con, self._load_onnx, self._root, self._keep)


class _Functions(FunctionRegistry):
    """Registers a UDF only if no connection of this root has (the registry's rules say on
    which connection: see FunctionRegistry); this connection is then kept open, since a UDF
    lives as long as the connection that registered it."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        load: Callable[[ModelRecord], bytes],
        root: _Root,
        keep: Callable[[], None],
    ):
        super().__init__(con, load)
        self._root = root
        self._keep = keep

    def register(
        self, record: ModelRecord, runtime: ModelRuntime | None = None, *, owner: bool = False
    ) -> None:
        name = udf_name(record)
        with self._root.lock:
            if inference(record) == SQL or name in self._root.udfs:
                if runtime is not None:
                    self.runtimes.setdefault(name, runtime)
                return
            self._keep()
            self._root.udfs.add(name)
            try:
                super().register(record, runtime, owner=owner)
            except BaseException:
                self._root.udfs.discard(name)
                raise

    def _remove(self, name: str) -> None:
        with self._root.lock:
            if name in self._created:  # else another connection's: it stays
                self._root.udfs.discard(name)
            super()._remove(name)
