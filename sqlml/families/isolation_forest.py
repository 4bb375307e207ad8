"""isolation_forest (sqlml's own model type): scikit-learn's isolation forest for anomaly
detection. ML.PREDICT gives is_anomaly and anomaly_score (the score of Liu et al., in
(0, 1]: near 1 is anomalous, well below 0.5 is normal)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlml.families import ANOMALY_DETECTION, CLUSTERING_OPTIONS, Family, FitContext, register
from sqlml.options import Option

_OPTIONS = (
    *CLUSTERING_OPTIONS,
    Option("num_parallel_tree", "int", 100, "number of trees", minimum=1),
    Option("max_samples", "int", 256, "rows drawn to grow each tree", minimum=2),
    Option(
        "colsample_bytree",
        "float",
        1.0,
        "fraction of the features each tree sees",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
    ),
    Option(
        "contamination",
        "float",
        0.1,
        "expected share of anomalies in the training rows: is_anomaly flags rows scoring "
        "above that quantile of the training rows' scores",
        minimum=0.0,
        maximum=0.5,
        exclusive_minimum=True,
    ),
)


def build_isolation_forest(options: Mapping[str, Any], ctx: FitContext) -> Any:
    from sklearn.ensemble import IsolationForest

    return IsolationForest(
        n_estimators=options["num_parallel_tree"],
        max_samples=min(options["max_samples"], ctx.rows),
        max_features=options["colsample_bytree"],
        contamination=options["contamination"],
        n_jobs=-1,
        random_state=ctx.random_seed,
    )


def isolation_parameters(estimator: Any) -> dict[str, Any]:
    # decision_function = score_samples - offset_, and anomaly_score = -score_samples.
    return {"offset": float(estimator.offset_)}


register(
    Family(
        model_type="isolation_forest",
        task=ANOMALY_DETECTION,
        description="isolation forest anomaly detection",
        options=_OPTIONS,
        build=build_isolation_forest,
        standardize=lambda options: False,
        float32=True,
        parameters=isolation_parameters,
        unsupported={"input_label_cols": "isolation_forest is unsupervised; remove it"},
    )
)
