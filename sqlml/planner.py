"""CREATE MODEL syntax tree -> a checked training plan.

Everything that can be wrong with a CREATE MODEL statement is found here, before any row
is read or anything is written: the options, the model name, the label, the feature types.
The feature query is bound by DuckDB (DESCRIBE) but not run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb

from sqlml import families, python_scan
from sqlml.catalog import quote
from sqlml.errors import (
    CatalogError,
    ColumnNotFound,
    DataError,
    OptionError,
    ParseError,
    QueryError,
    UnsupportedType,
)
from sqlml.families import CLASSIFICATION, IMPORTED, REGRESSION, Family
from sqlml.features import (
    CATEGORICAL_TYPES,
    INTEGER_TYPES,
    NUMERIC_TYPES,
    Feature,
    type_id,
)
from sqlml.options import HParam, literal_value, resolve
from sqlml.parser import CreateModel, Source, placeholders

CLASSIFICATION_LABEL_TYPES = INTEGER_TYPES | CATEGORICAL_TYPES


@dataclass
class Column:
    name: str
    sql_type: str


@dataclass
class TrainingPlan:
    schema: str
    name: str
    replace: bool
    if_not_exists: bool
    family: Family
    options: dict[str, Any]  # every option, defaults filled in
    given: dict[str, Any]  # the options as written
    training_sql: str  # the AS query, as written
    query: str  # what DuckDB runs (ML calls inside expanded)
    label: dict[str, str] | None  # name, sql_type, type_id, output_type
    features: list[Feature]
    transform: dict[str, Any] | None = None  # the fitted TRANSFORM (see transform.py)
    split_column: str | None = None  # data_split_col, read but never a feature
    imported: Any = None  # model_type 'onnx': the file read (onnx_import.Imported)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def task(self) -> str:
        """The family's task; an imported sqlml export keeps the task it had."""
        if self.imported is not None and self.imported.sqlml is not None:
            return self.imported.sqlml["task"]
        return self.family.task

    def summary(self) -> dict[str, Any]:
        """A stable, readable form (the planner's golden files)."""
        return {
            "model": self.qualified,
            "replace": self.replace,
            "if_not_exists": self.if_not_exists,
            "model_type": self.family.model_type,
            "task": self.family.task,
            "options": self.options,
            "label": self.label,
            "features": [
                {"name": f.name, "sql_type": f.sql_type, "kind": f.kind, "parts": f.parts}
                for f in self.features
            ],
            "query": self.query,
            "transform": self.transform,
            "split_column": self.split_column,
        }


