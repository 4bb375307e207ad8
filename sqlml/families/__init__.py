"""The registry of model families: model_type -> estimator builder, typed options, ONNX settings.

A new family is one :class:`Family` passed to :func:`register`; nothing else in sqlml
lists model types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlml.errors import OptionError
from sqlml.options import Option

REGRESSION = "regression"
CLASSIFICATION = "classification"
CLUSTERING = "clustering"
DIMENSIONALITY_REDUCTION = "dimensionality_reduction"
ANOMALY_DETECTION = "anomaly_detection"
IMPORTED = "imported"  # an ONNX file from elsewhere: its own inputs and outputs

# The metric SHOW MODELS shows for each task, and whether larger is better.
KEY_METRICS = {
    REGRESSION: "r2_score",
    CLASSIFICATION: "roc_auc",
    CLUSTERING: "davies_bouldin_index",
    DIMENSIONALITY_REDUCTION: "total_explained_variance_ratio",
    ANOMALY_DETECTION: "anomaly_rate",
    IMPORTED: "",  # nothing to measure it by: it was not trained here
}


@dataclass(frozen=True)
class FitContext:
    """What a builder may need to know about the training data."""

    rows: int
    random_seed: int
    n_classes: int | None = None
    # Loss of the constant model (half variance, or the entropy of the class prior):
    # min_rel_progress is relative to it.
    baseline_loss: float = 1.0
    model: str | None = None  # schema.name, for the errors
    # Columns of the model matrix (categories counted on the training rows), computed when
    # called; None where unknown.
    width: Callable[[], int] | None = None


@dataclass(frozen=True)
class Family:
    model_type: str
    task: str
    description: str
    options: tuple[Option, ...]
    build: Callable[[Mapping[str, Any], FitContext], Any]
    # Whether numeric features are standardized (may depend on the options).
    standardize: Callable[[Mapping[str, Any]], bool]
    # onnxruntime runs tree ensembles on float32 only; everything else runs on doubles.
    float32: bool = False
    # BigQuery ML options this family knows of but sqlml cannot honour, with the reason.
    unsupported: Mapping[str, str] = field(default_factory=dict)
    # The fitted estimator's parameters as JSON (stored with the model; the SQL compiler
    # and the explanations read them).
    parameters: Callable[[Any], dict[str, Any]] | None = None
    # The model as SQL (see compiler.py): (parameters, features) -> raw scores from feature
    # arguments, and the link from raw scores to probabilities. None: ONNX only.
    compile_sql: Callable[[Mapping[str, Any], list[Any]], tuple[Any, str | None]] | None = None
    # Whether SQL beats onnxruntime for these parameters (trees: only small ensembles).
    sql_pays: Callable[[Mapping[str, Any]], bool] = lambda parameters: True
    # Why the native tree scorer (native.py) cannot score these parameters, None when it
    # can; the field None: the family has no native form.
    native: Callable[[Mapping[str, Any]], str | None] | None = None
    # An estimator with partial_fit, for OPTIONS (streaming = TRUE); None: not supported.
    build_incremental: Callable[[Mapping[str, Any], FitContext], Any] | None = None
    # A regressor that learns better on a standardized label: the trainer fits it on
    # (y - mean) / scale, then this folds mean and scale into the fitted estimator
    # (estimator, mean, scale), which then predicts y itself.
    unscale_label: Callable[[Any, float, float], None] | None = None
    # Mends skl2onnx's graph of the fitted estimator in place, where the converter loses
    # something the family's other scorers keep (estimator, onnx.ModelProto).
    mend_onnx: Callable[[Any, Any], None] | None = None

    @property
    def key_metric(self) -> str:
        return KEY_METRICS[self.task]

    @property
    def supervised(self) -> bool:
        return self.task in (REGRESSION, CLASSIFICATION)


REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    if family.model_type in REGISTRY:
        raise ValueError(f"model_type {family.model_type!r} is registered twice")
    REGISTRY[family.model_type] = family
    return family


def get(model_type: Any) -> Family:
    _load_builtins()
    if not isinstance(model_type, str) or model_type.lower() not in REGISTRY:
        raise OptionError(
            f"Unknown model_type {model_type!r}. Valid model types: " + ", ".join(sorted(REGISTRY)),
            "model_type",
        )
    return REGISTRY[model_type.lower()]


def all_families() -> list[Family]:
    _load_builtins()
    return [REGISTRY[name] for name in sorted(REGISTRY)]


def _load_builtins() -> None:
    # The built-in families register themselves on import, like plugins would.
    from sqlml.families import (  # noqa: F401
        dnn,
        imported,
        isolation_forest,
        kmeans,
        linear,
        pca,
        trees,
    )


# -- options every family of a task shares ------------------------------------------------

SUPERVISED_OPTIONS: tuple[Option, ...] = (
    Option("model_type", "str", help="the model family"),
    Option(
        "input_label_cols",
        "str_list",
        ["label"],
        "the label column (one); default: the column named label",
    ),
    Option(
        "data_split_method",
        "str",
        "auto_split",
        "how evaluation rows are held out",
        choices=("auto_split", "random", "custom", "seq", "no_split"),
    ),
    Option(
        "data_split_col",
        "str",
        None,
        "'custom': a BOOLEAN column, TRUE for evaluation rows; 'seq': the column to order by",
    ),
    Option(
        "data_split_test_fraction",
        "float",
        0.0,
        "fraction of rows held out as a test set, on which the final metrics are computed",
        minimum=0.0,
        maximum=1.0,
    ),
    Option(
        "enable_global_explain",
        "bool",
        False,
        "compute global feature attributions at training (ML.GLOBAL_EXPLAIN)",
    ),
    Option(
        "data_split_eval_fraction",
        "float",
        0.2,
        "fraction of rows held out by data_split_method='random'",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
    ),
    Option("random_seed", "int", 0, "seed for the split and the estimator", minimum=0),
)

CLUSTERING_OPTIONS: tuple[Option, ...] = (
    Option("model_type", "str", help="the model family"),
    Option("random_seed", "int", 0, "seed for the estimator", minimum=0),
)

TUNING_OPTIONS: tuple[Option, ...] = (
    Option("num_trials", "int", 1, "hyperparameter tuning trials", minimum=1, maximum=1000),
    Option("max_parallel_trials", "int", 1, "trials trained at once", minimum=1, maximum=64),
    Option(
        "hparam_tuning_algorithm",
        "str",
        "vizier_default",
        "vizier_default (sqlml: a Parzen-estimator search), random_search or grid_search",
        choices=("vizier_default", "random_search", "grid_search"),
    ),
    Option(
        "hparam_tuning_objectives",
        "str_list",
        None,
        "the metric the trials are ranked by; default: the model type's key metric",
    ),
)

CLASS_WEIGHT_OPTIONS: tuple[Option, ...] = (
    Option(
        "auto_class_weights",
        "bool",
        False,
        "weigh classes inversely to their frequency",
    ),
    Option(
        "class_weights",
        "weights",
        None,
        "a weight per label, as [STRUCT('label', weight), ...]",
    ),
)

INFERENCE_OPTION = Option(
    "inference",
    "str",
    "auto",
    "how the model scores: 'sql' (plain DuckDB SQL), 'native' (tree ensembles compiled to "
    "machine code), 'onnx' (onnxruntime), or 'auto': the fastest that agrees with ONNX",
    choices=("auto", "sql", "native", "onnx"),
)
SUPERVISED_OPTIONS += (INFERENCE_OPTION, *TUNING_OPTIONS)
CLUSTERING_OPTIONS += (INFERENCE_OPTION, *TUNING_OPTIONS)


STREAMING_OPTIONS: tuple[Option, ...] = (
    Option(
        "streaming",
        "bool",
        False,
        "train from the query in batches instead of reading it into memory",
    ),
    Option("batch_size", "int", 100_000, "rows per batch when streaming", minimum=1),
)


def early_stop_tolerance(options: Mapping[str, Any], ctx: FitContext) -> float | None:
    """BigQuery's early_stop/min_rel_progress as an absolute loss tolerance, or None when
    early stopping is off: training stops once an iteration improves the training loss by
    less than min_rel_progress times the loss of the constant model."""
    if not options["early_stop"]:
        return None
    return float(options["min_rel_progress"]) * max(ctx.baseline_loss, 1e-12)


EARLY_STOP_OPTIONS: tuple[Option, ...] = (
    Option("early_stop", "bool", True, "stop when an iteration improves the loss too little"),
    Option(
        "min_rel_progress",
        "float",
        0.01,
        "smallest improvement, relative to the constant model's loss, that continues training",
        minimum=0.0,
    ),
)
