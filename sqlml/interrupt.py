"""Ctrl-C while sqlml runs something long: stop the DuckDB query too, not only Python.

Used by the ``sqlml`` shell around each command and by ``sqlml build`` around the build.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from typing import Any


class InterruptGuard:
    """Ctrl-C while a command runs: stop it, and remember that it was stopped.

    Python runs signal handlers only between bytecodes of the main thread, which waits
    inside DuckDB while a query runs. So the signal also goes to a pipe (the interpreter's
    wakeup fd, written from the C signal handler), where a thread reads it and interrupts
    DuckDB; the Python handler then raises KeyboardInterrupt, which also stops Python code
    such as a model's training. ``fired`` tells the caller why the command stopped.
    """

    def __init__(self, interrupt: Callable[[], None]):
        self.fired = False
        self._interrupt = interrupt
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        self.fired = True
        raise KeyboardInterrupt

    def _watch(self, fd: int) -> None:
        while data := os.read(fd, 64):  # empty once the write end is closed
            if signal.SIGINT in data:
                self.fired = True
                with contextlib.suppress(Exception):  # a closed connection runs nothing
                    self._interrupt()

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._watcher = threading.Thread(target=self._watch, args=(self._read,), daemon=True)
        self._watcher.start()
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._previous = signal.signal(signal.SIGINT, self._handle)
        self._installed = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._installed:
            return
        try:
            signal.signal(signal.SIGINT, self._previous)
            signal.set_wakeup_fd(self._previous_fd)
        finally:  # a Ctrl-C landing here still closes the pipe and ends the watcher
            os.close(self._write)
            self._watcher.join()
            os.close(self._read)
