"""Run a project: its nodes in dependency order, each only when its fingerprint changed,
then its data tests. Returns a result per node and test; prints nothing (command.py does).

A failing node (any exception) leaves the previous object in place (tables and views are
replaced in a transaction with the fingerprint; CREATE OR REPLACE MODEL keeps the previous
version when training fails), keeps its old fingerprint, and its downstream is skipped.
Ctrl-C (KeyboardInterrupt, or DuckDB's own error for an interrupted query) stops the build:
the running node is ``interrupted`` (and kept as it was), the rest ``skipped``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from sqlml.catalog import ModelRecord, open_transaction, transaction
from sqlml.connection import Connection, connect
from sqlml.console import Console
from sqlml.errors import Error, ProjectError
from sqlml.interrupt import InterruptGuard
from sqlml.project import graph
from sqlml.project.discover import (
    DEFAULT_SCHEMA,
    Node,
    called_names,
    display_name,
    name_key,
    split_name,
)
from sqlml.project.state import (
    MISSING,
    BuildState,
    Stored,
    describe_changes,
    fingerprint,
    model_state,
    sha256,
    sql_name,
)

BUILT, SKIPPED, FAILED, PASSED = "built", "skipped", "failed", "passed"
INTERRUPTED = "interrupted"
WOULD_BUILD, WOULD_SKIP, WOULD_RUN = "would build", "would skip", "would run"
TEST_ROWS_SHOWN = 10  # offending rows kept for a failing data test


@dataclass
class Metric:
    """A model's key metric after the build, and before it (the previous current version)."""

    name: str
    value: float | None
    version: int
    previous: float | None = None
    previous_version: int | None = None

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        return self.value - self.previous


@dataclass
class NodeResult:
    """What happened to one node or data test."""

    name: str  # as shown: schema omitted when it is main; a test by its path under tests/
    kind: str  # table, view, model or test
    path: str  # the file, relative to the project
    status: str  # built, skipped, failed, passed, interrupted; dry run: would build/skip/run
    reason: str = ""  # why built or skipped: new, sql changed, upstream changed: x, ...
    seconds: float = 0.0
    error: str | None = None
    metric: Metric | None = None  # models
    columns: list[str] = field(default_factory=list)  # a failing test's offending rows
    rows: list[tuple[Any, ...]] = field(default_factory=list)  # the first TEST_ROWS_SHOWN
    row_count: int = 0
    exception: BaseException | None = field(default=None, repr=False, compare=False)  # failed


@dataclass
class BuildResult:
    project: Path
    dry_run: bool
    results: list[NodeResult]

    @property
    def ok(self) -> bool:
        return all(r.status not in (FAILED, INTERRUPTED) for r in self.results)

    @property
    def interrupted(self) -> bool:
        """Stopped by Ctrl-C: one node or test ``interrupted``, everything after ``skipped``."""
        return any(r.status == INTERRUPTED for r in self.results)

    @property
    def failed(self) -> list[NodeResult]:
        return [r for r in self.results if r.status == FAILED]

    def __getitem__(self, name: str) -> NodeResult:
        for result in self.results:
            if result.name == name or (result.kind == "test" and result.path == name):
                return result
        raise KeyError(name)

    def statuses(self) -> dict[str, str]:
        """Name -> status, in run order."""
        return {r.name: r.status for r in self.results}


def build(
    database: Connection | duckdb.DuckDBPyConnection | str | Path,
    project_dir: str | Path,
    *,
    select: Sequence[str] | str | None = None,
    full_refresh: bool = False,
    dry_run: bool = False,
    console: Console | None = None,
    interruptible: bool = False,
) -> BuildResult:
    """Build the project in ``project_dir`` into a database (a connection or a file path).

    ``select``: node names, ``name+`` (and its downstream) or ``+name`` (and its upstream);
    ``full_refresh`` rebuilds every selected node; ``dry_run`` only plans. A project that
    cannot run (a bad file, two files making one name, a cycle, an unknown name) raises
    :class:`sqlml.ProjectError` before anything runs (and creates no database file); a
    failing node or data test does not raise: see :attr:`BuildResult.ok`. Neither does
    Ctrl-C while a node or test runs: see :attr:`BuildResult.interrupted`.

    ``interruptible``: for a command line; while the build runs, Ctrl-C also cancels the
    running DuckDB statement (a SIGINT handler, installed from the main thread only)."""
    project = graph.load(project_dir)
    selectors = [select] if isinstance(select, str) else list(select or [])
    chosen, tests = graph.select(project, selectors)
    if selectors and _missing_file(database):  # check before the file is made
        _check_selection(project, chosen, lambda node: False)
    con, owned = _open(database, console, dry_run)
    try:
        guard = InterruptGuard(con.duckdb.interrupt)
        with guard if interruptible else contextlib.nullcontext():
            runner = _Runner(con, project, chosen, bool(selectors), full_refresh, dry_run)
            runner.fired = lambda: guard.fired  # never, without the guard
            return BuildResult(project.root, dry_run, runner.run(tests))
    finally:
        if owned:
            con.close()


