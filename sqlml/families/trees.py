"""boosted_tree_* and random_forest_* model types.

Boosted trees use scikit-learn's histogram gradient boosting (tree_method 'hist', the
default) or exact gradient boosting (tree_method 'exact', which is what honours subsample
and min_split_loss). Random forests use RandomForest*.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

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

if TYPE_CHECKING:
    from sqlml.features import Feature

# Trees written as nested CASE cost DuckDB a branch per node and row, where the native
# scorer pays a Python call per DuckDB vector and then a few nanoseconds per tree and row:
# only ensembles this small (internal nodes x outputs) go to SQL by default. The crossover
# measured by benchmarks/trees.py (see benchmarks/README.md).
SQL_TREE_NODES = 100

_TREE_SHAPE = (
    Option("max_tree_depth", "int", 6, "maximum depth of each tree", minimum=1, maximum=100),
    Option(
        "min_tree_child_weight",
        "int",
        1,
        "minimum number of training rows in a leaf",
        minimum=1,
    ),
    Option(
        "min_split_loss",
        "float",
        0.0,
        "minimum loss reduction a split must bring",
        minimum=0.0,
    ),
    Option(
        "colsample_bynode",
        "float",
        1.0,
        "fraction of the features considered at each split",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
    ),
)

_BOOSTED = (
    *SUPERVISED_OPTIONS,
    *_TREE_SHAPE,
    Option("max_iterations", "int", 20, "number of boosting rounds (trees)", minimum=1),
    Option(
        "learn_rate", "float", 0.3, "shrinkage of each tree", minimum=0.0, exclusive_minimum=True
    ),
    Option("l2_reg", "float", 1.0, "L2 regularization of the leaf values (hist)", minimum=0.0),
    Option(
        "subsample",
        "float",
        1.0,
        "fraction of rows each tree sees (needs tree_method 'exact')",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
    ),
    Option(
        "tree_method",
        "str",
        "auto",
        "hist (histogram boosting), exact, or auto: hist unless subsample/min_split_loss ask "
        "for exact",
        choices=("auto", "hist", "approx", "exact"),
    ),
    Option("num_parallel_tree", "int", 1, "trees per round; boosted trees support 1", minimum=1),
    Option("booster_type", "str", "gbtree", "gbtree", choices=("gbtree", "dart")),
    *EARLY_STOP_OPTIONS,
)

_FOREST = (
    *SUPERVISED_OPTIONS,
    *(
        Option(o.name, o.kind, 20, o.help, minimum=1, maximum=100)
        if o.name == "max_tree_depth"
        else o
        for o in _TREE_SHAPE
    ),
    Option("num_parallel_tree", "int", 100, "number of trees", minimum=1),
    Option(
        "subsample",
        "float",
        0.8,
        "fraction of rows drawn (with replacement) for each tree",
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
    ),
)

_UNSUPPORTED = {
    "l1_reg": "scikit-learn's tree ensembles have no L1 penalty on leaf values",
    "colsample_bytree": "use colsample_bynode (features sampled at each split)",
    "colsample_bylevel": "use colsample_bynode (features sampled at each split)",
    "dart_normalize_type": "the DART booster is not available",
    "warm_start": "every CREATE MODEL trains from scratch",
}


def _boosted_method(options: Mapping[str, Any]) -> str:
    needs_exact = [
        name
        for name, default in (("subsample", 1.0), ("min_split_loss", 0.0))
        if options[name] != default
    ]
    method = options["tree_method"]
    if method in ("hist", "approx") and needs_exact:
        raise OptionError(
            f"{' and '.join(needs_exact)} need tree_method='exact' (histogram boosting has "
            "no row subsampling or minimum split gain); remove tree_method or set it to "
            "'exact'",
            needs_exact[0],
        )
    if method == "exact" or (method == "auto" and needs_exact):
        return "exact"
    return "hist"


def _build_boosted(options: Mapping[str, Any], ctx: FitContext, classifier: bool) -> Any:
    from sklearn import ensemble

    if options["num_parallel_tree"] != 1:
        raise OptionError(
            "num_parallel_tree > 1 (boosted random forests) is not supported; use "
            "model_type='random_forest_*' for a forest, or num_parallel_tree=1",
            "num_parallel_tree",
        )
    if options["booster_type"] != "gbtree":
        raise OptionError("booster_type='dart' is not supported; use 'gbtree'", "booster_type")
    tol = early_stop_tolerance(options, ctx)
    if _boosted_method(options) == "hist":
        cls = (
            ensemble.HistGradientBoostingClassifier
            if classifier
            else ensemble.HistGradientBoostingRegressor
        )
        return cls(
            learning_rate=options["learn_rate"],
            max_iter=options["max_iterations"],
            max_depth=options["max_tree_depth"],
            max_leaf_nodes=None,  # depth bounds the trees, as in XGBoost
            min_samples_leaf=options["min_tree_child_weight"],
            l2_regularization=options["l2_reg"],
            max_features=options["colsample_bynode"],
            early_stopping=tol is not None,
            # Early stopping on the training loss: no rows are taken away from training.
            validation_fraction=None,
            n_iter_no_change=1,
            tol=tol or 0.0,
            random_state=ctx.random_seed,
        )
    if options["l2_reg"] != 1.0:
        raise OptionError(
            "l2_reg applies to tree_method 'hist' only; exact gradient boosting has no L2 "
            "penalty on leaf values",
            "l2_reg",
        )
    cls = ensemble.GradientBoostingClassifier if classifier else ensemble.GradientBoostingRegressor
    early = {}
    if tol is not None:
        early = {"n_iter_no_change": 1, "validation_fraction": 0.1, "tol": tol}
    return cls(
        learning_rate=options["learn_rate"],
        n_estimators=options["max_iterations"],
        max_depth=options["max_tree_depth"],
        min_samples_leaf=options["min_tree_child_weight"],
        min_impurity_decrease=options["min_split_loss"],
        subsample=options["subsample"],
        max_features=options["colsample_bynode"],
        random_state=ctx.random_seed,
        **early,
    )


def _build_forest(options: Mapping[str, Any], ctx: FitContext, classifier: bool) -> Any:
    from sklearn import ensemble

    cls = ensemble.RandomForestClassifier if classifier else ensemble.RandomForestRegressor
    subsample = options["subsample"]
    return cls(
        n_estimators=options["num_parallel_tree"],
        max_depth=options["max_tree_depth"],
        min_samples_leaf=options["min_tree_child_weight"],
        min_impurity_decrease=options["min_split_loss"],
        max_features=options["colsample_bynode"],
        bootstrap=True,
        max_samples=subsample if subsample < 1.0 else None,
        n_jobs=-1,
        random_state=ctx.random_seed,
    )


def tree_parameters(estimator: Any) -> dict[str, Any]:
    """Every tree of the ensemble as arrays, with how the trees combine:
    raw[o] = base[o] + scale * sum of the values of the trees feeding output o, then the
    link (see compiler.py). ``cover`` is the number of training rows through each node."""
    from sqlml import compiler

    kind = type(estimator).__name__
    classifier = hasattr(estimator, "classes_")
    n_classes = len(estimator.classes_) if classifier else 1
    trees: list[dict[str, Any]] = []
    if kind.startswith("HistGradientBoosting"):
        for iteration in estimator._predictors:
            for k, predictor in enumerate(iteration):
                nodes = predictor.nodes
                trees.append(
                    _tree(
                        nodes["feature_idx"], nodes["num_threshold"], nodes["left"],
                        nodes["right"], nodes["is_leaf"].astype(bool),
                        nodes["value"].reshape(-1, 1), nodes["count"], [k], nodes["gain"],
                    )
                )  # fmt: skip
        base = np.asarray(estimator._baseline_prediction, dtype=float).ravel().tolist()
        scale = 1.0  # leaf values include the learning rate
    elif kind.startswith("RandomForest"):
        for member in estimator.estimators_:
            t = member.tree_
            values = t.value[:, 0, :]
            if classifier:
                values = values / np.maximum(values.sum(axis=1, keepdims=True), 1e-300)
            outputs = list(range(n_classes)) if classifier else [0]
            trees.append(
                _tree(
                    t.feature, t.threshold, t.children_left, t.children_right,
                    t.children_left == -1, values, t.n_node_samples, outputs, _gains(t),
                )
            )  # fmt: skip
        base = [0.0] * (n_classes if classifier else 1)
        scale = 1.0 / len(estimator.estimators_)
    else:  # exact GradientBoosting*
        for row in estimator.estimators_:
            for k, member in enumerate(row):
                t = member.tree_
                trees.append(
                    _tree(
                        t.feature, t.threshold, t.children_left, t.children_right,
                        t.children_left == -1, t.value[:, 0, :1], t.n_node_samples, [k],
                        _gains(t),
                    )
                )  # fmt: skip
        scale = float(estimator.learning_rate)
        # The initial raw score: what the model predicts at a point, minus its trees there.
        origin = np.zeros((1, estimator.n_features_in_))
        raw = estimator.decision_function(origin) if classifier else estimator.predict(origin)
        raw = np.atleast_1d(np.asarray(raw, dtype=float).ravel())
        base = [
            float(raw[k] - scale * sum(_walk(t, origin[0]) for t in trees if t["outputs"] == [k]))
            for k in range(len(raw))
        ]
    link = None
    if classifier:
        if kind.startswith("RandomForest"):
            link = compiler.PROBABILITIES
        else:
            link = compiler.LOGIT if n_classes == 2 else compiler.SOFTMAX
    return {
        "trees": trees,
        "base": base,
        "scale": scale,
        "link": link,
        # How the ONNX graph holds the thresholds as float32, which native.py and the SQL
        # compare with: rounded down, so that float32(x) <= t32 exactly when
        # float32(x) <= t (mend_thresholds). Models stored before that say "nearest".
        "float32_thresholds": "down",
    }


def mend_thresholds(estimator: Any, model: Any) -> None:
    """Round histogram boosting's thresholds down to float32 in skl2onnx's graph.

    onnxruntime compares float32 values with float32 thresholds. skl2onnx rounds decision
    trees' thresholds down, which keeps every float32 value on its side of the split, but
    histogram boosting's to nearest: a value between the threshold and a float32 just
    above it (42.4 for a split at 42.39999961..., half-way between 42.3 and 42.5) then
    went left in onnxruntime and right in scikit-learn and in the model's SQL."""
    if not type(estimator).__name__.startswith("HistGradientBoosting"):
        return
    exact: list[float] = []  # in skl2onnx's order: iterations, then outputs, then nodes
    for iteration in estimator._predictors:
        for predictor in iteration:
            nodes = predictor.nodes
            exact.extend(np.where(nodes["is_leaf"].astype(bool), 0.0, nodes["num_threshold"]))
    [node] = [n for n in model.graph.node if n.op_type.startswith("TreeEnsemble")]
    [values] = [a for a in node.attribute if a.name == "nodes_values"]
    modes = next(a for a in node.attribute if a.name == "nodes_modes").strings
    if len(values.floats) != len(exact):
        raise AssertionError("skl2onnx laid out the histogram boosting trees unexpectedly")
    for i, (mode, threshold) in enumerate(zip(modes, exact, strict=True)):
        if mode == b"LEAF":
            continue
        rounded = np.float32(threshold)
        if rounded != np.float32(values.floats[i]):
            raise AssertionError("skl2onnx laid out the histogram boosting trees unexpectedly")
        if float(rounded) > threshold:
            rounded = np.nextafter(rounded, np.float32(-np.inf))
        values.floats[i] = float(rounded)


