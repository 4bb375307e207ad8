"""Hyperparameter tuning: ``num_trials``, ``HPARAM_RANGE``, ``HPARAM_CANDIDATES``.

Each trial trains on the training rows and is scored on the held-out evaluation rows
(never on rows it trained on) by ``hparam_tuning_objectives`` (default: the model type's
key metric). The best trial becomes the model; every successful trial is stored, and
``STRUCT(n AS trial_id)`` picks one in ML.PREDICT, ML.EVALUATE and the other functions.

Algorithms (``hparam_tuning_algorithm``):

- 'random_search': each hyperparameter drawn at random (log-uniformly for a positive
  range spanning two orders of magnitude or more);
- 'grid_search': every combination of the candidates, in order;
- 'vizier_default' (the default): Bayesian optimization, as Vizier's default is. After a
  few random trials, a Gaussian process (Matérn 5/2 kernel, fitted to the objective, on a
  log scale for errors and losses) models the objective over the search space, and the
  next trial is the untried candidate of largest expected improvement. Parallel trials
  count the pending ones as poor results ("constant liar"), so a batch spreads out.
  ``benchmarks/tuning.py`` measures it against random search.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from sqlml import tables
from sqlml.catalog import ModelRecord
from sqlml.errors import ArgumentError, Error, OptionError
from sqlml.families import CLASSIFICATION, CLUSTERING, REGRESSION
from sqlml.metrics import METRICS, evaluate, explained_variance
from sqlml.options import HParam

if TYPE_CHECKING:
    from sqlml.console import Console
    from sqlml.planner import TrainingPlan
    from sqlml.preprocessing import RowSelection
    from sqlml.query import QueryExpander
    from sqlml.table_functions import Call, Spec

SMALLER_IS_BETTER = {
    "mean_absolute_error", "mean_squared_error", "mean_squared_log_error",
    "median_absolute_error", "log_loss", "davies_bouldin_index", "mean_squared_distance",
}  # fmt: skip
CANDIDATES_GLOBAL = 2000  # uniform candidates per Bayesian step
CANDIDATES_LOCAL = 500  # candidates near the best trials
PROPOSALS = 100  # draws before concluding every combination has been tried
LOSS_SAMPLE_ROWS = 10_000


@dataclass
class Trial:
    trial_id: int
    hyperparameters: dict[str, Any]
    status: str = "PENDING"
    error: str | None = None
    pipeline: Any = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    metrics: dict[str, float | None] = field(default_factory=dict)
    objective: float | None = None
    training_loss: float | None = None
    eval_loss: float | None = None
    optimal: bool = False

    def summary(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "hyperparameters": self.hyperparameters,
            "metrics": self.metrics,
            "training_loss": self.training_loss,
            "eval_loss": self.eval_loss,
            "status": self.status,
            "error_message": self.error,
            "is_optimal": self.optimal,
        }


def objective_of(plan: TrainingPlan) -> tuple[str, bool]:
    """The metric trials are ranked by, and whether larger is better."""
    task = plan.family.task
    wanted = plan.options.get("hparam_tuning_objectives") or [plan.family.key_metric]
    if len(wanted) != 1:
        raise OptionError(
            "hparam_tuning_objectives takes one metric; sqlml ranks trials by one objective",
            "hparam_tuning_objectives",
        )
    metric = wanted[0].lower()
    if metric not in METRICS.get(task, ()):
        raise OptionError(
            f"hparam_tuning_objectives {metric!r} is not a metric of {plan.family.model_type}; "
            f"valid: {', '.join(METRICS.get(task, ()))}",
            "hparam_tuning_objectives",
        )
    return metric, metric not in SMALLER_IS_BETTER


def tune(
    plan: TrainingPlan,
    fit: Callable[..., tuple[Any, list[str], float]],
    data: pa.Table,
    y: np.ndarray | None,
    train_rows: np.ndarray,
    eval_rows: np.ndarray,
    console: Console,
) -> list[Trial]:
    space = {k: v for k, v in plan.options.items() if isinstance(v, HParam)}
    metric, larger_is_better = objective_of(plan)
    algorithm = plan.options["hparam_tuning_algorithm"]
    count = plan.options["num_trials"]
    parallel = plan.options["max_parallel_trials"]
    rng = np.random.default_rng(plan.options["random_seed"])
    from sqlml.preprocessing import RowSelection  # scikit-learn: only when training

    evaluation = RowSelection(data, eval_rows)
    y_eval = y[eval_rows] if y is not None else None
    # The training loss is measured on (a sample of) the training rows.
    sampled = train_rows
    if len(train_rows) > LOSS_SAMPLE_ROWS:
        sampled = np.sort(rng.choice(train_rows, LOSS_SAMPLE_ROWS, replace=False))
    training = RowSelection(data, sampled)
    y_train = y[sampled] if y is not None else None
    grid = _grid(space) if algorithm == "grid_search" else None
    if grid is not None:
        count = min(count, len(grid))
    trials: list[Trial] = []

    def run(trial: Trial) -> Trial:
        options = {**plan.options, **trial.hyperparameters}
        try:
            trial.pipeline, trial.warnings, trial.seconds = fit(options, catch=parallel == 1)
            trial.metrics = _metrics(plan, trial.pipeline, evaluation, y_eval)
            trial.objective = trial.metrics.get(metric)
            trial.training_loss = _loss(plan, trial.pipeline, training, y_train)
            trial.eval_loss = _loss(plan, trial.pipeline, evaluation, y_eval)
            trial.status = "SUCCEEDED" if trial.objective is not None else "FAILED"
            if trial.objective is None:
                trial.error = f"{metric} is undefined on the evaluation rows"
        except Error as e:
            trial.status, trial.error = "FAILED", str(e)
        return trial

    tried: set[str] = set()

    def propose(trial_id: int, pending: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The next hyperparameters, never ones already tried (None: the space is used up).
        ``pending``: proposed in this batch, not yet run."""
        if grid is not None:
            return grid[trial_id - 1]
        for attempt in range(PROPOSALS):
            if algorithm == "random_search" or len(trials) < _startup(count) or attempt:
                values = {k: _random(v, rng) for k, v in space.items()}
            else:
                values = _bayesian(space, trials, pending, larger_is_better, tried, rng)
            key = _key(values)
            if key not in tried:
                tried.add(key)
                return values
        return None

    with ThreadPoolExecutor(parallel) as pool:
        while len(trials) < count:
            batch = []
            for _ in range(min(parallel, count - len(trials))):
                values = propose(len(trials) + len(batch) + 1, [b.hyperparameters for b in batch])
                if values is None:
                    break
                batch.append(Trial(len(trials) + len(batch) + 1, values))
            if not batch:
                break  # every combination of a small space is tried
            if parallel == 1:
                trials += list(pool.map(run, batch))
            else:  # the warnings of parallel fits recorded once around the batch, shared
                from sqlml.trainer import warning_texts  # loaded: tuning runs inside training

                with warnings.catch_warnings(record=True) as recorded:
                    warnings.simplefilter("always")
                    ran = list(pool.map(run, batch))
                for trial in ran:
                    trial.warnings = warning_texts(recorded)
                trials += ran
            console.progress(len(trials), count, "trials")
    done = [t for t in trials if t.status == "SUCCEEDED"]
    if not done:
        raise OptionError(
            f"Every trial of model {plan.qualified} failed; the first: {trials[0].error}",
            next(iter(space)),
        )
    best = (max if larger_is_better else min)(done, key=lambda t: t.objective)  # type: ignore[arg-type, return-value]
    best.optimal = True
    return trials


