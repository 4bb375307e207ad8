"""The TRANSFORM clause and BigQuery ML's preprocessing functions.

``CREATE MODEL m TRANSFORM (<select list>) OPTIONS (...) AS <query>``: the select list is
DuckDB SQL over the query's columns plus the ML.* preprocessing functions. At training,
each analytic function (``... OVER ()``) is fitted on the query's rows by DuckDB
aggregates and replaced by constants, so the fitted TRANSFORM is a plain DuckDB select list
(``metadata["transform"]``). sqlml then replays it, as SQL, before the model for every way
of calling it: ML.PREDICT, ML.EVALUATE, ML.TRANSFORM and the model functions, which take
the columns the TRANSFORM reads. (DuckDB expressions have no ONNX form: the ONNX graph
starts after the TRANSFORM, and EXPORT MODEL writes the fitted select list beside it.)

The functions, with BigQuery ML's meaning:

- ML.STANDARD_SCALER(x) OVER (): (x - mean) / sample standard deviation
- ML.MIN_MAX_SCALER(x) OVER (): (x - min) / (max - min), capped to [0, 1]
- ML.MAX_ABS_SCALER(x) OVER (): x / max(|x|)
- ML.ROBUST_SCALER(x [, STRUCT(with_median, with_quantile_range, quantile_range)]) OVER ():
  (x - median) / (q75 - q25) by default
- ML.IMPUTER(x, 'mean' | 'median' | 'most_frequent') OVER (): NULL -> that statistic
- ML.QUANTILE_BUCKETIZE(x, n) OVER (): 'bin_1' .. 'bin_n' between the training quantiles
- ML.BUCKETIZE(x, [s1, s2, ...] [, exclude_boundaries]): 'bin_1' below s1 ... 'bin_k+1'
  (exclude_boundaries: s1 and sk make no buckets)
- ML.LABEL_ENCODER(x [, top_k, frequency_threshold]) OVER (): 1..n over the sorted kept
  categories, 0 for a value not kept or never seen
- ML.ONE_HOT_ENCODER(x [, drop, top_k, frequency_threshold]) OVER (): the kept category, as
  text, which the model one-hot encodes; values not kept, never seen (and with drop =
  'most_frequent' the most frequent one) become NULL
- ML.FEATURE_CROSS(STRUCT(a, b, ...) [, degree]): one text feature per combination,
  'a_b' = a || '_' || b
- ML.POLYNOMIAL_EXPAND(STRUCT(a, b, ...) [, degree]): one feature per product of up to
  ``degree`` (default 2) fields, named 'a_b' (a * b), 'a_a', ...

FEATURE_CROSS and POLYNOMIAL_EXPAND give several features, named ``<alias>_<field>``
(BigQuery ML expands STRUCT columns the same way). Outside TRANSFORM, the scalers and the
imputer work as window functions in any query.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from sqlml import compiler, python_scan, tables
from sqlml.catalog import quote
from sqlml.errors import ArgumentError, OptionError, QueryError
from sqlml.options import literal_value
from sqlml.parser import MLPreprocess, RawSQL, Source, find_ml_spans, parse_ml_call
from sqlml.parser.dialect import Sqlml

if TYPE_CHECKING:
    from sqlml.planner import Column
    from sqlml.table_functions import Call, Spec

_DIALECT = Sqlml()


@dataclass
class Item:
    name: str | None  # the alias, when written
    sql: str  # fitted: plain DuckDB SQL over the query's columns


def fit(
    con: duckdb.DuckDBPyConnection,
    source: Source,
    raw: RawSQL,
    query: str,
    columns: list[Column],
    model: str,
) -> list[Item]:
    """Fit a TRANSFORM select list on the rows of ``query``."""
    lo = source.index_at(raw.args["start"])
    hi = source.index_at(raw.args["end"])
    fitter = _Fitter(con, source, query, model)
    items: list[Item] = []
    for start, end in _split_items(source, lo, hi):
        tokens = source.tokens[start:end]
        if tokens[0].token_type == TokenType.STAR:
            items += _star(source, start, end, columns)
            continue
        expression_end, alias = _alias(source, start, end)
        spans = find_ml_spans(source, start, expression_end)
        if len(spans) == 1 and spans[0].lo == start and spans[0].hi == expression_end:
            call = parse_ml_call(source, spans[0])
            if isinstance(call, MLPreprocess) and call.function in (
                "FEATURE_CROSS",
                "POLYNOMIAL_EXPAND",
            ):
                prefix = alias or call.function.lower()
                items += [Item(f"{prefix}_{n}", sql) for n, sql in _expand_struct(fitter, call)]
                continue
        items.append(Item(alias, fitter.text(start, expression_end)))
    return items


def _split_items(source: Source, lo: int, hi: int) -> list[tuple[int, int]]:
    items, depth, start = [], 0, lo
    for i in range(lo, hi):
        kind = source.tokens[i].token_type
        if kind in (TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE):
            depth += 1
        elif kind in (TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE):
            depth -= 1
        elif kind == TokenType.COMMA and depth == 0:
            items.append((start, i))
            start = i + 1
    items.append((start, hi))
    return [(a, b) for a, b in items if b > a]


def _alias(source: Source, start: int, end: int) -> tuple[int, str | None]:
    """Where an item's expression ends, and its alias (``expr AS name`` or ``expr name``)."""
    tokens = source.tokens
    last = tokens[end - 1]
    if end - start >= 3 and tokens[end - 2].token_type == TokenType.ALIAS:
        return end - 2, last.text
    if (
        end - start >= 2
        and last.token_type in (TokenType.VAR, TokenType.IDENTIFIER)
        and tokens[end - 2].token_type
        in (
            TokenType.R_PAREN,
            TokenType.VAR,
            TokenType.IDENTIFIER,
            TokenType.NUMBER,
            TokenType.STRING,
        )
        and tokens[end - 2].token_type != TokenType.DOT
    ):
        return end - 1, last.text
    return end, None


