"""linear_reg and logistic_reg.

BigQuery ML's objective is ``loss summed over rows + l1_reg * |w|_1 + l2_reg * |w|_2^2``;
the builders below rescale it to each scikit-learn estimator's own parameterisation, so an
option means the same thing whichever solver runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from sqlml.errors import OptionError
from sqlml.families import (
    CLASS_WEIGHT_OPTIONS,
    CLASSIFICATION,
    EARLY_STOP_OPTIONS,
    REGRESSION,
    STREAMING_OPTIONS,
    SUPERVISED_OPTIONS,
    Family,
    FitContext,
    early_stop_tolerance,
    register,
)
from sqlml.options import Option

if TYPE_CHECKING:
    from sqlml.features import Feature

_COMMON = (
    Option("l1_reg", "float", 0.0, "L1 regularization (sum-of-losses scale)", minimum=0.0),
    Option("l2_reg", "float", 0.0, "L2 regularization (sum-of-losses scale)", minimum=0.0),
    Option("max_iterations", "int", 100, "iterations of the iterative solvers", minimum=1),
    Option(
        "optimize_strategy",
        "str",
        "auto_strategy",
        "auto_strategy (exact solver), normal_equation or batch_gradient_descent (SGD)",
        choices=("auto_strategy", "normal_equation", "batch_gradient_descent"),
    ),
    Option(
        "learn_rate_strategy",
        "str",
        "line_search",
        "gradient descent step size: line_search (adaptive) or constant",
        choices=("line_search", "constant"),
    ),
    Option(
        "learn_rate",
        "float",
        0.1,
        "step size for learn_rate_strategy='constant'",
        minimum=0.0,
        exclusive_minimum=True,
    ),
    Option(
        "ls_init_learn_rate",
        "float",
        0.1,
        "first step size for learn_rate_strategy='line_search'",
        minimum=0.0,
        exclusive_minimum=True,
    ),
    *EARLY_STOP_OPTIONS,
    *STREAMING_OPTIONS,
)

_UNSUPPORTED = {
    "calculate_p_values": "p-values are not computed",
    "category_encoding_method": "categorical columns are always one-hot encoded",
    "warm_start": "every CREATE MODEL trains from scratch",
}


def _sgd_settings(options: Mapping[str, Any], ctx: FitContext) -> dict[str, Any]:
    tol = early_stop_tolerance(options, ctx)
    if options["learn_rate_strategy"] == "constant":
        rate = {"learning_rate": "constant", "eta0": options["learn_rate"]}
    else:
        # 'adaptive' keeps the step while the loss improves and divides it by 5 when it
        # does not: a step-size search, the nearest thing SGD has to a line search.
        rate = {"learning_rate": "adaptive", "eta0": options["ls_init_learn_rate"]}
    return {
        "max_iter": options["max_iterations"],
        "tol": tol,
        "n_iter_no_change": 1,
        "random_state": ctx.random_seed,
        **rate,
    }


def _elastic_net(l1: float, l2: float, scale: float) -> tuple[float, float]:
    """alpha and l1_ratio for ``1/scale * loss + alpha*(r*|w|_1 + (1-r)/2*|w|^2)``."""
    alpha = l1 / scale + 2 * l2 / scale
    return alpha, (l1 / scale) / alpha if alpha else 0.0


def _streaming_strategy(options: Mapping[str, Any]) -> str:
    """Streaming trains by gradient descent; 'auto_strategy' picks it."""
    strategy = options["optimize_strategy"]
    if options["streaming"]:
        if strategy == "normal_equation":
            raise OptionError(
                "streaming = TRUE trains by gradient descent; remove optimize_strategy or set "
                "it to 'batch_gradient_descent'",
                "optimize_strategy",
            )
        return "batch_gradient_descent"
    return strategy


def build_linear_reg(options: Mapping[str, Any], ctx: FitContext) -> Any:
    from sklearn import linear_model

    l1, l2 = options["l1_reg"], options["l2_reg"]
    strategy = _streaming_strategy(options)
    if strategy == "batch_gradient_descent":
        # SGDRegressor minimises mean(1/2 (y - y')^2) + alpha * R(w): divide by 2n.
        alpha, ratio = _elastic_net(l1, l2, 2 * ctx.rows)
        return linear_model.SGDRegressor(
            penalty="elasticnet", alpha=alpha, l1_ratio=ratio, **_sgd_settings(options, ctx)
        )
    if l1 > 0:
        if strategy == "normal_equation":
            raise OptionError(
                "optimize_strategy='normal_equation' cannot fit l1_reg > 0; use "
                "'auto_strategy' (coordinate descent) or 'batch_gradient_descent'",
                "l1_reg",
            )
        # ElasticNet minimises 1/(2n) |y - Xw|^2 + alpha * R(w).
        alpha, ratio = _elastic_net(l1, l2, 2 * ctx.rows)
        return linear_model.ElasticNet(
            alpha=alpha,
            l1_ratio=ratio,
            max_iter=options["max_iterations"],
            random_state=ctx.random_seed,
        )
    if l2 > 0:
        return linear_model.Ridge(alpha=l2)  # |y - Xw|^2 + alpha |w|^2: the same scale
    return linear_model.LinearRegression()


def build_logistic_reg(options: Mapping[str, Any], ctx: FitContext) -> Any:
    from sklearn import linear_model

    l1, l2 = options["l1_reg"], options["l2_reg"]
    if _streaming_strategy(options) == "batch_gradient_descent":
        alpha, ratio = _elastic_net(l1, l2, ctx.rows)  # SGD: mean loss + alpha * R(w)
        return linear_model.SGDClassifier(
            loss="log_loss",
            penalty="elasticnet",
            alpha=alpha,
            l1_ratio=ratio,
            **_sgd_settings(options, ctx),
        )
    if options["optimize_strategy"] == "normal_equation":
        raise OptionError(
            "logistic_reg has no normal equation; use optimize_strategy='auto_strategy' "
            "or 'batch_gradient_descent'",
            "optimize_strategy",
        )
    # LogisticRegression minimises C * sum(loss) + r |w|_1 + (1 - r)/2 |w|^2.
    total = l1 + 2 * l2
    return linear_model.LogisticRegression(
        C=1.0 / total if total else math.inf,
        l1_ratio=l1 / total if total else 0.0,
        solver="saga" if l1 > 0 else "lbfgs",
        max_iter=options["max_iterations"],
        random_state=ctx.random_seed,
    )


def linear_parameters(estimator: Any) -> dict[str, Any]:
    """coef (one row per score) and intercept, and how classifier scores become
    probabilities in skl2onnx's graph for this estimator."""
    from sqlml import compiler

    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=float))
    intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=float))
    link = None
    if hasattr(estimator, "classes_"):
        sgd = type(estimator).__name__ == "SGDClassifier"
        if len(estimator.classes_) == 2:
            link = compiler.LOGIT if sgd else compiler.LOGISTIC_PAIR
        else:
            link = compiler.OVR if sgd else compiler.SOFTMAX
    return {"coef": coef.tolist(), "intercept": intercept.tolist(), "link": link}


def compile_linear(
    parameters: Mapping[str, Any], features: list[Feature]
) -> tuple[Callable[[list[str]], list[str]], str | None]:
    from sqlml import compiler

    def raw(args: list[str]) -> list[str]:
        return compiler.linear_scores(features, args, parameters["coef"], parameters["intercept"])

    return raw, parameters["link"]


register(
    Family(
        model_type="linear_reg",
        task=REGRESSION,
        description="linear regression (least squares, ridge, lasso, elastic net or SGD)",
        options=SUPERVISED_OPTIONS + _COMMON,
        build=build_linear_reg,
        standardize=lambda options: True,
        unsupported=_UNSUPPORTED,
        parameters=linear_parameters,
        compile_sql=compile_linear,
        build_incremental=build_linear_reg,
    )
)

register(
    Family(
        model_type="logistic_reg",
        task=CLASSIFICATION,
        description="logistic regression, binary or multiclass",
        options=SUPERVISED_OPTIONS + _COMMON + CLASS_WEIGHT_OPTIONS,
        build=build_logistic_reg,
        standardize=lambda options: True,
        parameters=linear_parameters,
        compile_sql=compile_linear,
        build_incremental=build_logistic_reg,
        unsupported=_UNSUPPORTED,
    )
)
