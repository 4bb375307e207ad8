"""``sqlml build``: a folder of ``.sql`` files, each making one table, view or model, run in
the order their SQL implies, incrementally, with data tests.

    import sqlml.project
    result = sqlml.project.build("shop.duckdb", "sql/")
    result.ok, result.statuses()

Stages, one module each: discover (files -> nodes), graph (order, cycles, --select), state
(fingerprints in the catalog), run (build, test, results); command is the CLI.
"""

from sqlml.project.graph import Project, load
from sqlml.project.run import BuildResult, Metric, NodeResult, build

__all__ = ["BuildResult", "Metric", "NodeResult", "Project", "build", "load"]