def _star(source: Source, start: int, end: int, columns: list[Column]) -> list[Item]:
    """``*``, ``* EXCEPT (a, b)`` or ``* EXCLUDE (a, b)``: the query's columns."""
    excluded = {
        t.text.lower()
        for t in source.tokens[start + 1 : end]
        if t.token_type in (TokenType.VAR, TokenType.IDENTIFIER)
        and t.text.upper() not in ("EXCEPT", "EXCLUDE")
    }
    return [Item(c.name, quote(c.name)) for c in columns if c.name.lower() not in excluded]


class _Fitter:
    """Replaces the ML.* calls of an expression with SQL.

    In a TRANSFORM (``query`` given) each statistic is computed once over the query's rows
    and written as a constant; in a plain query (``query`` None) it stays a window
    aggregate, ``agg(x) OVER ()``, computed by DuckDB over the query's result."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection | None,
        source: Source,
        query: str | None,
        model: str | None,
    ):
        self.con, self.source, self.query, self.model = con, source, query, model

    @property
    def fitting(self) -> bool:
        return self.query is not None

    def text(self, lo: int, hi: int) -> str:
        spans = find_ml_spans(self.source, lo, hi)
        out, position = [], self.source.tokens[lo].start
        for span in spans:
            out.append(self.source.sql[position : self.source.tokens[span.lo].start])
            call = parse_ml_call(self.source, span)
            if not isinstance(call, MLPreprocess):
                raise ArgumentError(f"ML.{call.function} cannot be used inside TRANSFORM")
            out.append(self.fitted(call))
            position = self.source.tokens[span.hi - 1].end + 1
        out.append(self.source.sql[position : self.source.tokens[hi - 1].end + 1])
        return "".join(out)

    def arg(self, raw: RawSQL) -> str:
        return self.text(
            self.source.index_at(raw.args["start"]), self.source.index_at(raw.args["end"])
        )

    def stats(self, aggregates: list[str], what: str) -> list[str]:
        """SQL of each aggregate over all rows: a constant when fitting, else a window."""
        if not self.fitting:
            return [f"({a} OVER ())" for a in aggregates]
        assert self.con is not None
        try:
            row = python_scan.run(
                self.con.execute, f"SELECT {', '.join(aggregates)} FROM ({self.query}) AS __sqlml_q"
            ).fetchall()[0]
        except duckdb.Error as e:
            raise QueryError(
                f"Fitting {what} in the TRANSFORM of model {self.model} failed: {e}"
            ) from e
        return [tables.literal(_float(v)) for v in row]

    def fitted(self, call: MLPreprocess) -> str:
        name = call.function
        args = call.expressions
        x = f"({self.arg(args[0])})"
        function = f"ML.{name}"
        where = "in TRANSFORM" if self.fitting else "in a query"
        if name in ANALYTIC and not call.args.get("over"):
            raise ArgumentError(f"{function}(...) needs OVER () {where}, as in BigQuery ML")
        if name in SCALAR and call.args.get("over"):
            raise ArgumentError(f"{function}(...) is not an analytic function: remove OVER ()")
        if name == "STANDARD_SCALER":
            mean, std = self.stats([f"avg({x})", f"stddev_samp({x})"], function)
            return f"(({x} - {mean}) / {_nonzero(std)})"
        if name == "MIN_MAX_SCALER":
            low, high = self.stats([f"min({x})", f"max({x})"], function)
            scaled = f"({x} - {low}) / {_nonzero(f'({high} - {low})')}"
            # BigQuery caps at [0, 1]; NULL stays NULL (DuckDB's greatest() skips NULLs).
            return f"(CASE WHEN {x} IS NULL THEN NULL ELSE least(greatest({scaled}, 0e0), 1e0) END)"
        if name == "MAX_ABS_SCALER":
            (top,) = self.stats([f"max(abs({x}))"], function)
            return f"({x} / {_nonzero(top)})"
        if name == "ROBUST_SCALER":
            settings = _struct(args[1], function) if len(args) > 1 else {}
            low_q, high_q = settings.get("quantile_range", [25, 75])
            median, low, high = self.stats(
                [
                    f"quantile_cont({x}, 0.5)",
                    f"quantile_cont({x}, {low_q / 100})",
                    f"quantile_cont({x}, {high_q / 100})",
                ],
                function,
            )
            center = median if settings.get("with_median", True) else "0e0"
            spread = f"({high} - {low})" if settings.get("with_quantile_range", True) else "1e0"
            return f"(({x} - {center}) / {_nonzero(spread)})"
        if name == "IMPUTER":
            strategy = _literal(args[1], function) if len(args) > 1 else "mean"
            aggregate = {"mean": "avg", "median": "median", "most_frequent": "mode"}.get(strategy)
            if aggregate is None:
                raise ArgumentError(
                    f"{function}: the strategy is 'mean', 'median' or 'most_frequent', "
                    f"got {strategy!r}"
                )
            if not self.fitting:
                return f"coalesce({x}, {aggregate}({x}) OVER ())"
            assert self.con is not None
            (value,) = python_scan.run(
                self.con.execute, f"SELECT {aggregate}({x}) FROM ({self.query}) AS __sqlml_q"
            ).fetchall()[0]
            return f"coalesce({x}, {tables.literal(value)})"
        if name == "QUANTILE_BUCKETIZE":
            n = _literal(args[1], function) if len(args) > 1 else None
            if not isinstance(n, int) or isinstance(n, bool) or n < 2:
                raise ArgumentError(f"{function}(x, n) needs a number of buckets n >= 2")
            points = ", ".join(str(k / n) for k in range(1, n))
            (quantiles,) = self.stats([f"quantile_cont({x}, [{points}])"], function)
            bounds = f"list_distinct({quantiles})"  # equal quantiles: one bound
            # bin_1 below the first bound, bin_i + 1 from bound i on.
            return (
                f"(CASE WHEN {x} IS NULL THEN NULL ELSE 'bin_' || "
                f"(1 + len(list_filter({bounds}, lambda b: b <= {x}))) END)"
            )
        if name == "BUCKETIZE":
            splits = _literal(args[1], function) if len(args) > 1 else None
            if not isinstance(splits, list) or not splits:
                raise ArgumentError(f"{function}(x, [s1, s2, ...]) needs an array of split points")
            exclude = _literal(args[2], function) if len(args) > 2 else False
            if not isinstance(exclude, bool):
                raise ArgumentError(
                    f"{function}'s third argument, exclude_boundaries, is TRUE or FALSE"
                )
            output = _literal(args[3], function) if len(args) > 3 else "bucket_names"
            if output != "bucket_names" or len(args) > 4:
                raise ArgumentError(
                    f"{function}(x, splits, exclude_boundaries, output_format): sqlml gives bucket "
                    "names ('bin_1', ...) only, output_format 'bucket_names'"
                )
            splits = sorted(splits)
            # As in BigQuery ML: the lowest and highest points make no buckets of their own.
            return _buckets(x, splits[1:-1] if exclude else splits)
        if name in ("LABEL_ENCODER", "ONE_HOT_ENCODER"):
            if not self.fitting:
                raise ArgumentError(
                    f"{function} is available in a CREATE MODEL's TRANSFORM, where its "
                    "vocabulary is fitted once; sqlml cannot compute it as a window function"
                )
            return self._encoder(name, x, [_literal(a, function) for a in args[1:]])
        if not self.fitting:  # FEATURE_CROSS, POLYNOMIAL_EXPAND: a STRUCT, as in BigQuery
            fields = ", ".join(f"{quote(n)} := {sql}" for n, sql in _expand_struct(self, call))
            return f"struct_pack({fields})"
        raise ArgumentError(f"{function} gives several features: use it as a whole TRANSFORM item")

    def _encoder(self, name: str, x: str, extra: list[Any]) -> str:
        """The vocabulary: the top_k most frequent values seen at least frequency_threshold
        times (BigQuery's defaults: 32,000 and 5), sorted."""
        assert self.con is not None
        function = f"ML.{name}"
        drop = "none"
        if name == "ONE_HOT_ENCODER":
            drop, *extra = extra or ["none"]
            if drop not in ("none", "most_frequent"):
                raise ArgumentError(f"{function}: drop is 'none' or 'most_frequent', got {drop!r}")
        top_k = extra[0] if extra else 32_000
        threshold = extra[1] if len(extra) > 1 else 5
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (top_k, threshold)):
            raise ArgumentError(f"{function}: top_k and frequency_threshold are integers")
        rows = python_scan.run(
            self.con.execute,
            f"SELECT CAST({x} AS VARCHAR) AS v, count(*) AS n FROM ({self.query}) AS __sqlml_q "
            f"WHERE {x} IS NOT NULL GROUP BY ALL ORDER BY n DESC, v LIMIT {int(top_k)}",
        ).fetchall()
        kept = sorted(v for v, n in rows if n >= threshold)
        if drop == "most_frequent" and rows:
            kept = [v for v in kept if v != rows[0][0]]
        value = f"CAST({x} AS VARCHAR)"
        if name == "LABEL_ENCODER":
            cases = " ".join(
                f"WHEN {tables.literal(v)} THEN {i}" for i, v in enumerate(kept, start=1)
            )
            return f"(CASE {value} {cases} ELSE 0 END)" if kept else "0"
        listed = ", ".join(tables.literal(v) for v in kept)
        return (
            f"(CASE WHEN {value} IN ({listed}) THEN {value} END)"
            if kept
            else "CAST(NULL AS VARCHAR)"
        )


