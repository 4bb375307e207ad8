"""Where sqlml's progress and messages go. Library code never prints; it talks to a Console.

A long statement is a *task* (``CREATE MODEL main.m``) made of *phases* (reading features,
fitting, converting to ONNX, checking parity, storing); inside a phase, *progress* counts
iterations, epochs or trials where the estimator reports them.

- :class:`SilentConsole` drops everything (the default when stderr is not a terminal).
- :class:`TerminalConsole` keeps one live line on a terminal (phase, elapsed time, count)
  and ends each task with a one-line summary of its phases; on a stream that is not a
  terminal it writes plain lines instead.
- :class:`NotebookConsole` shows the same as a display area that updates in place in
  Jupyter.

``default_console()`` picks one; ``SQLML_PROGRESS=0`` (or ``SET sqlml_progress = false``
on a connection) silences progress.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

PROGRESS_ENV = "SQLML_PROGRESS"
_OFF = ("0", "false", "off", "no")
_ON = ("1", "true", "on", "yes")


class Console:
    """Interface: tasks, their phases and progress, and warnings."""

    @contextmanager
    def task(self, title: str) -> Iterator[None]:
        """A statement the user waits for, e.g. ``CREATE MODEL main.m``."""
        yield

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        yield

    def progress(self, done: int, total: int, unit: str) -> None:
        """``done`` of ``total`` ``unit`` (iterations, trials, batches) inside a phase."""

    def warn(self, message: str) -> None:
        pass


class SilentConsole(Console):
    pass


class WarningsOnly(Console):
    """A console with its progress turned off (``SET sqlml_progress = false``): warnings
    still reach the user."""

    def __init__(self, inner: Console):
        self.inner = inner

    def warn(self, message: str) -> None:
        self.inner.warn(message)


class _Tracker(Console):
    """Keeps the state every visible console shows: the task, the phase stack with start
    times, the latest count, and the finished phases for the summary."""

    def __init__(self) -> None:
        self.title: str | None = None
        self.task_started = 0.0
        self.phases: list[tuple[str, float]] = []  # open phases, outermost first
        self.count: tuple[int, int, str] | None = None
        self.finished: list[tuple[str, float]] = []  # top-level phases of the task
        self.lock = threading.RLock()

    @contextmanager
    def task(self, title: str) -> Iterator[None]:
        with self.lock:
            nested = self.title is not None
            if not nested:
                self.title, self.task_started, self.finished = title, time.perf_counter(), []
        if nested:  # a task inside a task (a tuning trial, a build node): one line
            yield
            return
        ok = False
        try:
            yield
            ok = True
        finally:
            with self.lock:
                elapsed = time.perf_counter() - self.task_started
                self.task_ended(self.title or title, elapsed, list(self.finished), ok)
                self.title, self.phases, self.count = None, [], None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with self.lock:
            self.phases.append((name, time.perf_counter()))
            self.count = None
            self.changed()
        try:
            yield
        finally:
            with self.lock:
                name, started = self.phases.pop()
                seconds = time.perf_counter() - started
                self.count = None
                if not self.phases:
                    self.finished.append((name, seconds))
                self.phase_ended(name, seconds)

    def progress(self, done: int, total: int, unit: str) -> None:
        with self.lock:
            self.count = (done, total, unit)
            self.changed()

    # -- what a subclass shows --------------------------------------------------------

    def status(self) -> str:
        """The live line: task · phase elapsed · count."""
        now = time.perf_counter()
        parts = [self.title] if self.title else []
        if self.phases:
            name = " > ".join(p[0] for p in self.phases)
            parts.append(f"{name} {now - self.phases[-1][1]:.1f}s")
        if self.count:
            done, total, unit = self.count
            parts.append(f"{done}/{total} {unit}")
        elif self.title:
            parts.append(f"{now - self.task_started:.1f}s")
        return " · ".join(parts)

    @staticmethod
    def summary(title: str, elapsed: float, phases: list[tuple[str, float]], ok: bool) -> str:
        done = "done" if ok else "failed"
        steps = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in phases)
        return f"{title}: {done} in {elapsed:.2f}s" + (f" ({steps})" if steps else "")

    def changed(self) -> None:
        pass

    def phase_ended(self, name: str, seconds: float) -> None:
        pass

    def task_ended(
        self, title: str, elapsed: float, phases: list[tuple[str, float]], ok: bool
    ) -> None:
        pass


class TerminalConsole(_Tracker):
    """Progress on a stream, stderr by default.

    On a terminal (``live``, by default when the stream is a tty) one line is redrawn in
    place, ticking every ``interval`` seconds so the elapsed time moves while scikit-learn
    works; a task ends with its summary line. Elsewhere every phase is a plain line."""

    def __init__(
        self, stream: TextIO | None = None, *, live: bool | None = None, interval: float = 0.2
    ):
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        self.live = _isatty(self.stream) if live is None else live
        self.interval = interval
        self._shown = 0  # width of the live line on screen
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    @contextmanager
    def task(self, title: str) -> Iterator[None]:
        if not self.live or self.title is not None:
            with super().task(title):
                yield
            return
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="sqlml-progress", daemon=True)
        try:
            with super().task(title):
                self._ticker.start()
                yield
        finally:
            self._stop.set()
            self._ticker.join()
            self._ticker = None

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self.lock:
                # The task may have ended (summary written) before this thread is stopped.
                if self.title is not None:
                    self.changed()

    def changed(self) -> None:
        if self.live:
            self._draw("sqlml: " + self.status())
        elif self.count is not None:
            done, total, unit = self.count
            self._line(f"sqlml:   {done} of {total} {unit}")
        elif self.phases:
            self._line(f"sqlml: {self.phases[-1][0]} ...")

    def phase_ended(self, name: str, seconds: float) -> None:
        if self.live:
            self._draw("sqlml: " + self.status())
        else:
            self._line(f"sqlml: {name} done in {seconds:.2f}s")

    def task_ended(
        self, title: str, elapsed: float, phases: list[tuple[str, float]], ok: bool
    ) -> None:
        if self.live:
            self._draw("")
        self._line("sqlml: " + self.summary(title, elapsed, phases, ok))

    def warn(self, message: str) -> None:
        with self.lock:
            if self.live and self._shown:
                self._draw("")
            self._line(f"sqlml: warning: {message}")
            if self.live and self.title:
                self._draw("sqlml: " + self.status())

    def _draw(self, text: str) -> None:
        text = text[: _columns(self.stream) - 1]
        # \r and spaces (not ANSI codes): any terminal, and a log of one, reads right.
        pad = max(self._shown - len(text), 0)
        self.stream.write("\r" + text + " " * pad + ("\r" + text if pad else ""))
        self._shown = len(text)
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


class NotebookConsole(_Tracker):
    """Progress in Jupyter: one display area per task, updated in place, left with the
    summary when the task ends. Updates come from the statement's own thread only (a
    background thread's output may land in another cell)."""

    def __init__(self) -> None:
        super().__init__()
        self._handle: Any = None
        self._last = 0.0

    def changed(self) -> None:
        now = time.perf_counter()
        if self.title is None or now - self._last < 0.1:  # at most ten redraws a second
            return
        self._last = now
        self._show(self._html(self.status(), self._fraction()))

    def task_ended(
        self, title: str, elapsed: float, phases: list[tuple[str, float]], ok: bool
    ) -> None:
        self._show(self._html(self.summary(title, elapsed, phases, ok), None))
        self._handle = None

    def warn(self, message: str) -> None:
        from IPython.display import display

        display({"text/plain": f"sqlml: warning: {message}"}, raw=True)

    def _fraction(self) -> float | None:
        if self.count is None or not self.count[1]:
            return None
        return self.count[0] / self.count[1]

    @staticmethod
    def _html(text: str, fraction: float | None) -> dict[str, str]:
        from html import escape

        bar = "" if fraction is None else f' <progress value="{fraction:.3f}" max="1"></progress>'
        return {"text/plain": text, "text/html": f"<code>sqlml: {escape(text)}</code>{bar}"}

    def _show(self, bundle: dict[str, str]) -> None:
        from IPython.display import display

        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


def progress_setting() -> bool | None:
    """SQLML_PROGRESS as a bool, or None when unset (or not a yes/no word)."""
    setting = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if setting in _OFF:
        return False
    if setting in _ON:
        return True
    return None


def in_notebook() -> bool:
    """Running in a Jupyter kernel (IPython imported, and its shell the kernel's)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def default_console() -> Console:
    """A notebook display in Jupyter, a live line when stderr is a terminal, else silent;
    SQLML_PROGRESS=0 silences it, SQLML_PROGRESS=1 writes lines to stderr anyway."""
    setting = progress_setting()
    if setting is False:
        return SilentConsole()
    if in_notebook():
        return NotebookConsole()
    if setting or _isatty(sys.stderr):
        return TerminalConsole()
    return SilentConsole()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a file
        return False


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 80
