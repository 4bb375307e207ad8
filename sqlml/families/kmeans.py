"""kmeans: scikit-learn's KMeans (Lloyd's algorithm) on the preprocessed features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlml.errors import DataError
from sqlml.families import (
    CLUSTERING,
    CLUSTERING_OPTIONS,
    EARLY_STOP_OPTIONS,
    Family,
    FitContext,
    register,
)
from sqlml.options import Option

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


register(
    Family(
        model_type="kmeans",
        task=CLUSTERING,
        description="k-means clustering",
        options=_OPTIONS,
        build=build_kmeans,
        standardize=lambda options: options["standardize_features"],
        unsupported={
            "input_label_cols": "kmeans is unsupervised and takes no label; remove it",
            "kmeans_init_col": "custom initial centroids are not supported yet",
            "warm_start": "every CREATE MODEL trains from scratch",
            "data_split_method": "kmeans trains and evaluates on all rows",
            "data_split_eval_fraction": "kmeans trains and evaluates on all rows",
        },
    )
)