ANALYTIC = {
    "STANDARD_SCALER", "MIN_MAX_SCALER", "MAX_ABS_SCALER", "ROBUST_SCALER", "IMPUTER",
    "QUANTILE_BUCKETIZE", "LABEL_ENCODER", "ONE_HOT_ENCODER",
}  # fmt: skip
SCALAR = {"BUCKETIZE", "FEATURE_CROSS", "POLYNOMIAL_EXPAND"}


def _nonzero(sql: str) -> str:
    """A divisor, with 1 for 0 or NULL (a constant column scales to 0, as in BigQuery)."""
    return f"coalesce(nullif({sql}, 0), 1e0)"


def _float(value: Any) -> Any:
    """Numbers (DECIMAL ones too) as floats; lists of them likewise."""
    if isinstance(value, list):
        return [_float(v) for v in value]
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return float(value)
    return value


def _buckets(x: str, splits: list[float]) -> str:
    """'bin_1' below the first split, 'bin_i+1' from split i up to the next."""
    branches = [f"WHEN {x} IS NULL THEN NULL"]
    for i, split in enumerate(splits, start=1):
        branches.append(f"WHEN {x} < {_num(split)} THEN 'bin_{i}'")
    return f"(CASE {' '.join(branches)} ELSE 'bin_{len(splits) + 1}' END)"