def _gains(tree: Any) -> np.ndarray:
    """Each split's impurity decrease, weighted by the rows through it (0 at leaves)."""
    weight, impurity = tree.weighted_n_node_samples, tree.impurity
    left, right = tree.children_left, tree.children_right
    split = left != -1
    gains = np.zeros(tree.node_count)
    gains[split] = (
        weight[split] * impurity[split]
        - weight[left[split]] * impurity[left[split]]
        - weight[right[split]] * impurity[right[split]]
    )
    return gains


def _tree(
    feature: Any, threshold: Any, left: Any, right: Any, leaf: Any, values: Any, cover: Any,
    outputs: list[int], gain: Any,
) -> dict[str, Any]:  # fmt: skip
    return {
        "gain": [float(v) for v in gain],
        "feature": [int(v) for v in feature],
        "threshold": [float(v) for v in threshold],
        "left": [int(v) for v in left],
        "right": [int(v) for v in right],
        "leaf": [bool(v) for v in leaf],
        "value": np.asarray(values, dtype=float).tolist(),
        "cover": [float(v) for v in cover],
        "outputs": outputs,
    }


def _walk(tree: Mapping[str, Any], row: np.ndarray, output: int = 0) -> float:
    node = 0
    while not tree["leaf"][node]:
        go_left = row[tree["feature"][node]] <= tree["threshold"][node]
        node = tree["left"][node] if go_left else tree["right"][node]
    return tree["value"][node][output]


