"""pca: principal component analysis of the preprocessed features."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from sqlml.errors import OptionError
from sqlml.families import (
    CLUSTERING_OPTIONS,
    DIMENSIONALITY_REDUCTION,
    Family,
    FitContext,
    register,
)
from sqlml.options import Option

if TYPE_CHECKING:
    from sqlml.features import Feature

_OPTIONS = (
    *CLUSTERING_OPTIONS,
    Option("num_principal_components", "int", None, "how many components to keep", minimum=1),
    Option(
        "pca_explained_variance_ratio",
        "float",
        None,
        "keep the fewest components explaining this share of the variance",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
    ),
    Option("scale_features", "bool", True, "standardize numeric features first"),
    Option(
        "pca_solver",
        "str",
        "auto",
        "full, randomized or auto",
        choices=("auto", "full", "randomized"),
    ),
)


def build_pca(options: Mapping[str, Any], ctx: FitContext) -> Any:
    from sklearn.decomposition import PCA

    count, ratio = options["num_principal_components"], options["pca_explained_variance_ratio"]
    if (count is None) == (ratio is None):
        raise OptionError(
            "A pca model takes exactly one of num_principal_components (how many components) "
            "and pca_explained_variance_ratio (the share of variance they keep), as in "
            "OPTIONS (model_type = 'pca', num_principal_components = 3)",
            "num_principal_components",
        )
    if count is not None:
        _check_count(count, ctx)
    solver = options["pca_solver"]
    if ratio is not None and solver == "randomized":
        raise OptionError(
            "pca_explained_variance_ratio needs pca_solver 'full' or 'auto'", "pca_solver"
        )
    return PCA(
        n_components=count if count is not None else ratio,
        svd_solver="full" if ratio is not None and solver == "auto" else solver,
        random_state=ctx.random_seed,
    )


def _check_count(count: int, ctx: FitContext) -> None:
    """PCA finds at most min(rows, encoded features) components."""
    width = ctx.width() if ctx.width is not None else None
    most = ctx.rows if width is None else min(ctx.rows, width)
    if count <= most:
        return
    of = f" of model {ctx.model}" if ctx.model else ""
    limits = [f"{ctx.rows:,} training rows"]
    if width is not None:
        limits.insert(0, f"{width:,} feature columns once encoded")
    raise OptionError(
        f"num_principal_components = {count}{of} is more than its training query allows: "
        f"at most {most:,} ({' and '.join(limits)}; a PCA finds at most as many components "
        f"as the smaller of the two). Set num_principal_components to {most:,} or less, or "
        "give pca_explained_variance_ratio instead",
        "num_principal_components",
    )


def pca_parameters(estimator: Any) -> dict[str, Any]:
    return {
        "components": np.asarray(estimator.components_, dtype=float).tolist(),
        "mean": np.asarray(estimator.mean_, dtype=float).tolist(),
        "explained_variance": np.asarray(estimator.explained_variance_, dtype=float).tolist(),
        "explained_variance_ratio": np.asarray(
            estimator.explained_variance_ratio_, dtype=float
        ).tolist(),
    }


def compile_pca(
    parameters: Mapping[str, Any], features: list[Feature]
) -> tuple[Callable[[list[str]], list[str]], None]:
    """Each component: (x - mean) . component, x the model matrix row: a linear score."""
    from sqlml import compiler

    components = np.asarray(parameters["components"])
    bias = -(components @ np.asarray(parameters["mean"]))

    def raw(args: list[str]) -> list[str]:
        return compiler.linear_scores(features, args, components.tolist(), bias.tolist())

    return raw, None


register(
    Family(
        model_type="pca",
        task=DIMENSIONALITY_REDUCTION,
        description="principal component analysis",
        options=_OPTIONS,
        build=build_pca,
        standardize=lambda options: options["scale_features"],
        parameters=pca_parameters,
        compile_sql=compile_pca,
        unsupported={"input_label_cols": "pca is unsupervised and takes no label; remove it"},
    )
)
