"""Views over ML functions follow their models, as BigQuery ML's do.

DuckDB keeps a view as the SQL it was created from, and sqlml expands ``ML.PREDICT(MODEL
m, ...)`` into the SQL of m's version at that moment: such a view would go on scoring with
that version after CREATE OR REPLACE MODEL, or break after DROP MODEL. So a view whose
statement calls ML functions on models is recorded (``sqlml.views``: its query as
written, the models it reads, and the SQL DuckDB stored), and when one of those models
changes it is created again, in the same transaction: from the new version, or, the model
dropped, as a view with the same columns that fails naming the model, until the model is
created again.

A view that was replaced or dropped since (its SQL in DuckDB is no longer what sqlml made)
is forgotten. Temporary views live in one session and are not recorded.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb
from sqlglot.tokens import TokenType

from sqlml.catalog import ABORTED, SCHEMA, open_transaction, quote, transaction
from sqlml.compiler import string
from sqlml.errors import CatalogError, Error, ModelNotFound, QueryError
from sqlml.parser import Source

if TYPE_CHECKING:
    from sqlml.connection import Connection
    from sqlml.parser import Statement

_NAME = (TokenType.VAR, TokenType.IDENTIFIER)


@dataclass
class ViewHeader:
    """``CREATE [OR REPLACE] VIEW [IF NOT EXISTS] name [(columns)] AS query``."""

    parts: list[str]  # the name's parts: [database.][schema.]view
    if_not_exists: bool
    columns: str  # the column list as written, or ""
    query: int  # the index of the query's first token


def header(source: Source, lo: int, hi: int) -> ViewHeader | None:
    """The header of a CREATE VIEW statement (None for another statement, or a temporary
    view)."""
    tokens = source.tokens[lo:hi]
    kinds = [t.token_type for t in tokens]
    i = 1
    if not kinds or kinds[0] != TokenType.CREATE:
        return None
    if kinds[i : i + 2] == [TokenType.OR, TokenType.REPLACE]:
        i += 2
    if i >= len(kinds) or kinds[i] != TokenType.VIEW:
        return None  # a table, a TEMP VIEW, a MATERIALIZED ...
    i += 1
    words = [t.text.upper() for t in tokens[i : i + 3]]
    if_not_exists = words == ["IF", "NOT", "EXISTS"]
    if if_not_exists:
        i += 3
    parts: list[str] = []
    while i < len(kinds) and kinds[i] in _NAME:
        parts.append(tokens[i].text)
        i += 1
        if i < len(kinds) and kinds[i] == TokenType.DOT:
            i += 1
            continue
        break
    columns = ""
    if i < len(kinds) and kinds[i] == TokenType.L_PAREN:
        start = i
        while i < len(kinds) and kinds[i] != TokenType.R_PAREN:
            i += 1
        columns = source.text(lo + start, lo + i + 1)
        i += 1
    if not parts or len(parts) > 3 or i >= len(kinds) - 1 or kinds[i] != TokenType.ALIAS:
        return None  # not a form sqlml follows: DuckDB reads it as written
    return ViewHeader(parts, if_not_exists, columns, lo + i + 1)


def create(connection: Connection, statement: Statement, view: ViewHeader) -> None:
    """Run a CREATE VIEW over ML functions, and record it if it reads models."""
    con = connection.duckdb
    expander = connection.expander
    sql, models = expander.expand_reading_models(statement.source, statement.lo, statement.hi)
    sql = statement.on_its_line(sql)
    search_schema = connection.current_schema()
    where = _where(con, view.parts, search_schema)
    try:
        if where is None or not models:  # another database's view, or no model read
            con.execute(sql)
            return
        schema, name = where
        existed = _view_sql(con, schema, name) is not None
        with transaction(con):
            con.execute(sql)
            if view.if_not_exists and existed:
                return
            query = statement.source.text(view.query, statement.hi)
            _record(con, schema, name, view.columns, query, search_schema, models)
            # A write to the models' catalog rows: a connection changing one of them at the
            # same time conflicts with this transaction (one of the two fails) instead of
            # missing the view, not yet committed, that it would have to follow.
            # (DuckDB sees no conflict with an UPDATE that changes nothing: the row is
            # deleted and inserted as it was.)
            for model in models:
                where_model = "WHERE lower(schema_name) = ? AND lower(model_name) = ?"
                key = model.split(".", 1)
                row = con.execute(f"SELECT * FROM {SCHEMA}.models {where_model}", key).fetchall()
                con.execute(f"DELETE FROM {SCHEMA}.models {where_model}", key)
                con.execute(f"INSERT INTO {SCHEMA}.models VALUES (?, ?, ?)", list(row[0]))
    except duckdb.Error as e:
        raise QueryError(str(e)) from e


def follow(connection: Connection, schema: str, name: str) -> None:
    """Create again every recorded view that reads model ``schema.name``, which changed:
    each in its own transaction, or in the caller's if one is open (a DuckDB error there
    fails it: sqlml cannot go on in it)."""
    from sqlml.query import QueryExpander

    con = connection.duckdb
    if connection.catalog.format_version() is None:
        return
    model = f"{schema}.{name}".lower()
    rows = con.execute(
        f"""SELECT schema_name, view_name, columns, query, search_schema, models, view_sql
            FROM {SCHEMA}.views WHERE list_contains(models, ?) ORDER BY ALL""",
        [model],
    ).fetchall()
    for view_schema, view_name, columns, query, search_schema, models, view_sql in rows:
        now = _view_sql(con, view_schema, view_name)
        if now is None and (renamed := _renamed(con, view_sql)) is not None:
            with transaction(con):  # follow it under its new name (dbt renames its views)
                _forget(con, view_schema, view_name)
                view_schema, view_name = renamed
                _forget(con, view_schema, view_name)
                _record(con, view_schema, view_name, columns, query, search_schema, models)
            now = view_sql = _view_sql(con, view_schema, view_name)
        if now != view_sql:
            with transaction(con):
                _forget(con, view_schema, view_name)  # replaced or dropped since
            continue
        target = f"{quote(view_schema)}.{quote(view_name)}"
        expander = QueryExpander(
            con, connection.catalog, connection.functions, lambda s=search_schema: s
        )
        source = Source.of(query)
        try:
            with _schema(con, search_schema):  # where its unqualified names were resolved
                body, read = expander.expand_reading_models(source, 0, len(source.tokens))
                with transaction(con):
                    con.execute(f"CREATE OR REPLACE VIEW {target} {columns} AS {body}")
                    _record(con, view_schema, view_name, columns, query, search_schema, read)
            continue
        except ModelNotFound as e:
            missing = getattr(e, "model", f"{schema}.{name}")
            reason = (
                f"View {view_schema}.{view_name} reads model {missing}, which was dropped: "
                "create the model again (the view follows it) or drop the view"
            )
        except (Error, duckdb.Error) as e:
            reason = (
                f"View {view_schema}.{view_name} could not follow model {schema}.{name}: "
                f"{e}. Create the view again"
            )
        if open_transaction(con) == ABORTED:
            raise CatalogError(reason)
        with transaction(con):  # the view's columns, failing with the reason when read
            failing = _failing(con, view_schema, view_name, reason)
            con.execute(f"CREATE OR REPLACE VIEW {target} AS {failing}")
            _record(con, view_schema, view_name, columns, query, search_schema, models)


@contextlib.contextmanager
def _schema(con: duckdb.DuckDBPyConnection, schema: str) -> Iterator[None]:
    """DuckDB's current schema set to ``schema`` meanwhile."""
    current = con.execute("SELECT current_schema()").fetchall()[0][0]
    if current.lower() == schema.lower():
        yield
        return
    con.execute(f"SET schema = {string(schema)}")
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"SET schema = {string(current)}")


