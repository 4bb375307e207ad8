"""dbt-duckdb: the sqlml.dbt plugin and the sqlml_model materialization, run by real dbt.

The project is the README's (its files are read from README.md), plus a model scored by
onnxruntime, whose UDF must serve dbt's other cursors. dbt runs in a subprocess, as users
run it, on two threads.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pytest

import sqlml
from tests.conftest import PENGUINS_CSV, load_penguins, snapshot

ROOT = Path(__file__).resolve().parent.parent
DBT = Path(sys.executable).parent / "dbt"
README_FILES = [
    "profiles.yml",
    "packages.yml",
    "dbt_project.yml",
    "models/penguins.sql",
    "models/penguin_species.sql",
    "models/species_predictions.sql",
    "models/species_by_function.sql",
]
PACKAGE_PLACEHOLDER = "<the directory python -m sqlml.dbt path prints>"

# Beyond the README: a model scored by onnxruntime (its UDF is registered by the cursor
# that trains it, and used by the next model's cursor), with option values of every kind.
ONNX_MODEL = """{{ config(materialized='sqlml_model',
          ml_options={'model_type': 'boosted_tree_regressor',
                      'input_label_cols': ['body_mass_g'], 'max_iterations': 5,
                      'learn_rate': 0.25, 'early_stop': False, 'inference': 'onnx'}) }}
select island, bill_length_mm, flipper_length_mm, sex, body_mass_g
from {{ ref('penguins') }}
where body_mass_g is not null
"""
ONNX_PREDICTIONS = """{{ config(materialized='table') }}
select species, predicted_body_mass_g
from ML.PREDICT(MODEL {{ ref('penguin_mass') }}, (select * from {{ ref('penguins') }}))
"""
# TRANSFORM and tuning: ml_transform's items, and option values that are tuning ranges.
TUNED_MODEL = """{{ config(materialized='sqlml_model',
          ml_transform=['ML.STANDARD_SCALER(flipper_length_mm) OVER () AS flipper',
                        'ML.MIN_MAX_SCALER(bill_length_mm) OVER () AS bill', 'species'],
          ml_options={'model_type': 'logistic_reg', 'input_label_cols': ['species'],
                      'data_split_method': 'random', 'num_trials': 3,
                      'l2_reg': {'hparam_candidates': [0.0, 0.5, 5.0]},
                      'l1_reg': {'hparam_range': [0, 1.5]}}) }}
select species, flipper_length_mm, bill_length_mm from {{ ref('penguins') }}
"""
# Only the model's function, no ML call: it scores with the UDF the training cursor registered.
ONNX_FUNCTION = """{{ config(materialized='table') }}
select species, {{ ref('penguin_mass') }}(p) as grams from {{ ref('penguins') }} as p
"""


def readme_files() -> dict[str, str]:
    """The files of the README's dbt example: each block after a line naming the file."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## dbt\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^`([\w./]+)`.*?^```\w+\n(.*?)^```", section, re.M | re.S)
    return dict(blocks)


