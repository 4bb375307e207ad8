"""The ML.* table functions: what each accepts, and the DuckDB SQL it becomes.

Every function is one :class:`Spec` in ``SPECS``: its handler, whether it takes input rows,
the settings its STRUCT may hold, and the model tasks it applies to. Arguments are checked
here once, with errors that name the function, the model and what is valid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from sqlml import tables
from sqlml.catalog import ModelRecord, quote
from sqlml.errors import ArgumentError, ColumnNotFound, DataError, ModelTypeError, UnsupportedType
from sqlml.families import CLASSIFICATION, DIMENSIONALITY_REDUCTION, REGRESSION
from sqlml.features import matrix, numeric_values
from sqlml.metrics import METRICS, evaluate, explained_variance
from sqlml.options import literal_value
from sqlml.parser import MLFunction, RawSQL, Source
from sqlml.runtime import ModelRuntime, label_arrow_type, output_columns

if TYPE_CHECKING:
    from sqlml.query import QueryExpander

# Rows of the held-out set kept with a classifier for later thresholds, confusion matrices
# and ROC curves without data.
EVALUATION_SAMPLE_ROWS = 10_000


@dataclass
class Call:
    """One ML.<fn>(...) call, its arguments checked."""

    function: str  # "ML.PREDICT"
    record: ModelRecord
    data: str | None  # the input rows as a DuckDB query
    settings: dict[str, Any]
    extra: list[Any]  # other values, e.g. ML.ROC_CURVE's thresholds
    expander: QueryExpander

    @property
    def runtime(self) -> ModelRuntime:
        return self.expander.functions.runtime(self.record)

    def threshold(self) -> float | None:
        value = self.settings.get("threshold")
        if value is None:
            return None
        if self.record.task != CLASSIFICATION or len(self.record.classes or []) != 2:
            what = self.record.task
            if self.record.task == CLASSIFICATION:
                what += " with more than two classes"
            raise ArgumentError(
                f"{self.function}: threshold applies to binary classifiers; model "
                f"{self.record.qualified} is a {self.record.model_type} ({what})"
            )
        if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise ArgumentError(
                f"{self.function}: threshold must be a number in [0, 1], got {value!r}"
            )
        return float(value)

    def scored(
        self, need_label: bool = True
    ) -> tuple[np.ndarray | None, dict[str, np.ndarray], pa.Table]:
        """Score the input rows: (label per row or None, model outputs, the input features).
        Rows with a NULL label are left out when the label is needed."""
        assert self.data is not None
        record = self.record
        columns = self.expander.input_columns(record, self.data, self.function)
        names = {c.name.lower() for c in columns}
        select = [
            f"{sql} AS {quote(f.name)}"
            for sql, f in zip(record.feature_sql(), record.features, strict=True)
        ]
        label = record.label["name"] if record.label else None
        if need_label and label is not None:
            label_sql = (record.transform or {}).get("label_sql") or quote(label)
            inputs = (record.transform or {}).get("label_inputs") or [label]
            missing = [n for n in inputs if n.lower() not in names]
            if missing:
                raise ColumnNotFound(
                    f"{self.function}: the input has no label column {', '.join(missing)}; "
                    f"model {record.qualified} is evaluated against it. Add it to the input"
                )
            select.append(f"{label_sql} AS __sqlml_label")
        table = self.expander.fetch(
            f"SELECT {', '.join(select)} FROM ({self.data}) AS __sqlml_in",
            f"The input of {self.function}(MODEL {record.qualified})",
        )
        y = None
        if need_label and label is not None:
            table, y = _labels(record, table, self.function)
        outputs = self.runtime.run([table.column(f.name) for f in record.features])
        return y, outputs, table


Handler = Callable[[Call], str]


@dataclass(frozen=True)
class Spec:
    handler: Handler
    data: str  # "required", "optional" or "none"
    settings: frozenset[str] = frozenset()
    tasks: frozenset[str] | None = None  # None: every task
    extra: bool = False  # takes values besides TABLE/(query)/STRUCT
    model_types: frozenset[str] | None = None
    needs: str = ""  # what the model must have, in words, for the error
    imported: bool = False  # applies to models imported from ONNX files too


SPECS: dict[str, Spec] = {}


def register(name: str, spec: Spec) -> None:
    SPECS[name] = spec


def call_sql(expander: QueryExpander, source: Source, call: MLFunction) -> str:
    """The DuckDB SQL of one ML.<fn>(...) call."""
    _load()
    name = call.function
    function = f"ML.{name}"
    spec = SPECS[name]
    record = expander.lookup(call.args["model"])
    settings = _settings(call.args.get("params"), function)
    unknown = sorted(set(settings) - spec.settings - {"trial_id"})
    if unknown:
        valid = ", ".join(sorted(spec.settings)) or "none"
        raise ArgumentError(
            f"{function} has no setting {', '.join(unknown)}; its settings: {valid}"
        )
    if "trial_id" in settings:
        from sqlml.tuning import trial_record

        record = trial_record(expander, record, settings.pop("trial_id"), function)
    if "imported" in record.metadata and not spec.imported:
        raise ModelTypeError(
            f"{function} reads what sqlml keeps from training; model {record.qualified} was "
            f"imported from an ONNX file ({record.metadata['imported']['path']})"
        )
    if (spec.tasks is not None and record.task not in spec.tasks) or (
        spec.model_types is not None and record.model_type not in spec.model_types
    ):
        allowed = spec.needs or ", ".join(sorted(spec.model_types or spec.tasks or ()))
        raise ModelTypeError(
            f"{function} applies to {allowed} models; model {record.qualified} is a "
            f"{record.model_type} model"
        )
    extra = [_value(v, function) for v in call.args.get("extra") or []]
    if extra and not spec.extra:
        raise ArgumentError(
            f"{function}(MODEL {record.qualified}, ...) takes TABLE <name>, (<query>) or "
            f"STRUCT(...) after MODEL, not {extra[0]!r}"
        )
    data_arg = call.args.get("input")
    data = None
    if data_arg is not None:
        if spec.data == "none":
            raise ArgumentError(f"{function} takes no input rows; remove the table or query")
        if isinstance(data_arg, RawSQL):
            data = expander.expand_raw(source, data_arg)
        else:
            data = f"SELECT * FROM {data_arg.sql(dialect='duckdb')}"
    elif spec.data == "required":
        raise ArgumentError(
            f"{function}(MODEL {record.qualified}, ...) needs input rows: TABLE <name> or "
            "(<query>) after MODEL"
        )
    return spec.handler(Call(function, record, data, settings, extra, expander))


def _settings(params: exp.Expr | None, function: str) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, exp.Struct):
        raise ArgumentError(f"{function}: settings are written STRUCT(value AS name, ...)")
    settings: dict[str, Any] = {}
    for item in params.expressions:
        if isinstance(item, exp.Alias):
            key, value = item.alias, item.this
        elif isinstance(item, exp.PropertyEQ | exp.EQ):
            key, value = item.this.name, item.expression
        else:
            raise ArgumentError(
                f"{function}: name each setting, as in STRUCT(0.5 AS threshold); "
                f"got {item.sql(dialect='duckdb')}"
            )
        key = key.lower()
        if key in settings:
            raise ArgumentError(
                f"{function}: setting {key} is given twice in STRUCT(...); give it once"
            )
        settings[key] = _value(value, function)
        if settings[key] is None:
            raise ArgumentError(
                f"{function}: setting {key} is NULL; give it a value, or leave it out of "
                "STRUCT(...) for its default"
            )
    return settings


def _value(node: exp.Expr, function: str) -> Any:
    if isinstance(node, exp.Anonymous | exp.Func) and node.name.upper() in (
        "GENERATE_ARRAY",
        "GENERATESERIES",
        "GENERATE_SERIES",
    ):
        start, stop, *step = (literal_value(a, function) for a in node.expressions)
        step_value = step[0] if step else 1
        count = int(np.floor((stop - start) / step_value + 1e-9)) + 1
        return [float(start + i * step_value) for i in range(max(count, 0))]
    try:
        return literal_value(node, function)
    except Exception as e:  # an OptionError about a non-literal
        raise ArgumentError(f"{function}: {e}") from None


def _labels(record: ModelRecord, table: pa.Table, function: str) -> tuple[pa.Table, np.ndarray]:
    """Drop rows with a NULL label; the label as class indices (-1: a class the model never
    saw) or values."""
    label = table.column("__sqlml_label")
    keep = pc.is_valid(label)
    if record.task == REGRESSION:
        keep = pc.and_(keep, pc.invert(pc.is_nan(pc.cast(label, pa.float64()))))
    table = table.filter(pc.fill_null(keep, False))
    if table.num_rows == 0:
        raise DataError(
            f"{function}(MODEL {record.qualified}): no input row has a non-NULL label "
            f"{record.label['name']} to evaluate against"  # type: ignore[index]
        )
    label = table.column("__sqlml_label")
    if record.task != CLASSIFICATION:
        return table, numeric_values(label)
    label_type = label_arrow_type(record.label["type_id"])  # type: ignore[index]
    try:
        label = pc.cast(label, label_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise UnsupportedType(
            f"{function}: label {record.label['name']} cannot be compared with the classes of "  # type: ignore[index]
            f"model {record.qualified} ({record.label['sql_type']}): {e}"  # type: ignore[index]
        ) from None
    codes = pc.index_in(label, value_set=pa.array(record.classes, label_type))
    return table, pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def thresholded(outputs: dict[str, np.ndarray], threshold: float | None) -> dict[str, np.ndarray]:
    """A binary classifier's outputs with the positive class above ``threshold``."""
    if threshold is None:
        return outputs
    return {**outputs, "label": (outputs["probabilities"][:, 1] > threshold).astype(np.int64)}


