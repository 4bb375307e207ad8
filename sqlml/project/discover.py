"""Find a project's ``.sql`` files and read each into a node: what it makes and what it reads.

A node file holds one ``CREATE [OR REPLACE] TABLE|VIEW|MODEL [IF NOT EXISTS] name ... AS``
statement; a file under ``tests/`` holds one query (a data test). What a statement reads is
found in its syntax tree (sqlml's sqlglot dialect): tables and views in FROM, JOIN and
``TABLE t`` (not a CTE's name, where DuckDB binds it to the CTE); ``MODEL x`` inside
``ML.*`` calls; function calls (which may be models' functions); files read by
``read_csv(...)``, ``read_parquet(...)``, ``'file.csv'``. Queries that sqlml keeps
verbatim (the training query of CREATE MODEL, ``(query)`` arguments of ``ML.*`` calls) are
parsed in turn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlglot import exp
from sqlglot.tokens import TokenType

from sqlml.catalog import quote
from sqlml.errors import ParseError, ProjectError
from sqlml.parser import (
    CreateModel,
    MLFunction,
    RawSQL,
    Source,
    find_ml_spans,
    parse,
    statement_ranges,
    word,
)

DEFAULT_SCHEMA = "main"
TESTS_DIR = "tests"

# A quoted table name DuckDB reads as a file (a replacement scan): FROM 'penguins.csv'.
_FILE_NAME = re.compile(
    r"[/\\*?]|\.(csv|tsv|txt|parquet|json|jsonl|ndjson|xlsx|arrow)(\.gz|\.zst)?$", re.IGNORECASE
)
REMOTE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass
class Node:
    """One file of the project: a node (table, view, model) or a data test (``test``)."""

    name: str  # the name_key() of what it makes: schema.name; a test: "test:<path>"
    kind: str  # table, view, model or test
    path: str  # relative to the project, with /
    text: str  # the statement as written (what the fingerprint hashes)
    sql: str  # the statement run: CREATE OR REPLACE ...
    reads: set[str] = field(default_factory=set)  # tables and views, as name_key()s
    models: set[str] = field(default_factory=set)  # MODEL x inside ML.* calls
    calls: set[str] = field(default_factory=set)  # functions called, as name_key()s
    files: set[str] = field(default_factory=set)  # file paths or globs, as written

    @property
    def display(self) -> str:
        """The name as shown: without the default schema; a test by its file's stem."""
        if self.kind == "test":
            return self.name.removeprefix("test:")
        return display_name(self.name)

    @property
    def schema(self) -> str:
        return split_name(self.name)[-2]

    @property
    def short(self) -> str:
        return split_name(self.name)[-1]


def display_name(name: str) -> str:
    return name.removeprefix(f"{DEFAULT_SCHEMA}.")


# -- names -----------------------------------------------------------------------------------

# One part of a name key: "quoted" (a part holding a dot or a quote) or plain.
_KEY_PART = re.compile(r'(?:^|(?<=\.))(?:"((?:[^"]|"")*)"|([^."]+))(?=\.|$)')


def name_key(parts: Iterable[str]) -> str:
    """A name as one string, the key of nodes, inputs and ``sqlml.build_state``: its parts
    lower-case (DuckDB's names are case-insensitive), joined by dots; a part holding a dot
    or a double quote is quoted as in SQL, so :func:`split_name` gives the parts back."""
    return ".".join(
        quote(part) if "." in part or '"' in part else part for part in (p.lower() for p in parts)
    )


def split_name(key: str) -> list[str]:
    """The parts of a :func:`name_key`: ``[catalog,] schema, name``."""
    return [plain or quoted.replace('""', '"') for quoted, plain in _KEY_PART.findall(key)]


def called_names(call: str) -> list[str]:
    """The models a function call may be: ``x(...)`` is model x, ``x_probs(...)`` x too."""
    *schema, function = split_name(call)
    names = [call]
    if function.endswith("_probs"):
        names.append(name_key([*schema, function.removesuffix("_probs")]))
    return names


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
        text = path.read_text(encoding="utf-8-sig")  # -sig: editors on Windows write a BOM
    except (OSError, UnicodeDecodeError) as e:
        raise ProjectError(f"{relative}: cannot read the file: {e}") from None
    try:
        source = Source.of(text)
    except ParseError as e:
        # DuckDB's parser places an unterminated string better (at its quote); its other
        # errors could be about sqlml's own syntax (MODEL m).
        duckdb_error = _duckdb_syntax_error(text)
        if duckdb_error is None or "unterminated" not in duckdb_error:
            duckdb_error = None
        raise ProjectError(f"{relative}: {duckdb_error or e}") from None
    ranges = statement_ranges(source)
    if len(ranges) != 1:
        what = "no statement" if not ranges else f"{len(ranges)} statements"
        raise ProjectError(
            f"{relative} holds {what}; a project file holds exactly one statement "
            "(a node: CREATE TABLE|VIEW|MODEL name AS ...; a test under tests/: one query)"
        )
    return relative, source, *ranges[0]


def _parse(relative: str, source: Source, lo: int, hi: int) -> exp.Expr:
    try:
        tree = parse(source, lo, hi)
    except ParseError as e:
        raise ProjectError(f"{relative}: cannot read this SQL to find what it reads: {e}") from None
    if tree is None:
        raise ProjectError(f"{relative}: cannot read this SQL to find what it reads")
    return tree


def _duckdb_syntax_error(text: str) -> str | None:
    """DuckDB's own parser error for SQL text, if it has one (lines as in the text)."""
    import duckdb

    with duckdb.connect() as con:
        try:
            con.extract_statements(text)
        except duckdb.ParserException as e:
            return str(e)
    return None


