"""sqlml in dbt-duckdb projects.

- ``plugins: [{module: sqlml.dbt}]`` in a dbt-duckdb profile loads :class:`Plugin`: every
  SQL statement dbt sends goes through sqlml, so models can train (``CREATE MODEL``) and
  downstream models can call ``ML.PREDICT(MODEL {{ ref('m') }}, ...)`` and the models'
  functions.
- The dbt package at :func:`package_path` (``python -m sqlml.dbt path``) holds the
  ``sqlml_model`` materialization; add it to the project's ``packages.yml``.

Importing this module stays light: ``Plugin`` (which needs dbt) loads on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["Plugin", "package_path"]


def package_path() -> Path:
    """The directory of the dbt package with the ``sqlml_model`` materialization."""
    return Path(__file__).parent / "package"


def __getattr__(name: str) -> Any:
    # dbt-duckdb looks for a class named Plugin in the module named in the profile.
    if name == "Plugin":
        from sqlml.dbt.plugin import Plugin

        return Plugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