def _failing(con: duckdb.DuckDBPyConnection, schema: str, name: str, reason: str) -> str:
    """A query with the view's columns that fails with ``reason`` when it is run."""
    columns = con.execute(
        """SELECT column_name, data_type FROM duckdb_columns()
           WHERE database_name = current_database() AND schema_name = ? AND table_name = ?
           ORDER BY column_index""",
        [schema, name],
    ).fetchall()
    select = ", ".join(f"CAST(NULL AS {t}) AS {quote(c)}" for c, t in columns)
    return f"SELECT {select} WHERE error({string(reason)}) IS NULL"


def _where(
    con: duckdb.DuckDBPyConnection, parts: list[str], current_schema: str
) -> tuple[str, str] | None:
    """(schema, view) of a view name as DuckDB resolves it, None when it is in another
    database: ``db.schema.v``; ``x.v``, x a schema of the current database, else a
    database (its schema main); ``v``, the current schema."""
    database = con.execute("SELECT current_database()").fetchall()[0][0]
    schemas = {
        row[0].lower(): row[0]
        for row in con.execute(
            "SELECT schema_name FROM duckdb_schemas() WHERE database_name = current_database()"
        ).fetchall()
    }
    if len(parts) == 3:
        if parts[0].lower() != database.lower():
            return None
        schema = parts[1]
    elif len(parts) == 2:
        if parts[0].lower() in schemas:
            schema = parts[0]
        elif parts[0].lower() == database.lower():
            schema = "main"
        else:
            return None
    else:
        schema = current_schema
    return schemas.get(schema.lower(), schema), parts[-1]