def evaluate_rows(
    record: ModelRecord, y: np.ndarray | None, outputs: dict[str, np.ndarray], table: pa.Table
) -> dict[str, float | None]:
    """Metrics from the model's outputs on the rows of ``table`` (its features)."""
    parameters = record.metadata.get("parameters") or {}
    if record.task == DIMENSIONALITY_REDUCTION:
        x = matrix(record.features, table)
        return explained_variance(
            x, np.asarray(parameters["components"]), np.asarray(parameters["mean"])
        )
    return evaluate(record.task, outputs, y, parameters.get("centroids"))


def evaluate_table(runtime: ModelRuntime, table: pa.Table) -> dict[str, float | None]:
    """Metrics of a model on rows holding its features and (if supervised) its label in a
    column named after it (training time: the rows sqlml read)."""
    record = runtime.record
    y = None
    if record.label is not None:
        table = table.append_column("__sqlml_label", table.column(record.label["name"]))
        table, y = _labels(record, table, "CREATE MODEL")
    outputs = runtime.run([table.column(f.name) for f in record.features])
    return evaluate_rows(record, y, outputs, table)


def evaluation_sample(runtime: ModelRuntime, table: pa.Table, seed: int) -> dict[str, Any] | None:
    """A classifier's labels and probabilities on (up to EVALUATION_SAMPLE_ROWS of) its
    evaluation rows, kept with the model for later thresholds and curves."""
    record = runtime.record
    if record.task != CLASSIFICATION:
        return None
    if table.num_rows > EVALUATION_SAMPLE_ROWS:
        picked = np.sort(
            np.random.default_rng(seed).choice(
                table.num_rows, EVALUATION_SAMPLE_ROWS, replace=False
            )
        )
        table = table.take(pa.array(picked))
    table = table.append_column("__sqlml_label", table.column(record.label["name"]))  # type: ignore[index]
    table, y = _labels(record, table, "CREATE MODEL")
    outputs = runtime.run([table.column(f.name) for f in record.features])
    return {"y": y.tolist(), "probabilities": np.round(outputs["probabilities"], 12).tolist()}


