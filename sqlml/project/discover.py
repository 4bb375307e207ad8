"""Find a project's ``.sql`` files and read each into a node: what it makes and what it reads.

A node file holds one ``CREATE [OR REPLACE] TABLE|VIEW|MODEL [IF NOT EXISTS] name ... AS``
statement; a file under ``tests/`` holds one query (a data test). What a statement reads is
found in its syntax tree (sqlml's sqlglot dialect): tables and views in FROM, JOIN and
``TABLE t``; ``MODEL x`` inside ``ML.*`` calls; function calls (which may be models'
functions); files read by ``read_csv(...)``, ``read_parquet(...)``, ``'file.csv'``. Queries
that sqlml keeps verbatim (the training query of CREATE MODEL, ``(query)`` arguments of
``ML.*`` calls) are parsed in turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlglot import exp
from sqlglot.errors import ParseError as SqlglotParseError
from sqlglot.tokens import Token, TokenType

from sqlml.errors import ParseError, ProjectError
from sqlml.parser import CreateModel, MLFunction, RawSQL, Source
from sqlml.parser.dialect import Sqlml, SqlmlParser

DEFAULT_SCHEMA = "main"
TESTS_DIR = "tests"
KINDS = ("table", "view", "model")

_DIALECT = Sqlml()
# A quoted table name DuckDB reads as a file (a replacement scan): FROM 'penguins.csv'.
_FILE_NAME = re.compile(
    r"[/\\*?]|\.(csv|tsv|txt|parquet|json|jsonl|ndjson|xlsx|arrow)(\.gz|\.zst)?$", re.IGNORECASE
)
REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass
class Node:
    """One file of the project: a node (table, view, model) or a data test (``test``)."""

    name: str  # lower-case schema.name it makes; a test: "test:<path under tests/>"
    kind: str  # table, view, model or test
    path: str  # relative to the project, with /
    text: str  # the statement as written (what the fingerprint hashes)
    sql: str  # the statement run: CREATE OR REPLACE ...
    reads: set[str] = field(default_factory=set)  # tables and views, schema.name
    models: set[str] = field(default_factory=set)  # MODEL x inside ML.* calls
    calls: set[str] = field(default_factory=set)  # functions called, schema.name
    files: set[str] = field(default_factory=set)  # file paths or globs, as written

    @property
    def display(self) -> str:
        """The name as shown: without the default schema; a test by its file's stem."""
        if self.kind == "test":
            return self.name.removeprefix("test:")
        return display_name(self.name)

    @property
    def schema(self) -> str:
        return self.name.rsplit(".", 2)[-2]

    @property
    def short(self) -> str:
        return self.name.rsplit(".", 1)[-1]


def display_name(name: str) -> str:
    return name.removeprefix(f"{DEFAULT_SCHEMA}.")