def _startup(count: int) -> int:
    return max(4, count // 4)


def _log_scale(value: HParam) -> bool:
    low, high = value.values
    return value.kind == "range" and low > 0 and high / low >= 100


def _to_unit(value: HParam, x: Any) -> float:
    if value.kind == "candidates":
        return (value.values.index(x) + 0.5) / len(value.values)
    low, high = value.values
    if _log_scale(value):
        return (math.log(x) - math.log(low)) / (math.log(high) - math.log(low))
    return (x - low) / (high - low)


def _from_unit(value: HParam, u: float) -> Any:
    u = min(max(u, 0.0), 1.0)
    if value.kind == "candidates":
        return value.values[min(int(u * len(value.values)), len(value.values) - 1)]
    low, high = value.values
    if _log_scale(value):
        x = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    else:
        x = low + u * (high - low)
    return round(x) if isinstance(low, int) and isinstance(high, int) else x


def _random(value: HParam, rng: np.random.Generator) -> Any:
    if value.kind == "candidates":
        return value.values[int(rng.integers(len(value.values)))]
    low, high = value.values
    if isinstance(low, int) and isinstance(high, int) and not _log_scale(value):
        return int(rng.integers(low, high + 1))
    return _from_unit(value, float(rng.random()))


def _grid(space: dict[str, HParam]) -> list[dict[str, Any]]:
    axes = []
    for name, value in space.items():
        if value.kind == "candidates":
            axes.append([(name, v) for v in value.values])
        elif (
            all(isinstance(v, int) for v in value.values)
            and value.values[1] - value.values[0] <= 50
        ):
            axes.append([(name, v) for v in range(value.values[0], value.values[1] + 1)])
        else:
            raise OptionError(
                f"grid_search needs HPARAM_CANDIDATES for {name} (or a small integer range)",
                name,
            )
    return [dict(combination) for combination in itertools.product(*axes)]


def _key(values: dict[str, Any]) -> str:
    return repr(sorted(values.items()))


def _bayesian(
    space: dict[str, HParam],
    trials: list[Trial],
    pending: list[dict[str, Any]],
    larger_is_better: bool,
    tried: set[str],
    rng: np.random.Generator,
) -> dict[str, Any]:
    """The untried point of largest expected improvement under a Gaussian process fitted to
    the trials so far, in the unit cube of the search space (log scale where the range
    spans two orders of magnitude)."""
    import warnings

    from scipy.stats import norm
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    names = list(space)
    done = [
        t
        for t in trials
        if t.status == "SUCCEEDED" and t.objective is not None and math.isfinite(t.objective)
    ]
    if len(done) < 2:
        return {k: _random(v, rng) for k, v in space.items()}
    x = np.array([[_to_unit(space[n], t.hyperparameters[n]) for n in names] for t in done])
    y = np.array([t.objective for t in done], dtype=float)
    if larger_is_better:
        score = y
    elif (y > 0).all():  # errors and losses: their logarithm, so a few bad trials
        score = -np.log(y)  # do not flatten the differences among the good ones
    else:
        score = -y
    if pending:  # a batch of parallel trials: each pending one counts as a poor result
        x = np.vstack([x, [[_to_unit(space[n], p[n]) for n in names] for p in pending]])
        score = np.concatenate([score, np.full(len(pending), score.min())])
    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        length_scale=np.full(len(names), 0.3), length_scale_bounds=(0.02, 10.0), nu=2.5
    ) + WhiteKernel(1e-3, (1e-6, 1e-1))
    model = GaussianProcessRegressor(
        kernel, normalize_y=True, n_restarts_optimizer=2, random_state=int(rng.integers(2**31))
    )
    # Around the best trials and anywhere: candidates snapped to values the space can take.
    best = x[np.argsort(-score[: len(done)])[:3]]
    local = best[rng.integers(len(best), size=CANDIDATES_LOCAL)] + rng.normal(
        0.0, rng.choice([0.03, 0.1], size=(CANDIDATES_LOCAL, 1)), (CANDIDATES_LOCAL, len(names))
    )
    candidates = np.clip(np.vstack([rng.random((CANDIDATES_GLOBAL, len(names))), local]), 0, 1)
    values = [
        {n: _from_unit(space[n], u) for n, u in zip(names, row, strict=True)} for row in candidates
    ]
    fresh = [i for i, v in enumerate(values) if _key(v) not in tried]
    if not fresh:
        return {k: _random(v, rng) for k, v in space.items()}
    snapped = np.array([[_to_unit(space[n], values[i][n]) for n in names] for i in fresh])
    with warnings.catch_warnings():  # hyperparameter bounds reached: the fit is still usable
        warnings.simplefilter("ignore")
        model.fit(x, score)
        mean, std = model.predict(snapped, return_std=True)
    gain = mean - score.max() - 0.01 * np.std(score)
    z = gain / np.maximum(std, 1e-12)
    improvement = gain * norm.cdf(z) + std * norm.pdf(z)
    return values[fresh[int(np.argmax(improvement))]]


