"""SQL text in, statements out: which are sqlml's, which are DuckDB's, and where ML calls sit.

The splitting works on sqlglot tokens, which carry character offsets, so every piece of
DuckDB SQL is passed on exactly as the user wrote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlglot.errors import ParseError as SqlglotParseError
from sqlglot.errors import TokenError
from sqlglot.expressions import Expr
from sqlglot.tokens import Token, TokenType

from sqlml.errors import ParseError
from sqlml.parser.dialect import ML_FUNCTIONS, ML_PREPROCESSING, Sqlml, SqlmlParser, line_col
from sqlml.parser.expressions import (
    CreateModel,
    DescribeModel,
    DropModel,
    ExportModel,
    MLFunction,
    MLPreprocess,
    ModelOption,
    RawSQL,
    SetSetting,
    ShowModels,
)

__all__ = [
    "ML_FUNCTIONS",
    "ML_PREPROCESSING",
    "CreateModel",
    "DescribeModel",
    "DropModel",
    "ExportModel",
    "MLFunction",
    "MLPreprocess",
    "MLSpan",
    "ModelOption",
    "RawSQL",
    "SetSetting",
    "ShowModels",
    "Source",
    "Statement",
    "may_contain_ml",
    "parse",
    "parse_ml_call",
    "placeholders",
    "split_statements",
    "statement_ranges",
    "word",
]

# Cheap test before tokenizing: SQL without these words is DuckDB's alone.
_ML_HINT = re.compile(r"\bmodels?\b|\bml\s*\.|\bsqlml_", re.IGNORECASE)
# Text that is surely sqlml's, even when it cannot be tokenized.
_ML_STATEMENT = re.compile(
    r"\b(create\s+(or\s+replace\s+)?model|drop\s+model|show\s+models|describe\s+model"
    r"|export\s+model|(re)?set\s+((session|local|global)\s+)?sqlml_\w+)\b"
    r"|\bml\s*\.\s*\w+\s*\(",
    re.IGNORECASE,
)

_SQLML_RESET = re.compile(r"((session|local|global)\s+)?sqlml_\w+", re.IGNORECASE)

_DIALECT = Sqlml()


def may_contain_ml(sql: str) -> bool:
    return _ML_HINT.search(sql) is not None


@dataclass
class Source:
    """A SQL text and its tokens (offsets refer to ``sql``)."""

    sql: str
    tokens: list[Token]

    @classmethod
    def of(cls, sql: str) -> Source:
        try:
            tokens = _DIALECT.tokenize(sql)
        except TokenError as e:
            start = getattr(e, "start", None)
            line, col = line_col(sql, start) if start is not None else (None, None)
            raise ParseError(f"Cannot read this SQL: {e}", line, col) from None
        return cls(sql, tokens)

    def newlines_before(self, offset: int) -> str:
        """As many newlines as come before a character offset: SQL from there, placed after
        them, stands on its own lines, so that DuckDB's "LINE n" is the source's."""
        return "\n" * self.sql.count("\n", 0, offset)

    def text(self, lo: int, hi: int) -> str:
        """The source text of tokens[lo:hi]."""
        return self.sql[self.tokens[lo].start : self.tokens[hi - 1].end + 1]

    def index_at(self, offset: int) -> int:
        """Index of the first token starting at or after a character offset."""
        for i, token in enumerate(self.tokens):
            if token.start >= offset:
                return i
        return len(self.tokens)


@dataclass
class Statement:
    """One statement of a script: its exact text, and its syntax tree if it is sqlml's."""

    source: Source
    lo: int  # token range [lo, hi) in source.tokens
    hi: int
    ast: Expr | None = None  # CreateModel, DropModel, ExportModel, ShowModels, DescribeModel
    ml_spans: list[MLSpan] = field(default_factory=list)  # ML calls inside plain SQL

    @property
    def text(self) -> str:
        return self.source.text(self.lo, self.hi)

    def on_its_line(self, sql: str) -> str:
        """``sql`` (this statement's, perhaps rewritten) on the statement's lines in its
        script (see Source.newlines_before)."""
        return self.source.newlines_before(self.source.tokens[self.lo].start) + sql

    @property
    def first_word(self) -> str:
        """The statement's first word, upper case ("SELECT", "CREATE", "(", ...)."""
        return self.source.tokens[self.lo].text.upper()

    @property
    def is_plain(self) -> bool:
        return self.ast is None and not self.ml_spans


@dataclass
class MLSpan:
    """An ``ML.<fn>(...)`` call or a ``SHOW MODELS`` inside a query: tokens [lo, hi)."""

    lo: int
    hi: int
    kind: str  # "call" or "show_models"


def word(token: Token | None) -> str:
    """Upper-case text of an unquoted word token ("" for quoted identifiers and symbols)."""
    if token is None or token.token_type in (TokenType.IDENTIFIER, TokenType.STRING):
        return ""
    return token.text.upper()


