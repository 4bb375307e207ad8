"""sqlml: SQL-first machine learning inside DuckDB.

import sqlml
con = sqlml.connect("shop.duckdb")
con.sql("CREATE MODEL m OPTIONS (model_type='linear_reg', input_label_cols=['y']) AS "
        "SELECT * FROM t")
con.sql("SELECT * FROM ML.EVALUATE(MODEL m)").df()
"""

from typing import Any

from sqlml.connection import Connection, connect
from sqlml.console import Console, SilentConsole, TerminalConsole
from sqlml.errors import (
    ArgumentError,
    CatalogError,
    ColumnNotFound,
    CommandError,
    DataError,
    Error,
    ModelExists,
    ModelFileError,
    ModelNotFound,
    ModelTypeError,
    NameConflict,
    NotFound,
    OptionError,
    ParityError,
    ParseError,
    ProjectError,
    QueryError,
    SchemaNotFound,
    TrainingError,
    UnsupportedType,
)

__version__ = "0.1.0"


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext sqlml``: the ``%sqlml`` and ``%%sqlml`` magics."""
    from sqlml.magics import load

    load(ipython)


__all__ = [
    "ArgumentError",
    "CatalogError",
    "ColumnNotFound",
    "CommandError",
    "Connection",
    "Console",
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
    "SilentConsole",
    "TerminalConsole",
    "TrainingError",
    "UnsupportedType",
    "__version__",
    "connect",
]