def _check_syntax(relative: str, source: Source, lo: int, hi: int) -> None:
    """Run DuckDB's parser over tokens [lo, hi) before anything is built: sqlglot reads
    some SQL DuckDB refuses. Each ML call stands in as ``(SELECT 1)`` (DuckDB cannot read
    ``MODEL m``), and the text keeps its place in the file, so DuckDB's "LINE n" is the
    file's line."""
    text = source.sql
    start = source.tokens[lo].start
    pieces = [source.newlines_before(start) + " " * (start - text.rfind("\n", 0, start) - 1)]
    position = start
    for span in find_ml_spans(source, lo, hi):
        begin, end = source.tokens[span.lo].start, source.tokens[span.hi - 1].end + 1
        pieces += [text[position:begin], "(SELECT 1)" + "\n" * text.count("\n", begin, end)]
        position = end
    pieces.append(text[position : source.tokens[hi - 1].end + 1])
    error = _duckdb_syntax_error("".join(pieces))
    if error is not None:
        raise ProjectError(f"{relative}: {error}")


def read_node(root: Path, path: Path) -> Node:
    relative, source, lo, hi = _source(root, path)
    tree = _parse(relative, source, lo, hi)
    if isinstance(tree, CreateModel):
        raw = tree.args.get("query")
        if isinstance(raw, RawSQL):  # the training query; CREATE MODEL is sqlml's own
            _check_syntax(
                relative,
                source,
                source.index_at(raw.args["start"]),
                source.index_at(raw.args["end"]),
            )
    else:
        _check_syntax(relative, source, lo, hi)
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
    node.sql = source.newlines_before(source.tokens[lo].start) + node.sql  # the file's lines
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
    _check_syntax(relative, source, lo, hi)
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


def _create_or_replace(relative: str, source: Source, lo: int, hi: int, kind: str) -> str:
    """The statement as CREATE OR REPLACE <kind> name ...: a rebuild replaces what the last
    build made (plain CREATE would fail, IF NOT EXISTS would keep the old one)."""
    tokens = source.tokens
    i = lo + 1
    if word(tokens[i]) == "OR" and word(tokens[i + 1]) == "REPLACE":
        i += 2
    if word(tokens[i]) != kind.upper():
        raise ProjectError(
            f"{relative}: expected CREATE [OR REPLACE] {kind.upper()} name, found "
            f"{source.text(lo, i + 1)!r}"
        )
    i += 1
    if [word(t) for t in tokens[i : i + 3]] == ["IF", "NOT", "EXISTS"]:
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
    """The :func:`name_key` of ``schema.name`` (``catalog.schema.name`` when it names a
    database)."""
    return name_key(p for p in (table.catalog, table.db or DEFAULT_SCHEMA, table.name) if p)


def _parse_raw(relative: str, source: Source, raw: RawSQL) -> exp.Expr:
    return _parse(
        relative, source, source.index_at(raw.args["start"]), source.index_at(raw.args["end"])
    )


def _scan(
    tree: exp.Expr, source: Source, node: Node, relative: str, outer: frozenset[str] = frozenset()
) -> None:
    """Add what ``tree`` reads to the node. ``outer``: CTE names visible where the tree sits
    (a query argument of an ML call, parsed apart, sees the CTEs around the call)."""
    for item in tree.walk():
        if isinstance(item, RawSQL):
            if isinstance(item.parent, MLFunction) and item.arg_key == "input":
                inner = _parse_raw(relative, source, item)
                _scan(inner, source, node, relative, outer | _ctes_in_scope(item))
        elif isinstance(item, exp.Table):
            _table(item, node, outer)
        elif isinstance(item, exp.Anonymous):
            schema = DEFAULT_SCHEMA
            parent = item.parent
            if (
                isinstance(parent, exp.Dot)
                and parent.expression is item
                and isinstance(parent.this, exp.Identifier | exp.Column)
            ):
                schema = parent.this.name  # schema.model(p)
            node.calls.add(name_key([schema, item.name]))


def _ctes_in_scope(item: exp.Expr) -> set[str]:
    """Lower-case names of the CTEs a table name at ``item`` means, as DuckDB binds them:
    those of every WITH around it; inside a CTE's body, only the CTEs before it (the CTE's
    own name there is the table of that name), and itself only in the recursive part of
    ``WITH RECURSIVE name AS (anchor UNION [ALL] recursive)``."""
    names: set[str] = set()
    child, parent = item, item.parent
    while parent is not None:
        if isinstance(parent, exp.With):  # child: one of its CTEs
            ctes = parent.expressions
            index = next((i for i, cte in enumerate(ctes) if cte is child), len(ctes))
            names.update(_cte_name(cte) for cte in ctes[:index])
            body = child.this if isinstance(child, exp.CTE) else None
            if (
                parent.args.get("recursive")
                and isinstance(body, exp.Union)
                and _within(item, body.expression)
            ):
                names.add(_cte_name(child))
            # Past the query this WITH belongs to: its later CTEs are not visible here.
            child = parent.parent
            if child is None:
                break
            parent = child.parent
            continue
        with_ = parent.args.get("with_")
        if isinstance(with_, exp.With):
            names.update(_cte_name(cte) for cte in with_.expressions)
        child, parent = parent, parent.parent
    return names


def _cte_name(cte: exp.Expr) -> str:
    return cte.alias_or_name.lower()


def _within(item: exp.Expr, ancestor: exp.Expr) -> bool:
    node: exp.Expr | None = item
    while node is not None:
        if node is ancestor:
            return True
        node = node.parent
    return False


def _table(table: exp.Table, node: Node, outer: frozenset[str]) -> None:
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
    if not table.db and table.name.lower() in outer | _ctes_in_scope(table):
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