def _expand_struct(fitter: _Fitter, call: MLPreprocess) -> list[tuple[str, str]]:
    """FEATURE_CROSS and POLYNOMIAL_EXPAND: (field name, SQL) of each output."""
    function = f"ML.{call.function}"
    args = call.expressions
    struct = sqlglot.parse_one(fitter.arg(args[0]), dialect=_DIALECT)
    if not isinstance(struct, exp.Struct) or len(struct.expressions) < 2:
        raise ArgumentError(f"{function} takes STRUCT(a, b, ...) of at least two columns")
    fields = []
    for field in struct.expressions:
        name = field.alias_or_name if not isinstance(field, exp.PropertyEQ) else field.this.name
        value = (
            field.this
            if isinstance(field, exp.Alias)
            else field.expression
            if isinstance(field, exp.PropertyEQ)
            else field
        )
        if not name:
            raise ArgumentError(
                f"{function}: name every STRUCT field, as in STRUCT(a, b + c AS bc)"
            )
        fields.append((name, f"({value.sql(dialect='duckdb')})"))
    degree = _literal(args[1], function) if len(args) > 1 else 2
    if not isinstance(degree, int) or degree < 1 or degree > 4:
        raise ArgumentError(f"{function}: degree must be an integer from 1 to 4, got {degree!r}")
    out = []
    if call.function == "FEATURE_CROSS":
        for group in itertools.combinations(fields, min(degree, len(fields))):
            parts = " || '_' || ".join(f"CAST({sql} AS VARCHAR)" for _, sql in group)
            out.append(("_".join(n for n, _ in group), f"({parts})"))
        return out
    for size in range(1, degree + 1):
        for group in itertools.combinations_with_replacement(fields, size):
            product = " * ".join(f"CAST({sql} AS DOUBLE)" for _, sql in group)
            out.append(("_".join(n for n, _ in group), f"({product})"))
    return out