def tree_sql_pays(parameters: Mapping[str, Any]) -> bool:
    nodes = sum((len(t["leaf"]) - sum(t["leaf"])) * len(t["outputs"]) for t in parameters["trees"])
    return nodes <= SQL_TREE_NODES


def native_why_not(parameters: Mapping[str, Any]) -> str | None:
    from sqlml import native

    return native.why_not(parameters)


def compile_trees(
    parameters: Mapping[str, Any], features: list[Feature]
) -> tuple[Callable[[list[str]], list[str]], str | None]:
    """Each tree as nested CASE over the preprocessed features. Trees split float32 values
    (what onnxruntime sees): each comparison is the DOUBLE one that agrees with rounding
    the value to float32 first, values beyond float32's range included (they round to
    +-infinity; see compiler.float32_at_most)."""
    from sqlml import compiler
    from sqlml.features import CATEGORICAL

    nearest = parameters.get("float32_thresholds") == "nearest"

    def raw(args: list[str]) -> list[str]:
        columns = compiler.columns(features, args)

        def condition(column: int, threshold: float) -> str:
            feature, arg, index = columns[column]
            if feature.kind == CATEGORICAL:  # one-hot: 1 for this category, else 0
                if threshold >= 1.0:
                    return "true"
                if threshold < 0.0:
                    return "false"
                test = compiler.category_test(arg, feature.categories[index])
                return f"NOT coalesce({test}, false)"
            value = compiler.numeric_values(feature, arg)[index]
            if nearest:  # as the ONNX graph of a model stored before mend_thresholds
                threshold = float(np.float32(threshold))
            return compiler.float32_at_most(value, threshold)

        def node_sql(tree: Mapping[str, Any], node: int, output: int) -> str:
            if tree["leaf"][node]:
                return compiler.number(tree["value"][node][output])
            test = condition(tree["feature"][node], tree["threshold"][node])
            left = node_sql(tree, tree["left"][node], output)
            right = node_sql(tree, tree["right"][node], output)
            return f"(CASE WHEN {test} THEN {left} ELSE {right} END)"

        scores = []
        for o, base in enumerate(parameters["base"]):
            parts = [
                node_sql(tree, 0, tree["outputs"].index(o))
                for tree in parameters["trees"]
                if o in tree["outputs"]
            ]
            total = " + ".join(parts) if parts else "0e0"
            scale = compiler.number(parameters["scale"])
            scores.append(f"({compiler.number(base)} + {scale} * ({total}))")
        return scores

    return raw, parameters["link"]


