"""The project as a graph: which node reads which, the run order, cycles, and --select."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlml.errors import ProjectError
from sqlml.project.discover import DEFAULT_SCHEMA, Node, called_names, discover


@dataclass
class Project:
    root: Path
    nodes: dict[str, Node]  # by name
    tests: list[Node]  # in path order
    order: list[str]  # node names, every node after the nodes it reads
    upstream: dict[str, list[str]] = field(default_factory=dict)  # node or test -> nodes read
    downstream: dict[str, set[str]] = field(default_factory=dict)  # node -> nodes reading it

    def descendants(self, name: str) -> set[str]:
        found: set[str] = set()
        todo = [name]
        while todo:
            for child in self.downstream[todo.pop()]:
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found

    def ancestors(self, name: str) -> set[str]:
        found: set[str] = set()
        todo = [name]
        while todo:
            for parent in self.upstream[todo.pop()]:
                if parent not in found:
                    found.add(parent)
                    todo.append(parent)
        return found


def load(root: Path | str) -> Project:
    """Read every file of the project and order its nodes."""
    root = Path(root)
    found, tests = discover(root)
    nodes: dict[str, Node] = {}
    for node in found:
        if node.name in nodes:
            raise ProjectError(
                f"Two files make {node.display}: {nodes[node.name].path} and {node.path}. "
                "Each name is made by one file; rename or remove one"
            )
        nodes[node.name] = node
    project = Project(root, nodes, tests, [])
    for item in [*nodes.values(), *tests]:
        project.upstream[item.name] = sorted(reads_nodes(item, nodes))
    project.downstream = {name: set() for name in nodes}
    for name in nodes:
        for parent in project.upstream[name]:
            project.downstream[parent].add(name)
    for node in nodes.values():
        if node.name in project.upstream[node.name]:
            raise ProjectError(
                f"{node.path} reads {node.display}, the name it makes itself: a node cannot "
                "read its own result. Read another table, or rename it"
            )
    project.order = _order(project)
    return project


def reads_nodes(item: Node, nodes: dict[str, Node]) -> set[str]:
    """The project nodes a statement reads: relations, MODEL x, model functions called."""
    found = {name for name in item.reads | item.models if name in nodes}
    for call in item.calls:
        for name in called_names(call):
            if name in nodes and nodes[name].kind == "model":
                found.add(name)
    return found


def _order(project: Project) -> list[str]:
    """Kahn's algorithm; among nodes ready together, path order, so the order is stable."""
    waiting = {name: len(project.upstream[name]) for name in project.nodes}
    ready = [(project.nodes[n].path, n) for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for child in project.downstream[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (project.nodes[child].path, child))
    if len(order) < len(project.nodes):
        cycle = _cycle(project, {n for n in project.nodes if n not in order})
        chain = " reads ".join(
            f"{project.nodes[n].path} ({project.nodes[n].display})" for n in cycle
        )
        raise ProjectError(
            f"These files read each other in a cycle: {chain}. Break the cycle: no node can "
            "be built before the others"
        )
    return order


def _cycle(project: Project, left: set[str]) -> list[str]:
    """One cycle among the nodes Kahn's algorithm could not order, first node repeated."""
    # Every node left reads some node left (else it would have been ordered): walk upstream.
    name = min(left, key=lambda n: project.nodes[n].path)
    path: list[str] = []
    while name not in path:
        path.append(name)
        name = min(
            (p for p in project.upstream[name] if p in left), key=lambda n: project.nodes[n].path
        )
    return [*path[path.index(name) :], name]  # each reads the next


def resolve(project: Project, name: str) -> str:
    """A node named as the user writes it: name, schema.name, or its file's path."""
    key = name.strip().lower()
    for candidate in (key, f"{DEFAULT_SCHEMA}.{key}"):
        if candidate in project.nodes:
            return candidate
    for node in project.nodes.values():
        if node.path.lower() == key or node.path.lower() == f"{key}.sql":
            return node.name
    known = ", ".join(project.nodes[n].display for n in project.order)
    raise ProjectError(f"--select {name}: no node of the project makes {name}. Nodes: {known}")


def select(project: Project, selectors: Sequence[str] | None) -> tuple[set[str], list[Node]]:
    """The nodes and the data tests a run covers.

    ``name`` the node alone, ``name+`` and its downstream, ``+name`` and its upstream; no
    selector: everything. Tests run when they read a selected node."""
    if not selectors:
        return set(project.nodes), list(project.tests)
    chosen: set[str] = set()
    for selector in selectors:
        bare = selector.strip().strip("+")
        if not bare:
            raise ProjectError(
                f"--select {selector!r}: give a node's name: name, name+ (and downstream), "
                "+name (and upstream)"
            )
        name = resolve(project, bare)
        chosen.add(name)
        if selector.strip().endswith("+"):
            chosen |= project.descendants(name)
        if selector.strip().startswith("+"):
            chosen |= project.ancestors(name)
    tests = [t for t in project.tests if chosen.intersection(project.upstream[t.name])]
    return chosen, tests


def in_order(project: Project, names: Iterable[str]) -> list[str]:
    wanted = set(names)
    return [n for n in project.order if n in wanted]