def _stored(call: Call) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    sample = call.record.metadata.get("evaluation_sample")
    if not sample:
        raise ArgumentError(
            f"{call.function}(MODEL {call.record.qualified}) needs input rows: the model keeps "
            "no evaluation rows"
        )
    probabilities = np.asarray(sample["probabilities"], dtype=np.float64)
    outputs = {"probabilities": probabilities, "label": probabilities.argmax(axis=1)}
    return np.asarray(sample["y"], dtype=np.int64), outputs


def _metrics_sql(record: ModelRecord, metrics: dict[str, float | None]) -> str:
    names = METRICS[record.task]
    return tables.table_sql([(n, "DOUBLE") for n in names], [[metrics.get(n) for n in names]])


# -- ML.PREDICT ---------------------------------------------------------------------------


def predict(call: Call) -> str:
    record, data = call.record, call.data
    assert data is not None
    call.expander.input_columns(record, data, call.function)
    sql = call.expander.functions.predict_sql(record, data)
    threshold = call.threshold()
    names = [name for name, _ in output_columns(record)]
    if threshold is not None:
        from sqlml.compiler import literal

        negative, positive = (literal(c, record.label["output_type"]) for c in record.classes)  # type: ignore[index, union-attr]
        probs, label = quote(names[1]), quote(names[0])
        sql = (
            f"(SELECT * REPLACE (CASE WHEN {probs}[2].prob > {threshold!r} THEN {positive} "
            f"ELSE {negative} END AS {label}) FROM {sql})"
        )
    keep = call.settings.get("keep_original_columns", True)
    if not isinstance(keep, bool):
        raise ArgumentError(f"{call.function}: keep_original_columns is TRUE or FALSE")
    if not keep:
        sql = f"(SELECT {', '.join(quote(n) for n in names)} FROM {sql})"
    return sql


# -- ML.EVALUATE --------------------------------------------------------------------------


