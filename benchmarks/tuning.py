"""Does the default tuner beat random search on the same number of trials?

    python -m benchmarks.tuning [--trials N] [--seeds S]

For each case (a model type on a data set scikit-learn ships, a search space, an
objective) and each seed, the same CREATE MODEL runs with
``hparam_tuning_algorithm = 'vizier_default'`` (a Gaussian process with expected improvement)
and with ``'random_search'``, ``num_trials`` trials each, scored on the same held-out rows.
Reported per case: the mean best objective of each, on how many seeds the default found
the better one, and how many trials the default needed to match random search's final best
(the median over seeds; fewer is better). Quality, not time: the figures do not depend on
how busy the machine is.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

import numpy as np

import sqlml
from benchmarks.common import machine


@dataclass
class TuningCase:
    name: str
    dataset: str  # a sklearn.datasets loader
    model_type: str
    space: str  # the HPARAM options
    objective: str
    larger_is_better: bool
    fixed: str = ""


CASES = [
    TuningCase(
        "boosted trees, diabetes (regression)",
        "load_diabetes",
        "boosted_tree_regressor",
        "learn_rate = HPARAM_RANGE(0.005, 1.0), max_tree_depth = HPARAM_RANGE(1, 10), "
        "min_tree_child_weight = HPARAM_RANGE(1, 60), l2_reg = HPARAM_RANGE(0, 50)",
        "mean_squared_error",
        larger_is_better=False,
        fixed="max_iterations = 30, early_stop = FALSE",
    ),
    TuningCase(
        "boosted trees, breast cancer (binary)",
        "load_breast_cancer",
        "boosted_tree_classifier",
        "learn_rate = HPARAM_RANGE(0.005, 1.0), max_tree_depth = HPARAM_RANGE(1, 10), "
        "min_tree_child_weight = HPARAM_RANGE(1, 60), l2_reg = HPARAM_RANGE(0, 50)",
        "log_loss",
        larger_is_better=False,
        fixed="max_iterations = 30, early_stop = FALSE",
    ),
    TuningCase(
        "logistic regression, wine (3 classes)",
        "load_wine",
        "logistic_reg",
        "l2_reg = HPARAM_RANGE(0.001, 1000), l1_reg = HPARAM_RANGE(0, 10)",
        "log_loss",
        larger_is_better=False,
    ),
    TuningCase(
        "dnn, diabetes (regression)",
        "load_diabetes",
        "dnn_regressor",
        "learn_rate = HPARAM_RANGE(0.0005, 0.5), l2_reg = HPARAM_RANGE(0.0001, 100), "
        "batch_size = HPARAM_RANGE(8, 128)",
        "mean_squared_error",
        larger_is_better=False,
        fixed="hidden_units = [32], max_iterations = 100",
    ),
]


def load(con: sqlml.Connection, dataset: str) -> None:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, dataset)(as_frame=True)
    frame = bunch.frame.rename(columns=lambda c: c.replace(" ", "_").replace("/", "_"))
    frame = frame.rename(columns={"target": "label"})
    if dataset != "load_diabetes":  # classes as their names
        frame["label"] = [str(bunch.target_names[t]) for t in frame["label"]]
    con.duckdb.register("frame", frame)
    con.sql(f"CREATE OR REPLACE TABLE {dataset} AS SELECT * FROM frame")
    con.duckdb.unregister("frame")


def run(con: sqlml.Connection, case: TuningCase, algorithm: str, seed: int, trials: int):
    """The objective of each trial in order."""
    fixed = f"{case.fixed}, " if case.fixed else ""
    con.sql(
        f"""CREATE OR REPLACE MODEL tuned OPTIONS (
            model_type = '{case.model_type}', {fixed}{case.space},
            num_trials = {trials}, max_parallel_trials = 1,
            hparam_tuning_algorithm = '{algorithm}',
            hparam_tuning_objectives = ['{case.objective}'],
            data_split_method = 'random', data_split_eval_fraction = 0.3, random_seed = {seed})
        AS SELECT * FROM {case.dataset}"""
    )
    rows = con.sql(
        "SELECT trial_id, hparam_tuning_evaluation_metrics, status FROM ML.TRIAL_INFO(MODEL tuned) "
        "ORDER BY trial_id"
    ).fetchall()
    worst = -np.inf if case.larger_is_better else np.inf
    return [m[case.objective] if status == "SUCCEEDED" else worst for _, m, status in rows]


def running_best(values: list[float], larger_is_better: bool) -> np.ndarray:
    return (np.maximum if larger_is_better else np.minimum).accumulate(np.array(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    lines = [
        "### Tuning: the default (Bayesian optimization) against random search, "
        f"{args.trials} trials, {args.seeds} seeds",
        "",
        "| case | objective | default: mean best | random: mean best "
        "| seeds default better | trials to match random (median) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    with sqlml.connect(console=sqlml.SilentConsole()) as con:
        for case in CASES:
            load(con, case.dataset)
            best = {"vizier_default": [], "random_search": []}
            wins, catch_up = 0, []
            for seed in range(1, args.seeds + 1):
                curves = {
                    a: running_best(run(con, case, a, seed, args.trials), case.larger_is_better)
                    for a in best
                }
                for a, curve in curves.items():
                    best[a].append(float(curve[-1]))
                ours, theirs = curves["vizier_default"], curves["random_search"]
                better = ours[-1] > theirs[-1] if case.larger_is_better else ours[-1] < theirs[-1]
                wins += bool(better)
                matched = ours >= theirs[-1] if case.larger_is_better else ours <= theirs[-1]
                catch_up.append(int(np.argmax(matched)) + 1 if matched.any() else args.trials + 1)
            lines.append(
                f"| {case.name} | {case.objective} "
                f"| {statistics.mean(best['vizier_default']):.4f} "
                f"| {statistics.mean(best['random_search']):.4f} "
                f"| {wins} of {args.seeds} | {statistics.median(catch_up):g} of {args.trials} |"
            )
            print(lines[-1], flush=True)
    lines += ["", f"({args.trials + 1} in the last column: never matched.)", "", machine()]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
