"""dnn_classifier and dnn_regressor: scikit-learn's multi-layer perceptrons."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlml.errors import OptionError
from sqlml.families import (
    CLASS_WEIGHT_OPTIONS,
    CLASSIFICATION,
    EARLY_STOP_OPTIONS,
    REGRESSION,
    SUPERVISED_OPTIONS,
    Family,
    FitContext,
    early_stop_tolerance,
    register,
)
from sqlml.options import Option

ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic", "linear": "identity"}

_OPTIONS = (
    *SUPERVISED_OPTIONS,
    Option("hidden_units", "int_list", [128], "units of each hidden layer, e.g. [64, 32]"),
    Option(
        "activation_fn",
        "str",
        "relu",
        "activation of the hidden layers",
        choices=tuple(ACTIVATIONS),
    ),
    Option("optimizer", "str", "adam", "adam or sgd", choices=("adam", "sgd")),
    Option("learn_rate", "float", 0.001, "initial step size", minimum=0.0, exclusive_minimum=True),
    Option("batch_size", "int", 200, "rows per gradient step", minimum=1),
    Option("max_iterations", "int", 100, "epochs", minimum=1),
    Option("l2_reg", "float", 0.0, "L2 regularization (sum-of-losses scale)", minimum=0.0),
    EARLY_STOP_OPTIONS[0],
    # Epochs of small steps (the default learn_rate) improve the loss by well under 1%:
    # a lower bar than the linear models' 0.01, and patience (PATIENCE epochs) before
    # stopping, so early stopping ends a converged fit rather than a slow start.
    Option(
        "min_rel_progress",
        "float",
        0.001,
        "smallest improvement, relative to the constant model's loss, that continues training",
        minimum=0.0,
    ),
)
PATIENCE = 10

_UNSUPPORTED = {
    "dropout": "scikit-learn's multi-layer perceptron has no dropout; use l2_reg to regularize",
    "batch_norm": "scikit-learn's multi-layer perceptron has no batch normalization",
    "l1_reg": "scikit-learn's multi-layer perceptron has no L1 penalty",
    "warm_start": "every CREATE MODEL trains from scratch",
}


def build_dnn(options: Mapping[str, Any], ctx: FitContext, classifier: bool) -> Any:
    from sklearn import neural_network

    units = options["hidden_units"]
    if not units or any(u < 1 for u in units):
        raise OptionError(
            f"hidden_units must list positive layer sizes, e.g. [64, 32]; got {units}",
            "hidden_units",
        )
    tol = early_stop_tolerance(options, ctx)
    cls = neural_network.MLPClassifier if classifier else neural_network.MLPRegressor
    return cls(
        hidden_layer_sizes=tuple(units),
        activation=ACTIVATIONS[options["activation_fn"]],
        solver=options["optimizer"],
        learning_rate_init=options["learn_rate"],
        batch_size=min(options["batch_size"], ctx.rows),
        max_iter=options["max_iterations"],
        # MLP minimises mean(loss) + alpha / (2n) |w|^2; ours sum(loss) + l2 |w|^2.
        alpha=2 * options["l2_reg"],
        tol=tol if tol is not None else 0.0,
        n_iter_no_change=PATIENCE if tol is not None else options["max_iterations"] + 1,
        random_state=ctx.random_seed,
    )


def unscale_mlp(mlp: Any, mean: float, scale: float) -> None:
    """An MLPRegressor fitted on (y - mean) / scale made to predict y: its output layer is
    linear, so scaling its weights and shifting its bias is exact. Its loss curve (half the
    squared error) goes back to the label's units."""
    mlp.coefs_[-1] = mlp.coefs_[-1] * scale
    mlp.intercepts_[-1] = mlp.intercepts_[-1] * scale + mean
    mlp.loss_curve_ = [loss * scale**2 for loss in mlp.loss_curve_]
    mlp.loss_ = mlp.loss_ * scale**2


for _task, _suffix in ((REGRESSION, "regressor"), (CLASSIFICATION, "classifier")):
    register(
        Family(
            model_type=f"dnn_{_suffix}",
            task=_task,
            description=f"deep neural network ({_suffix}): a multi-layer perceptron",
            options=_OPTIONS + (CLASS_WEIGHT_OPTIONS if _task == CLASSIFICATION else ()),
            build=lambda o, c, k=_task == CLASSIFICATION: build_dnn(o, c, k),
            standardize=lambda options: True,
            unsupported=_UNSUPPORTED,
            # The label's scale is the regressor's first layer's to learn otherwise: at
            # the default learn_rate, 100 epochs reach a few percent of a label in the
            # thousands (penguins' body mass in grams: r2 -27).
            unscale_label=unscale_mlp if _task == REGRESSION else None,
        )
    )
