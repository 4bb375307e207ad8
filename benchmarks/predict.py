"""Scoring speed: sqlml's model function and ML.PREDICT against fetch + onnxruntime and the
pandas round trip, on the same rows in the same process.

    python -m benchmarks.predict [--model-type logistic_reg|boosted_tree_classifier|mixed|all]
                                 [--rows N] [--repeat R]

The contenders run in rounds, each once per round after one untimed warm-up round, and
each figure is the median over rounds: a slow spell of this noisy machine then falls on
every contender alike.

Contenders:
- fetch + onnxruntime (baseline): the feature columns fetched from DuckDB to NumPy once
  (through Arrow, the fastest way out), then one onnxruntime call over all rows
  (onnxruntime's default threads, every core), with the ONNX model sqlml stored.
- pandas round trip: ``.df()``, scikit-learn ``predict`` with the same estimator fitted by
  hand, the predictions written back into a DuckDB table.
- model function: ``CREATE TABLE p AS SELECT m(...) FROM t``.
- ML.PREDICT: ``CREATE TABLE p AS SELECT predicted_y FROM ML.PREDICT(...)`` (the predicted
  labels, what the pandas round trip makes), and for information ``SELECT *`` (every input
  column, the label and the probabilities).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import sqlml
from benchmarks.common import (
    CASES,
    MIXED_TEXT,
    Case,
    Result,
    arguments,
    machine,
    make_table,
    ratio,
    report,
    target_line,
    timed_rounds,
)
from sqlml.features import NULL_TOKEN

TRAIN_ROWS = 200_000


def hand_model(case: Case, frame):  # type: ignore[no-untyped-def]
    """The estimator a pandas user would fit, with the same hyperparameters."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if case.model_type == "logistic_reg":
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5))
    else:
        iterations = 100 if case.name != "mixed" else 30
        model = HistGradientBoostingClassifier(
            learning_rate=0.1, max_iter=iterations, max_depth=6, max_leaf_nodes=None,
            min_samples_leaf=1, l2_regularization=1.0, early_stopping=False, random_state=0,
        )  # fmt: skip
    if case.name == "mixed":
        numeric = [c for c in case.columns if c not in MIXED_TEXT]
        text = make_pipeline(
            SimpleImputer(strategy="constant", fill_value="NULL"),
            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
        )
        prepare = ColumnTransformer(
            [("numeric", SimpleImputer(), numeric), ("text", text, MIXED_TEXT)]
        )
        model = Pipeline([("prepare", prepare), ("model", model)])
    return model.fit(frame[case.columns], frame[case.label])


def onnx_inputs(case: Case, fetched: pa.Table) -> dict[str, np.ndarray]:
    """The ONNX model's inputs from the fetched columns: NaN for NULL numbers, the NULL token
    for NULL strings."""
    feed = {}
    for column in case.columns:
        values = fetched.column(column)
        if column in MIXED_TEXT:
            strings = pc.fill_null(values, NULL_TOKEN).to_numpy(zero_copy_only=False)
            feed[column] = strings.astype(object).reshape(-1, 1)
        else:
            numbers = pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False)
            feed[column] = numbers.reshape(-1, 1)
    return feed


def run_case(case: Case, rows: int, repeat: int) -> tuple[list[Result], list[str]]:
    import onnxruntime as ort

    con = sqlml.connect()
    raw = con.duckdb
    make_table(raw, case, rows)
    columns = ", ".join(case.columns)
    options = f"model_type = '{case.model_type}', input_label_cols = ['y'], {case.options}"
    sample = f"SELECT * FROM t LIMIT {TRAIN_ROWS}"
    con.sql(f"CREATE MODEL m OPTIONS ({options}) AS {sample}")
    path = next(
        v for s, n, v in con.sql("DESCRIBE MODEL m").fetchall() if (s, n) == ("inference", "path")
    )
    onnx_model = "m"
    if path != "onnx":  # the same model scored by onnxruntime, for comparison
        con.sql(f"CREATE MODEL m_onnx OPTIONS ({options}, inference = 'onnx') AS {sample}")
        onnx_model = "m_onnx"
    blob = bytes(
        con.sql(
            "SELECT onnx FROM sqlml.model_versions v JOIN sqlml.models USING (model_name) "
            f"WHERE model_name = '{onnx_model}' AND v.version = current_version"
        ).fetchall()[0][0]
    )
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    hand = hand_model(case, raw.sql(sample).df())

    def fetch_and_onnxruntime() -> None:
        # Arrow is DuckDB's fastest way out to NumPy here (faster than fetchnumpy).
        fetched = raw.sql(f"SELECT {columns} FROM t").to_arrow_table()
        session.run(None, onnx_inputs(case, fetched))

    def pandas_round_trip() -> None:
        frame = raw.sql(f"SELECT {columns} FROM t").df()
        predictions = frame[[]].assign(y=hand.predict(frame[case.columns]))  # noqa: F841
        raw.execute("CREATE OR REPLACE TABLE p AS SELECT * FROM predictions")

    def model_function(name: str) -> None:
        raw.execute(f"CREATE OR REPLACE TABLE p AS SELECT {name}({columns}) AS y FROM t")

    def ml_predict(columns: str) -> None:
        con.sql(f"CREATE OR REPLACE TABLE p AS SELECT {columns} FROM ML.PREDICT(MODEL m, TABLE t)")

    contenders = {
        "fetch + onnxruntime": fetch_and_onnxruntime,
        "pandas round trip": pandas_round_trip,
        "model function": lambda: model_function("m"),
        "ML.PREDICT": lambda: ml_predict("predicted_y"),
        "ML.PREDICT, SELECT *": lambda: ml_predict("*"),
    }
    if path != "onnx":
        contenders["model function, inference='onnx'"] = lambda: model_function("m_onnx")
    notes = {"model function, inference='onnx'": "onnx", "model function": path}
    notes |= {"ML.PREDICT": path, "ML.PREDICT, SELECT *": path}
    results = [
        Result(name, times, rows, notes.get(name, ""))
        for name, times in timed_rounds(contenders, repeat).items()
    ]
    targets = [
        target_line(
            "model function vs fetch + onnxruntime",
            ratio(results, "model function", "fetch + onnxruntime"),
            3.0 if path == "sql" else 1.0,
        ),
        target_line(
            "ML.PREDICT vs fetch + onnxruntime",
            ratio(results, "ML.PREDICT", "fetch + onnxruntime"),
            1.0,
        ),
        target_line(
            "model function vs pandas round trip",
            ratio(results, "model function", "pandas round trip"),
            5.0,
        ),
        target_line(
            "ML.PREDICT vs pandas round trip",
            ratio(results, "ML.PREDICT", "pandas round trip"),
            5.0,
        ),
    ]
    con.close()
    return results, targets


def main() -> None:
    args = arguments(__doc__ or "", "all")
    names = list(CASES) if args.model_type == "all" else [args.model_type]
    print(f"Machine: {machine()}\n")
    for name in names:
        case = CASES[name]
        rows = args.rows or case.rows
        results, targets = run_case(case, rows, args.repeat)
        title = f"{name}: {rows:,} rows x {len(case.columns)} features ({case.model_type})"
        print(report(title, results, "fetch + onnxruntime"))
        print()
        print("\n".join(targets))
        print()


if __name__ == "__main__":
    main()
