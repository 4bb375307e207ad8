"""The sqlml dialect: DuckDB's, plus the ML statements and ``ML.*`` table functions.

Extended by subclassing DuckDB's tokenizer and parser, never by patching sqlglot.
Queries inside ML statements (``AS <query>``, ``(<query>)`` arguments) are captured as
:class:`RawSQL` text and handed to DuckDB as written: sqlglot may lag behind DuckDB's
syntax, and DuckDB is the one that has to run them.
"""

from __future__ import annotations

import typing as t

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import ErrorLevel
from sqlglot.errors import ParseError as SqlglotParseError
from sqlglot.parsers.duckdb import DuckDBParser
from sqlglot.tokens import Token, TokenType
from sqlglot.trie import new_trie

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

# ML.<name> table functions sqlml knows (MODEL first); any other ML.<name>( is an error,
# not a fallback.
ML_FUNCTIONS: tuple[str, ...] = (
    "PREDICT", "EVALUATE", "TRANSFORM", "DETECT_ANOMALIES", "EXPLAIN_PREDICT",
    "GLOBAL_EXPLAIN", "FEATURE_IMPORTANCE", "WEIGHTS", "TRAINING_INFO", "FEATURE_INFO",
    "CONFUSION_MATRIX", "ROC_CURVE", "CENTROIDS", "PRINCIPAL_COMPONENTS",
    "PRINCIPAL_COMPONENT_INFO", "TRIAL_INFO",
)  # fmt: skip
# BigQuery's preprocessing functions: scalar or analytic (OVER ()), in TRANSFORM or queries.
ML_PREPROCESSING: tuple[str, ...] = (
    "STANDARD_SCALER", "MIN_MAX_SCALER", "MAX_ABS_SCALER", "ROBUST_SCALER", "IMPUTER",
    "QUANTILE_BUCKETIZE", "BUCKETIZE", "ONE_HOT_ENCODER", "LABEL_ENCODER", "FEATURE_CROSS",
    "POLYNOMIAL_EXPAND",
)  # fmt: skip
_QUERY_STARTS = {TokenType.SELECT, TokenType.FROM, TokenType.WITH, TokenType.VALUES,
                 TokenType.TABLE, TokenType.PIVOT, TokenType.L_PAREN}  # fmt: skip