def _outputs(plan: TrainingPlan, pipeline: Any, rows: RowSelection) -> dict[str, np.ndarray]:
    task = plan.family.task
    if task == REGRESSION:
        return {"prediction": np.asarray(pipeline.predict(rows), dtype=float)}
    if task == CLASSIFICATION:
        probabilities = np.asarray(pipeline.predict_proba(rows), dtype=float)
        return {"probabilities": probabilities, "label": probabilities.argmax(axis=1)}
    if task == CLUSTERING:
        distances = np.asarray(pipeline.transform(rows), dtype=float)
        return {"distances": distances, "label": distances.argmin(axis=1)}
    return {"label": np.asarray(pipeline.predict(rows))}


def _metrics(
    plan: TrainingPlan, pipeline: Any, rows: RowSelection, y: np.ndarray | None
) -> dict[str, float | None]:
    estimator = pipeline.named_steps["model"]
    task = plan.family.task
    if task not in (REGRESSION, CLASSIFICATION, CLUSTERING) and hasattr(estimator, "components_"):
        x = pipeline.named_steps["preprocess"].transform(rows)
        return explained_variance(x, estimator.components_, estimator.mean_)
    centroids = getattr(estimator, "cluster_centers_", None)
    return evaluate(task, _outputs(plan, pipeline, rows), y, centroids)