def _literal(raw: RawSQL, function: str) -> Any:
    try:
        return literal_value(sqlglot.parse_one(raw.text, dialect=_DIALECT), function)
    except OptionError as e:
        raise ArgumentError(f"{function}: {e}") from None


def _struct(raw: RawSQL, function: str) -> dict[str, Any]:
    node = sqlglot.parse_one(raw.text, dialect=_DIALECT)
    if not isinstance(node, exp.Struct):
        raise ArgumentError(f"{function}: settings are written STRUCT(value AS name, ...)")
    settings = {}
    for item in node.expressions:
        key = item.alias if isinstance(item, exp.Alias) else item.this.name
        value = item.this if isinstance(item, exp.Alias) else item.expression
        settings[key.lower()] = literal_value(value, function)
    return settings


def _num(value: Any) -> str:
    return compiler.number(float(value))


# -- outside TRANSFORM: window functions ------------------------------------------------------


def window_sql(source: Source, call: MLPreprocess) -> str:
    """A preprocessing function in a plain query: its statistics are window aggregates
    over the query's result."""
    return _Fitter(None, source, None, None).fitted(call)


# -- the model's transform --------------------------------------------------------------------


def stored(
    items: list[Item], outputs: list[Column], label: str | None, query_columns: list[Column]
) -> dict[str, Any]:
    """The metadata of a fitted TRANSFORM: its inputs (the query columns the features
    read), the features' SQL, and the label's."""
    by_output = dict(zip([c.name for c in outputs], items, strict=True))
    features = [(c.name, by_output[c.name].sql) for c in outputs if c.name != label]

    def reads(sql: str) -> set[str]:
        words = {
            t.text.lower()
            for t in _DIALECT.tokenize(sql)
            if t.token_type in (TokenType.VAR, TokenType.IDENTIFIER)
        }
        return {c.name.lower() for c in query_columns if c.name.lower() in words}

    used = set().union(*(reads(sql) for _, sql in features)) if features else set()
    inputs = [
        {"name": c.name, "sql_type": c.sql_type} for c in query_columns if c.name.lower() in used
    ]
    label_sql = by_output[label].sql if label else None
    return {
        "inputs": inputs,
        "features": [{"name": n, "sql": sql} for n, sql in features],
        "label_sql": label_sql,
        "label_inputs": sorted(reads(label_sql)) if label_sql else [],
    }


def transformed_query(items: list[Item], query: str) -> str:
    select = ", ".join(
        f"{item.sql} AS {quote(item.name)}" if item.name else item.sql for item in items
    )
    return f"SELECT {select} FROM ({query}) AS __sqlml_q"


def transform_sql(call: Call) -> str:
    """ML.TRANSFORM: the TRANSFORM's outputs for the input rows (the label too, when the
    input has what it reads)."""
    record = call.record
    transform = record.transform
    if not transform:
        raise ArgumentError(f"ML.TRANSFORM: model {record.qualified} has no TRANSFORM clause")
    assert call.data is not None
    columns = call.expander.input_columns(record, call.data, call.function)
    names = {c.name.lower() for c in columns}
    select = [f"{f['sql']} AS {quote(f['name'])}" for f in transform["features"]]
    label = record.label["name"] if record.label else None
    if transform.get("label_sql") and all(n in names for n in transform["label_inputs"]):
        select.append(f"{transform['label_sql']} AS {quote(label)}")
    return f"(SELECT {', '.join(select)} FROM ({call.data}) AS __sqlml_in)"


def register_functions(register: Callable[[str, Spec], None], supervised: frozenset[str]) -> None:
    from sqlml.table_functions import Spec

    register("TRANSFORM", Spec(transform_sql, "required", imported=True))