def evaluate_call(call: Call) -> str:
    record = call.record
    if record.task not in METRICS:
        raise ModelTypeError(
            f"ML.EVALUATE has no metrics for {record.model_type} models; use "
            "ML.DETECT_ANOMALIES to score rows"
        )
    threshold = call.threshold()
    if call.data is None:
        if not record.metadata["metrics"]:
            raise ArgumentError(
                f"ML.EVALUATE(MODEL {record.qualified}) needs rows to evaluate on: the model "
                "was imported, so sqlml keeps no evaluation of it. Add TABLE <name> or (<query>)"
            )
        if threshold is None:
            return _metrics_sql(record, record.metadata["metrics"])
        y, outputs = _stored(call)
        table = None
    else:
        y, outputs, table = call.scored()
    return _metrics_sql(record, evaluate_rows(record, y, thresholded(outputs, threshold), table))


# -- ML.CONFUSION_MATRIX and ML.ROC_CURVE ------------------------------------------------


def _classified(call: Call) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if call.data is None:
        return _stored(call)
    y, outputs, _ = call.scored()
    assert y is not None
    return y, outputs


def confusion_matrix(call: Call) -> str:
    record = call.record
    y, outputs = _classified(call)
    predicted = thresholded(outputs, call.threshold())["label"]
    classes = record.classes or []
    label_type = record.label["output_type"]  # type: ignore[index]
    columns = [("expected_label", label_type)] + [(_class_column(c), "BIGINT") for c in classes]
    rows = [
        [expected] + [int(np.sum((y == i) & (predicted == j))) for j in range(len(classes))]
        for i, expected in enumerate(classes)
    ]
    return tables.table_sql(columns, rows)


def _class_column(value: Any) -> str:
    """A class's column: its label as text ("_" for the empty string, which DuckDB cannot
    name a column)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) or "_"


def roc_curve(call: Call) -> str:
    binary_only(call)
    y, outputs = _classified(call)
    known = y >= 0
    positive = y[known] == 1
    score = outputs["probabilities"][known, 1]
    if len(call.extra) > 1 or (call.extra and not isinstance(call.extra[0], list)):
        raise ArgumentError(
            "ML.ROC_CURVE takes its thresholds as one array, e.g. [0.3, 0.5, 0.7] or "
            "GENERATE_ARRAY(0.1, 0.9, 0.1)"
        )
    if call.extra:
        thresholds = sorted({float(t) for t in call.extra[0]})
    else:
        # About a hundred points, at the percentiles of the predicted probabilities.
        thresholds = sorted({float(v) for v in np.quantile(score, np.linspace(0, 1, 101))})
    rows = []
    for t in thresholds:
        predicted = score > t
        tp = int(np.sum(predicted & positive))
        fp = int(np.sum(predicted & ~positive))
        tn = int(np.sum(~predicted & ~positive))
        fn = int(np.sum(~predicted & positive))
        recall = tp / (tp + fn) if tp + fn else None
        fpr = fp / (fp + tn) if fp + tn else None
        rows.append([t, recall, fpr, tp, fp, tn, fn])
    columns = [
        ("threshold", "DOUBLE"),
        ("recall", "DOUBLE"),
        ("false_positive_rate", "DOUBLE"),
        ("true_positives", "BIGINT"),
        ("false_positives", "BIGINT"),
        ("true_negatives", "BIGINT"),
        ("false_negatives", "BIGINT"),
    ]
    return tables.table_sql(columns, rows)


_LOADED = False


def _load() -> None:
    """Register the functions, the core ones here and the others from their modules."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    supervised = frozenset({REGRESSION, CLASSIFICATION})
    register(
        "PREDICT",
        Spec(
            predict,
            "required",
            frozenset({"threshold", "keep_original_columns"}),
            imported=True,
        ),
    )
    register(
        "EVALUATE",
        Spec(
            evaluate_call,
            "optional",
            frozenset({"threshold"}),
            frozenset(METRICS),
            needs="regression, classification, kmeans, pca and isolation_forest",
            imported=True,
        ),
    )
    register(
        "CONFUSION_MATRIX",
        Spec(confusion_matrix, "optional", frozenset({"threshold"}), frozenset({CLASSIFICATION}),
             needs="classifier", imported=True),
    )  # fmt: skip
    register(
        "ROC_CURVE",
        Spec(roc_curve, "optional", frozenset(), frozenset({CLASSIFICATION}), extra=True,
             needs="binary classifier", imported=True),
    )  # fmt: skip
    from sqlml import anomaly, explain, inspection, transform, tuning

    for module in (anomaly, explain, inspection, transform, tuning):
        module.register_functions(register, supervised)


def binary_only(call: Call) -> None:
    if len(call.record.classes or []) != 2:
        raise ModelTypeError(
            f"{call.function} applies to binary classifiers; model {call.record.qualified} "
            f"has {len(call.record.classes or [])} classes"
        )
