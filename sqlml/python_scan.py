"""Python variables in SQL: ``SELECT * FROM df`` where ``df`` is the caller's DataFrame.

DuckDB looks a name it cannot find in the catalog up among the variables of the Python
frame that runs the SQL (pandas and polars DataFrames, Arrow tables, relations, ...). When
sqlml runs SQL for its caller, that frame is sqlml's own, where the caller's variables are
not. So the public entry points note the caller's namespace (:func:`from_caller`; the
magics give the notebook's), and SQL that may name the caller's variables is run through
:func:`run`, from a frame whose variables are the caller's: DuckDB finds exactly what it
would have found had the caller run the SQL.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_namespace: ContextVar[tuple[dict[str, Any], Mapping[str, Any]] | None] = ContextVar(
    "sqlml_python_scan", default=None
)
# Evaluated with the caller's globals and (a copy of) its locals: DuckDB's lookup reads the
# frame of this expression.
_CALL = compile("__sqlml_call(*__sqlml_args, **__sqlml_kwargs)", "<sqlml>", "eval")


@contextmanager
def namespace(globals_: dict[str, Any], locals_: Mapping[str, Any]) -> Iterator[None]:
    """SQL run through :func:`run` inside sees these variables (unless already set)."""
    if _namespace.get() is not None:  # nested: the outermost caller's
        yield
        return
    token = _namespace.set((globals_, locals_))
    try:
        yield
    finally:
        _namespace.reset(token)


@contextmanager
def from_caller() -> Iterator[None]:
    """Note the variables of the first frame up the stack outside sqlml."""
    if _namespace.get() is not None:
        yield
        return
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in (
        "sqlml",
        "contextlib",
    ):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        yield
        return
    with namespace(frame.f_globals, frame.f_locals):
        del frame  # no reference cycle through the frame
        yield


def run(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call(*args, **kwargs)``, a DuckDB method (DuckDB reads the first frame outside its
    own code: this call's), from a frame with the noted caller's variables, if any."""
    noted = _namespace.get()
    if noted is None:
        return call(*args, **kwargs)
    globals_, locals_ = noted
    frame_locals = {**locals_, "__sqlml_call": call, "__sqlml_args": args, "__sqlml_kwargs": kwargs}
    return eval(_CALL, globals_, frame_locals)
