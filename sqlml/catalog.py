"""The model catalog, kept in the database file itself in the schema ``sqlml``.

``sqlml.model_versions`` holds one immutable row per trained version: the ONNX bytes and
the JSON metadata (plus a few columns copied out of it for SHOW MODELS).
``sqlml.models`` points each model at its current version. ``sqlml.model_trials`` keeps
the other trials of a tuned version (ONNX and metadata, as a version). ``sqlml.build_state``
keeps the fingerprint of each node ``sqlml build`` last built (see sqlml/project/).
``sqlml.catalog_info`` records the catalog format, so a later release can migrate an older
file.

Nothing is created until the first model is stored (or the first ``sqlml build``), so sqlml
leaves plain DuckDB files as they are.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import duckdb

from sqlml.errors import CatalogError
from sqlml.features import Feature

SCHEMA = "sqlml"
FORMAT_VERSION = 4

_TRIALS_DDL = f"""CREATE TABLE {SCHEMA}.model_trials (
    schema_name VARCHAR NOT NULL,
    model_name VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    trial_id INTEGER NOT NULL,
    onnx_sha256 VARCHAR NOT NULL,
    onnx BLOB NOT NULL,
    metadata VARCHAR NOT NULL,
    PRIMARY KEY (schema_name, model_name, version, trial_id)
)"""

# One row per view whose statement calls ML functions on models (sqlml/views.py): what to
# create it from again when one of those models changes.
_VIEWS_DDL = f"""CREATE TABLE {SCHEMA}.views (
    schema_name VARCHAR NOT NULL,
    view_name VARCHAR NOT NULL,
    columns VARCHAR NOT NULL,
    query VARCHAR NOT NULL,
    search_schema VARCHAR NOT NULL,
    models VARCHAR[] NOT NULL,
    view_sql VARCHAR NOT NULL,
    PRIMARY KEY (schema_name, view_name)
)"""

# One row per project node `sqlml build` built: what it was built from (sqlml/project/state.py).
_BUILD_STATE_DDL = f"""CREATE TABLE {SCHEMA}.build_state (
    node VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    sql_sha256 VARCHAR NOT NULL,
    inputs VARCHAR NOT NULL,
    built_at TIMESTAMP NOT NULL
)"""

_VERSIONS_DDL = f"""CREATE TABLE {SCHEMA}.model_versions (
    schema_name VARCHAR NOT NULL,
    model_name VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    model_type VARCHAR NOT NULL,
    label VARCHAR,
    feature_count INTEGER NOT NULL,
    training_rows BIGINT NOT NULL,
    key_metric VARCHAR NOT NULL,
    key_metric_value DOUBLE,
    created_at TIMESTAMP NOT NULL,
    onnx_sha256 VARCHAR NOT NULL,
    onnx BLOB NOT NULL,
    metadata VARCHAR NOT NULL,
    PRIMARY KEY (schema_name, model_name, version)
)"""

_MODELS_DDL = f"""CREATE TABLE {SCHEMA}.models (
    schema_name VARCHAR NOT NULL,
    model_name VARCHAR NOT NULL,
    current_version INTEGER NOT NULL,
    PRIMARY KEY (schema_name, model_name)
)"""

_DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"CREATE TABLE {SCHEMA}.catalog_info (key VARCHAR NOT NULL, value VARCHAR NOT NULL)",
    _VERSIONS_DDL,
    _MODELS_DDL,
    _TRIALS_DDL,
    _BUILD_STATE_DDL,
    _VIEWS_DDL,
]


def _to_format_4(con: duckdb.DuckDBPyConnection) -> None:
    """Keys on the model tables, so that two connections storing one model at once cannot
    both commit (before, both could store the same version), and the views table. The
    tables are made again with their keys (DuckDB cannot add a key to rows deleted in the
    same transaction); a file that such a race already hit keeps the latest row of a key."""
    tables = {
        "models": (_MODELS_DDL, "schema_name, model_name", "current_version"),
        "model_versions": (_VERSIONS_DDL, "schema_name, model_name, version", "created_at"),
        "model_trials": (_TRIALS_DDL, "schema_name, model_name, version, trial_id", "rowid"),
    }
    for table, (ddl, key, latest) in tables.items():
        keyed = con.execute(
            """SELECT count(*) FROM duckdb_constraints() WHERE database_name = current_database()
               AND schema_name = ? AND table_name = ? AND constraint_type = 'PRIMARY KEY'""",
            [SCHEMA, table],
        ).fetchall()[0][0]
        if keyed:  # made by an earlier step of this migration, in the current format
            continue
        con.execute(ddl.replace(f"{SCHEMA}.{table} (", f"{SCHEMA}.{table}_keyed (", 1))
        con.execute(
            f"""INSERT INTO {SCHEMA}.{table}_keyed SELECT * FROM {SCHEMA}.{table} WHERE rowid IN
                (SELECT arg_max(rowid, {latest}) FROM {SCHEMA}.{table} GROUP BY {key})"""
        )
        con.execute(f"DROP TABLE {SCHEMA}.{table}")
        con.execute(f"ALTER TABLE {SCHEMA}.{table}_keyed RENAME TO {table}")
    con.execute(_VIEWS_DDL)


# Migrations from format n to n + 1, run in one transaction when an older file is opened.
MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {
    1: lambda con: con.execute(_TRIALS_DDL),  # format 2: hyperparameter tuning's trials
    2: lambda con: con.execute(_BUILD_STATE_DDL),  # format 3: sqlml build's fingerprints
    3: _to_format_4,  # format 4: keys, and the views that follow their models
}


@dataclass
class ModelRecord:
    """One stored model version: where it lives and its metadata."""

    schema: str
    name: str
    version: int
    metadata: dict[str, Any]
    onnx_sha256: str
    trial_id: int | None = None  # a tuning trial other than the optimal one

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def model_type(self) -> str:
        return self.metadata["model_type"]

    @property
    def task(self) -> str:
        return self.metadata["task"]

    @cached_property
    def features(self) -> list[Feature]:
        return [Feature.from_dict(f) for f in self.metadata["features"]]

    @property
    def label(self) -> dict[str, str] | None:
        return self.metadata.get("label")

    @property
    def classes(self) -> list[Any] | None:
        return self.metadata.get("classes")

    @property
    def transform(self) -> dict[str, Any] | None:
        """The fitted TRANSFORM clause (see transform.py), if the model has one."""
        return self.metadata.get("transform")

    @property
    def inputs(self) -> list[tuple[str, str]]:
        """(name, SQL type) of the columns a caller supplies: the TRANSFORM's inputs, or
        the features."""
        if self.transform:
            return [(i["name"], i["sql_type"]) for i in self.transform["inputs"]]
        if "imported" in self.metadata and not self.features:
            return [(i["name"], i["sql_type"]) for i in self.metadata["imported"]["inputs"]]
        return [(f.name, f.sql_type) for f in self.features]

    def feature_sql(self) -> list[str]:
        """SQL of each feature over the input columns, referred to by name."""
        if "imported" in self.metadata and not self.features:
            return [quote(name) for name, _ in self.inputs]
        if self.transform:
            return [item["sql"] for item in self.transform["features"]]
        return [quote(f.name) for f in self.features]


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class Catalog:
    """Reads and writes the catalog tables through one DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    # -- format ----------------------------------------------------------------------------

    def format_version(self) -> int | None:
        """The file's catalog format, or None when it has no catalog yet."""
        found = self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = 'catalog_info'",
            [SCHEMA],
        ).fetchall()[0][0]
        if not found:
            return None
        rows = self.con.execute(
            f"SELECT value FROM {SCHEMA}.catalog_info WHERE key = 'format_version'"
        ).fetchall()
        if not rows:
            raise CatalogError(
                f"{SCHEMA}.catalog_info has no format_version: the sqlml catalog in this "
                "database is damaged"
            )
        return int(rows[0][0])

    def check(self, *, read_only: bool) -> bool:
        """Verify the format on open, migrating an older one. True if a catalog exists."""
        version = self.format_version()
        if version is None:
            return False
        if version > FORMAT_VERSION:
            raise CatalogError(
                f"This database's sqlml catalog has format {version}, newer than this "
                f"sqlml understands ({FORMAT_VERSION}). Upgrade sqlml to open it"
            )
        if version < FORMAT_VERSION:
            if read_only:
                raise CatalogError(
                    f"This database's sqlml catalog has the older format {version}; open it "
                    f"once without read_only so sqlml can migrate it to {FORMAT_VERSION}"
                )
            with transaction(self.con):
                for step in range(version, FORMAT_VERSION):
                    MIGRATIONS[step](self.con)
                self.con.execute(
                    f"UPDATE {SCHEMA}.catalog_info SET value = ? WHERE key = 'format_version'",
                    [str(FORMAT_VERSION)],
                )
        return True

    def ensure(self) -> None:
        """Create the catalog tables if this database has none (inside the caller's
        transaction)."""
        if self.format_version() is not None:
            return
        for statement in _DDL:
            self.con.execute(statement)
        self.con.execute(
            f"INSERT INTO {SCHEMA}.catalog_info VALUES ('format_version', ?)",
            [str(FORMAT_VERSION)],
        )

    # -- reading ---------------------------------------------------------------------------

    def current(self, schema: str, name: str) -> ModelRecord | None:
        if self.format_version() is None:
            return None
        rows = self.con.execute(
            f"""SELECT v.schema_name, v.model_name, v.version, v.metadata, v.onnx_sha256
                FROM {SCHEMA}.models m JOIN {SCHEMA}.model_versions v
                  ON v.schema_name = m.schema_name AND v.model_name = m.model_name
                 AND v.version = m.current_version
                WHERE lower(m.schema_name) = lower(?) AND lower(m.model_name) = lower(?)""",
            [schema, name],
        ).fetchall()
        return _record(rows[0]) if rows else None

    def all_current(self) -> list[ModelRecord]:
        if self.format_version() is None:
            return []
        rows = self.con.execute(
            f"""SELECT v.schema_name, v.model_name, v.version, v.metadata, v.onnx_sha256
                FROM {SCHEMA}.models m JOIN {SCHEMA}.model_versions v
                  ON v.schema_name = m.schema_name AND v.model_name = m.model_name
                 AND v.version = m.current_version
                ORDER BY v.schema_name, v.model_name"""
        ).fetchall()
        return [_record(row) for row in rows]

    def onnx_bytes(self, schema: str, name: str, version: int) -> bytes:
        rows = self.con.execute(
            f"""SELECT onnx FROM {SCHEMA}.model_versions
                WHERE schema_name = ? AND model_name = ? AND version = ?""",
            [schema, name, version],
        ).fetchall()
        if not rows:
            raise CatalogError(f"Model {schema}.{name} version {version} has no stored ONNX")
        return bytes(rows[0][0])

    def trial(self, schema: str, name: str, version: int, trial_id: int) -> ModelRecord | None:
        """A stored non-optimal trial of a tuned version."""
        rows = self.con.execute(
            f"""SELECT schema_name, model_name, version, metadata, onnx_sha256, trial_id
                FROM {SCHEMA}.model_trials
                WHERE schema_name = ? AND model_name = ? AND version = ? AND trial_id = ?""",
            [schema, name, version, trial_id],
        ).fetchall()
        return _record(rows[0]) if rows else None

    def trial_onnx_bytes(self, schema: str, name: str, version: int, trial_id: int) -> bytes:
        rows = self.con.execute(
            f"""SELECT onnx FROM {SCHEMA}.model_trials
                WHERE schema_name = ? AND model_name = ? AND version = ? AND trial_id = ?""",
            [schema, name, version, trial_id],
        ).fetchall()
        if not rows:
            raise CatalogError(f"Model {schema}.{name} version {version} has no trial {trial_id}")
        return bytes(rows[0][0])

    def next_version(self, schema: str, name: str) -> int:
        if self.format_version() is None:
            return 1
        rows = self.con.execute(
            f"""SELECT coalesce(max(version), 0) FROM {SCHEMA}.model_versions
                WHERE lower(schema_name) = lower(?) AND lower(model_name) = lower(?)""",
            [schema, name],
        ).fetchall()
        return int(rows[0][0]) + 1

    # -- writing (the caller holds a transaction) ------------------------------------------

    def add_version(self, record: ModelRecord, onnx: bytes) -> None:
        """Store a new version and make it current."""
        meta = record.metadata
        self.con.execute(
            f"""INSERT INTO {SCHEMA}.model_versions VALUES
                (?, ?, ?, ?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP), ?, ?, ?)""",
            [
                record.schema,
                record.name,
                record.version,
                meta["model_type"],
                meta["label"]["name"] if meta.get("label") else None,
                len(meta["features"]) or len(meta.get("imported", {}).get("inputs", [])),
                meta["training"]["rows_train"],
                meta["key_metric"],
                meta["metrics"].get(meta["key_metric"]),
                meta["created_at"],
                record.onnx_sha256,
                onnx,
                json.dumps(meta),
            ],
        )
        self.con.execute(
            f"""DELETE FROM {SCHEMA}.models
                WHERE lower(schema_name) = lower(?) AND lower(model_name) = lower(?)""",
            [record.schema, record.name],
        )
        self.con.execute(
            f"INSERT INTO {SCHEMA}.models VALUES (?, ?, ?)",
            [record.schema, record.name, record.version],
        )

    def add_trial(self, record: ModelRecord, onnx: bytes) -> None:
        assert record.trial_id is not None
        self.con.execute(
            f"INSERT INTO {SCHEMA}.model_trials VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                record.schema,
                record.name,
                record.version,
                record.trial_id,
                record.onnx_sha256,
                onnx,
                json.dumps(record.metadata),
            ],
        )

    def drop(self, schema: str, name: str) -> None:
        for table in ("models", "model_versions", "model_trials"):
            self.con.execute(
                f"""DELETE FROM {SCHEMA}.{table}
                    WHERE lower(schema_name) = lower(?) AND lower(model_name) = lower(?)""",
                [schema, name],
            )


