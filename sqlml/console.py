"""Where sqlml's progress and messages go. Library code never prints; it talks to a Console.

- :class:`SilentConsole` drops everything (the default when stderr is not a terminal).
- :class:`TerminalConsole` writes phases and warnings to a stream (stderr by default).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

PROGRESS_ENV = "SQLML_PROGRESS"


class Console:
    """Interface: phases of long operations, and warnings."""

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        yield

    def progress(self, done: int, total: int, unit: str) -> None:
        """``done`` of ``total`` ``unit`` (iterations, trials, batches) inside a phase."""

    def warn(self, message: str) -> None:
        pass


class SilentConsole(Console):
    pass


class TerminalConsole(Console):
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        self.stream.write(f"sqlml: {name} ...\n")
        self.stream.flush()
        yield
        self.stream.write(f"sqlml: {name} done in {time.perf_counter() - started:.2f}s\n")
        self.stream.flush()

    def progress(self, done: int, total: int, unit: str) -> None:
        self.stream.write(f"sqlml:   {done} of {total} {unit}\n")
        self.stream.flush()

    def warn(self, message: str) -> None:
        self.stream.write(f"sqlml: warning: {message}\n")
        self.stream.flush()


def default_console() -> Console:
    """Terminal output when stderr is a terminal, unless SQLML_PROGRESS=0/false/off."""
    setting = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if setting in ("0", "false", "off", "no"):
        return SilentConsole()
    if setting in ("1", "true", "on", "yes") or sys.stderr.isatty():
        return TerminalConsole()
    return SilentConsole()
