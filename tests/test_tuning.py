"""Hyperparameter tuning: num_trials, HPARAM_RANGE, HPARAM_CANDIDATES, the algorithms,
ML.TRIAL_INFO and trial_id."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import sqlml
from tests.conftest import load_breast_cancer, snapshot

# Every fifth row evaluates; the rest train.
SPLIT = "data_split_method = 'custom', data_split_col = 'is_eval'"
QUERY = "SELECT * EXCLUDE (id), id % 5 = 0 AS is_eval FROM bc"
EVAL_ROWS = "(SELECT * FROM bc WHERE id % 5 = 0)"


@pytest.fixture(scope="module")
def bc():
    con = sqlml.connect()
    load_breast_cancer(con)
    con.sql("CREATE TABLE bc AS SELECT row_number() OVER () AS id, * FROM breast_cancer")
    # Unregularized logistic regression on 30 correlated features overfits; l2_reg tuned
    # on held-out rows should do better: the case is built to show tuning at work.
    con.sql(
        f"""CREATE MODEL plain OPTIONS (model_type = 'logistic_reg',
                input_label_cols = ['diagnosis'], {SPLIT}) AS {QUERY}"""
    )
    con.sql(
        f"""CREATE MODEL tuned OPTIONS (model_type = 'logistic_reg',
                input_label_cols = ['diagnosis'], {SPLIT}, num_trials = 12,
                l2_reg = HPARAM_RANGE(0.001, 100), hparam_tuning_objectives = ['log_loss'])
            AS {QUERY}"""
    )
    yield con
    con.close()


def trials(con: sqlml.Connection, model: str) -> list[tuple]:
    return con.sql(
        "SELECT trial_id, hyperparameters, hparam_tuning_evaluation_metrics, training_loss, "
        f"eval_loss, status, error_message, is_optimal FROM ML.TRIAL_INFO(MODEL {model}) "
        "ORDER BY trial_id"
    ).fetchall()


def test_tuning_beats_the_default_hyperparameters(bc):
    default = bc.sql("SELECT log_loss FROM ML.EVALUATE(MODEL plain)").fetchall()[0][0]
    tuned = bc.sql("SELECT log_loss FROM ML.EVALUATE(MODEL tuned)").fetchall()[0][0]
    assert tuned < 0.5 * default
    rows = trials(bc, "tuned")
    assert [r[0] for r in rows] == list(range(1, 13))
    assert {r[5] for r in rows} == {"SUCCEEDED"}
    assert all(0.001 <= r[1]["l2_reg"] <= 100 for r in rows)
    optimal = [r for r in rows if r[7]]
    assert len(optimal) == 1
    assert optimal[0][2]["log_loss"] == min(r[2]["log_loss"] for r in rows)
    # The model is its optimal trial: the same options and the same evaluation.
    options = {
        name: json.loads(value)
        for section, name, value in bc.sql("DESCRIBE MODEL tuned").fetchall()
        if section == "option"
    }
    assert options["l2_reg"] == optimal[0][1]["l2_reg"]
    assert bc.sql("SELECT log_loss FROM ML.EVALUATE(MODEL tuned)").fetchall()[0][0] == (
        pytest.approx(optimal[0][2]["log_loss"], rel=1e-9)
    )


def test_trials_are_evaluated_on_held_out_rows(bc):
    """Each trial's metrics are those of ML.EVALUATE on the evaluation rows with its
    trial_id: rows the trial never trained on."""
    for trial_id, _, metrics, _, eval_loss, *_ in trials(bc, "tuned"):
        again = bc.sql(
            f"SELECT * FROM ML.EVALUATE(MODEL tuned, {EVAL_ROWS}, STRUCT({trial_id} AS trial_id))"
        ).df()
        for name, value in metrics.items():
            assert again[name][0] == pytest.approx(value, rel=1e-9), (trial_id, name)
        assert eval_loss == pytest.approx(metrics["log_loss"], rel=1e-9)


def test_trial_id_picks_a_trial_everywhere(bc):
    rows = trials(bc, "tuned")
    worst = max(rows, key=lambda r: r[2]["log_loss"])[0]
    best = next(r[0] for r in rows if r[7])
    assert worst != best

    def probs(trial_id: int) -> list:
        return bc.sql(
            "SELECT predicted_diagnosis_probs[2].prob FROM ML.PREDICT(MODEL tuned, TABLE bc, "
            f"STRUCT({trial_id} AS trial_id))"
        ).fetchall()

    assert (
        probs(best)
        == bc.sql(
            "SELECT predicted_diagnosis_probs[2].prob FROM ML.PREDICT(MODEL tuned, TABLE bc)"
        ).fetchall()
    )
    assert probs(worst) != probs(best)
    # Weights differ per trial: more regularization, smaller weights.
    by_l2 = sorted(rows, key=lambda r: r[1]["l2_reg"])
    norms = [
        bc.sql(
            "SELECT sum(weight * weight) FROM ML.WEIGHTS(MODEL tuned, "
            f"STRUCT(TRUE AS standardize, {r[0]} AS trial_id)) "
            "WHERE processed_input <> '__INTERCEPT__'"
        ).fetchall()[0][0]
        for r in (by_l2[0], by_l2[-1])
    ]
    assert norms[0] > norms[1]
    with pytest.raises(
        sqlml.ArgumentError, match=re.escape("model main.tuned has no trial 99; its trials: 1, 2")
    ):
        bc.sql("SELECT * FROM ML.EVALUATE(MODEL tuned, STRUCT(99 AS trial_id))")
    with pytest.raises(sqlml.ArgumentError, match=re.escape("model main.plain was not tuned")):
        bc.sql("SELECT * FROM ML.EVALUATE(MODEL plain, STRUCT(1 AS trial_id))")


def test_grid_search_tries_every_combination_once(bc):
    bc.sql(
        f"""CREATE MODEL grid OPTIONS (model_type = 'boosted_tree_classifier',
                input_label_cols = ['diagnosis'], {SPLIT}, num_trials = 20,
                hparam_tuning_algorithm = 'grid_search', max_parallel_trials = 2,
                max_tree_depth = HPARAM_CANDIDATES([2, 4]),
                learn_rate = HPARAM_CANDIDATES([0.1, 0.3, 1.0]), max_iterations = 10)
            AS {QUERY}"""
    )
    tried = [(r[1]["max_tree_depth"], r[1]["learn_rate"]) for r in trials(bc, "grid")]
    assert sorted(tried) == sorted((d, lr) for d in (2, 4) for lr in (0.1, 0.3, 1.0))


def test_random_search_is_reproducible_and_parallel_changes_nothing(bc):
    def run(parallel: int) -> list:
        bc.sql(
            f"""CREATE OR REPLACE MODEL r OPTIONS (model_type = 'logistic_reg',
                    input_label_cols = ['diagnosis'], {SPLIT}, num_trials = 4,
                    hparam_tuning_algorithm = 'random_search', max_parallel_trials = {parallel},
                    l2_reg = HPARAM_RANGE(0.01, 10), random_seed = 3)
                AS {QUERY}"""
        )
        return [(r[1], r[2]) for r in trials(bc, "r")]

    serial = run(1)
    assert run(2) == serial
    values = [h["l2_reg"] for h, _ in serial]
    assert len(set(values)) == 4
    # A range over two orders of magnitude or more is drawn on a log scale.
    assert np.all(np.array(values) > 0.01) and np.all(np.array(values) < 10)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            "num_trials = 4",
            sqlml.OptionError,
            "tunes nothing: give a hyperparameter as HPARAM_RANGE",
        ),
        ("l2_reg = HPARAM_RANGE(0, 1)", sqlml.OptionError, "set num_trials to 2 or more"),
        (
            "num_trials = 3, l2_reg = HPARAM_RANGE(1, 0.5)",
            sqlml.OptionError,
            "HPARAM_RANGE needs low < high",
        ),
        (
            "num_trials = 3, optimize_strategy = HPARAM_RANGE(1, 2)",
            sqlml.OptionError,
            r"tune it with HPARAM_CANDIDATES\(\[...\]\), not HPARAM_RANGE",
        ),
        (
            "num_trials = 3, l2_reg = HPARAM_RANGE(0, 1), hparam_tuning_objectives = ['r2_score']",
            sqlml.OptionError,
            "hparam_tuning_objectives 'r2_score' is not a metric of logistic_reg",
        ),
        (
            "num_trials = 3, l2_reg = HPARAM_RANGE(0, 1), hparam_tuning_algorithm = 'grid_search'",
            sqlml.OptionError,
            "grid_search needs HPARAM_CANDIDATES for l2_reg",
        ),
        (
            "num_trials = 3, l2_reg = HPARAM_RANGE(0, 1), data_split_method = 'no_split'",
            sqlml.DataError,
            "evaluates each trial on held-out rows",
        ),
    ],
)
def test_tuning_errors_store_nothing(bc, options, error, message):
    before = snapshot(bc)
    with pytest.raises(error, match=message):
        bc.sql(
            f"""CREATE MODEL bad OPTIONS (model_type = 'logistic_reg',
                    input_label_cols = ['diagnosis'], {options}) AS SELECT * FROM breast_cancer"""
        )
    assert snapshot(bc) == before


def test_dropping_a_tuned_model_drops_its_trials(bc):
    bc.sql(
        f"""CREATE MODEL gone OPTIONS (model_type = 'logistic_reg',
                input_label_cols = ['diagnosis'], {SPLIT}, num_trials = 3,
                l2_reg = HPARAM_CANDIDATES([0.1, 1, 10])) AS {QUERY}"""
    )
    stored = "SELECT count(*) FROM sqlml.model_trials WHERE model_name = 'gone'"
    assert bc.sql(stored).fetchall() == [(2,)]  # the optimal one is the model itself
    bc.sql("DROP MODEL gone")
    assert bc.sql(stored).fetchall() == [(0,)]