for _task, _suffix in ((REGRESSION, "regressor"), (CLASSIFICATION, "classifier")):
    _classifier = _task == CLASSIFICATION
    register(
        Family(
            model_type=f"boosted_tree_{_suffix}",
            task=_task,
            description=f"gradient boosted trees ({_suffix})",
            options=_BOOSTED + (CLASS_WEIGHT_OPTIONS if _classifier else ()),
            build=lambda o, c, k=_classifier: _build_boosted(o, c, k),
            standardize=lambda options: False,
            float32=True,
            unsupported=_UNSUPPORTED,
            parameters=tree_parameters,
            compile_sql=compile_trees,
            sql_pays=tree_sql_pays,
            native=native_why_not,
            mend_onnx=mend_thresholds,
        )
    )
    register(
        Family(
            model_type=f"random_forest_{_suffix}",
            task=_task,
            description=f"random forest ({_suffix})",
            options=_FOREST + (CLASS_WEIGHT_OPTIONS if _classifier else ()),
            build=lambda o, c, k=_classifier: _build_forest(o, c, k),
            standardize=lambda options: False,
            float32=True,
            unsupported={
                **_UNSUPPORTED,
                "l2_reg": "scikit-learn's random forests have no L2 penalty on leaf values",
                "tree_method": "random forests always search splits exactly",
                "learn_rate": "random forests have no learning rate",
                "max_iterations": "use num_parallel_tree for the number of trees",
                "early_stop": "random forests train a fixed number of trees",
                "min_rel_progress": "random forests train a fixed number of trees",
            },
            parameters=tree_parameters,
            compile_sql=compile_trees,
            sql_pays=tree_sql_pays,
            native=native_why_not,
        )
    )
