"""The ``sqlml`` command: a thin client of :func:`sqlml.connect`.

    sqlml [DB_FILE] -c "SQL"     run SQL and exit
    sqlml [DB_FILE] -f FILE.sql  run a script
    ... | sqlml [DB_FILE]        run SQL read from standard input

Exit status: 0 success, 1 an SQL or sqlml error, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import duckdb

from sqlml.connection import Connection, connect
from sqlml.errors import Error
from sqlml.parser import split_statements

EXIT_OK, EXIT_SQL_ERROR, EXIT_USAGE = 0, 1, 2

# Statements whose result is shown, as DuckDB's shell does (not CREATE ... AS, INSERT, ...).
_QUERY_WORDS = frozenset(
    {"SELECT", "FROM", "WITH", "VALUES", "TABLE", "SHOW", "DESCRIBE", "SUMMARIZE", "EXPLAIN",
     "PRAGMA", "CALL", "PIVOT", "UNPIVOT", "("}
)  # fmt: skip


def run_script(con: Connection, sql: str, out: TextIO) -> None:
    """Run every statement; print each query's result as DuckDB's duckbox table."""
    script = split_statements(sql)
    if script is None:  # not sqlml's: DuckDB runs the whole text
        con.sql(sql)
        return
    for statement in script:
        result = con.sql(statement.text)
        first = statement.source.tokens[statement.lo].text.upper()
        if result is not None and first in _QUERY_WORDS:
            print(result, file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sqlml", description="SQL-first machine learning in DuckDB"
    )
    parser.add_argument("database", nargs="?", default=":memory:", help="DuckDB database file")
    parser.add_argument("-c", dest="command", help="run this SQL and exit")
    parser.add_argument("-f", dest="file", type=Path, help="run the SQL in this file")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    if args.command is not None and args.file is not None:
        parser.error("give -c or -f, not both")
    try:
        if args.command is not None:
            sql = args.command
        elif args.file is not None:
            sql = args.file.read_text()
        elif not sys.stdin.isatty():
            sql = sys.stdin.read()
        else:
            parser.error("the interactive shell is not available yet; use -c, -f or pipe SQL in")
    except OSError as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with connect(args.database) as con:
            run_script(con, sql, sys.stdout)
    except (Error, duckdb.Error) as e:
        if args.debug:
            raise
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_SQL_ERROR
    except BrokenPipeError:  # output piped into head, less, ...
        sys.stderr.close()
        return EXIT_OK
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
