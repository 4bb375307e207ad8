"""``sqlml build PROJECT_DIR --db FILE``: a thin client of :func:`sqlml.project.build`.

Prints the plan or the summary (node, kind, status, time, key metric of models, reason),
then what failed: each error, and a failing data test's rows.

Ctrl-C stops the build: the running statement is cancelled, its node is ``interrupted``
and keeps its previous result, the rest is ``skipped``, and the summary is printed.

Exit status: 0 everything built, skipped or passed; 1 a node or data test failed, or the
project cannot run; 2 bad usage; 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import duckdb

from sqlml.errors import Error
from sqlml.output import column_table
from sqlml.project.run import (
    BUILT,
    FAILED,
    INTERRUPTED,
    PASSED,
    SKIPPED,
    WOULD_BUILD,
    WOULD_RUN,
    WOULD_SKIP,
    BuildResult,
    Metric,
    NodeResult,
    build,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sqlml build",
        description="Build a folder of .sql files (tables, views, models) into a database, "
        "in the order their SQL implies, rebuilding only what changed; then run the data "
        "tests in PROJECT_DIR/tests/.",
    )
    parser.add_argument("project", type=Path, metavar="PROJECT_DIR", help="the project folder")
    parser.add_argument("--db", required=True, metavar="FILE", help="DuckDB database file")
    parser.add_argument(
        "--select",
        "-s",
        action="append",
        metavar="NAME",
        help="build only NAME; NAME+ with its downstream, +NAME with its upstream (repeatable)",
    )
    parser.add_argument(
        "--full-refresh", action="store_true", help="rebuild every node, changed or not"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, build nothing")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or bad usage (argparse has printed why)
        return EXIT_OK if e.code in (0, None) else EXIT_USAGE
    try:
        result = build(
            args.db,
            args.project,
            select=args.select,
            full_refresh=args.full_refresh,
            dry_run=args.dry_run,
            interruptible=True,
        )
    except KeyboardInterrupt:  # before the first node or after the last: nothing to report
        print("Interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (Error, duckdb.Error) as e:
        if args.debug:
            raise
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_FAILED
    if args.debug:
        for failed in result.failed:
            if failed.exception is not None:
                traceback.print_exception(failed.exception, file=sys.stderr)
    try:
        print_result(result, sys.stdout)
    except BrokenPipeError:  # output piped into head, less, ...
        # Python would complain again flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if result.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED


def print_result(result: BuildResult, out: TextIO) -> None:
    """The summary table, then the failures in full."""
    header = ["node", "kind", "status", "time", "key metric", "reason"]
    if result.dry_run:
        header = ["node", "kind", "plan", "reason"]
    rows = [_row(r, result.dry_run) for r in result.results]
    print(column_table(header, rows), file=out)
    for failed in result.failed:
        what = f"test {failed.name}" if failed.kind == "test" else f"{failed.kind} {failed.name}"
        print(f"\nFAILED {what} ({failed.path}): {failed.error}", file=out)
        if failed.rows:
            shown = len(failed.rows)
            more = f" (the first {shown})" if shown < failed.row_count else ""
            print(f"Offending rows{more}:", file=out)
            print(column_table(failed.columns, failed.rows), file=out)
    print("\n" + _totals(result), file=out)


def _row(result: NodeResult, dry_run: bool) -> list[str]:
    if dry_run:
        return [result.name, result.kind, result.status, result.reason]
    timed = (BUILT, FAILED, PASSED, INTERRUPTED)
    seconds = f"{result.seconds:.2f}s" if result.status in timed else ""
    return [
        result.name,
        result.kind,
        result.status,
        seconds,
        _metric(result.metric),
        result.reason,
    ]


def _metric(metric: Metric | None) -> str:
    if metric is None or metric.value is None:
        return ""
    change = ""
    if metric.change is not None:
        change = f", {metric.change:+.4f} from v{metric.previous_version}"
    return f"{metric.name} {metric.value:.4f} (v{metric.version}{change})"


def _totals(result: BuildResult) -> str:
    counts: dict[str, int] = {}
    for r in result.results:
        key = f"test {r.status}" if r.kind == "test" else r.status
        counts[key] = counts.get(key, 0) + 1
    order = [BUILT, INTERRUPTED, SKIPPED, FAILED, WOULD_BUILD, WOULD_SKIP]
    order += [f"test {s}" for s in (PASSED, FAILED, INTERRUPTED, SKIPPED, WOULD_RUN, WOULD_SKIP)]
    parts = []
    for key in order:
        if counts.get(key):
            count = counts[key]
            label = key.replace("test ", "")
            noun = "test" if key.startswith("test ") else "node"
            parts.append(f"{count} {noun}{'s' if count != 1 else ''} {label}")
    if result.dry_run:
        return "Plan: " + (", ".join(parts) or "nothing to do") + " (dry run: nothing ran)"
    verdict = "Build succeeded" if result.ok else "Build FAILED"
    if result.interrupted:
        verdict = "Build INTERRUPTED"
    return f"{verdict}: " + (", ".join(parts) or "nothing to do")


if __name__ == "__main__":
    sys.exit(main())
