"""The parser on valid and invalid statements (golden files under golden/parser)."""

from __future__ import annotations

from typing import Any

import pytest

import sqlml
from sqlml.options import literal_value
from sqlml.parser import (
    CreateModel,
    DescribeModel,
    DropModel,
    ExportModel,
    MLPreprocess,
    SetSetting,
    ShowModels,
    find_ml_spans,
    parse_ml_call,
    split_statements,
)
from tests.golden import GOLDEN, check


def _name(table: Any) -> dict[str, Any]:
    return {"schema": table.db or None, "name": table.name}


def render(sql: str) -> Any:
    try:
        script = split_statements(sql)
    except sqlml.ParseError as e:
        return {"error": type(e).__name__, "message": str(e), "line": e.line, "col": e.col}
    out = []
    for statement in script or []:
        ast = statement.ast
        if isinstance(ast, CreateModel):
            out.append(
                {
                    "statement": "CREATE MODEL",
                    **_name(ast.this),
                    "replace": ast.args["replace"],
                    "if_not_exists": ast.args["exists"],
                    "options": {
                        o.this.name: literal_value(o.expression, o.this.name)
                        for o in ast.args["options"]
                    },
                    "query": ast.args["query"].text,
                    "transform": ast.args["transform"].text if ast.args.get("transform") else None,
                }
            )
        elif isinstance(ast, ExportModel):
            out.append(
                {
                    "statement": "EXPORT MODEL",
                    **_name(ast.this),
                    "options": {
                        o.this.name: literal_value(o.expression, o.this.name)
                        for o in ast.args["options"]
                    },
                }
            )
        elif isinstance(ast, DropModel):
            out.append(
                {"statement": "DROP MODEL", **_name(ast.this), "if_exists": ast.args["exists"]}
            )
        elif isinstance(ast, ShowModels):
            out.append({"statement": "SHOW MODELS"})
        elif isinstance(ast, DescribeModel):
            out.append({"statement": "DESCRIBE MODEL", **_name(ast.this)})
        elif isinstance(ast, SetSetting):
            value = ast.args.get("expression")
            out.append(
                {
                    "statement": "SET" if value is not None else "RESET",
                    "setting": ast.this,
                    "value": None if value is None else value.sql(),
                }
            )
        else:
            calls = []
            for span in find_ml_spans(statement.source, statement.lo, statement.hi):
                if span.kind == "show_models":
                    calls.append({"show_models": True})
                    continue
                try:
                    call = parse_ml_call(statement.source, span)
                except sqlml.ParseError as e:
                    return {
                        "error": type(e).__name__,
                        "message": str(e),
                        "line": e.line,
                        "col": e.col,
                    }
                if isinstance(call, MLPreprocess):
                    calls.append(
                        {
                            "function": f"ML.{call.function}",
                            "arguments": [a.text for a in call.expressions],
                            "over": bool(call.args.get("over")),
                        }
                    )
                    continue
                data = call.args.get("input")
                params = call.args.get("params")
                calls.append(
                    {
                        "function": f"ML.{call.function}",
                        "model": _name(call.args["model"]),
                        "input": None
                        if data is None
                        else {"query": data.text}
                        if hasattr(data, "text") and data.key == "rawsql"
                        else {"table": data.sql()},
                        "settings": params.sql(dialect="duckdb") if params else None,
                        "extra": [e.sql(dialect="duckdb") for e in call.args.get("extra") or []],
                    }
                )
            out.append({"statement": "DuckDB", "text": statement.text, "ml": calls})
    return out


@pytest.mark.parametrize("name", ["statements", "errors"])
def test_golden(name):
    check(GOLDEN / "parser" / f"{name}.sql", render)


def test_untokenizable_plain_sql_is_left_to_duckdb():
    # A stray quote in a statement that is not sqlml's: DuckDB gets it as written.
    assert split_statements("SELECT 'it''s a model' AS x, 'open") is None


def test_errors_are_parse_errors_and_value_errors():
    with pytest.raises(sqlml.ParseError) as info:
        split_statements("DROP MODEL")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, sqlml.Error)
    assert (info.value.line, info.value.col) == (1, 6)  # at MODEL, where the name should follow