def _missing_file(database: Connection | duckdb.DuckDBPyConnection | str | Path) -> bool:
    if isinstance(database, Connection | duckdb.DuckDBPyConnection):
        return False
    return str(database) != ":memory:" and not Path(database).exists()


def _check_selection(
    project: graph.Project, chosen: set[str], exists: Callable[[Node], bool]
) -> None:
    """A selected node whose upstream is neither selected nor built cannot run."""
    for name in graph.in_order(project, chosen):
        node = project.nodes[name]
        for parent in project.upstream[name]:
            if parent not in chosen and not exists(project.nodes[parent]):
                raise ProjectError(
                    f"{node.path} reads {display_name(parent)}, which is not in the "
                    f"database yet and not selected: build it first, or select it too "
                    f"(--select +{node.display} selects everything {node.display} reads)"
                )


def _open(
    database: Connection | duckdb.DuckDBPyConnection | str | Path,
    console: Console | None,
    dry_run: bool,
) -> tuple[Connection, bool]:
    if isinstance(database, Connection):
        return database, False
    if isinstance(database, duckdb.DuckDBPyConnection):
        return connect(database, console=console), True
    path = str(database)
    if dry_run and path != ":memory:":
        # A plan writes nothing: an existing file is opened read-only, a missing one not made.
        if _missing_file(path):
            return connect(":memory:", console=console), True
        return connect(path, read_only=True, console=console), True
    return connect(path, console=console), True


