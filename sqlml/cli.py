"""The ``sqlml`` command: DuckDB's shell, with sqlml's statements. A thin client of
:class:`sqlml.shell.Shell` (running) and :mod:`sqlml.prompt` (the interactive prompt).

    sqlml [DB_FILE]              interactive shell (":memory:" without DB_FILE)
    sqlml [DB_FILE] -c "SQL"     run SQL (or one dot command) and exit
    sqlml [DB_FILE] -f FILE.sql  run a script and exit
    ... | sqlml [DB_FILE]        run the script read from standard input
    sqlml build ...              build a SQL project (sqlml.project.command)

``--init FILE`` runs FILE first; without it ``~/.sqlmlrc`` does, if it exists. Scripts
(-c, -f, standard input, init files, .read) stop at their first error.

Exit status: 0 success; 1 an SQL, sqlml or dot-command error (the first one stops a
script); 2 bad usage (unknown option, -c with -f, an unreadable -f or --init file);
130 interrupted by Ctrl-C outside the interactive shell; ``.exit N`` exits with N.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb

from sqlml.errors import CommandError, Error
from sqlml.shell import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Shell,
    ShellExit,
    read_lines,
)

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sqlml",
        description="SQL-first machine learning in DuckDB: an interactive shell, or run SQL.",
        epilog="Exit status: 0 ok, 1 SQL or sqlml error, 2 usage, 130 interrupted. "
        "'sqlml build --help' for SQL projects.",
    )
    parser.add_argument(
        "database", nargs="?", default=":memory:", help="DuckDB database file (default: memory)"
    )
    parser.add_argument("-c", dest="command", metavar="SQL", help="run this SQL and exit")
    parser.add_argument("-f", dest="file", type=Path, metavar="FILE", help="run FILE and exit")
    parser.add_argument(
        "--init", type=Path, metavar="FILE", help="run FILE first (default: ~/.sqlmlrc)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["build"]:  # a database file named "build": ./build
        from sqlml.project.command import main as build

        return build(args_list[1:])
    try:
        return _main(_parser().parse_args(args_list))
    except KeyboardInterrupt:  # before or after a command: nothing to cancel
        print("Interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into head, less, ...
        # Python would complain again flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _main(args: argparse.Namespace) -> int:
    if args.command is not None and args.file is not None:
        _parser().error("give -c or -f, not both")
    # Files named on the command line are read before the database opens: a typo in a
    # path changes nothing.
    try:
        script: Iterable[str] | None = None
        if args.command is not None:
            script = args.command.splitlines()
        elif args.file is not None:
            script = read_lines(args.file)
        init = _init_lines(args.init)
    except CommandError as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_USAGE
    interactive = script is None and sys.stdin.isatty()
    if script is None and not interactive:
        script = sys.stdin
    try:
        shell = Shell(args.database, out=sys.stdout, err=sys.stderr, debug=args.debug)
    except (Error, duckdb.Error, OSError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_ERROR
    try:
        status = shell.run_lines(init, bail=True) if init else EXIT_OK
        if interactive:
            from sqlml.prompt import run_prompt

            return run_prompt(shell)
        if status != EXIT_OK:
            return status
        assert script is not None
        return shell.run_lines(script, bail=True)
    except ShellExit as e:
        return e.code
    finally:
        shell.close()


def _init_lines(path: Path | None) -> list[str]:
    if path is not None:
        return read_lines(path)
    rc = Path.home() / ".sqlmlrc"
    return read_lines(rc) if rc.is_file() else []


if __name__ == "__main__":
    sys.exit(main())
