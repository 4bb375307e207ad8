"""A query result as text, in the output modes of DuckDB's shell.

``render(relation, mode)`` runs the relation once and returns what the ``sqlml`` shell
prints: DuckDB's own duckbox table by default, or box, csv, json, markdown or line.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Sequence
from contextlib import redirect_stdout

import duckdb

from sqlml.errors import ArgumentError

MODES = ("duckbox", "box", "csv", "json", "markdown", "line")
DEFAULT_MAX_ROWS = 40  # as DuckDB's shell

_NUMERIC = re.compile(
    r"U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|REAL|DECIMAL(\(.*\))?"
)
# JSON has no NaN or infinity; DuckDB's to_json writes them as JavaScript does.
_NOT_JSON = frozenset({"NaN", "Infinity", "-Infinity"})


# Statements whose result is shown even when it looks like a row count, as in DuckDB's shell.
QUERY_WORDS = frozenset(
    {"SELECT", "FROM", "WITH", "VALUES", "TABLE", "SHOW", "DESCRIBE", "SUMMARIZE", "EXPLAIN",
     "PRAGMA", "CALL", "PIVOT", "UNPIVOT", "("}
)  # fmt: skip
# What DuckDB answers for statements that return no rows (CREATE, INSERT, SET, ...).
STATUS_COLUMNS = (["Count"], ["Success"])


def has_rows(result: duckdb.DuckDBPyRelation | None, first_word: str) -> bool:
    """Whether a statement's result is rows to show, not DuckDB's acknowledgement of a
    CREATE, INSERT, SET, ... (``first_word``: the statement's first word, upper case)."""
    if result is None:  # sqlml's statements without a result
        return False
    return first_word in QUERY_WORDS or result.columns not in STATUS_COLUMNS


def render(
    relation: duckdb.DuckDBPyRelation,
    mode: str = "duckbox",
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_width: int | None = None,
) -> str:
    """The relation's rows as text, without a final newline. Runs the relation once.

    ``max_rows`` and ``max_width`` apply to duckbox only, as in DuckDB's shell: the other
    modes print every row (csv and json are for reading by programs).
    """
    if mode not in MODES:
        raise ArgumentError(f"Unknown output mode {mode!r}: use one of {', '.join(MODES)}")
    names = relation.columns
    if mode in ("duckbox", "box") and names == ["explain_key", "explain_value"]:
        # EXPLAIN: the plan is drawn already; a table around it would cut it.
        return "\n".join(str(v).rstrip("\n") for _, v in relation.fetchall())
    if mode == "duckbox":
        buffer = io.StringIO()
        with redirect_stdout(buffer):
            relation.show(max_rows=max_rows, max_width=max_width)
        return buffer.getvalue().rstrip("\n")
    if mode == "json":
        rows = relation.select("to_json(COLUMNS(*))::VARCHAR").fetchall()
        return _json(names, rows)
    numeric = [_NUMERIC.fullmatch(str(t)) is not None for t in relation.types]
    rows = relation.select("COLUMNS(*)::VARCHAR").fetchall()
    if mode == "csv":
        return _csv(names, rows)
    if mode == "box":
        return _box(names, numeric, rows)
    if mode == "markdown":
        return _markdown(names, numeric, rows)
    return _line(names, rows)


def _csv(names: list[str], rows: list[tuple[str | None, ...]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return buffer.getvalue().rstrip("\n")


def _json(names: list[str], rows: list[tuple[str | None, ...]]) -> str:
    keys = [json.dumps(name, ensure_ascii=False) for name in names]
    records = [
        "{"
        + ",".join(
            f"{key}:{'null' if v is None or v in _NOT_JSON else v}"
            for key, v in zip(keys, row, strict=True)
        )
        + "}"
        for row in rows
    ]
    return "[" + ",\n".join(records) + "]"


def _cell(value: str | None) -> str:
    if value is None:
        return "NULL"
    return value.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")


def _width(text: str) -> int:
    """Terminal columns: wide East Asian characters take two, combining marks none."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def _pad(text: str, width: int, align: str) -> str:
    space = width - _width(text)
    if align == "right":
        return " " * space + text
    if align == "center":
        return " " * (space // 2) + text + " " * (space - space // 2)
    return text + " " * space


def _grid(
    names: list[str], rows: list[tuple[str | None, ...]]
) -> tuple[list[list[str]], list[int]]:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([_width(n), *(_width(r[i]) for r in cells)]) for i, n in enumerate(names)]
    return cells, widths


def _box(names: list[str], numeric: list[bool], rows: list[tuple[str | None, ...]]) -> str:
    cells, widths = _grid(names, rows)

    def rule(left: str, mid: str, right: str) -> str:
        return left + mid.join("─" * (w + 2) for w in widths) + right

    def line(values: list[str], aligns: list[str]) -> str:
        padded = (_pad(v, w, a) for v, w, a in zip(values, widths, aligns, strict=True))
        return "│ " + " │ ".join(padded) + " │"

    aligns = ["right" if n else "left" for n in numeric]
    out = [rule("┌", "┬", "┐"), line(names, ["center"] * len(names)), rule("├", "┼", "┤")]
    out += [line(row, aligns) for row in cells]
    out.append(rule("└", "┴", "┘"))
    return "\n".join(out)


def _markdown(names: list[str], numeric: list[bool], rows: list[tuple[str | None, ...]]) -> str:
    escaped = [tuple(None if v is None else v.replace("|", "\\|") for v in row) for row in rows]
    cells, widths = _grid([n.replace("|", "\\|") for n in names], escaped)
    heads = [n.replace("|", "\\|") for n in names]

    def line(values: list[str], aligns: list[str]) -> str:
        padded = (_pad(v, w, a) for v, w, a in zip(values, widths, aligns, strict=True))
        return "| " + " | ".join(padded) + " |"

    aligns = ["right" if n else "left" for n in numeric]
    rule = "|" + "|".join(
        "-" * (w + 1) + (":" if n else "-") for w, n in zip(widths, numeric, strict=True)
    )
    out = [line(heads, aligns), rule + "|"]
    out += [line(row, aligns) for row in cells]
    return "\n".join(out)


def _line(names: list[str], rows: list[tuple[str | None, ...]]) -> str:
    width = max((_width(n) for n in names), default=0)
    records = [
        "\n".join(
            f"{_pad(n, width, 'right')} = {_cell(v)}" for n, v in zip(names, row, strict=True)
        )
        for row in rows
    ]
    return "\n\n".join(records)


def column_table(names: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Python values as DuckDB's shell prints rows in ``.mode column``: a header, a rule of
    dashes, columns two spaces apart; cells as in the other modes (NULL, escaped line
    breaks, wide characters counted twice)."""
    text = [tuple(None if v is None else str(v) for v in row) for row in rows]
    cells, widths = _grid(list(names), text)

    def line(values: Sequence[str]) -> str:
        return "  ".join(_pad(v, w, "left") for v, w in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(names), "  ".join("-" * w for w in widths), *map(line, cells)])