def plan(
    statement: CreateModel,
    con: duckdb.DuckDBPyConnection,
    source: Source,
    expand: Callable[[Any], str],
) -> TrainingPlan:
    """``source`` is the script the statement comes from; ``expand`` turns its RawSQL into
    runnable DuckDB SQL (ML calls inside expanded)."""
    table = statement.this
    schema = table.db or con.execute("SELECT current_schema()").fetchall()[0][0]
    name = table.name
    qualified = f"{schema}.{name}"
    _check_writable(con, qualified)

    given: dict[str, Any] = {}
    for option in statement.args.get("options") or []:
        key = option.this.name.lower()
        if key in given:
            raise OptionError(f"Option {key!r} is given twice for model {qualified}", key)
        given[key] = literal_value(option.expression, key)
    if "model_type" not in given:
        raise OptionError(
            f"CREATE MODEL {qualified} needs OPTIONS (model_type = ...). Valid model types: "
            + ", ".join(f.model_type for f in families.all_families()),
            "model_type",
        )
    family = families.get(given["model_type"])
    options = resolve(given, family.options, family.model_type, family.unsupported)
    options["model_type"] = family.model_type
    tuned = [k for k, v in options.items() if isinstance(v, HParam)]
    if not family.supervised and (tuned or options.get("num_trials", 1) > 1):
        # Trials are ranked on held-out rows, and these model types train on every row.
        raise OptionError(
            f"Model {qualified}: sqlml tunes supervised models only (each trial is scored on "
            f"held-out rows; {family.model_type} trains on every row). Remove num_trials and "
            "give single values",
            tuned[0] if tuned else "num_trials",
        )
    _check_tuning(options, qualified)
    if options.get("enable_global_explain"):
        from sqlml.explain import explainable

        if not explainable(family.model_type):
            raise OptionError(
                "enable_global_explain: sqlml explains linear_reg, logistic_reg, boosted tree "
                f"and random forest models, not {family.model_type}; remove the option",
                "enable_global_explain",
            )

    if options.get("inference") == "sql" and family.compile_sql is None:
        raise OptionError(
            f"inference = 'sql': {family.model_type} has no SQL form (model {qualified}); "
            "use 'auto' or 'onnx'",
            "inference",
        )
    if options.get("inference") == "native":
        _check_native(options, family, qualified)

    raw = statement.args.get("query")
    if family.task == IMPORTED:
        return _plan_import(statement, schema, name, family, options, given)
    if raw is None:  # the parser already refuses this; kept for syntax trees built by hand
        raise ParseError(
            f"CREATE MODEL {qualified} needs its training data: add AS <query> after OPTIONS"
        )
    query = expand(raw)
    placed = source.newlines_before(raw.args["start"]) + query  # DuckDB's LINE n: the script's
    columns = describe_query(con, placed, f"The training query of model {qualified}")
    _check_unique(columns, qualified)

    split_column = _split_column(options, columns, qualified)
    labels = options.get("input_label_cols") or []
    if family.supervised and len(labels) != 1:
        raise OptionError(
            f"input_label_cols of model {qualified} must name exactly one column, got {labels}",
            "input_label_cols",
        )
    transform_meta = None
    if statement.args.get("transform") is not None:
        from sqlml import transform

        # The split column is read from the query, never a feature: * leaves it out.
        fitted = [c for c in columns if split_column is None or c.name != split_column.name]
        items = transform.fit(con, source, statement.args["transform"], query, fitted, qualified)
        outputs = describe_query(
            con, transform.transformed_query(items, query), f"The TRANSFORM of model {qualified}"
        )
        _check_unique(outputs, qualified)
        if split_column is not None and _find(outputs, split_column.name) is not None:
            raise OptionError(
                f"data_split_col {split_column.name!r} of model {qualified} is also an output "
                "of its TRANSFORM; the split is read from the query, before the TRANSFORM, "
                f"and is never a feature: leave {split_column.name} out of the TRANSFORM list",
                "data_split_col",
            )
        label_output = _find(outputs, labels[0]) if labels else None
        transform_meta = transform.stored(
            items, outputs, label_output.name if label_output else None, columns
        )
        if split_column is not None:  # read for the split, never a feature
            items = [*items, transform.Item(split_column.name, quote(split_column.name))]
            outputs = [*outputs, split_column]
        query, columns = transform.transformed_query(items, query), outputs

    label: dict[str, str] | None = None
    feature_columns = [c for c in columns if split_column is None or c.name != split_column.name]
    if family.supervised:
        label_column = _find(feature_columns, labels[0])
        if label_column is None:
            if "input_label_cols" not in given:
                how = "Name the label with OPTIONS (input_label_cols = ['...'])"
            elif transform_meta:
                how = "Fix input_label_cols, or pass the label through the TRANSFORM list"
            else:
                how = "Fix input_label_cols or add the column to the query"
            where = "TRANSFORM output" if transform_meta else "training query"
            raise ColumnNotFound(
                f"Label column {labels[0]!r} of model {qualified} is not in the {where}; its "
                f"columns are: {', '.join(c.name for c in columns)}. {how}"
            )
        label = _label(label_column, family, qualified)
        feature_columns = [c for c in feature_columns if c is not label_column]
    if not feature_columns:
        raise DataError(
            f"The training query of model {qualified} has no feature columns besides the "
            "label; select the columns the model should learn from"
        )
    features = [Feature.from_column(c.name, c.sql_type, model=qualified) for c in feature_columns]
    return TrainingPlan(
        schema=schema,
        name=name,
        replace=bool(statement.args.get("replace")),
        if_not_exists=bool(statement.args.get("exists")),
        family=family,
        options=options,
        given=given,
        training_sql=raw.text,
        query=query,
        label=label,
        features=features,
        transform=transform_meta,
        split_column=split_column.name if split_column else None,
    )


def _check_writable(con: duckdb.DuckDBPyConnection, qualified: str) -> None:
    """A model is stored in the current database: refuse a read-only one before anything
    is read or trained."""
    [(database, read_only)] = con.execute(
        "SELECT database_name, readonly FROM duckdb_databases() "
        "WHERE database_name = current_database()"
    ).fetchall()
    if read_only:
        raise CatalogError(
            f"Cannot create model {qualified}: database {database} is open read-only, and a "
            "model is stored in it. Open it with read_only=False (sqlml.connect(path)) to "
            "train models; a read-only connection can still score them"
        )


def _plan_import(
    statement: CreateModel,
    schema: str,
    name: str,
    family: Family,
    options: dict[str, Any],
    given: dict[str, Any],
) -> TrainingPlan:
    """model_type 'onnx': the file is read and checked now; nothing is trained."""
    from sqlml import onnx_import

    qualified = f"{schema}.{name}"
    if statement.args.get("query") is not None or statement.args.get("transform") is not None:
        raise OptionError(
            f"model_type 'onnx' imports a trained model: remove the AS <query> (and TRANSFORM) "
            f"from CREATE MODEL {qualified}",
            "model_type",
        )
    if not options.get("model_path"):
        raise OptionError(
            "model_type 'onnx' needs model_path, the ONNX file to import: OPTIONS "
            "(model_type = 'onnx', model_path = 'path/model.onnx')",
            "model_path",
        )
    imported = onnx_import.read(options["model_path"], qualified)
    return TrainingPlan(
        schema=schema,
        name=name,
        replace=bool(statement.args.get("replace")),
        if_not_exists=bool(statement.args.get("exists")),
        family=family,
        options=options,
        given=given,
        training_sql="",
        query="",
        label=onnx_import.label(imported),
        features=onnx_import.features(imported),
        transform=onnx_import.transform(imported),
        imported=imported,
    )