def dbt(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_USE_COLORS": "false",
        "DBT_PROFILES_DIR": str(project),
        "DBT_PROJECT_DIR": str(project),
    }
    return subprocess.run(
        [str(DBT), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    variables = f"{{penguins_csv: '{PENGUINS_CSV}'}}"
    return dbt(project, "run", "--threads", "2", "--vars", variables, *args)


def models(con: sqlml.Connection) -> dict[str, tuple[Any, ...]]:
    rows = con.sql("SELECT name, model_type, label, version, created_at FROM (SHOW MODELS)")
    return {row[0]: row[1:] for row in rows.fetchall()}


def check_predictions(con: sqlml.Connection) -> None:
    """What dbt built equals what sqlml computes from the same model and rows."""
    direct = con.sql(
        "SELECT * FROM ML.PREDICT(MODEL penguin_species, (SELECT * FROM penguins))"
    ).fetchall()
    built = con.sql("SELECT * FROM species_predictions").fetchall()
    assert len(built) == 344
    assert built == direct
    by_function = con.sql("SELECT predicted_species FROM species_by_function").fetchall()
    assert [r[0] for r in by_function] == [r[0] for r in direct]
    species = [r[0] for r in con.sql("SELECT species FROM penguins").fetchall()]
    right = sum(s == r[0] for s, r in zip(species, direct, strict=True))
    assert right > 0.9 * len(species)  # a real model, not a constant

    direct_mass = con.sql(
        "SELECT species, predicted_body_mass_g FROM ML.PREDICT(MODEL penguin_mass, "
        "(SELECT * FROM penguins))"
    ).fetchall()
    assert con.sql("SELECT * FROM mass_predictions").fetchall() == direct_mass
    assert con.sql("SELECT * FROM mass_by_function").fetchall() == direct_mass


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("dbt")
    files = readme_files()
    assert sorted(files) == sorted(README_FILES)
    path = subprocess.run(
        [sys.executable, "-m", "sqlml.dbt", "path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert (Path(path) / "macros" / "sqlml_model.sql").is_file()
    assert files["packages.yml"].count(PACKAGE_PLACEHOLDER) == 1
    files["packages.yml"] = files["packages.yml"].replace(PACKAGE_PLACEHOLDER, path)
    files["models/penguin_mass.sql"] = ONNX_MODEL
    files["models/mass_predictions.sql"] = ONNX_PREDICTIONS
    files["models/mass_by_function.sql"] = ONNX_FUNCTION
    files["models/penguin_tuned.sql"] = TUNED_MODEL
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)

    deps = dbt(project, "deps")
    assert deps.returncode == 0, deps.stdout + deps.stderr
    first = run(project)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Completed successfully" in first.stdout
    assert first.stderr == ""  # nothing left behind at exit (e.g. UDFs on open connections)
    return project


def test_dbt_run_trains_models_and_downstream_models_predict(project: Path):
    with sqlml.connect(project / "penguins.duckdb") as con:
        found = models(con)
        assert {name: row[:3] for name, row in found.items()} == {
            "penguin_species": ("logistic_reg", "species", 1),
            "penguin_mass": ("boosted_tree_regressor", "body_mass_g", 1),
            "penguin_tuned": ("logistic_reg", "species", 1),
        }
        check_predictions(con)

        # ml_transform became the TRANSFORM clause, tuning ranges HPARAM_* options.
        tuned = con.sql("DESCRIBE MODEL penguin_tuned").fetchall()
        assert [(s, name) for s, name, _ in tuned if s in ("input", "transform")] == [
            ("input", "flipper_length_mm"),
            ("input", "bill_length_mm"),
            ("transform", "flipper"),
            ("transform", "bill"),
        ]
        trials = con.sql(
            "SELECT hyperparameters FROM ML.TRIAL_INFO(MODEL penguin_tuned) ORDER BY trial_id"
        ).fetchall()
        assert len(trials) == 3
        assert {t["l2_reg"] for (t,) in trials} <= {0.0, 0.5, 5.0}
        assert all(0 <= t["l1_reg"] <= 1.5 for (t,) in trials)

        described = {
            (section, name): value
            for section, name, value in con.sql("DESCRIBE MODEL penguin_mass").fetchall()
        }
        # Each kind of option value reached CREATE MODEL as written in ml_options.
        assert described["option", "max_iterations"] == "5"
        assert described["option", "learn_rate"] == "0.25"
        assert described["option", "early_stop"] == "false"
        assert described["inference", "path"] == "onnx"
        # The query trained on is the dbt model's compiled SQL.
        assert described["training", "sql"] == (
            "select island, bill_length_mm, flipper_length_mm, sex, body_mass_g\n"
            'from "penguins"."main"."penguins"\nwhere body_mass_g is not null'
        )
    # The model scored in SQL needs no sqlml: plain DuckDB reads the view over it.
    with duckdb.connect(str(project / "penguins.duckdb"), read_only=True) as plain:
        rows = plain.sql("SELECT count(predicted_species) FROM species_by_function").fetchall()
        assert rows == [(344,)]


def test_dbt_run_again_retrains_and_a_bad_model_keeps_the_last_version(project: Path):
    second = run(project)
    assert second.returncode == 0, second.stdout + second.stderr
    with sqlml.connect(project / "penguins.duckdb") as con:
        retrained = models(con)
        assert {name: row[2] for name, row in retrained.items()} == {
            "penguin_species": 2,
            "penguin_mass": 2,
            "penguin_tuned": 2,
        }
        check_predictions(con)
        before = snapshot(con)

    model = project / "models" / "penguin_species.sql"
    model.write_text(
        model.read_text().replace("'input_label_cols'", "'l3_reg': 0.5, 'input_label_cols'")
    )
    (project / "models" / "no_options.sql").write_text(
        "{{ config(materialized='sqlml_model') }}\nselect 1 as label\n"
    )
    (project / "models" / "bad_range.sql").write_text(
        "{{ config(materialized='sqlml_model', ml_options={'model_type': 'linear_reg', "
        "'input_label_cols': ['y'], 'l2_reg': {'hparam_range': [1]}}) }}\nselect 1 as y\n"
    )
    (project / "models" / "bad_transform.sql").write_text(
        "{{ config(materialized='sqlml_model', ml_transform=[1], ml_options={'model_type': "
        "'linear_reg', 'input_label_cols': ['y']}) }}\nselect 1 as y\n"
    )
    bad = run(project, "--select", "penguin_species", "no_options", "bad_range", "bad_transform")
    assert bad.returncode == 1
    assert "Done. PASS=0 WARN=0 ERROR=4" in bad.stdout
    assert "Unknown option 'l3_reg' for model_type 'logistic_reg'. Valid options:" in bad.stdout
    assert (
        'Model "penguins"."main"."no_options" is materialized=\'sqlml_model\' but has no '
        "ml_options; set config(ml_options={'model_type': 'logistic_reg', "
        "'input_label_cols': ['label']})"
    ) in " ".join(bad.stdout.split())
    assert (
        'ml_options of model "penguins"."main"."bad_range": l2_reg is {\'hparam_range\': '
        "[1]}; a mapping must be {'hparam_range': [low, high]} or "
        "{'hparam_candidates': [value, ...]}"
    ) in " ".join(bad.stdout.split())
    assert (
        'ml_transform of model "penguins"."main"."bad_transform" is [1]; give the '
        "TRANSFORM select list as a string or a list of its items"
    ) in " ".join(bad.stdout.split())
    with sqlml.connect(project / "penguins.duckdb") as con:
        assert models(con) == retrained
        assert snapshot(con) == before
        check_predictions(con)


# -- what the plugin relies on in sqlml itself ------------------------------------------------


def test_a_model_name_may_name_the_current_database(tmp_path: Path):
    with sqlml.connect(tmp_path / "shop.duckdb") as con:
        load_penguins(con)
        con.sql(
            'CREATE MODEL "shop"."main"."m" OPTIONS (model_type = \'logistic_reg\', '
            "input_label_cols = ['species']) AS SELECT species, island, bill_length_mm "
            'FROM "shop"."main"."penguins"'
        )
        assert con.sql("SELECT schema, name, version FROM (SHOW MODELS)").fetchall() == [
            ("main", "m", 1)
        ]
        three = con.sql(
            'SELECT predicted_species FROM ML.PREDICT(MODEL "shop"."main"."m", TABLE penguins)'
        ).fetchall()
        one = con.sql("SELECT predicted_species FROM ML.PREDICT(MODEL m, TABLE penguins)")
        assert three == one.fetchall()
        assert con.sql('SELECT "shop"."main"."m"(p) FROM penguins p').fetchall() == three

        before = snapshot(con)
        with pytest.raises(sqlml.ModelNotFound) as info:
            con.sql("SELECT * FROM ML.PREDICT(MODEL other.main.m, TABLE penguins)")
        assert str(info.value) == (
            "Model other.main.m names database other, but models are read from the "
            "current database, shop. Name it main.m, or USE other first"
        )
        with pytest.raises(sqlml.ModelNotFound, match="names database other"):
            con.sql(
                "CREATE OR REPLACE MODEL other.main.m OPTIONS (model_type = 'logistic_reg', "
                "input_label_cols = ['species']) AS SELECT species, island FROM penguins"
            )
        with pytest.raises(sqlml.ModelNotFound, match="names database other"):
            con.sql("DROP MODEL other.main.m")
        assert snapshot(con) == before


def test_create_model_joins_an_open_transaction(con: sqlml.Connection):
    # dbt runs the materialization inside its own transaction.
    create = (
        "CREATE MODEL m OPTIONS (model_type = 'logistic_reg', input_label_cols = ['species']) "
        "AS SELECT species, bill_length_mm FROM penguins"
    )
    con.execute("BEGIN TRANSACTION")
    con.sql(create)
    assert con.sql("SELECT name FROM (SHOW MODELS)").fetchall() == [("m",)]
    con.execute("ROLLBACK")
    assert con.sql("SELECT name FROM (SHOW MODELS)").fetchall() == []
    con.execute("BEGIN TRANSACTION")
    con.sql(create)
    con.execute("COMMIT")
    assert con.sql("SELECT name, version FROM (SHOW MODELS)").fetchall() == [("m", 1)]


@pytest.mark.parametrize(
    "options",
    ["model_type = 'linear_reg', inference = 'onnx'",
     "model_type = 'boosted_tree_regressor', max_iterations = 5, inference = 'native'"],
    ids=["onnx", "native"],
)  # fmt: skip
def test_a_udf_outlives_the_dbt_cursor_that_registered_it(options):
    # dbt closes each model's cursor when the model is built, while other threads' cursors
    # go on scoring with the UDF that cursor registered.
    from dbt.adapters.duckdb.environments import Environment

    from sqlml.dbt import Plugin

    root = duckdb.connect()
    load_penguins(root)
    plugin = Plugin(name="sqlml", plugin_config={})
    plugin.configure_connection(root)
    creds = SimpleNamespace(settings=None, retries=None)

    def cursor() -> Any:
        return Environment.initialize_cursor(creds, root.cursor(), {"sqlml": plugin}, {})

    reader = cursor()  # another thread's, opened before the model exists
    trainer = cursor()
    trainer.execute("BEGIN TRANSACTION")
    trainer.execute(
        f"CREATE MODEL mass OPTIONS ({options}, "
        "input_label_cols = ['body_mass_g']) AS SELECT island, bill_length_mm, body_mass_g "
        "FROM penguins WHERE body_mass_g IS NOT NULL"
    )
    assert trainer.description is None  # CREATE MODEL has no result
    trainer.execute("COMMIT")
    trainer.close()

    reader.execute("SELECT mass(p) FROM penguins AS p")
    by_function = [r[0] for r in reader.fetchall()]
    checker = cursor()
    checker.execute("SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL mass, TABLE penguins)")
    assert [d[0] for d in checker.description] == ["predicted_body_mass_g"]
    predicted = [r[0] for r in checker.fetchall()]
    assert len(by_function) == 344
    assert by_function == predicted
    assert 3000 < sum(predicted) / len(predicted) < 5500  # grams, from a real model
    reader.close()
    checker.close()
    root.close()
