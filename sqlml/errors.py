"""The exceptions sqlml raises.

Everything derives from :class:`Error`; each subclass also inherits the builtin a Python
caller would reach for (``ValueError`` for bad input, ``LookupError`` for missing things),
so ``except ValueError`` keeps working for code that does not know sqlml.
"""

from __future__ import annotations


class Error(Exception):
    """Root of every error sqlml raises while running an ML statement."""


class ParseError(Error, ValueError):
    """An ML statement that does not parse. Carries the 1-based line and column."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None):
        if line is not None:
            message = f"{message} (line {line}, column {col})"
        super().__init__(message)
        self.line = line
        self.col = col


class OptionError(Error, ValueError):
    """An unknown OPTIONS key, an unknown model_type, or a value of the wrong type or range."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


class NotFound(Error, LookupError):
    """Something a statement names does not exist."""


class ModelNotFound(NotFound):
    """A statement names a model that is not in the catalog."""


class SchemaNotFound(NotFound):
    """CREATE MODEL names a schema that does not exist."""


class ArgumentError(Error, ValueError):
    """A bad argument to an ML function: a missing table, an unknown setting, ..."""


class ModelTypeError(Error, TypeError):
    """An ML function applied to a model of a type it does not apply to."""


class ModelExists(Error, ValueError):
    """CREATE MODEL over an existing model without OR REPLACE or IF NOT EXISTS."""


class NameConflict(Error, ValueError):
    """A model name that is already taken by a function or macro."""


class ColumnNotFound(NotFound):
    """A column the model needs (label or feature) is missing from a query."""


class UnsupportedType(Error, TypeError):
    """A column whose SQL type sqlml cannot use as a feature or label."""


class DataError(Error, ValueError):
    """The rows given cannot train or evaluate the model: none, no label values, one class..."""


class QueryError(Error, RuntimeError):
    """DuckDB failed while running a query on behalf of an ML statement.

    The DuckDB error is kept as ``__cause__`` and its message is repeated.
    """


class TrainingError(Error, RuntimeError):
    """The estimator or the ONNX converter failed."""


class ParityError(Error, ArithmeticError):
    """The ONNX model disagrees with the scikit-learn model it was converted from."""


class ModelFileError(Error, ValueError):
    """An ONNX file to import that is missing, not valid ONNX, or unsafe; or an export
    that cannot be written."""


class CatalogError(Error, RuntimeError):
    """The catalog inside the database file is unreadable or from an unknown format."""


class CommandError(Error, ValueError):
    """A shell dot command used wrongly: unknown, a bad argument, an unreadable file."""


class ProjectError(Error, ValueError):
    """A ``sqlml build`` project that cannot be run: a file that is not one CREATE
    statement, two files making the same name, a cycle, an unknown --select name."""


__all__ = [
    "ArgumentError",
    "CatalogError",
    "ColumnNotFound",
    "CommandError",
    "DataError",
    "Error",
    "ModelExists",
    "ModelFileError",
    "ModelNotFound",
    "ModelTypeError",
    "NameConflict",
    "NotFound",
    "OptionError",
    "ParityError",
    "ParseError",
    "ProjectError",
    "QueryError",
    "SchemaNotFound",
    "TrainingError",
    "UnsupportedType",
]