# DuckDB's SQL of a view starts CREATE VIEW [schema.]name: what follows is its definition.
_PART = r'(?:"(?:[^"]|"")*"|[^ ."(]+)'
_VIEW_NAME = re.compile(rf"^CREATE VIEW (?:{_PART}\.)?{_PART}")


def _renamed(con: duckdb.DuckDBPyConnection, view_sql: str) -> tuple[str, str] | None:
    """(schema, name) of the one view of this database sqlml does not follow yet whose
    definition is ``view_sql``'s under another name (ALTER VIEW ... RENAME TO), if there is
    exactly one."""
    definition = _VIEW_NAME.sub("", view_sql, count=1)
    found = [
        (schema, name)
        for schema, name, sql in con.execute(
            f"""SELECT schema_name, view_name, sql FROM duckdb_views() v
                WHERE database_name = current_database() AND NOT internal AND NOT EXISTS
                  (SELECT 1 FROM {SCHEMA}.views r WHERE lower(r.schema_name) =
                   lower(v.schema_name) AND lower(r.view_name) = lower(v.view_name))"""
        ).fetchall()
        if _VIEW_NAME.sub("", sql, count=1) == definition
    ]
    return found[0] if len(found) == 1 else None


def _view_sql(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> str | None:
    rows = con.execute(
        """SELECT sql FROM duckdb_views() WHERE database_name = current_database()
           AND lower(schema_name) = lower(?) AND lower(view_name) = lower(?)""",
        [schema, name],
    ).fetchall()
    return rows[0][0] if rows else None


def _forget(con: duckdb.DuckDBPyConnection, schema: str, name: str) -> None:
    con.execute(
        f"""DELETE FROM {SCHEMA}.views
            WHERE lower(schema_name) = lower(?) AND lower(view_name) = lower(?)""",
        [schema, name],
    )


def _record(
    con: duckdb.DuckDBPyConnection,
    schema: str,
    name: str,
    columns: str,
    query: str,
    search_schema: str,
    models: list[str],
) -> None:
    """Remember a view as DuckDB now stores it."""
    _forget(con, schema, name)
    stored = _view_sql(con, schema, name)
    if stored is None:  # not where sqlml looked for it: not followed
        return
    con.execute(
        f"INSERT INTO {SCHEMA}.views VALUES (?, ?, ?, ?, ?, ?, ?)",
        [schema, name, columns, query, search_schema, models, stored],
    )