def _record(row: tuple[Any, ...]) -> ModelRecord:
    schema, name, version, metadata, sha, *trial = row
    return ModelRecord(schema, name, int(version), json.loads(metadata), sha, *trial)


ABORTED = -1  # open_transaction's answer for a transaction an error has aborted


def open_transaction(con: duckdb.DuckDBPyConnection) -> int | None:
    """The id of the transaction the caller has open on ``con`` (BEGIN ...), ABORTED for one
    an error aborted, or None outside one: then each statement has its own id."""
    query = "SELECT current_transaction_id()"
    try:
        first = con.execute(query).fetchall()[0][0]
        second = con.execute(query).fetchall()[0][0]
    except duckdb.TransactionException:
        return ABORTED
    return first if first == second else None


def fail_transaction(con: duckdb.DuckDBPyConnection) -> None:
    """Fail the caller's open transaction, as an error in any of its statements would in
    DuckDB, so that its COMMIT rolls back: what sqlml did in it cannot be undone alone
    (DuckDB has no savepoints). Nothing outside a transaction."""
    with contextlib.suppress(duckdb.Error):
        if open_transaction(con) not in (None, ABORTED):
            con.execute("SELECT error('sqlml: a statement failed in this transaction')")


class transaction:
    """BEGIN ... COMMIT, or ROLLBACK on error; joins the caller's transaction if one is open
    (DuckDB has no nested transactions), and fails it on error (see fail_transaction)."""

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con
        self.owned = False

    def __enter__(self) -> transaction:
        # Look before BEGIN: a failed BEGIN inside the caller's transaction would abort it
        # (DuckDB invalidates a transaction on any error).
        self.owned = open_transaction(self.con) is None
        if self.owned:
            self.con.execute("BEGIN TRANSACTION")
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            if self.owned:
                self.con.execute("COMMIT")
        elif self.owned:
            self.con.execute("ROLLBACK")
        else:
            fail_transaction(self.con)