def discover(root: Path) -> tuple[list[Node], list[Node]]:
    """(nodes, data tests) of the project in ``root``, in path order."""
    if not root.is_dir():
        raise ProjectError(
            f"Project folder {str(root)!r} does not exist (or is not a folder): give the folder "
            "that holds the project's .sql files"
        )
    nodes: list[Node] = []
    tests: list[Node] = []
    for path in sorted(root.rglob("*.sql")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue  # .git, .venv, editor folders
        if relative.parts[0] == TESTS_DIR and len(relative.parts) > 1:
            tests.append(read_test(root, path))
        else:
            nodes.append(read_node(root, path))
    if not nodes and not tests:
        raise ProjectError(
            f"Project folder {str(root)!r} has no .sql files: a project is a folder of files "
            "each holding one CREATE TABLE|VIEW|MODEL name AS ... statement"
        )
    return nodes, tests


# -- reading one file ------------------------------------------------------------------------


def _source(root: Path, path: Path) -> tuple[str, Source, int, int]:
    """The file's text parsed into tokens, and the token range of its one statement."""
    relative = path.relative_to(root).as_posix()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ProjectError(f"{relative}: cannot read the file: {e}") from None
    try:
        source = Source.of(text)
    except ParseError as e:
        raise ProjectError(f"{relative}: {e}") from None
    ranges: list[tuple[int, int]] = []
    lo = 0
    for i in range(len(source.tokens) + 1):
        if i == len(source.tokens) or source.tokens[i].token_type == TokenType.SEMICOLON:
            if i > lo:
                ranges.append((lo, i))
            lo = i + 1
    if len(ranges) != 1:
        what = "no statement" if not ranges else f"{len(ranges)} statements"
        raise ProjectError(
            f"{relative} holds {what}; a project file holds exactly one statement "
            "(a node: CREATE TABLE|VIEW|MODEL name AS ...; a test under tests/: one query)"
        )
    return relative, source, *ranges[0]


def _parse(relative: str, source: Source, lo: int, hi: int) -> exp.Expr:
    parser = SqlmlParser(dialect=_DIALECT)
    try:
        tree = parser.parse(source.tokens[lo:hi], source.sql)[0]
    except SqlglotParseError as e:
        info = e.errors[0] if e.errors else {}
        where = f" (line {info['line']}, column {info['col']})" if info.get("line") else ""
        raise ProjectError(
            f"{relative}: cannot read this SQL to find what it reads: "
            f"{info.get('description') or e}{where}"
        ) from None
    if tree is None:
        raise ProjectError(f"{relative}: cannot read this SQL to find what it reads")
    return tree


def read_node(root: Path, path: Path) -> Node:
    relative, source, lo, hi = _source(root, path)
    tree = _parse(relative, source, lo, hi)
    text = source.text(lo, hi)
    expected = (
        "a node file holds one CREATE [OR REPLACE] TABLE|VIEW|MODEL [IF NOT EXISTS] name "
        "... AS <query> statement"
    )
    if isinstance(tree, CreateModel):
        kind, target = "model", tree.this
        body: exp.Expr | None = tree.args.get("query")
    elif isinstance(tree, exp.Create) and str(tree.args.get("kind", "")).upper() in (
        "TABLE",
        "VIEW",
    ):
        kind, target, body = str(tree.args["kind"]).lower(), tree.this, tree.expression
        if tree.find(exp.TemporaryProperty):
            raise ProjectError(
                f"{relative}: a temporary {kind} is gone when the build ends; make it a "
                f"plain {kind.upper()} ({expected})"
            )
        if not isinstance(target, exp.Table) or body is None:
            raise ProjectError(
                f"{relative}: {kind.upper()} without AS <query>; {expected}, so a build can "
                "make it again"
            )
    else:
        raise ProjectError(f"{relative}: starts {source.text(lo, min(lo + 3, hi))!r}; {expected}")
    name = qualify(target)
    node = Node(name, kind, relative, text, _create_or_replace(relative, source, lo, hi, kind))
    if isinstance(body, RawSQL):  # the training query, kept verbatim by the parser
        _scan(_parse_raw(relative, source, body), source, node, relative)
    elif body is not None:
        _scan(body, source, node, relative)
    if kind == "model":
        node.sql = _model_path_absolute(root, node, source, lo, hi)
    if kind == "view":
        relative_files = sorted(
            f for f in node.files if not REMOTE.match(f) and not Path(f).is_absolute()
        )
        if relative_files:
            raise ProjectError(
                f"{relative}: the view {node.display} reads {relative_files[0]!r} by a relative "
                "path, which DuckDB resolves whenever the view is queried (from the current "
                "folder), not against the project. Make it a TABLE, or use an absolute path"
            )
    return node


def read_test(root: Path, path: Path) -> Node:
    relative, source, lo, hi = _source(root, path)
    tree = _parse(relative, source, lo, hi)
    if not isinstance(tree, exp.Query):
        raise ProjectError(
            f"{relative}: a data test is one query (SELECT ...) that returns no rows when the "
            "data is right"
        )
    name = "test:" + Path(relative).relative_to(TESTS_DIR).with_suffix("").as_posix()
    text = source.text(lo, hi)
    node = Node(name, "test", relative, text, text)
    _scan(tree, source, node, relative)
    return node


def _word(token: Token) -> str:
    return (
        "" if token.token_type in (TokenType.IDENTIFIER, TokenType.STRING) else token.text.upper()
    )


def _create_or_replace(relative: str, source: Source, lo: int, hi: int, kind: str) -> str:
    """The statement as CREATE OR REPLACE <kind> name ...: a rebuild replaces what the last
    build made (plain CREATE would fail, IF NOT EXISTS would keep the old one)."""
    tokens = source.tokens
    i = lo + 1
    if _word(tokens[i]) == "OR" and _word(tokens[i + 1]) == "REPLACE":
        i += 2
    if _word(tokens[i]) != kind.upper():
        raise ProjectError(
            f"{relative}: expected CREATE [OR REPLACE] {kind.upper()} name, found "
            f"{source.text(lo, i + 1)!r}"
        )
    i += 1
    if [_word(t) for t in tokens[i : i + 3]] == ["IF", "NOT", "EXISTS"]:
        i += 3
    return (
        f"CREATE OR REPLACE {kind.upper()} " + source.sql[tokens[i].start : tokens[hi - 1].end + 1]
    )


def _model_path_absolute(root: Path, node: Node, source: Source, lo: int, hi: int) -> str:
    """An imported model's ``model_path = 'x.onnx'`` is relative to the project: make it
    absolute in the SQL run, and track the file."""
    tokens = source.tokens
    for i in range(lo, hi - 2):
        if (
            tokens[i].text.lower() == "model_path"
            and tokens[i + 1].token_type == TokenType.EQ
            and tokens[i + 2].token_type == TokenType.STRING
        ):
            value = tokens[i + 2].text
            node.files.add(value)
            if REMOTE.match(value) or Path(value).expanduser().is_absolute():
                return node.sql
            absolute = str((root / value).resolve()).replace("'", "''")
            offset = len(node.sql) - (tokens[hi - 1].end + 1)  # node.sql ends like the source
            start, end = tokens[i + 2].start + offset, tokens[i + 2].end + 1 + offset
            return node.sql[:start] + f"'{absolute}'" + node.sql[end:]
    return node.sql


# -- what a statement reads ------------------------------------------------------------------


def qualify(table: exp.Table) -> str:
    """Lower-case ``schema.name`` (``catalog.schema.name`` when it names a database)."""
    parts = [table.catalog, table.db or DEFAULT_SCHEMA, table.name]
    return ".".join(p.lower() for p in parts if p)


def _parse_raw(relative: str, source: Source, raw: RawSQL) -> exp.Expr:
    return _parse(
        relative, source, source.index_at(raw.args["start"]), source.index_at(raw.args["end"])
    )


def _scan(tree: exp.Expr, source: Source, node: Node, relative: str) -> None:
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for item in tree.walk():
        if isinstance(item, RawSQL):
            if isinstance(item.parent, MLFunction) and item.arg_key == "input":
                _scan(_parse_raw(relative, source, item), source, node, relative)
        elif isinstance(item, exp.Table):
            _table(item, node, ctes)
        elif isinstance(item, exp.Anonymous):
            schema = DEFAULT_SCHEMA
            parent = item.parent
            if (
                isinstance(parent, exp.Dot)
                and parent.expression is item
                and isinstance(parent.this, exp.Identifier | exp.Column)
            ):
                schema = parent.this.name  # schema.model(p)
            node.calls.add(f"{schema}.{item.name}".lower())


def _table(table: exp.Table, node: Node, ctes: set[str]) -> None:
    inner = table.this
    if isinstance(inner, MLFunction):
        return  # the ML.<fn>(...) call itself; its MODEL and TABLE arguments come on their own
    if isinstance(inner, exp.Func):  # a table function: read_csv('x.csv'), range(10), ...
        node.files.update(_file_arguments(inner))
        return
    if not isinstance(inner, exp.Identifier) or not table.name:
        return
    if isinstance(table.parent, MLFunction) and table.arg_key == "model":
        node.models.add(qualify(table))
        return
    if inner.quoted and not table.db and _FILE_NAME.search(table.name):
        node.files.add(table.name)  # FROM 'penguins.csv'
        return
    if not inner.quoted and table.name.upper() == "SHOW" and table.alias.upper() == "MODELS":
        return  # (SHOW MODELS) reads the model catalog
    if not table.db and table.name.lower() in ctes:
        return
    node.reads.add(qualify(table))


def _file_arguments(function: exp.Func) -> list[str]:
    """Literal paths given to a function that reads files (read_*, *_scan)."""
    name = function.name if isinstance(function, exp.Anonymous) else function.sql_name()
    name = name.lower()
    if not (name.startswith("read_") or name.endswith("_scan")):
        return []
    if isinstance(function, exp.Anonymous):
        first = function.expressions[0] if function.expressions else None
    elif isinstance(function.this, exp.Expr):
        first = function.this
    else:
        first = function.expressions[0] if function.expressions else None
    items = first.expressions if isinstance(first, exp.Array) else [first]
    return [i.this for i in items if isinstance(i, exp.Literal) and i.is_string]
