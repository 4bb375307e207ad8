"""Memory: scoring a big Parquet file, and training in batches as rows grow.

    python -m benchmarks.memory [--rows 50000000]
                                [--model-type logistic_reg|boosted_tree_classifier|all]

1. Scoring: in a fresh process,
   ``COPY (SELECT * FROM ML.PREDICT(MODEL m, (SELECT * FROM read_parquet('big.parquet'))))
   TO 'out.parquet'``, for a model scored in SQL (logistic_reg) and one scored by
   onnxruntime (boosted_tree_classifier, 20 trees); peak RSS against 2 GiB, with DuckDB's
   default settings and with ``SET memory_limit = '1GB'``, and on a fifth of the rows; next
   to DuckDB alone copying the same file (``COPY (SELECT * FROM read_parquet(...))``), and
   copying it with columns shaped as ML.PREDICT's (a label and a list of (label, prob)
   structs) computed in SQL, and to sqlml's own process after scoring a few rows.
2. Training: CREATE MODEL with ``streaming = TRUE`` on growing row counts of the same file,
   next to in-memory training on the same rows; the streaming peak stays flat.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import textwrap
from pathlib import Path

import duckdb

from benchmarks.common import CASES, machine, make_table, peak_rss_of

MODELS = {
    "logistic_reg": "model_type = 'logistic_reg', input_label_cols = ['y'], l2_reg = 1",
    "boosted_tree_classifier": (
        "model_type = 'boosted_tree_classifier', input_label_cols = ['y'], max_iterations = 20, "
        "max_tree_depth = 6, early_stop = FALSE"
    ),
}

SCORE = """
import sqlml
con = sqlml.connect({db!r})
con.sql("SET enable_progress_bar = false")
{setting}
con.sql("COPY (SELECT * FROM ML.PREDICT(MODEL {model}, "
        "(SELECT * FROM read_parquet({big!r}) {limit}))) TO {out!r} (FORMAT parquet)")
print(con.sql("SELECT count(*) FROM read_parquet({out!r})").fetchall()[0][0])
"""

COPY_ALONE = """
import duckdb
con = duckdb.connect()
con.sql("SET enable_progress_bar = false")
con.sql("COPY (SELECT {columns} FROM read_parquet({big!r})) TO {out!r} (FORMAT parquet)")
"""

# ML.PREDICT's output columns for a BOOLEAN label, without a model: DuckDB alone.
PREDICT_SHAPED = (
    "x1 > x2 AS predicted_y, "
    "[{'label': true, 'prob': x1}, {'label': false, 'prob': 1 - x1}] AS predicted_y_probs, *"
)

LIBRARIES = """
import sqlml
con = sqlml.connect({db!r})
con.sql("SELECT * FROM ML.PREDICT(MODEL {model}, (SELECT * FROM read_parquet({big!r}) LIMIT 5000))")
"""

TRAIN = """
import sqlml, sklearn.linear_model, skl2onnx, onnxruntime
con = sqlml.connect({db!r})
con.sql("SET enable_progress_bar = false")
con.sql("CREATE OR REPLACE MODEL m OPTIONS (model_type = 'logistic_reg', "
        "input_label_cols = ['y'], l2_reg = 1{extra}) "
        "AS SELECT * FROM read_parquet({big!r}) LIMIT {rows}")
print(con.sql("SELECT training_rows FROM (SHOW MODELS)").fetchall()[0][0])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000_000)
    parser.add_argument("--model-type", default="all", choices=[*MODELS, "all"])
    parser.add_argument("--dir", type=Path, default=None, help="where the Parquet files go")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sqlml-memory-", dir=args.dir))
    print(f"Machine: {machine()}\n")
    try:
        big = folder / "big.parquet"
        db = folder / "models.duckdb"
        con = duckdb.connect(str(db))
        make_table(con, CASES["logistic_reg"], args.rows, table="rows_source")
        con.execute(f"COPY rows_source TO '{big}' (FORMAT parquet)")
        con.execute("DROP TABLE rows_source")
        con.close()
        size = big.stat().st_size / 2**30
        print(f"### Scoring {args.rows:,} rows x 8 features from Parquet ({size:.1f} GiB)\n")
        out = folder / "out.parquet"
        for what, columns in [("", "*"), (" with ML.PREDICT's columns", PREDICT_SHAPED)]:
            code = COPY_ALONE.format(big=str(big), out=str(out), columns=columns)
            seconds, peak, _ = peak_rss_of(code)
            print(f"DuckDB alone copying the file{what}: {seconds:.1f} s, peak RSS {peak:.0f} MiB")
        print()
        import sqlml

        with sqlml.connect(db) as sq:
            for name, options in MODELS.items():
                if args.model_type in (name, "all"):
                    sq.sql(
                        f"CREATE MODEL {name} OPTIONS ({options}) "
                        f"AS SELECT * FROM read_parquet('{big}') LIMIT 200000"
                    )
            paths = {
                m: next(
                    v
                    for s, n, v in sq.sql(f"DESCRIBE MODEL {m}").fetchall()
                    if (s, n) == ("inference", "path")
                )
                for m in MODELS
                if args.model_type in (m, "all")
            }
        for name in paths:
            code = LIBRARIES.format(db=str(db), model=name, big=str(big))
            _, peak, _ = peak_rss_of(textwrap.dedent(code))
            print(f"sqlml's process after scoring 5,000 rows with {name}: peak RSS {peak:.0f} MiB")
        print()
        print("| model | inference | rows | DuckDB settings | seconds | rows/s | peak RSS MiB |")
        print("|---|---|---:|---|---:|---:|---:|")
        runs = [
            (args.rows // 5, "default", ""),
            (args.rows, "default", ""),
            (args.rows, "memory_limit = '1GB'", "con.sql(\"SET memory_limit = '1GB'\")"),
        ]
        for name, path in paths.items():
            for rows, label, setting in runs:
                limit = f"LIMIT {rows}" if rows < args.rows else ""
                code = SCORE.format(
                    db=str(db), model=name, big=str(big), out=str(out), limit=limit,
                    setting=setting,
                )  # fmt: skip
                seconds, peak, stdout = peak_rss_of(textwrap.dedent(code))
                assert int(stdout.strip()) == rows
                print(
                    f"| {name} | {path} | {rows:,} | {label} | {seconds:.1f} | "
                    f"{rows / seconds / 1e6:.2f}M | {peak:.0f} |"
                )
        out.unlink(missing_ok=True)

        print("\n### Training logistic_reg as rows grow: in memory and streaming\n")
        print("| rows | in memory: peak RSS MiB | streaming: peak RSS MiB | streaming s |")
        print("|---:|---:|---:|---:|")
        sizes = [n for n in (1_000_000, 4_000_000, 16_000_000) if n <= args.rows]
        for rows in sizes:
            peaks = []
            for extra in ("", ", streaming = TRUE"):
                code = TRAIN.format(db=str(db), big=str(big), rows=rows, extra=extra)
                seconds, peak, _ = peak_rss_of(textwrap.dedent(code))
                peaks.append((seconds, peak))
            print(f"| {rows:,} | {peaks[0][1]:.0f} | {peaks[1][1]:.0f} | {peaks[1][0]:.1f} |")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