def _split_column(options: dict[str, Any], columns: list[Column], qualified: str) -> Column | None:
    """The column data_split_method 'custom' or 'seq' splits by (never a feature)."""
    method = options.get("data_split_method")
    wanted = options.get("data_split_col")
    if method not in ("custom", "seq"):
        if wanted is not None:
            raise OptionError(
                "data_split_col is used by data_split_method 'custom' or 'seq'; set one, or "
                "remove data_split_col",
                "data_split_col",
            )
        return None
    if wanted is None:
        raise OptionError(
            f"data_split_method '{method}' needs data_split_col, the column to split by",
            "data_split_col",
        )
    column = _find(columns, wanted)
    if column is None:
        raise ColumnNotFound(
            f"data_split_col {wanted!r} of model {qualified} is not in the training query; "
            f"its columns are: {', '.join(c.name for c in columns)}"
        )
    if method == "custom" and type_id(column.sql_type) != "boolean":
        raise UnsupportedType(
            f"data_split_col {column.name!r} is {column.sql_type}; data_split_method "
            "'custom' needs a BOOLEAN column, TRUE for the evaluation rows"
        )
    if method == "custom" and options.get("data_split_test_fraction"):
        raise OptionError(
            "data_split_test_fraction does not apply to data_split_method 'custom'",
            "data_split_test_fraction",
        )
    return column


def _check_native(options: dict[str, Any], family: Family, qualified: str) -> None:
    """inference = 'native' where it cannot apply, refused before training."""
    from sqlml.native import MAX_DEPTH

    if family.native is None:
        raise OptionError(
            "inference = 'native' scores tree ensembles (boosted_tree_* and random_forest_*), "
            f"not {family.model_type} (model {qualified}); use 'auto', 'sql' or 'onnx'",
            "inference",
        )
    depth = options.get("max_tree_depth")
    if isinstance(depth, int) and depth > MAX_DEPTH:
        raise OptionError(
            f"inference = 'native' takes trees up to {MAX_DEPTH} levels deep, and model "
            f"{qualified} has max_tree_depth = {depth}; set max_tree_depth to {MAX_DEPTH} or "
            "less, or use inference = 'auto' or 'onnx'",
            "max_tree_depth",
        )


def _check_tuning(options: dict[str, Any], qualified: str) -> None:
    tuned = [k for k, v in options.items() if isinstance(v, HParam)]
    trials = options.get("num_trials", 1)
    if tuned and trials < 2:
        raise OptionError(
            f"{', '.join(tuned)} of model {qualified} is a HPARAM_RANGE or HPARAM_CANDIDATES: "
            "set num_trials to 2 or more to tune it, or give a single value",
            tuned[0],
        )
    if trials > 1 and not tuned:
        raise OptionError(
            f"num_trials = {trials} but model {qualified} tunes nothing: give a hyperparameter "
            "as HPARAM_RANGE(low, high) or HPARAM_CANDIDATES([...])",
            "num_trials",
        )


def describe_query(con: duckdb.DuckDBPyConnection, query: str, what: str) -> list[Column]:
    """The result columns of a query, bound by DuckDB but not run (its parameters, if any,
    NULL: the columns do not depend on their values)."""
    try:
        rows = python_scan.run(con.execute, f"DESCRIBE {query}", placeholders(query)).fetchall()
    except duckdb.Error as e:
        raise QueryError(f"{what} failed: {e}") from e
    return [Column(row[0], row[1]) for row in rows]


def _find(columns: list[Column], name: str) -> Column | None:
    for column in columns:
        if column.name.lower() == name.lower():
            return column
    return None


def _check_unique(columns: list[Column], qualified: str) -> None:
    seen: set[str] = set()
    for column in columns:
        key = column.name.lower()
        if key in seen:
            raise DataError(
                f"The training query of model {qualified} returns two columns named "
                f"{column.name!r}; give them distinct aliases"
            )
        seen.add(key)


def _label(column: Column, family: Family, qualified: str) -> dict[str, str]:
    tid = type_id(column.sql_type)
    if family.task == REGRESSION and tid not in NUMERIC_TYPES:
        raise UnsupportedType(
            f"Label {column.name!r} of model {qualified} is {column.sql_type}, but "
            f"{family.model_type} predicts numbers. Use a numeric label, or a classifier "
            "such as logistic_reg"
        )
    if family.task == CLASSIFICATION and tid not in CLASSIFICATION_LABEL_TYPES:
        raise UnsupportedType(
            f"Label {column.name!r} of model {qualified} is {column.sql_type}; "
            f"{family.model_type} needs a VARCHAR, BOOLEAN, ENUM or integer label. Cast it, "
            "or use a regression model for a continuous label"
        )
    output_type = "DOUBLE"
    if family.task == CLASSIFICATION:
        output_type = "VARCHAR" if tid == "enum" else column.sql_type
    return {
        "name": column.name,
        "sql_type": column.sql_type,
        "type_id": tid,
        "output_type": output_type,
    }