def _loss(
    plan: TrainingPlan, pipeline: Any, rows: RowSelection, y: np.ndarray | None
) -> float | None:
    from sqlml.inspection import final_loss

    x = pipeline.named_steps["preprocess"].transform(rows)
    return final_loss(pipeline.named_steps["model"], plan.family.task, (x, y))


# -- using the trials -------------------------------------------------------------------------


def trial_record(
    expander: QueryExpander, record: ModelRecord, trial_id: Any, function: str
) -> ModelRecord:
    """The model as it was in one trial (the optimal one is the model itself)."""
    trials = record.metadata.get("trials")
    if not trials:
        raise ArgumentError(f"{function}: model {record.qualified} was not tuned; remove trial_id")
    known = {t["trial_id"]: t for t in trials}
    if not isinstance(trial_id, int) or trial_id not in known:
        raise ArgumentError(
            f"{function}: model {record.qualified} has no trial {trial_id!r}; its trials: "
            f"{', '.join(str(t) for t in sorted(known))}"
        )
    trial = known[trial_id]
    if trial["is_optimal"]:
        return record
    if trial["status"] != "SUCCEEDED":
        raise ArgumentError(f"{function}: trial {trial_id} of model {record.qualified} failed")
    stored = expander.catalog.trial(record.schema, record.name, record.version, trial_id)
    assert stored is not None
    return stored


def trial_info_sql(call: Call) -> str:
    record = call.record
    trials = record.metadata.get("trials") or []
    if not trials:
        raise ArgumentError(f"ML.TRIAL_INFO: model {record.qualified} was not tuned")
    names = sorted({k for t in trials for k in t["hyperparameters"]})
    metrics = list(METRICS[record.task])

    def sql_type(value: Any) -> str:
        if isinstance(value, bool):
            return "BOOLEAN"
        if isinstance(value, int):
            return "BIGINT"
        if isinstance(value, float):
            return "DOUBLE"
        if isinstance(value, list):
            return "BIGINT[]"
        return "VARCHAR"

    sample = trials[0]["hyperparameters"]
    types = {
        n: "DOUBLE"
        if any(isinstance(t["hyperparameters"][n], float) for t in trials)
        else sql_type(sample[n])
        for n in names
    }
    hyper = ", ".join(f'"{n}" {types[n]}' for n in names)
    metric_type = ", ".join(f'"{m}" DOUBLE' for m in metrics)
    columns = [
        ("trial_id", "BIGINT"),
        ("hyperparameters", f"STRUCT({hyper})"),
        ("hparam_tuning_evaluation_metrics", f"STRUCT({metric_type})"),
        ("training_loss", "DOUBLE"),
        ("eval_loss", "DOUBLE"),
        ("status", "VARCHAR"),
        ("error_message", "VARCHAR"),
        ("is_optimal", "BOOLEAN"),
    ]
    rows = [
        [
            t["trial_id"],
            {n: t["hyperparameters"][n] for n in names},
            {m: t["metrics"].get(m) for m in metrics},
            t["training_loss"],
            t["eval_loss"],
            t["status"],
            t["error_message"],
            t["is_optimal"],
        ]
        for t in trials
    ]
    return tables.table_sql(columns, rows)


def register_functions(register: Callable[[str, Spec], None], supervised: frozenset[str]) -> None:
    from sqlml.table_functions import Spec

    register("TRIAL_INFO", Spec(trial_info_sql, "none"))