class _Runner:
    def __init__(
        self,
        con: Connection,
        project: graph.Project,
        chosen: set[str],
        selected: bool,
        full_refresh: bool,
        dry_run: bool,
    ):
        self.con = con
        self.project = project
        self.chosen = chosen
        self.selected = selected
        self.full_refresh = full_refresh
        self.dry_run = dry_run
        self.state = BuildState(con, project.root.resolve())
        self.stored: dict[str, Stored] = {}
        self.current: dict[str, str] = {}  # fingerprints as of this run
        self.blocked: dict[str, str] = {}  # node -> the failed node upstream of it (or itself)
        self.models: dict[str, ModelRecord] = {}  # models outside the project
        self.fired: Callable[[], bool] = lambda: False  # Ctrl-C seen by an InterruptGuard

    def run(self, tests: list[Node]) -> list[NodeResult]:
        """The chosen nodes in order, then the tests. Whatever a node or test raises fails it
        alone (inside a transaction of the caller's, a failure fails that transaction, as in
        DuckDB, and so the nodes after it); Ctrl-C interrupts it and skips the rest."""
        duck = self.con.duckdb
        outer_transaction = open_transaction(duck) is not None  # the caller's: never ended here
        self.stored = self.state.load()
        if self.selected:
            _check_selection(self.project, self.chosen, self.state.exists)
        self.models = {name_key([r.schema, r.name]): r for r in self.con.catalog.all_current()}
        if not self.dry_run:
            with transaction(self.con.duckdb):
                self.con.catalog.ensure()  # sqlml.build_state
        steps = [self.project.nodes[n] for n in self.project.order if n in self.chosen]
        steps += tests
        results: list[NodeResult] = []
        with _files_relative_to(self.con, self.state.root):
            for item in steps:
                result = NodeResult(item.display, item.kind, item.path, SKIPPED)
                started = time.perf_counter()
                try:
                    if item.kind == "test":
                        self._test(item, result)
                    else:
                        self._node(item, result)
                except KeyboardInterrupt:
                    result.status = INTERRUPTED
                except Exception as e:
                    self._failed(item, result, e)
                # Ctrl-C can land in a transaction's __exit__ before its ROLLBACK ran.
                interrupted = result.status == INTERRUPTED and not outer_transaction
                if interrupted and open_transaction(duck) is not None:
                    duck.execute("ROLLBACK")
                result.seconds = time.perf_counter() - started
                results.append(result)
                if result.status == INTERRUPTED:
                    break
        for item in steps[len(results) :]:
            results.append(
                NodeResult(item.display, item.kind, item.path, SKIPPED, "build interrupted")
            )
        return results

    def _failed(self, item: Node, result: NodeResult, error: Exception) -> None:
        """A node or test that raised: failed, or interrupted when Ctrl-C caused it."""
        if self.fired() or _interruption(error):
            result.status = INTERRUPTED
        else:
            result.status = FAILED
            result.exception = error
            known = isinstance(error, Error | duckdb.Error | OSError)
            result.error = str(error) if known else f"{type(error).__name__}: {error}"
        if item.kind != "test":
            self.blocked[item.name] = item.name

    # -- fingerprints --------------------------------------------------------------------

    def _inputs(self, node: Node) -> dict[str, str]:
        nodes = self.project.nodes
        inputs: dict[str, str] = {}
        for parent in self.project.upstream[node.name]:
            inputs[f"node:{parent}"] = self._node_state(parent)
        for name in node.reads - nodes.keys():
            inputs[f"relation:{name}"] = self.state.relation_state(name)
        for name in node.models - nodes.keys():
            record = self.models.get(name)
            inputs[f"model:{name}"] = model_state(record) if record else MISSING
        for call in node.calls:
            for name in called_names(call):
                if name in nodes:
                    break
                if name in self.models:  # a model outside the project, called as a function
                    inputs[f"model:{name}"] = model_state(self.models[name])
                    break
        for path in node.files:
            inputs[f"file:{path}"] = self.state.file_state(path)
        return inputs

    def _node_state(self, name: str) -> str:
        """What a downstream node sees of a project node: its fingerprint; for one never
        built by sqlml build (made by hand), its data."""
        if name in self.current:
            return self.current[name]
        if name in self.stored:
            return self.stored[name].fingerprint
        node = self.project.nodes[name]
        if node.kind == "model":
            record = self.con.catalog.current(node.schema, node.short)
            return model_state(record) if record else MISSING
        return self.state.relation_state(name)

    def _why(self, node: Node, inputs: dict[str, str]) -> str | None:
        """Why the node must be built, or None when it is up to date: its SQL and its inputs
        are as when it was built (a project node read by its fingerprint, which every build
        of that node changes), and it is in the database."""
        old = self.stored.get(node.name)
        if self.full_refresh:
            return "full refresh"
        if old is None:
            return "new"
        if old.sql_sha256 != sha256(node.text):
            return "sql changed"
        if not self.state.exists(node):
            return "missing from the database"
        if old.inputs == inputs:
            return None
        nodes, data = describe_changes(old.inputs, inputs)
        reasons = []
        if nodes:
            reasons.append("upstream changed: " + ", ".join(nodes))
        if data:
            reasons.append("data changed: " + ", ".join(data))
        return "; ".join(reasons) or "changed"

    # -- nodes ---------------------------------------------------------------------------

    def _node(self, node: Node, result: NodeResult) -> None:
        """Build the node if it changed; a failure raises (see :meth:`run`)."""
        failed = [self.blocked[p] for p in self.project.upstream[node.name] if p in self.blocked]
        if failed:
            self.blocked[node.name] = failed[0]
            result.reason = f"upstream failed: {display_name(failed[0])}"
            return
        inputs = self._inputs(node)
        reason = self._why(node, inputs)
        old = self.stored.get(node.name)
        if reason is None:
            assert old is not None  # a node never built is new
            self.current[node.name] = old.fingerprint
            result.status = WOULD_SKIP if self.dry_run else SKIPPED
            result.reason = "unchanged"
            result.metric = self._metric(node, None)
            return
        # A new fingerprint, whatever the reason: everything downstream sees it changed.
        fp = fingerprint(node, inputs, old.fingerprint if old else None)
        result.reason = reason
        if self.dry_run:
            self.current[node.name] = fp  # as it would be once built
            result.status = WOULD_BUILD
            return
        previous = (
            self.con.catalog.current(node.schema, node.short) if node.kind == "model" else None
        )
        with self.con.console.task(f"build {node.display}"):
            if node.kind == "model":
                self._build_model(node, fp, inputs)
            else:
                self._build_relation(node, fp, inputs)
        self.current[node.name] = fp
        result.status = BUILT
        result.metric = self._metric(node, previous)

    def _build_relation(self, node: Node, fp: str, inputs: dict[str, str]) -> None:
        duck = self.con.duckdb
        with transaction(duck):  # the new table or view and its fingerprint, or neither
            self._create_schema(node)
            existing = self.state.relation_kind(node.name)
            if existing is not None and existing != node.kind:  # a view that became a table
                duck.execute(f"DROP {existing.upper()} {sql_name(node.name)}")
            # execute(), not sql(): DuckDB's relation API drops the leading newlines that
            # put the statement on its file's lines (see discover.read_node).
            self.con.execute(node.sql)
            self.state.save(node, fp, inputs)
        self.state.forget(node.name)

    def _build_model(self, node: Node, fp: str, inputs: dict[str, str]) -> None:
        with transaction(self.con.duckdb):
            self._create_schema(node)
        self.con.sql(node.sql)  # its own transaction: a failure keeps the previous version
        with transaction(self.con.duckdb):
            self.state.save(node, fp, inputs)

    def _create_schema(self, node: Node) -> None:
        *schema, _ = split_name(node.name)
        if schema != [DEFAULT_SCHEMA]:
            self.con.duckdb.execute(f"CREATE SCHEMA IF NOT EXISTS {sql_name(name_key(schema))}")

    def _metric(self, node: Node, previous: ModelRecord | None) -> Metric | None:
        if node.kind != "model":
            return None
        record = self.con.catalog.current(node.schema, node.short)
        if record is None or not record.metadata.get("key_metric"):
            return None
        key = record.metadata["key_metric"]
        metric = Metric(key, record.metadata.get("metrics", {}).get(key), record.version)
        if previous is not None and previous.version != record.version:
            metric.previous = previous.metadata.get("metrics", {}).get(key)
            metric.previous_version = previous.version
        return metric

    # -- data tests ----------------------------------------------------------------------

    def _test(self, test: Node, result: NodeResult) -> None:
        """Run a data test when every node it reads is in the database after this build's
        nodes; a query that fails to run raises (see :meth:`run`)."""
        reads = self.project.upstream[test.name]
        failed = [self.blocked[p] for p in reads if p in self.blocked]
        if failed:
            result.reason = f"upstream failed: {display_name(failed[0])}"
            return
        # A node of this build (not failed) is in the database now; another may never be.
        nodes = self.project.nodes
        missing = [p for p in reads if p not in self.chosen and not self.state.exists(nodes[p])]
        if missing:
            result.status = WOULD_SKIP if self.dry_run else SKIPPED
            names = ", ".join(display_name(p) for p in missing)
            result.reason = f"not in the database yet and not selected: {names}"
            return
        if self.dry_run:
            result.status = WOULD_RUN
            return
        with self.con.console.task(f"test {test.display}"):
            relation = self.con.sql(test.sql)
            assert relation is not None  # a query: checked when the file was read
            # One run: the first rows, each with the count of all of them.
            counted = relation.project(f"*, count(*) OVER () AS {_ROW_COUNT}")
            rows = counted.limit(TEST_ROWS_SHOWN).fetchall()
        if not rows:
            result.status = PASSED
            return
        count = rows[0][-1]
        result.status = FAILED
        result.columns = list(relation.columns)
        result.rows = [row[:-1] for row in rows]
        result.row_count = count
        result.reason = f"{count} row{'s' if count != 1 else ''}"
        result.error = f"returned {result.reason}; a data test passes when its query returns none"


_ROW_COUNT = "__sqlml_row_count"


def _interruption(error: BaseException) -> bool:
    """Whether an error is DuckDB's for a query stopped by Ctrl-C (perhaps wrapped by sqlml):
    DuckDB polls for SIGINT itself and raises RuntimeError('Query interrupted'), or
    InterruptException when its connection's interrupt() was called."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, duckdb.InterruptException):
            return True
        if type(current) is RuntimeError and str(current) == "Query interrupted":
            return True
        current = current.__cause__ or current.__context__
    return False


@contextmanager
def _files_relative_to(con: Connection, root: Path) -> Iterator[None]:
    """Relative file paths in the project's SQL are the project's: DuckDB searches
    file_search_path for them (the previous setting is restored afterwards)."""
    duck = con.duckdb
    old = duck.execute("SELECT current_setting('file_search_path')").fetchall()[0][0] or ""
    paths = ",".join(p for p in (str(root), old) if p)
    duck.execute(f"SET file_search_path = '{_escape(paths)}'")
    try:
        yield
    finally:
        duck.execute(f"SET file_search_path = '{_escape(old)}'")


def _escape(text: str) -> str:
    return text.replace("'", "''")
