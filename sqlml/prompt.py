"""The interactive prompt of the ``sqlml`` command (prompt_toolkit, imported only here).

Enter runs the buffer once it holds a complete statement (ending in ``;``) or a dot
command, and starts a new line otherwise (Alt-Enter runs it as it is). History is kept in
``$SQLML_HISTORY`` or ``~/.sqlml_history``. Tab completes keywords, tables, columns,
models, ML functions and dot commands; SQL is highlighted with sqlml's own tokenizer.
Ctrl-C clears the line (or cancels a running statement); Ctrl-D on an empty line exits.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import duckdb
from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.lexers import Lexer
from prompt_toolkit.styles import Style
from sqlglot.tokens import Token, TokenType

import sqlml
from sqlml import output
from sqlml.errors import ParseError
from sqlml.parser import ML_FUNCTIONS, ML_PREPROCESSING, Source
from sqlml.shell import COMPLETE, EMPTY, EXIT_OK, Shell, ShellExit, is_dot_command
from sqlml.shell import statement_state as _state

HISTORY_ENV = "SQLML_HISTORY"
PROMPT = "sqlml> "
CONTINUATION = "  ...> "

STYLE = Style.from_dict(
    {
        "sql.keyword": "ansigreen bold",
        "sql.string": "ansiyellow",
        "sql.number": "ansiyellow",
        "sql.comment": "ansibrightblack",
        "sql.dot-command": "ansimagenta",
        "prompt": "ansicyan",
    }
)

# Words sqlml adds to DuckDB's SQL; sqlglot reads them as plain names.
SQLML_KEYWORDS = ("MODEL", "MODELS", "OPTIONS", "ML", "TRANSFORM", "INPUT", "OUTPUT", "EXPORT")
ML_NAMES = tuple(f"ML.{name}" for name in ML_FUNCTIONS + ML_PREPROCESSING)
_ML_WORDS = frozenset(ML_FUNCTIONS + ML_PREPROCESSING)
_STRINGS = frozenset(
    {TokenType.STRING, TokenType.NATIONAL_STRING, TokenType.RAW_STRING, TokenType.BIT_STRING,
     TokenType.HEX_STRING, TokenType.BYTE_STRING, TokenType.HEREDOC_STRING,
     TokenType.UNICODE_STRING}
)  # fmt: skip
_PLAIN = frozenset({TokenType.VAR, TokenType.IDENTIFIER})
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_TABLE_CONTEXT = frozenset({"FROM", "JOIN", "TABLE", "INTO", "UPDATE", "SUMMARIZE", "DESCRIBE"})


# -- highlighting -------------------------------------------------------------------------


def highlight(text: str) -> list[tuple[str, str]]:
    """(style, text) fragments covering ``text``: keywords, strings, numbers, comments.
    Text that does not tokenize yet (an open string while typing) stays plain."""
    if is_dot_command(text):
        return [("class:sql.dot-command", text)]
    try:
        tokens = Source.of(text).tokens
    except ParseError:
        return [("", text)]
    fragments: list[tuple[str, str]] = []
    position = 0
    previous = None
    for token in tokens:
        gap = text[position : token.start]
        if gap:  # between tokens: blanks, and comments (sqlglot keeps no position for them)
            fragments.append(("" if gap.isspace() else "class:sql.comment", gap))
        fragments.append((_token_style(token, previous), text[token.start : token.end + 1]))
        position = token.end + 1
        previous = token
    if position < len(text):
        rest = text[position:]
        fragments.append(("" if rest.isspace() else "class:sql.comment", rest))
    return fragments


def _token_style(token: Token, previous: Token | None) -> str:
    kind = token.token_type
    if kind in _STRINGS:
        return "class:sql.string"
    if kind == TokenType.NUMBER:
        return "class:sql.number"
    if kind in _PLAIN:
        word = token.text.upper()
        after_dot = previous is not None and previous.token_type == TokenType.DOT
        if kind == TokenType.VAR and (word in SQLML_KEYWORDS or (after_dot and word in _ML_WORDS)):
            return "class:sql.keyword"
        return ""
    return "class:sql.keyword" if _WORD.fullmatch(token.text) else ""


class SqlLexer(Lexer):
    def lex_document(self, document: Document) -> Callable[[int], StyleAndTextTuples]:
        lines: list[StyleAndTextTuples] = [[]]
        for style, text in highlight(document.text):
            for i, part in enumerate(text.split("\n")):
                if i:
                    lines.append([])
                if part:
                    lines[-1].append((style, part))
        return lambda number: lines[number] if number < len(lines) else []


# -- completion ---------------------------------------------------------------------------


def completions(before: str, names: dict[str, list[str]]) -> tuple[int, list[tuple[str, str]]]:
    """What Tab offers for the text before the cursor: (start position, [(text, kind)]).

    ``names`` holds "tables", "columns", "models", "functions", "keywords" and "commands"
    (dot commands), "modes". Matching ignores case; keywords take the case typed."""
    if is_dot_command(before) and "\n" not in before.strip():
        line = before.lstrip()
        if " " not in line:
            return -len(line), _matching(line, [("commands", names["commands"])])
        command, _, argument = line.partition(" ")
        argument = argument.lstrip()
        if " " in argument:
            return 0, []
        choices = {
            ".mode": [("modes", names["modes"])],
            ".timer": [("setting", ["on", "off"])],
            ".describe": [("model", names["models"])],
            ".tables": [("table", names["tables"])],
            ".schema": [("table", names["tables"])],
        }.get(command.lower(), [])
        return -len(argument), _matching(argument, choices)
    word = re.search(r"[A-Za-z0-9_$.]*$", before).group()  # type: ignore[union-attr]
    words = re.findall(r"[A-Za-z_]\w*", before[: len(before) - len(word)])
    previous = words[-1].upper() if words else ""
    if "." in word:
        head, _, tail = word.rpartition(".")
        if head.upper() == "ML":
            fns = [n.removeprefix("ML.") for n in ML_NAMES]
            return -len(tail), _matching(tail, [("ML function", fns)])
        # schema.: the tables and models in that schema; alias.: columns
        inside = head.lower() + "."
        tables, models = (
            [name[len(inside) :] for name in names[kind] if name.lower().startswith(inside)]
            for kind in ("tables", "models")
        )
        if previous == "MODEL":
            groups = [("model", models)]
        elif previous in _TABLE_CONTEXT:
            groups = [("table", tables)]
        else:
            groups = [("column", names["columns"]), ("table", tables), ("model", models)]
        return -len(tail), _matching(tail, groups)
    if previous == "MODEL":
        return -len(word), _matching(word, [("model", names["models"])])
    if not word:
        if previous in _TABLE_CONTEXT:
            return 0, _matching("", [("table", names["tables"])])
        return 0, []
    if previous in _TABLE_CONTEXT:  # a table, or a table function such as read_csv
        groups = [("table", names["tables"])]
    else:
        groups = [("column", names["columns"]), ("table", names["tables"])]
        groups.append(("model", names["models"]))  # model functions: penguin_mass(p)
    groups += [("keyword", names["keywords"]), ("function", names["functions"])]
    return -len(word), _matching(word, groups)


def _matching(prefix: str, groups: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    lowered = prefix.lower()
    seen: set[str] = set()
    found: list[tuple[str, str]] = []
    for kind, candidates in groups:
        for candidate in candidates:
            if not candidate.lower().startswith(lowered):
                continue
            if kind == "keyword" and prefix and prefix == prefix.lower():
                candidate = candidate.lower()
            if candidate.lower() not in seen:
                seen.add(candidate.lower())
                found.append((candidate, kind))
    return found


class SqlCompleter(Completer):
    """Names come from the open database, refreshed after each command."""

    def __init__(self, shell: Shell):
        self.shell = shell
        self.names: dict[str, list[str]] = {}
        self.paths = PathCompleter(expanduser=True)

    def _names(self) -> dict[str, list[str]]:
        if self.shell.changed or not self.names:
            try:
                self.names = self.shell.completion_names()
                con = self.shell.con.duckdb
                keywords = con.sql("SELECT keyword_name FROM duckdb_keywords()").fetchall()
                self.names["keywords"] = sorted(
                    {row[0].upper() for row in keywords} | set(SQLML_KEYWORDS) | set(ML_NAMES)
                )
                self.names["functions"] = [
                    row[0]
                    for row in con.sql(
                        "SELECT DISTINCT function_name FROM duckdb_functions() "
                        "WHERE function_name NOT LIKE '\\_\\_%' ESCAPE '\\' ORDER BY 1"
                    ).fetchall()
                ]
            except (duckdb.Error, sqlml.Error):  # completion never stops typing
                self.names = {}
            self.names.setdefault("commands", list(self.shell.commands))
            self.names.setdefault("modes", list(output.MODES))
            for key in ("tables", "columns", "models", "keywords", "functions"):
                self.names.setdefault(key, [])
        return self.names

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        before = document.text_before_cursor
        line = before.lstrip()
        if is_dot_command(line) and line.split(" ", 1)[0].lower() in (".read", ".open"):
            argument = line.partition(" ")[2].lstrip()
            yield from self.paths.get_completions(Document(argument), complete_event)
            return
        start, found = completions(before, self._names())
        for text, kind in found:
            yield Completion(text, start_position=start, display_meta=kind)


# -- the loop -----------------------------------------------------------------------------


def ready_to_run(text: str) -> bool:
    """Enter runs the buffer: a dot command, a complete statement, or nothing."""
    return is_dot_command(text) or _state(text) in (COMPLETE, EMPTY)


def _key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("enter")
    @bindings.add("c-j")  # what Enter sends when typed ahead while a statement runs
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        state = buffer.complete_state
        if state is not None and state.current_completion is not None:
            buffer.apply_completion(state.current_completion)
            return
        if ready_to_run(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    @bindings.add("escape", "enter")
    def _run_anyway(event: KeyPressEvent) -> None:
        event.current_buffer.validate_and_handle()

    return bindings


def history_path() -> Path:
    configured = os.environ.get(HISTORY_ENV)
    return Path(configured) if configured else Path.home() / ".sqlml_history"


def run_prompt(shell: Shell) -> int:
    """Read and run commands until ``.exit`` or Ctrl-D; return the exit status."""
    shell.out.write(
        f'sqlml {sqlml.__version__} (DuckDB {duckdb.__version__})\nEnter ".help" for usage hints.\n'
    )
    if shell.database == ":memory:":
        shell.out.write(
            "Connected to a transient in-memory database.\n"
            'Use ".open FILENAME" to reopen on a persistent database.\n'
        )
    shell.out.flush()
    session: PromptSession[str] = PromptSession(
        history=FileHistory(str(history_path())),
        lexer=SqlLexer(),
        completer=SqlCompleter(shell),
        complete_while_typing=False,
        style=STYLE,
        multiline=True,
        key_bindings=_key_bindings(),
        prompt_continuation=lambda width, line, wrap: [("class:prompt", CONTINUATION)],
    )
    while True:
        try:
            text = session.prompt([("class:prompt", PROMPT)])
        except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line
            continue
        except EOFError:  # Ctrl-D
            return EXIT_OK
        try:
            shell.run_lines(text.splitlines(), bail=False)
        except ShellExit as e:
            return e.code
        except KeyboardInterrupt:
            shell.say_interrupted()
