"""Where tree ensembles stop paying as SQL, and why bigger onnxruntime batches do not help.

    python -m benchmarks.trees [--rows N] [--repeat R]

1. For boosted trees of growing size, the model function scored as nested CASE in DuckDB
   (inference = 'sql'), by the native scorer (inference = 'native') and by onnxruntime
   (inference = 'onnx'), same rows, same process. sqlml's automatic choice sends an
   ensemble to SQL only below the crossover (``sqlml.families.trees.SQL_TREE_NODES``
   internal nodes), to the native scorer above it.
2. onnxruntime alone, one thread, on the same rows split into batches of 2,048 rows (one
   DuckDB vector) up to all rows in one call: rows per second by batch size, for a linear
   model, a tree ensemble and a neural network.
"""

from __future__ import annotations

import argparse

import numpy as np

import sqlml
from benchmarks.common import CASES, Result, machine, make_table, timed
from sqlml.families.trees import SQL_TREE_NODES


def internal_nodes(con: sqlml.Connection, model: str) -> int:
    parameters = con.catalog.current("main", model).metadata["parameters"]
    return sum(len(t["leaf"]) - sum(t["leaf"]) for t in parameters["trees"])


PATHS = ("onnx", "native", "sql")  # onnx first: its size decides whether SQL is tried
SQL_UP_TO = 2_000  # internal nodes; bigger ensembles take DuckDB far too long as CASE


def crossover(con: sqlml.Connection, rows: int, repeat: int) -> list[str]:
    lines = [
        f"### Tree ensembles as SQL, native or onnxruntime, {rows:,} rows (model function "
        "into a table)",
        "",
        "| trees x depth | internal nodes | SQL s | native s | onnxruntime s | SQL vs native "
        "| native vs onnxruntime |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    columns = ", ".join(CASES["boosted_tree_classifier"].columns)
    for trees, depth in (
        (1, 2), (2, 3), (4, 3), (8, 3), (10, 4), (20, 4), (30, 6), (100, 6), (50, 10), (20, 12),
    ):  # fmt: skip
        seconds = {}
        nodes = 0
        for inference in PATHS:
            if inference == "sql" and nodes > SQL_UP_TO:
                continue
            con.sql(
                f"CREATE OR REPLACE MODEL t_{inference} OPTIONS (model_type = "
                f"'boosted_tree_classifier', input_label_cols = ['y'], max_iterations = {trees}, "
                f"max_tree_depth = {depth}, early_stop = FALSE, inference = '{inference}') "
                "AS SELECT * FROM t LIMIT 100000"
            )
            nodes = internal_nodes(con, f"t_{inference}")
            query = f"CREATE OR REPLACE TABLE p AS SELECT t_{inference}({columns}) FROM t"
            times = timed(lambda query=query: con.duckdb.execute(query), repeat)
            seconds[inference] = Result(inference, times, rows).median
        onnx, native, sql = (seconds.get(p) for p in PATHS)
        lines.append(
            f"| {trees} x {depth} | {nodes} | "
            + (f"{sql:.3f}" if sql else "-")
            + f" | {native:.3f} | {onnx:.3f} | "
            + (f"{native / sql:.2f}x" if sql else "-")
            + f" | {onnx / native:.2f}x |"
        )
    lines += [
        "",
        f"sqlml's automatic choice: SQL up to {SQL_TREE_NODES} internal nodes, native above.",
    ]
    return lines


def batches(con: sqlml.Connection, rows: int, repeat: int) -> list[str]:
    import onnxruntime as ort

    lines = [
        f"### onnxruntime alone by batch size (one thread, {rows:,} rows)",
        "",
        "| model | 2,048 | 16,384 | 131,072 | all rows |",
        "|---|---:|---:|---:|---:|",
    ]
    columns = CASES["boosted_tree_classifier"].columns
    table = con.sql(f"SELECT {', '.join(columns)} FROM t").to_arrow_table()
    feed_all = {c: table.column(c).to_numpy().reshape(-1, 1) for c in columns}
    for model, options in (
        ("logistic_reg", "model_type = 'logistic_reg'"),
        ("boosted_tree_classifier", CASES["boosted_tree_classifier"].options),
        # The family that scores through onnxruntime by default (no SQL, no native path).
        (
            "dnn_classifier",
            "model_type = 'dnn_classifier', hidden_units = [128], max_iterations = 5",
        ),
    ):
        if "model_type" not in options:
            options = f"model_type = 'boosted_tree_classifier', {options}"
        con.sql(
            f"CREATE OR REPLACE MODEL b OPTIONS ({options}, input_label_cols = ['y'], "
            "inference = 'onnx') AS SELECT * FROM t LIMIT 100000"
        )
        blob = bytes(
            con.sql(
                "SELECT onnx FROM sqlml.model_versions v JOIN sqlml.models m "
                "ON v.model_name = m.model_name AND v.version = m.current_version "
                "WHERE v.model_name = 'b'"
            ).fetchall()[0][0]
        )
        options_ = ort.SessionOptions()
        options_.intra_op_num_threads = 1
        session = ort.InferenceSession(blob, options_, providers=["CPUExecutionProvider"])
        cells = []
        for size in (2_048, 16_384, 131_072, rows):

            def run(size: int = size, session: object = session) -> None:
                for start in range(0, rows, size):
                    session.run(None, {c: v[start : start + size] for c, v in feed_all.items()})  # type: ignore[attr-defined]

            seconds = float(np.median(timed(run, repeat)))
            cells.append(f"{rows / seconds / 1e6:.2f}M")
        lines.append(f"| {model} | {' | '.join(cells)} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"Machine: {machine()}\n")
    con = sqlml.connect()
    make_table(con.duckdb, CASES["boosted_tree_classifier"], args.rows)
    print("\n".join(crossover(con, args.rows, args.repeat)))
    print()
    print("\n".join(batches(con, args.rows, args.repeat)))
    con.close()


if __name__ == "__main__":
    main()
