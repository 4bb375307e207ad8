"""Training cost: CREATE MODEL against a hand-written fit, wall time and peak memory.

    python -m benchmarks.train [--model-type boosted_tree_classifier|logistic_reg|mixed|all]
                               [--rows N] [--repeat R]

Each contender runs in a fresh process (so peak RSS is its own) on a copy of the same
database file, with the libraries imported before the clock starts:

- hand-written: the rows fetched from DuckDB to NumPy, scikit-learn's estimator fitted with
  the same hyperparameters, skl2onnx conversion.
- CREATE MODEL: the whole statement (read, split, preprocess, fit, ONNX export, parity
  check, evaluation, storage), with sqlml's defaults for everything not set.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import textwrap
from pathlib import Path

import duckdb

from benchmarks.common import CASES, Case, arguments, machine, make_table, peak_rss_of

HAND = {
    "boosted_tree_classifier": """
from sklearn.ensemble import HistGradientBoostingClassifier as Estimator
estimator = Estimator(learning_rate=0.1, max_iter=100, max_depth=6, max_leaf_nodes=None,
                      min_samples_leaf=1, l2_regularization=1.0, early_stopping=False,
                      random_state=0)
precision = FloatTensorType
""",
    "logistic_reg": """
from sklearn.linear_model import LogisticRegression as Estimator
estimator = Estimator(C=0.5, max_iter=100, random_state=0)
precision = DoubleTensorType
""",
}

CHILD_HAND = """
import time, numpy as np, duckdb, sklearn.ensemble, sklearn.linear_model, onnxruntime
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
{estimator}
started = time.perf_counter()
con = duckdb.connect({db!r}, read_only=True)
data = con.sql("SELECT {columns}, y FROM t").to_arrow_table()
X = np.column_stack([data.column(c).to_numpy() for c in {names!r}])
y = data.column("y").to_numpy()
del data
estimator.fit(X, y)
model = convert_sklearn(estimator, initial_types=[("X", precision([None, X.shape[1]]))],
                        options={{id(estimator): {{"zipmap": False}}}})
print(time.perf_counter() - started)
"""

CHILD_SQLML = """
import time, sqlml, sklearn.ensemble, sklearn.linear_model, skl2onnx, onnxruntime
con = sqlml.connect({db!r})
started = time.perf_counter()
con.sql("CREATE MODEL m OPTIONS (model_type = '{model_type}', input_label_cols = ['y'], "
        "{options}) AS SELECT * FROM t")
print(time.perf_counter() - started)
"""


def run_case(case: Case, rows: int, repeat: int) -> list[str]:
    if case.name not in HAND:
        return [f"(no hand-written baseline for {case.name})"]
    folder = Path(tempfile.mkdtemp(prefix="sqlml-train-"))
    try:
        source = folder / "data.duckdb"
        con = duckdb.connect(str(source))
        make_table(con, case, rows)
        con.close()
        runs: dict[str, list[tuple[float, float]]] = {"hand-written": [], "CREATE MODEL": []}
        for i in range(repeat):
            for name, template in (("hand-written", CHILD_HAND), ("CREATE MODEL", CHILD_SQLML)):
                db = folder / f"run{i}-{name.replace(' ', '_')}.duckdb"
                shutil.copy(source, db)
                code = template.format(
                    db=str(db),
                    columns=", ".join(case.columns),
                    names=case.columns,
                    estimator=HAND[case.name],
                    model_type=case.model_type,
                    options=case.options,
                )
                _, peak, out = peak_rss_of(textwrap.dedent(code))
                runs[name].append((float(out.strip().splitlines()[-1]), peak))
                db.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    seconds = {n: statistics.median(s for s, _ in v) for n, v in runs.items()}
    peaks = {n: statistics.median(p for _, p in v) for n, v in runs.items()}
    time_ratio = seconds["CREATE MODEL"] / seconds["hand-written"]
    memory_ratio = peaks["CREATE MODEL"] / peaks["hand-written"]
    lines = [
        f"### {case.name}: {rows:,} rows x {len(case.columns)} features ({case.model_type})",
        "",
        "| contender | median s | peak RSS MiB | vs hand-written (time) | (memory) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in runs:
        lines.append(
            f"| {name} | {seconds[name]:.2f} | {peaks[name]:.0f} | "
            f"{seconds[name] / seconds['hand-written']:.2f}x | "
            f"{peaks[name] / peaks['hand-written']:.2f}x |"
        )
    lines += [
        "",
        f"- CREATE MODEL time: {time_ratio:.2f}x the hand-written fit (target <= 1.1x): "
        f"**{'met' if time_ratio <= 1.1 else 'NOT met'}**",
        f"- CREATE MODEL peak memory: {memory_ratio:.2f}x (target <= 1.5x): "
        f"**{'met' if memory_ratio <= 1.5 else 'NOT met'}**",
    ]
    return lines


def main() -> None:
    args = arguments(__doc__ or "", "boosted_tree_classifier")
    names = [n for n in CASES if n in HAND] if args.model_type == "all" else [args.model_type]
    print(f"Machine: {machine()}\n")
    for name in names:
        case = CASES[name]
        print("\n".join(run_case(case, args.rows or case.rows, args.repeat)))
        print()


if __name__ == "__main__":
    main()