def parse(source: Source, lo: int, hi: int, method: str = "parse") -> Expr:
    """The syntax tree of tokens[lo:hi] in sqlml's dialect (``method="call"``: one ML call);
    a :class:`ParseError` with the line and column when it does not parse."""
    parser = SqlmlParser(dialect=_DIALECT)
    try:
        if method == "parse":
            return parser.parse(source.tokens[lo:hi], source.sql)[0]
        return parser.parse_ml_call(source.tokens[lo:hi], source.sql)
    except SqlglotParseError as e:
        info = e.errors[0] if e.errors else {}
        raise ParseError(
            info.get("description") or str(e), info.get("line"), info.get("col")
        ) from None


def _is_ml_statement(tokens: list[Token]) -> bool:
    words = [word(tok) for tok in tokens[:4]] + ["", "", "", ""]
    if words[0] == "CREATE":
        return words[1] == "MODEL" or (words[1:4] == ["OR", "REPLACE", "MODEL"])
    if words[0] in ("DROP", "EXPORT"):
        return words[1] == "MODEL"
    if words[0] == "SHOW":
        return words[1] == "MODELS"
    if words[0] == "SET":
        name = words[2] if words[1] in ("SESSION", "LOCAL", "GLOBAL") else words[1]
        return name.startswith("SQLML_")
    if words[0] == "RESET" and len(tokens) > 1:  # RESET is a command: the rest is one token
        return _SQLML_RESET.fullmatch(tokens[1].text.strip()) is not None
    if words[0] == "DESCRIBE":
        return words[1] == "MODEL" and len(tokens) > 2
    return False


def find_ml_spans(source: Source, lo: int, hi: int) -> list[MLSpan]:
    """The outermost ML calls and SHOW MODELS in tokens[lo:hi], left to right."""
    tokens = source.tokens
    spans: list[MLSpan] = []
    i = lo
    while i < hi:
        if (
            word(tokens[i]) == "ML"
            and i + 3 < hi
            and tokens[i + 1].token_type == TokenType.DOT
            and tokens[i + 3].token_type == TokenType.L_PAREN
        ):
            end = _matching_paren(source, i + 3, hi)
            if (
                end + 2 < hi
                and word(tokens[end + 1]) == "OVER"
                and (tokens[end + 2].token_type == TokenType.L_PAREN)
            ):
                end = _matching_paren(source, end + 2, hi)  # an analytic preprocessing call
            spans.append(MLSpan(i, end + 1, "call"))
            i = end + 1
        elif word(tokens[i]) == "SHOW" and i + 1 < hi and word(tokens[i + 1]) == "MODELS":
            spans.append(MLSpan(i, i + 2, "show_models"))
            i += 2
        else:
            i += 1
    return spans


def placeholders(sql: str) -> list[None] | dict[str, None] | None:
    """NULL for each of a query's parameters (``?``, ``$1``, ``$name``), or None when it has
    none: what DuckDB needs to bind a query, as DESCRIBE does, before the values are known
    (an ML call's input query inside a PREPARE, or run with parameters)."""
    try:
        tokens = Source.of(sql).tokens
    except ParseError:  # not sqlglot's to read: DuckDB reports what is wrong with it
        return None
    positional, numbered, named = 0, 0, set()
    for token, after in zip(tokens, [*tokens[1:], None], strict=True):
        if token.token_type == TokenType.PLACEHOLDER:
            positional += 1
        elif token.token_type == TokenType.PARAMETER and after is not None:
            if after.token_type == TokenType.NUMBER:
                numbered = max(numbered, int(after.text))
            else:
                named.add(after.text)
    if named:
        return dict.fromkeys(named)
    count = max(positional, numbered)
    return [None] * count if count else None


def _matching_paren(source: Source, open_index: int, hi: int) -> int:
    depth = 0
    for j in range(open_index, hi):
        kind = source.tokens[j].token_type
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                return j
    token = source.tokens[open_index]
    raise ParseError("Unbalanced parentheses: this ( is never closed", token.line, token.col)


def split_statements(sql: str) -> list[Statement] | None:
    """Split a script at top-level semicolons and classify each statement.

    None when the text cannot be tokenized and holds no ML statement: it is DuckDB's."""
    try:
        source = Source.of(sql)
    except ParseError:
        if _ML_STATEMENT.search(sql):
            raise
        return None
    return [_classify(source, lo, hi) for lo, hi in statement_ranges(source)]


def statement_ranges(source: Source) -> list[tuple[int, int]]:
    """The token range [lo, hi) of each statement: the pieces between top-level semicolons
    (the tokenizer keeps semicolons inside strings and comments in their token)."""
    ranges: list[tuple[int, int]] = []
    lo = 0
    tokens = source.tokens
    for i in range(len(tokens) + 1):
        if i == len(tokens) or tokens[i].token_type == TokenType.SEMICOLON:
            if i > lo:
                ranges.append((lo, i))
            lo = i + 1
    return ranges


def _classify(source: Source, lo: int, hi: int) -> Statement:
    statement = Statement(source, lo, hi)
    if _is_ml_statement(source.tokens[lo:hi]):
        statement.ast = parse(source, lo, hi)
    else:
        statement.ml_spans = find_ml_spans(source, lo, hi)
    return statement


def parse_ml_call(source: Source, span: MLSpan) -> MLFunction | MLPreprocess:
    """The syntax tree of one ``ML.<fn>(...)`` call found by :func:`find_ml_spans`."""
    return parse(source, span.lo, span.hi, method="call")  # type: ignore[return-value]
