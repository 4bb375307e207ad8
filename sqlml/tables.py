"""Small result tables computed in Python, handed to DuckDB as SQL literals.

The inspection functions (ML.WEIGHTS, ML.FEATURE_INFO, ...) and ML.EVALUATE return a few
rows computed from a model's metadata; a VALUES list keeps them a plain table expression
that works anywhere in a query, and typed even when empty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlml.catalog import quote


def literal(value: Any) -> str:
    """A Python value (None, bool, int, float, str, list, dict) as a DuckDB literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "'NaN'::DOUBLE"
        if math.isinf(value):
            return "'Infinity'::DOUBLE" if value > 0 else "'-Infinity'::DOUBLE"
        text = repr(value)
        return text if "e" in text else text + "e0"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(str(k))}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bytes):
        return "'" + "".join(f"\\x{b:02x}" for b in value) + "'::BLOB"
    # Dates, times, decimals, UUIDs: their text, which the column's CAST reads back.
    return literal(str(value))


def table_sql(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]) -> str:
    """``(SELECT ...)`` returning ``rows`` with the given (name, SQL type) columns."""
    if not rows:
        nulls = ", ".join(f"CAST(NULL AS {t}) AS {quote(n)}" for n, t in columns)
        return f"(SELECT {nulls} WHERE false)"
    values = ", ".join(
        "("
        + ", ".join(f"CAST({literal(v)} AS {t})" for v, (_, t) in zip(row, columns, strict=True))
        + ")"
        for row in rows
    )
    names = ", ".join(quote(n) for n, _ in columns)
    return f"(SELECT * FROM (VALUES {values}) AS __sqlml_table({names}))"