def line_col(sql: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    line = sql.count("\n", 0, offset) + 1
    return line, offset - (sql.rfind("\n", 0, offset) + 1) + 1


def _imports(options: list[ModelOption]) -> bool:
    """Whether OPTIONS say model_type = 'onnx' (a file imported: no training query)."""
    for option in options:
        value = option.expression
        if option.this.name.lower() == "model_type" and isinstance(value, exp.Literal):
            return value.is_string and value.name.lower() == "onnx"
    return False


def _ml_function_parser(name: str) -> t.Callable[[SqlmlParser], exp.Expr]:
    return lambda self: self._parse_ml_function_or_plain(name)


class SqlmlParser(DuckDBParser):
    STATEMENT_PARSERS = {
        **DuckDBParser.STATEMENT_PARSERS,
        TokenType.CREATE: lambda self: self._parse_create_model() or self._parse_create(),
        TokenType.DROP: lambda self: self._parse_drop_model() or self._parse_drop(),
        TokenType.DESCRIBE: lambda self: self._parse_describe_model() or self._parse_describe(),
    }

    SHOW_PARSERS = {
        **DuckDBParser.SHOW_PARSERS,
        "MODELS": lambda self: self.expression(ShowModels()),
    }
    SHOW_TRIE = new_trie(key.split(" ") for key in SHOW_PARSERS)

    FUNCTION_PARSERS = {
        **DuckDBParser.FUNCTION_PARSERS,
        **{name: _ml_function_parser(name) for name in ML_FUNCTIONS + ML_PREPROCESSING},
    }

    def _parse_statement(self) -> exp.Expr | None:
        # EXPORT is no keyword token (DuckDB's EXPORT DATABASE is a command to sqlglot).
        if (
            self._curr
            and self._curr.text.upper() == "EXPORT"
            and self._next
            and self._next.text.upper() == "MODEL"
        ):
            return self._parse_export_model()
        if self._curr and self._curr.text.upper() in ("SET", "RESET"):
            setting = self._parse_sqlml_setting()
            if setting is not None:
                return setting
        return super()._parse_statement()

    def raise_error(self, message: str, token: Token | None = None) -> None:
        # sqlglot reports the column where a token ends; users want where it starts.
        token = token or self._curr or self._prev
        line, col = line_col(self.sql, token.start) if token else (None, None)
        near = f" near {token.text!r}" if token and token.text else ""
        error = SqlglotParseError.new(
            f"{message}{near}", description=f"{message}{near}", line=line, col=col
        )
        if self.error_level == ErrorLevel.IMMEDIATE:
            raise error
        self.errors.append(error)

    # -- statements --------------------------------------------------------------------

    def _parse_create_model(self) -> CreateModel | None:
        index = self._index
        replace = self._match_pair(TokenType.OR, TokenType.REPLACE)
        if not self._match_text_seq("MODEL"):
            self._retreat(index)
            return None
        if_token = self._curr
        exists = self._parse_exists(not_=True)
        if replace and exists:
            # As DuckDB and BigQuery: replace it, or keep the one that exists, not both.
            self.raise_error(
                "CREATE OR REPLACE MODEL takes no IF NOT EXISTS: write CREATE OR REPLACE MODEL "
                "to train a new version, or CREATE MODEL IF NOT EXISTS to keep an existing model",
                if_token,
            )
        name = self._parse_model_name("CREATE MODEL")
        transform = None
        if self._match_text_seq("TRANSFORM"):
            if not (self._curr and self._curr.token_type == TokenType.L_PAREN):
                self.raise_error("Expected ( after TRANSFORM")
            transform = self._parse_raw_parenthesized(what="a select list")
        options: list[ModelOption] = []
        if self._match_text_seq("OPTIONS"):
            options = self._parse_model_options()
        if options and transform is None and not self._curr:
            if not _imports(options):
                self.raise_error(
                    f"Expected AS <query> after OPTIONS (...): model {name.sql(dialect='duckdb')} "
                    "trains on the rows of a query (only model_type = 'onnx', which imports "
                    "a file, takes none)",
                    self._prev,
                )
            query = None  # CREATE MODEL m OPTIONS (model_type = 'onnx', model_path = ...)
        elif not self._match(TokenType.ALIAS):
            if options:
                expected = "AS <query> after OPTIONS (...)"
            elif transform is not None:
                expected = "OPTIONS (...) or AS <query> after TRANSFORM (...)"
            else:
                expected = "TRANSFORM (...), OPTIONS (...) or AS <query> after the model name"
            self.raise_error(f"Expected {expected}")
        else:
            query = self._parse_raw_rest("CREATE MODEL ... AS")
        return self.expression(
            CreateModel(
                this=name,
                replace=bool(replace),
                exists=bool(exists),
                options=options,
                query=query,
                transform=transform,
            )
        )

    def _parse_export_model(self) -> ExportModel:
        self._advance(2)  # EXPORT MODEL
        name = self._parse_model_name("EXPORT MODEL")
        options: list[ModelOption] = []
        if self._match_text_seq("OPTIONS"):
            options = self._parse_model_options()
        self._expect_end("EXPORT MODEL <name>" + (" OPTIONS (...)" if options else ""))
        return self.expression(ExportModel(this=name, options=options))

    def _parse_sqlml_setting(self) -> SetSetting | None:
        """SET [SESSION | LOCAL | GLOBAL] sqlml_x (= | TO) value, RESET sqlml_x: sqlml's own
        settings; every other SET is DuckDB's."""
        index = self._index
        reset = self._curr.text.upper() == "RESET"
        self._advance()
        if reset and self._curr and self._curr.token_type == TokenType.STRING:
            # RESET is a command to sqlglot: what follows arrives as one token.
            name = self._curr.text.split()[-1].lower()
            if not name.startswith("sqlml_"):
                self._retreat(index)
                return None
            self._advance()
            return self.expression(SetSetting(this=name))
        self._match_texts(("SESSION", "LOCAL", "GLOBAL"))
        if not (self._curr and self._curr.text.lower().startswith("sqlml_")):
            self._retreat(index)
            return None
        name = self._curr.text.lower()
        self._advance()
        value = None
        if not reset:
            if not (self._match(TokenType.EQ) or self._match_text_seq("TO")):
                self.raise_error(f"Expected = or TO after SET {name}")
            value = self._parse_primary()
            if value is None:
                self.raise_error(f"Expected a value after SET {name} =")
        self._expect_end(f"RESET {name}" if reset else f"SET {name} = <value>")
        return self.expression(SetSetting(this=name, expression=value))

    def _parse_drop_model(self) -> DropModel | None:
        if not self._match_text_seq("MODEL"):
            return None
        exists = self._parse_exists()
        name = self._parse_model_name("DROP MODEL")
        self._expect_end("DROP MODEL <name>")
        return self.expression(DropModel(this=name, exists=bool(exists)))

    def _parse_describe_model(self) -> DescribeModel | None:
        # DESCRIBE model (a table called "model") stays DuckDB's: a name must follow MODEL.
        if not (self._match_text_seq("MODEL", advance=False) and self._next):
            return None
        self._advance()
        name = self._parse_model_name("DESCRIBE MODEL")
        self._expect_end("DESCRIBE MODEL <name>")
        return self.expression(DescribeModel(this=name))

    def _parse_model_name(self, statement: str) -> exp.Table:
        first = self._curr
        if (
            not first
            or first.token_type in (TokenType.L_PAREN, TokenType.ALIAS)
            or (
                first.text.upper() == "OPTIONS"
                and self._next
                and self._next.token_type == TokenType.L_PAREN
            )
        ):
            self.raise_error(f"Expected a model name after {statement}")
        try:
            name = self._parse_table_parts()
        except SqlglotParseError:  # sqlglot's message shows its token objects
            name = None
        if not isinstance(name, exp.Table) or not name.name:
            self.raise_error(f"Expected a model name after {statement}", first)
        # database.schema.name is read (dbt's ref() renders one); the database must be the
        # current one, which only the connection knows (QueryExpander.schema_of).
        if len(name.parts) > 3:
            self.raise_error(
                "A model name has at most three parts, database.schema.name; "
                "models live in the current database",
                first,
            )
        return name

    def _parse_model_options(self) -> list[ModelOption]:
        if not self._match(TokenType.L_PAREN):
            self.raise_error("Expected ( after OPTIONS")
        options: list[ModelOption] = []
        while True:
            if self._match(TokenType.R_PAREN):
                break
            if options and not self._match(TokenType.COMMA):
                self.raise_error("Expected , or ) between OPTIONS")
            key = self._parse_id_var(any_token=True)
            if not key:
                self.raise_error("Expected an option name inside OPTIONS (...)")
            if not self._match(TokenType.EQ):
                self.raise_error(f"Expected = after the option name {key.name!r}")
            value = self._parse_bitwise()
            if value is None:
                self.raise_error(f"Expected a value for the option {key.name!r}")
            options.append(self.expression(ModelOption(this=key, expression=value)))
        return options

    def _expect_end(self, statement: str) -> None:
        if self._curr:
            self.raise_error(f"Unexpected {self._curr.text!r} after {statement}")

    # -- raw queries -------------------------------------------------------------------

    def _parse_raw_rest(self, where: str) -> RawSQL:
        """Everything left in the statement, as written."""
        if not self._curr:
            self.raise_error(f"Expected a query after {where}")
        first = self._curr
        last = self._tokens[-1]
        self._advance(len(self._tokens) - self._index)
        return self._raw(first, last)

    def _parse_raw_parenthesized(self, what: str = "a query") -> RawSQL:
        """``( query )`` with balanced parentheses; the text between them, as written."""
        open_paren = self._curr
        self._advance()
        depth = 1
        first = self._curr
        while self._curr:
            if self._curr.token_type == TokenType.L_PAREN:
                depth += 1
            elif self._curr.token_type == TokenType.R_PAREN:
                depth -= 1
                if depth == 0:
                    break
            self._advance()
        if not self._curr:
            self.raise_error("Unbalanced parentheses: this ( is never closed", open_paren)
        if first is self._curr:
            self.raise_error(f"Expected {what} inside ( )", open_paren)
        raw = self._raw(first, self._prev)
        self._advance()  # the closing )
        return raw

    def _raw(self, first: Token, last: Token) -> RawSQL:
        raw = RawSQL(this=self.sql[first.start : last.end + 1], start=first.start, end=last.end + 1)
        raw.update_positions(first)
        return raw

    # -- ML.<name>(...) ------------------------------------------------------------------

    def _parse_ml_function_or_plain(self, name: str) -> exp.Expr:
        # FUNCTION_PARSERS are keyed by bare name; only ML.<name>( is ours. The tokens
        # before the current one are: ML . <name> (
        prefix = self._tokens[self._index - 4] if self._index >= 4 else None
        dot = self._tokens[self._index - 3] if self._index >= 3 else None
        if not (
            prefix
            and dot
            and dot.token_type == TokenType.DOT
            and prefix.text.upper() == "ML"
            and prefix.token_type != TokenType.IDENTIFIER
        ):
            args = self._parse_function_args(alias=True)
            return self.expression(exp.Anonymous(this=name, expressions=args))
        return self._parse_ml_arguments(name)

    def _parse_ml_arguments(self, name: str) -> exp.Expr:
        if name in ML_PREPROCESSING:
            return self._parse_preprocessing_arguments(name)
        if not self._match_text_seq("MODEL"):
            self.raise_error(f"ML.{name} expects MODEL <name> as its first argument")
        model = self._parse_model_name(f"MODEL in ML.{name}(...)")
        data: exp.Expr | None = None
        params: exp.Expr | None = None
        extra: list[exp.Expr] = []
        while self._match(TokenType.COMMA):
            if self._match(TokenType.TABLE):
                if data is not None:
                    self.raise_error(f"ML.{name} takes one input table or query", self._prev)
                data = self._parse_table_parts()
            elif (
                self._curr
                and self._curr.token_type == TokenType.L_PAREN
                and self._next
                and self._next.token_type in _QUERY_STARTS
            ):
                if data is not None:
                    self.raise_error(f"ML.{name} takes one input table or query", self._curr)
                data = self._parse_raw_parenthesized()
            elif self._curr and self._curr.token_type == TokenType.STRUCT:
                if params is not None:
                    self.raise_error(f"ML.{name} takes one STRUCT of settings", self._curr)
                params = self._parse_bitwise()
            else:
                value = self._parse_bitwise()
                if value is None:
                    self.raise_error(
                        f"ML.{name}: expected TABLE <name>, (<query>), STRUCT(...) or a value "
                        "after MODEL"
                    )
                extra.append(value)
        if not self._curr or self._curr.token_type != TokenType.R_PAREN:
            self.raise_error(f"Expected , or ) in ML.{name}(...)")
        return self.expression(
            MLFunction(this=name, model=model, input=data, params=params, extra=extra)
        )

    def _parse_preprocessing_arguments(self, name: str) -> MLPreprocess:
        """ML.<fn>(arg, ...): each argument kept as written (it is DuckDB SQL)."""
        args: list[RawSQL] = []
        while self._curr and self._curr.token_type != TokenType.R_PAREN:
            if args and not self._match(TokenType.COMMA):
                self.raise_error(f"Expected , or ) in ML.{name}(...)")
            first = self._curr
            if self._parse_assignment() is None:
                self.raise_error(f"Expected an argument of ML.{name}")
            args.append(self._raw(first, self._prev))
        if not args:
            self.raise_error(f"ML.{name} needs an argument")
        return self.expression(MLPreprocess(this=name, expressions=args))

    def parse_ml_call(self, raw_tokens: list[Token], sql: str) -> MLFunction:
        """Parse exactly ``ML . <name> ( ... )``: the tokens of one call inside a query."""
        result = self._parse(
            parse_method=SqlmlParser._parse_ml_call_only, raw_tokens=raw_tokens, sql=sql
        )
        return t.cast(MLFunction, result[0])

    def _parse_ml_call_only(self) -> exp.Expr:
        self._advance(2)  # ML .
        name = self._curr.text.upper()
        if name not in ML_FUNCTIONS + ML_PREPROCESSING:
            self.raise_error(
                f"Unknown function ML.{self._curr.text}; sqlml has "
                + ", ".join(f"ML.{n}" for n in ML_FUNCTIONS + ML_PREPROCESSING)
            )
        self._advance(2)  # <name> (
        call = self._parse_ml_arguments(name)
        self._advance()  # )
        if isinstance(call, MLPreprocess) and self._match_text_seq("OVER"):
            if not (self._match(TokenType.L_PAREN) and self._match(TokenType.R_PAREN)):
                self.raise_error(f"ML.{name}(...) OVER takes empty parentheses: OVER ()")
            call.set("over", True)
        if self._curr:
            self.raise_error(f"Unexpected {self._curr.text!r} after ML.{name}(...)")
        return call


class Sqlml(DuckDB):
    """DuckDB's dialect with sqlml's statements."""

    class Tokenizer(DuckDB.Tokenizer):
        # sqlglot reads the rest of a command as one string; EXPLAIN and PREPARE wrap a query
        # whose ML calls must be found and rewritten, so here they are plain words. DuckDB
        # has no ?:: operator: `?::DOUBLE` is a parameter cast, as it reads it.
        KEYWORDS = {
            word: kind
            for word, kind in DuckDB.Tokenizer.KEYWORDS.items()
            if word not in ("EXPLAIN", "PREPARE", "?::")
        }

    Parser = SqlmlParser
