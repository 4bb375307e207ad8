"""Fingerprints: what each node was last built from, kept in ``sqlml.build_state``.

A node's fingerprint hashes its kind, its SQL as written, the fingerprint it replaces (so
every build of a node gives it a new one, even from the same inputs: a dropped table made
again, a model retrained; what reads it is then rebuilt), and the state of every input:

- a project node it reads: that node's own fingerprint (its data follows from it);
- a table or view outside the project: its columns, row count and the sum of its rows'
  hashes (``SELECT count(*), sum(hash(t)) FROM t``), so a change to its data is seen;
- a model outside the project: its current version and ONNX checksum;
- a file (``read_csv('seeds/x.csv')``, globs too, relative to the project): the SHA-256 of
  its bytes; a URL cannot be read cheaply and counts as unchanged.

The inputs are stored with the fingerprint, so a rebuild says which one changed; a node is
unchanged when its SQL and its inputs are.
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from sqlml.catalog import SCHEMA, ModelRecord, quote
from sqlml.project.discover import REMOTE, Node, display_name, split_name

if TYPE_CHECKING:
    from sqlml.connection import Connection

MISSING = "missing"


@dataclass
class Stored:
    """A node's row of sqlml.build_state."""

    fingerprint: str
    sql_sha256: str
    inputs: dict[str, str]


def sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def fingerprint(node: Node, inputs: dict[str, str], previous: str | None) -> str:
    """A build of the node from these inputs, replacing the one fingerprinted ``previous``
    (None: never built by sqlml build)."""
    return sha256(json.dumps([node.kind, sha256(node.text), inputs, previous], sort_keys=True))


def model_state(record: ModelRecord) -> str:
    """What a model input is fingerprinted by: its current version and ONNX checksum."""
    return f"version {record.version} {record.onnx_sha256}"


def sql_name(key: str) -> str:
    """A name key as SQL: every part quoted."""
    return ".".join(quote(part) for part in split_name(key))


class BuildState:
    """Reads the database's side of the fingerprints; writes sqlml.build_state."""

    def __init__(self, con: Connection, root: Path):
        self.con = con
        self.root = root
        self._relations: dict[str, str] = {}
        self._files: dict[str, str] = {}

    # -- stored fingerprints -------------------------------------------------------------

    def load(self) -> dict[str, Stored]:
        if self.con.catalog.format_version() is None:
            return {}
        rows = self.con.duckdb.execute(
            f"SELECT node, fingerprint, sql_sha256, inputs FROM {SCHEMA}.build_state"
        ).fetchall()
        return {node: Stored(fp, sql, json.loads(inputs)) for node, fp, sql, inputs in rows}

    def save(self, node: Node, fp: str, inputs: dict[str, str]) -> None:
        """Record a built node (inside the caller's transaction)."""
        con = self.con.duckdb
        con.execute(f"DELETE FROM {SCHEMA}.build_state WHERE node = ?", [node.name])
        con.execute(
            f"INSERT INTO {SCHEMA}.build_state VALUES (?, ?, ?, ?, ?, ?, CAST(? AS TIMESTAMP))",
            [
                node.name,
                node.kind,
                node.path,
                fp,
                sha256(node.text),
                json.dumps(inputs, sort_keys=True),
                datetime.now(UTC).replace(tzinfo=None).isoformat(),
            ],
        )

    # -- objects in the database ---------------------------------------------------------

    def relation_kind(self, name: str) -> str | None:
        """'table' or 'view' if the database has a relation of that name."""
        *database, schema, table = split_name(name)
        rows = self.con.duckdb.execute(
            """SELECT 'table' FROM duckdb_tables()
               WHERE lower(database_name) = lower(coalesce(?, current_database()))
                 AND lower(schema_name) = ? AND lower(table_name) = ?
               UNION ALL
               SELECT 'view' FROM duckdb_views()
               WHERE NOT internal AND lower(database_name) = lower(coalesce(?, current_database()))
                 AND lower(schema_name) = ? AND lower(view_name) = ?""",
            [*(database or [None]), schema, table] * 2,
        ).fetchall()
        return rows[0][0] if rows else None

    def model_state(self, name: str) -> str | None:
        """A stored model's :func:`model_state`, or None if there is no model."""
        parts = split_name(name)
        if len(parts) != 2:  # models live in the database's own schemas
            return None
        record = self.con.catalog.current(*parts)
        return None if record is None else model_state(record)

    def exists(self, node: Node) -> bool:
        if node.kind == "model":
            return self.model_state(node.name) is not None
        return self.relation_kind(node.name) == node.kind

    def relation_state(self, name: str) -> str:
        """Columns, row count and rows' hash sum of a table or view, or 'missing'."""
        if name in self._relations:
            return self._relations[name]
        if self.relation_kind(name) is None:
            state = MISSING
        else:
            qualified = sql_name(name)
            try:
                columns = self.con.duckdb.execute(f"DESCRIBE {qualified}").fetchall()
                rows = self.con.duckdb.execute(
                    f"SELECT count(*), sum(hash(__sqlml_row))::VARCHAR "
                    f"FROM {qualified} AS __sqlml_row"
                ).fetchall()
                state = sha256(json.dumps([[c[:2] for c in columns], rows], default=str))
            except duckdb.Error as e:  # a broken view: reading it fails; the build will say so
                state = f"unreadable: {e}"
        self._relations[name] = state
        return state

    def forget(self, name: str) -> None:
        """A relation the build just made or replaced: read it afresh when asked again."""
        self._relations.pop(name, None)

    # -- files ---------------------------------------------------------------------------

    def file_state(self, pattern: str) -> str:
        """SHA-256 of the files a path or glob names (relative to the project)."""
        if pattern in self._files:
            return self._files[pattern]
        if REMOTE.match(pattern):
            state = "remote"  # not read by the build; only a change of the SQL rebuilds
        else:
            path = Path(pattern).expanduser()
            if not path.is_absolute():
                path = self.root / path
            if any(c in pattern for c in "*?["):
                matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            else:
                matches = [path] if path.exists() else []
            files = [p for p in matches if p.is_file()]
            if not files:
                state = MISSING
            else:
                digest = hashlib.sha256()
                for file in files:
                    digest.update(file.name.encode() + b"\0" + _file_sha256(file).encode())
                state = digest.hexdigest()
        self._files[pattern] = state
        return state


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_changes(old: dict[str, str], new: dict[str, str]) -> tuple[list[str], list[str]]:
    """(project nodes, other inputs) whose state differs between two builds, for the reason."""
    keys = sorted(set(old) | set(new))
    changed = [k for k in keys if old.get(k) != new.get(k)]
    nodes = [display_name(k.split(":", 1)[1]) for k in changed if k.startswith("node:")]
    data = [_label(k) for k in changed if not k.startswith("node:")]
    return nodes, data


def _label(key: str) -> str:
    kind, name = key.split(":", 1)
    return name if kind == "file" else display_name(name)
