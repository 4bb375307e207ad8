"""kmeans: scikit-learn's KMeans (Lloyd's algorithm) on the preprocessed features."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from sqlml.errors import DataError
from sqlml.families import (
    CLUSTERING,
    CLUSTERING_OPTIONS,
    EARLY_STOP_OPTIONS,
    STREAMING_OPTIONS,
    Family,
    FitContext,
    register,
)
from sqlml.options import Option

if TYPE_CHECKING:
    from sqlml.features import Feature

_OPTIONS = (
    *CLUSTERING_OPTIONS,
    Option("num_clusters", "int", 8, "number of clusters", minimum=2, maximum=100_000),
    Option(
        "kmeans_init_method",
        "str",
        "kmeans++",
        "how the first centroids are picked",
        choices=("kmeans++", "random"),
    ),
    Option(
        "distance_type",
        "str",
        "euclidean",
        "distance between rows and centroids",
        choices=("euclidean",),
    ),
    Option(
        "standardize_features",
        "bool",
        True,
        "standardize numeric features before clustering",
    ),
    Option("max_iterations", "int", 20, "maximum Lloyd iterations", minimum=1),
    *EARLY_STOP_OPTIONS,
    *STREAMING_OPTIONS,
)


def build_kmeans(options: Mapping[str, Any], ctx: FitContext) -> Any:
    from sklearn.cluster import KMeans

    k = options["num_clusters"]
    if ctx.rows < k:
        raise DataError(
            f"num_clusters={k} needs at least {k} training rows; the query returned "
            f"{ctx.rows}. Lower num_clusters or train on more rows"
        )
    # sklearn's tol is relative to the data's variance, as BigQuery's min_rel_progress is
    # relative to the loss: the closest match.
    tol = options["min_rel_progress"] if options["early_stop"] else 0.0
    return KMeans(
        n_clusters=k,
        init="k-means++" if options["kmeans_init_method"] == "kmeans++" else "random",
        n_init=1 if options["kmeans_init_method"] == "kmeans++" else 10,
        max_iter=options["max_iterations"],
        tol=tol,
        random_state=ctx.random_seed,
    )


def build_minibatch_kmeans(options: Mapping[str, Any], ctx: FitContext) -> Any:
    """Mini-batch k-means for streaming: partial_fit on each batch."""
    from sklearn.cluster import MiniBatchKMeans

    k = options["num_clusters"]
    if ctx.rows < k:
        raise DataError(
            f"num_clusters={k} needs at least {k} training rows; the query returned "
            f"{ctx.rows}. Lower num_clusters or train on more rows"
        )
    return MiniBatchKMeans(
        n_clusters=k,
        init="k-means++" if options["kmeans_init_method"] == "kmeans++" else "random",
        n_init=1,
        batch_size=options["batch_size"],
        random_state=ctx.random_seed,
    )


def kmeans_parameters(estimator: Any) -> dict[str, Any]:
    return {"centroids": np.asarray(estimator.cluster_centers_, dtype=float).tolist()}


def compile_kmeans(
    parameters: Mapping[str, Any], features: list[Feature]
) -> tuple[Callable[[list[str]], list[str]], None]:
    """Euclidean distance to each centroid. A one-hot block contributes
    sum_j (onehot_j - c_j)^2, which is sum_j c_j^2 - c_m^2 + (1 - c_m)^2 for category m."""
    from sqlml import compiler
    from sqlml.features import CATEGORICAL

    def raw(args: list[str]) -> list[str]:
        distances = []
        for centroid in parameters["centroids"]:
            terms, position = [], 0
            for feature, arg in zip(features, args, strict=True):
                block = centroid[position : position + feature.width]
                position += feature.width
                if feature.kind == CATEGORICAL:
                    base = sum(c * c for c in block)
                    per_category = [base - c * c + (1 - c) ** 2 for c in block]
                    terms.append(
                        compiler.category_case(arg, per_category, feature.categories, unseen=base)
                    )
                else:
                    # ((v - m) / s - c)^2 = (v - (m + c * s))^2 / s^2
                    values = compiler.numeric_values(feature, arg)
                    scaling = compiler.scaling(feature)
                    for value, c, (mean, scale) in zip(values, block, scaling, strict=True):
                        center = compiler.number(mean + c * scale)
                        terms.append(f"pow({value} - {center}, 2) * {compiler.number(scale**-2)}")
            distances.append(f"sqrt({' + '.join(terms)})")
        return distances

    return raw, None


register(
    Family(
        model_type="kmeans",
        task=CLUSTERING,
        description="k-means clustering",
        options=_OPTIONS,
        build=build_kmeans,
        standardize=lambda options: options["standardize_features"],
        parameters=kmeans_parameters,
        compile_sql=compile_kmeans,
        build_incremental=build_minibatch_kmeans,
        unsupported={
            "input_label_cols": "kmeans is unsupervised and takes no label; remove it",
            "kmeans_init_col": "custom initial centroids are not supported yet",
            "warm_start": "every CREATE MODEL trains from scratch",
            "data_split_method": "kmeans trains and evaluates on all rows",
            "data_split_eval_fraction": "kmeans trains and evaluates on all rows",
        },
    )
)
