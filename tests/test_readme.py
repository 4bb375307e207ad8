"""The README's SQL examples run: every ```sql block of the SQL reference, and the example at
the top, statement by statement, in order, on one connection; then what the text says they
return is checked against what they returned."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sqlml
from tests.conftest import load_penguins

README = Path(__file__).resolve().parents[1] / "README.md"
TOP = "(top of the README)"
PENGUIN_COLUMNS = [
    ("species", "VARCHAR"),
    ("island", "VARCHAR"),
    ("bill_length_mm", "DOUBLE"),
    ("bill_depth_mm", "DOUBLE"),
    ("flipper_length_mm", "BIGINT"),
    ("body_mass_g", "BIGINT"),
    ("sex", "VARCHAR"),
    ("year", "BIGINT"),
]


@dataclass
class Example:
    section: str  # the ### heading, or TOP
    block: int  # which ```sql block of the README, from 0
    sql: str  # one statement


@dataclass
class Result:
    example: Example
    columns: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def sql_reference() -> tuple[str, str]:
    """The README before its first ## heading, and its SQL reference section."""
    text = README.read_text()
    top = text[: text.index("\n## ")]
    start = text.index("\n## SQL reference\n")
    end = text.index("\n## ", start + 1)
    return top, text[start:end]


def sections() -> dict[str, str]:
    """Each ### section of the SQL reference: heading -> text."""
    _, reference = sql_reference()
    parts = re.split(r"^### (.+)$", reference, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def sql_blocks(text: str) -> list[str]:
    return re.findall(r"^```sql\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def statements(block: str) -> list[str]:
    """A block's statements: each ends with a line ending in ';' (a comment may follow)."""
    out, lines = [], []
    for line in block.splitlines():
        lines.append(line)
        if re.sub(r"--.*$", "", line).rstrip().endswith(";"):
            out.append("\n".join(lines).strip())
            lines = []
    if "\n".join(lines).strip():
        out.append("\n".join(lines).strip())
    return out


def examples() -> list[Example]:
    top, _ = sql_reference()
    found: list[tuple[str, str]] = [(TOP, block) for block in sql_blocks(top)]
    for heading, text in sections().items():
        found += [(heading, block) for block in sql_blocks(text)]
    return [
        Example(section, i, sql)
        for i, (section, block) in enumerate(found)
        for sql in statements(block)
    ]


EXAMPLES = examples()


@dataclass
class Ran:
    con: sqlml.Connection
    folder: Path
    results: list[Result]

    def first(self, section: str, starts: str = "") -> Result:
        """The first result of a section whose SQL starts with ``starts``."""
        for result in self.results:
            if result.example.section == section and result.example.sql.startswith(starts):
                return result
        raise AssertionError(f"README section {section!r} has no example starting {starts!r}")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.sql(sql).fetchall()


def run(con: sqlml.Connection, example: Example) -> Result:
    result = Result(example)
    try:
        relation = con.sql(example.sql)
        if relation is not None:
            result.columns = relation.columns
            result.types = [str(t).replace('"', "") for t in relation.types]
            result.rows = relation.fetchall()
    except Exception as e:
        pytest.fail(
            f"README example of {example.section} failed:\n{example.sql}\n{type(e).__name__}: {e}"
        )
    return result


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    """Every example run once, in a folder with the models/ the examples write to."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "models").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        con = sqlml.connect()
        load_penguins(con)
        results = [run(con, example) for example in EXAMPLES]
        yield Ran(con, folder, results)
        con.close()


def test_every_section_has_examples_and_every_example_ran(ran):
    headings = list(sections())
    assert len(headings) >= 25  # every statement and ML function has one
    without = [h for h in headings if not sql_blocks(sections()[h])]
    assert without == []
    blocks = {e.block for e in EXAMPLES}
    assert len(blocks) >= len(headings) + 1  # and the example at the top
    assert [r.example for r in ran.results] == EXAMPLES
    # Every ML function sqlml implements has a section of its own.
    from sqlml.table_functions import SPECS, _load

    _load()
    assert {f"ML.{name}" for name in SPECS} <= set(headings)


def test_the_example_at_the_top(ran):
    r2 = ran.first(TOP, "SELECT * FROM ML.EVALUATE").column("r2_score")[0]
    assert 0.8 < r2 < 1.0
    grams = ran.first(TOP, "SELECT species, penguin_mass(p)")
    assert grams.columns == ["species", "grams"]
    predicted = ran.query(
        "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL penguin_mass, TABLE penguins)"
    )
    assert grams.column("grams") == [p for (p,) in predicted]
    assert len(grams.rows) == 344


# Per section: the columns of its first `SELECT * FROM ...` (or other statement) example,
# with their types, and which of them the section's text names. "<input>" stands for the
# penguins table's columns.
COLUMNS: dict[str, tuple[str, list[tuple[str, str]], list[str]]] = {
    "ML.PREDICT": (
        "SELECT * FROM ML.PREDICT(MODEL penguin_species, TABLE",
        [
            ("predicted_species", "VARCHAR"),
            ("predicted_species_probs", "STRUCT(label VARCHAR, prob DOUBLE)[]"),
            ("<input>", ""),
        ],
        [],
    ),
    "ML.EVALUATE": (
        "SELECT * FROM ML.EVALUATE(MODEL penguin_species)",
        [
            (name, "DOUBLE")
            for name in ("precision", "recall", "accuracy", "f1_score", "log_loss", "roc_auc")
        ],
        ["precision", "recall", "accuracy", "f1_score", "log_loss", "roc_auc"],
    ),
    "ML.CONFUSION_MATRIX": (
        "SELECT * FROM ML.CONFUSION_MATRIX(MODEL penguin_species)",
        [("expected_label", "VARCHAR")]
        + [(c, "BIGINT") for c in ("Adelie", "Chinstrap", "Gentoo")],
        ["expected_label"],
    ),
    "ML.ROC_CURVE": (
        "SELECT * FROM ML.ROC_CURVE",
        [
            ("threshold", "DOUBLE"),
            ("recall", "DOUBLE"),
            ("false_positive_rate", "DOUBLE"),
            ("true_positives", "BIGINT"),
            ("false_positives", "BIGINT"),
            ("true_negatives", "BIGINT"),
            ("false_negatives", "BIGINT"),
        ],
        ["*"],
    ),
    "ML.TRANSFORM": (
        "SELECT * FROM ML.TRANSFORM",
        [
            ("flipper", "DOUBLE"),
            ("depth", "DOUBLE"),
            ("length", "DOUBLE"),
            ("sex", "VARCHAR"),
            ("island", "VARCHAR"),
            ("kind_species_sex", "VARCHAR"),
            ("bill_l", "DOUBLE"),
            ("bill_d", "DOUBLE"),
            ("bill_l_l", "DOUBLE"),
            ("bill_l_d", "DOUBLE"),
            ("bill_d_d", "DOUBLE"),
            ("body_mass_g", "BIGINT"),
        ],
        [],
    ),
    "ML.DETECT_ANOMALIES": (
        "SELECT * FROM ML.DETECT_ANOMALIES(MODEL penguin_groups",
        [("is_anomaly", "BOOLEAN"), ("normalized_distance", "DOUBLE"), ("<input>", "")],
        ["is_anomaly", "normalized_distance", "mean_squared_error", "anomaly_score"],
    ),
    "ML.EXPLAIN_PREDICT": (
        "SELECT * FROM ML.EXPLAIN_PREDICT",
        [
            ("predicted_body_mass_g", "DOUBLE"),
            ("top_feature_attributions", "STRUCT(feature VARCHAR, attribution DOUBLE)[]"),
            ("baseline_prediction_value", "DOUBLE"),
            ("prediction_value", "DOUBLE"),
            ("approximation_error", "DOUBLE"),
            ("<input>", ""),
        ],
        ["top_feature_attributions", "baseline_prediction_value", "prediction_value"],
    ),
    "ML.GLOBAL_EXPLAIN": (
        "SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL penguin_mass_trees)",
        [("feature", "VARCHAR"), ("attribution", "DOUBLE")],
        ["*", "class_label"],
    ),
    "ML.FEATURE_IMPORTANCE": (
        "SELECT * FROM ML.FEATURE_IMPORTANCE",
        [
            ("feature", "VARCHAR"),
            ("importance_weight", "BIGINT"),
            ("importance_gain", "DOUBLE"),
            ("importance_cover", "DOUBLE"),
        ],
        ["*"],
    ),
    "ML.WEIGHTS": (
        "SELECT * FROM ML.WEIGHTS(MODEL penguin_mass)",
        [
            ("processed_input", "VARCHAR"),
            ("weight", "DOUBLE"),
            ("category_weights", "STRUCT(category VARCHAR, weight DOUBLE)[]"),
        ],
        ["*", "class_label", "__INTERCEPT__"],
    ),
    "ML.TRAINING_INFO": (
        "SELECT * FROM ML.TRAINING_INFO",
        [
            ("training_run", "BIGINT"),
            ("iteration", "BIGINT"),
            ("loss", "DOUBLE"),
            ("eval_loss", "DOUBLE"),
            ("learning_rate", "DOUBLE"),
            ("duration_ms", "BIGINT"),
        ],
        ["*"],
    ),
    "ML.FEATURE_INFO": (
        "SELECT * FROM ML.FEATURE_INFO",
        [
            ("input", "VARCHAR"),
            ("min", "DOUBLE"),
            ("max", "DOUBLE"),
            ("mean", "DOUBLE"),
            ("median", "DOUBLE"),
            ("stddev", "DOUBLE"),
            ("category_count", "BIGINT"),
            ("null_count", "BIGINT"),
            ("dimension", "BIGINT"),
        ],
        ["*"],
    ),
    "ML.CENTROIDS": (
        "SELECT * FROM ML.CENTROIDS",
        [
            ("centroid_id", "BIGINT"),
            ("feature", "VARCHAR"),
            ("numerical_value", "DOUBLE"),
            ("categorical_value", "STRUCT(category VARCHAR, value DOUBLE)[]"),
        ],
        ["*"],
    ),
    "ML.PRINCIPAL_COMPONENTS": (
        "SELECT * FROM ML.PRINCIPAL_COMPONENTS",
        [
            ("principal_component_id", "BIGINT"),
            ("feature", "VARCHAR"),
            ("numerical_value", "DOUBLE"),
            ("categorical_value", "STRUCT(category VARCHAR, value DOUBLE)[]"),
        ],
        ["*"],
    ),
    "ML.PRINCIPAL_COMPONENT_INFO": (
        "SELECT * FROM ML.PRINCIPAL_COMPONENT_INFO",
        [
            ("principal_component_id", "BIGINT"),
            ("eigenvalue", "DOUBLE"),
            ("explained_variance_ratio", "DOUBLE"),
            ("cumulative_explained_variance_ratio", "DOUBLE"),
        ],
        ["*"],
    ),
    "ML.TRIAL_INFO": (
        "SELECT * FROM ML.TRIAL_INFO",
        [
            ("trial_id", "BIGINT"),
            ("hyperparameters", "STRUCT(l2_reg DOUBLE)"),
            (
                "hparam_tuning_evaluation_metrics",
                "STRUCT(precision DOUBLE, recall DOUBLE, accuracy DOUBLE, f1_score DOUBLE, "
                "log_loss DOUBLE, roc_auc DOUBLE)",
            ),
            ("training_loss", "DOUBLE"),
            ("eval_loss", "DOUBLE"),
            ("status", "VARCHAR"),
            ("error_message", "VARCHAR"),
            ("is_optimal", "BOOLEAN"),
        ],
        ["*"],
    ),
    "SHOW MODELS": (
        "SHOW MODELS",
        [
            ("schema", "VARCHAR"),
            ("name", "VARCHAR"),
            ("model_type", "VARCHAR"),
            ("label", "VARCHAR"),
            ("feature_count", "INTEGER"),
            ("training_rows", "BIGINT"),
            ("key_metric", "VARCHAR"),
            ("key_metric_value", "DOUBLE"),
            ("version", "INTEGER"),
            ("created_at", "TIMESTAMP"),
        ],
        ["*"],
    ),
    "DESCRIBE MODEL": (
        "DESCRIBE MODEL",
        [("section", "VARCHAR"), ("name", "VARCHAR"), ("value", "VARCHAR")],
        ["section", "name", "value"],
    ),
}


@pytest.mark.parametrize("section", sorted(COLUMNS))
def test_columns_are_the_ones_the_text_lists(ran, section):
    starts, expected, named = COLUMNS[section]
    result = ran.first(section, starts)
    columns: list[tuple[str, str]] = []
    for name, sql_type in expected:
        columns += PENGUIN_COLUMNS if name == "<input>" else [(name, sql_type)]
    assert list(zip(result.columns, result.types, strict=True)) == columns
    if "*" in named:  # every column that is not an input column
        named = [n for n, _ in expected if n != "<input>"] + [n for n in named if n != "*"]
    text = sections()[section]
    missing = [name for name in named if f"`{name}`" not in text]
    assert missing == []


def describe(ran: Ran, model: str, section: str) -> dict[str, str]:
    return {n: v for s, n, v in ran.query(f"DESCRIBE MODEL {model}") if s == section}


def test_create_model_examples(ran):
    # The custom split holds out the 2009 penguins with a known sex; nothing else.
    training = describe(ran, "penguin_sex", "training")
    held = ran.query("SELECT count(*) FROM penguins WHERE year = 2009 AND sex IS NOT NULL")
    assert int(training["rows_eval"]) == held[0][0]
    labelled = ran.query("SELECT count(*) FROM penguins WHERE sex IS NOT NULL")[0][0]
    assert int(training["rows_train"]) + held[0][0] == labelled
    assert "is_2009" not in describe(ran, "penguin_sex", "feature")
    assert {r["model_type"] for r in ran.first("SHOW MODELS").records()} >= {
        "linear_reg", "logistic_reg", "boosted_tree_regressor", "boosted_tree_classifier",
        "dnn_classifier", "kmeans", "pca", "isolation_forest",
    }  # fmt: skip
    # The dnn learns the species about as well as the logistic regression.
    accuracy = ran.query("SELECT accuracy FROM ML.EVALUATE(MODEL penguin_species_dnn)")[0][0]
    assert accuracy > 0.9


def test_transform_examples(ran):
    rows = ran.first("ML.TRANSFORM").records()
    assert len(rows) == 344
    # The scaler's statistics are those of the training rows: mean 0, sample stddev 1.
    trained = [r["flipper"] for r in rows if r["body_mass_g"] is not None]
    assert np.mean(trained) == pytest.approx(0.0, abs=1e-12)
    assert np.std(trained, ddof=1) == pytest.approx(1.0, rel=1e-12)
    assert all(r["length"] is None or 0.0 <= r["length"] <= 1.0 for r in rows)
    assert {r["sex"] for r in rows} == {"female", "male"}  # NULL imputed
    for r in rows:
        if r["bill_l"] is not None:
            assert r["bill_l_d"] == pytest.approx(r["bill_l"] * r["bill_d"], rel=1e-12)
    # The model reads the columns its TRANSFORM reads.
    inputs = describe(ran, "penguin_mass_transformed", "input")
    assert list(inputs) == ["species", "island", "bill_length_mm", "bill_depth_mm",
                            "flipper_length_mm", "sex"]  # fmt: skip
    codes = ran.query(
        "SELECT DISTINCT p.species, t.species_code FROM penguins p POSITIONAL JOIN "
        "ML.TRANSFORM(MODEL penguin_island, TABLE penguins) t ORDER BY 1"
    )
    assert codes == [("Adelie", 1), ("Chinstrap", 2), ("Gentoo", 3)]


def test_tuning_examples(ran):
    trials = ran.first("ML.TRIAL_INFO").records()
    assert [t["trial_id"] for t in trials] == [1, 2, 3, 4]
    optimal = [t for t in trials if t["is_optimal"]]
    assert len(optimal) == 1
    losses = [t["hparam_tuning_evaluation_metrics"]["log_loss"] for t in trials]
    assert optimal[0]["hparam_tuning_evaluation_metrics"]["log_loss"] == min(losses)
    assert all(0.1 <= t["hyperparameters"]["l2_reg"] <= 100 for t in trials)
    first = ran.first("ML.TRIAL_INFO", "SELECT * FROM ML.EVALUATE").records()[0]
    assert first["log_loss"] == pytest.approx(losses[0], rel=1e-9)


def test_export_and_import_examples(ran):
    folder = ran.folder / "models"
    assert sorted(p.name for p in folder.iterdir()) == [
        "penguin_mass_transformed.json", "penguin_mass_transformed.onnx",
        "penguin_species.json", "penguin_species.onnx",
    ]  # fmt: skip
    sidecar = json.loads((folder / "penguin_species.json").read_text())
    assert sidecar["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert [i["name"] for i in sidecar["inputs"]] == [
        "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"
    ]  # fmt: skip
    transformed = json.loads((folder / "penguin_mass_transformed.json").read_text())
    assert transformed["transform"]["features"][0]["name"] == "flipper"
    assert transformed["outside_the_graph"][0].startswith("TRANSFORM:")
    # The imported copy predicted what the original predicts.
    copy = ran.first("CREATE MODEL ... model_type = 'onnx'", "SELECT")
    original = ran.query("SELECT * FROM ML.PREDICT(MODEL penguin_species, TABLE penguins)")
    assert [r[0] for r in copy.rows] == [r[0] for r in original]
    for mine, theirs in zip(copy.rows, original, strict=True):
        np.testing.assert_allclose(
            [p["prob"] for p in mine[1]], [p["prob"] for p in theirs[1]], rtol=1e-6, atol=1e-9
        )
    # DROP MODEL removed it, next in the README.
    assert "penguin_species_copy" not in ran.first("SHOW MODELS").column("name")


def test_show_models_lists_the_models_created_before(ran):
    created: set[str] = set()
    for result in ran.results:
        if result.example.section == "SHOW MODELS":
            break
        sql = result.example.sql
        created |= set(re.findall(r"^CREATE (?:OR REPLACE )?MODEL (\w+)", sql, re.MULTILINE))
        created -= set(re.findall(r"^DROP MODEL (?:IF EXISTS )?(\w+)", sql, re.MULTILINE))
    assert len(created) >= 10
    assert ran.first("SHOW MODELS").column("name") == sorted(created)
    kmeans = ran.first("SHOW MODELS", "SELECT name, key_metric").rows
    assert kmeans == [
        (
            "penguin_groups",
            "davies_bouldin_index",
            ran.query("SELECT davies_bouldin_index FROM ML.EVALUATE(MODEL penguin_groups)")[0][0],
        )
    ]


def test_predict_examples(ran):
    dream = ran.first("ML.PREDICT", "SELECT * FROM ML.PREDICT(MODEL penguin_species, (SELECT")
    assert set(dream.column("island")) == {"Dream"}
    functions = ran.query("SELECT penguin_species(p) FROM penguins p WHERE island = 'Dream'")
    assert dream.column("predicted_species") == [f for (f,) in functions]
    sex = ran.first("ML.PREDICT", "SELECT sex, predicted_sex").records()
    assert len(sex) == 344
    for row in sex:
        male = next(p["prob"] for p in row["predicted_sex_probs"] if p["label"] == "male")
        assert row["predicted_sex"] == ("male" if male > 0.7 else "female")
    narrow = ran.first("ML.PREDICT", "SELECT * FROM ML.PREDICT(MODEL penguin_groups")
    assert narrow.columns == ["centroid_id", "nearest_centroids_distance"]
    by_island = ran.query("SELECT sum(penguins) FROM species_by_island")
    assert by_island == [(344,)]


def test_evaluate_examples(ran):
    stored = ran.first("ML.EVALUATE").records()[0]
    # Under 500 rows nothing is held out: the stored metrics are the training rows'.
    again = ran.query("SELECT accuracy FROM ML.EVALUATE(MODEL penguin_species, TABLE penguins)")
    assert stored["accuracy"] == pytest.approx(again[0][0], rel=1e-12)
    of_2009 = ran.first("ML.EVALUATE", "SELECT * FROM ML.EVALUATE(MODEL penguin_species, (")
    assert 0.9 < of_2009.column("accuracy")[0] <= 1.0
    # A threshold above 0.5 finds fewer males among the held-out penguins.
    plain = ran.query("SELECT recall FROM ML.EVALUATE(MODEL penguin_sex)")[0][0]
    strict = ran.first("ML.EVALUATE", "SELECT * FROM ML.EVALUATE(MODEL penguin_sex").records()
    assert strict[0]["recall"] <= plain


def test_confusion_matrix_and_roc_curve_examples(ran):
    matrix = ran.first("ML.CONFUSION_MATRIX").rows
    assert sum(sum(row[1:]) for row in matrix) == 344
    accuracy = ran.first("ML.EVALUATE").column("accuracy")[0]
    assert sum(row[i + 1] for i, row in enumerate(matrix)) / 344 == pytest.approx(accuracy)
    strict = ran.first("ML.CONFUSION_MATRIX", "SELECT * FROM ML.CONFUSION_MATRIX(MODEL penguin_sex")
    assert strict.columns == ["expected_label", "female", "male"]
    predicted_male = ran.query(
        "SELECT count(*) FROM ML.PREDICT(MODEL penguin_sex, TABLE penguins) "
        "WHERE sex IS NOT NULL AND predicted_sex_probs[2].prob > 0.7"
    )[0][0]
    assert sum(strict.column("male")) == predicted_male

    curve = ran.first("ML.ROC_CURVE").records()
    assert 20 <= len(curve) <= 101
    recalls = [r["recall"] for r in curve]
    assert recalls == sorted(recalls, reverse=True)  # thresholds ascend, recall falls
    fixed = ran.first("ML.ROC_CURVE", "SELECT threshold")
    np.testing.assert_allclose(fixed.column("threshold"), np.arange(1, 10) / 10, rtol=1e-12)


def test_anomaly_examples(ran):
    groups = ran.first("ML.DETECT_ANOMALIES").column("is_anomaly")
    assert abs(sum(groups) - 0.02 * len(groups)) <= 3
    shape = ran.first("ML.DETECT_ANOMALIES", "SELECT * FROM ML.DETECT_ANOMALIES(MODEL penguin_s")
    assert shape.columns[:2] == ["is_anomaly", "mean_squared_error"]
    assert 0 < len(shape.rows) <= 0.02 * 344 + 3
    outliers = ran.first("ML.DETECT_ANOMALIES", "SELECT * FROM ML.DETECT_ANOMALIES(MODEL penguin_o")
    assert outliers.columns[:2] == ["is_anomaly", "anomaly_score"]
    assert 0 < len(outliers.rows) <= 0.02 * 344 + 3
    assert all(0.5 < score <= 1.0 for score in outliers.column("anomaly_score"))


def test_explanation_examples(ran):
    features = {"species", "sex", "flipper_length_mm", "bill_length_mm", "bill_depth_mm"}
    for row in ran.first("ML.EXPLAIN_PREDICT").records():
        top = [a["attribution"] for a in row["top_feature_attributions"]]
        assert len(top) == 3
        assert [abs(a) for a in top] == sorted((abs(a) for a in top), reverse=True)
        assert row["prediction_value"] == pytest.approx(row["predicted_body_mass_g"], rel=1e-5)
    overall = ran.first("ML.GLOBAL_EXPLAIN").rows
    assert {f for f, _ in overall} == features
    assert [a for _, a in overall] == sorted((a for _, a in overall), reverse=True)
    by_class = ran.first("ML.GLOBAL_EXPLAIN", "SELECT * FROM ML.GLOBAL_EXPLAIN(MODEL penguin_sex")
    assert by_class.columns == ["class_label", "feature", "attribution"]
    assert set(by_class.column("class_label")) == {"female", "male"}
    importance = ran.first("ML.FEATURE_IMPORTANCE").records()
    assert {r["feature"] for r in importance} == features
    gains = [r["importance_gain"] for r in importance]
    assert gains == sorted(gains, reverse=True)


def test_weights_rebuild_the_predictions(ran):
    weights = {r["processed_input"]: r for r in ran.first("ML.WEIGHTS").records()}
    assert list(weights)[-1] == "__INTERCEPT__"
    rows = ran.query(
        "SELECT p.*, penguin_mass(p) AS predicted FROM penguins p WHERE sex IS NOT NULL"
    )
    names = [name for name, _ in PENGUIN_COLUMNS] + ["predicted"]
    for values in rows:
        row = dict(zip(names, values, strict=True))
        total = weights["__INTERCEPT__"]["weight"]
        for name, w in weights.items():
            if name == "__INTERCEPT__":
                continue
            if w["weight"] is None:  # text: the weight of the row's category
                total += next(
                    c["weight"] for c in w["category_weights"] if c["category"] == row[name]
                )
            else:
                total += w["weight"] * row[name]
        assert total == pytest.approx(row["predicted"], rel=1e-9)
    per_class = ran.first("ML.WEIGHTS", "SELECT * FROM ML.WEIGHTS(MODEL penguin_species")
    assert per_class.columns[0] == "class_label"
    assert set(per_class.column("class_label")) == {"Adelie", "Chinstrap", "Gentoo"}


def test_inspection_examples(ran):
    rounds = ran.first("ML.TRAINING_INFO").records()
    assert 1 <= len(rounds) <= 20  # max_iterations 20, early stopping may end it sooner
    losses = [r["loss"] for r in rounds]
    assert losses == sorted(losses, reverse=True)
    info = {r["input"]: r for r in ran.first("ML.FEATURE_INFO").records()}
    assert list(info) == [
        "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"
    ]  # fmt: skip
    assert (
        info["bill_length_mm"]["null_count"]
        == ran.query("SELECT count(*) - count(bill_length_mm) FROM penguins")[0][0]
    )
    assert info["sex"]["category_count"] == 2
    assert len(ran.first("ML.CENTROIDS").rows) == 3 * 4
    assert len(ran.first("ML.PRINCIPAL_COMPONENTS").rows) == 2 * 4
    components = ran.first("ML.PRINCIPAL_COMPONENT_INFO").records()
    assert [c["principal_component_id"] for c in components] == [1, 2]
    total = ran.query("SELECT * FROM ML.EVALUATE(MODEL penguin_shape)")[0][0]
    assert components[-1]["cumulative_explained_variance_ratio"] == pytest.approx(total)


def test_preprocessing_in_a_query(ran):
    rows = ran.first("Preprocessing functions in queries").records()
    assert len(rows) == 344
    masses = [r["mass_z"] for r in rows if r["mass_z"] is not None]
    assert np.mean(masses) == pytest.approx(0.0, abs=1e-12)
    assert max(r["flipper_share_of_max"] or 0 for r in rows) == 1.0
    terciles = [r["bill_tercile"] for r in rows]
    assert sorted(set(filter(None, terciles))) == ["bin_1", "bin_2", "bin_3"]
    assert all(abs(terciles.count(f"bin_{i}") - 342 / 3) <= 5 for i in (1, 2, 3))
    assert terciles.count(None) == 2  # NULL stays NULL
    assert {r["season"] for r in rows} == {"bin_1", "bin_2", "bin_3"}
    for r in rows:
        if r["bill"]["l"] is not None:
            assert r["bill"]["l_d"] == pytest.approx(r["bill"]["l"] * r["bill"]["d"])


def test_models_as_functions(ran):
    section = "Models as SQL functions"
    by_columns = ran.first(section).rows
    predicted = ran.query(
        "SELECT predicted_species FROM ML.PREDICT(MODEL penguin_species, TABLE penguins)"
    )
    assert by_columns == predicted
    wrong = ran.first(section, "SELECT penguin_species(p)").rows
    assert all(row[0] in ("Adelie", "Chinstrap", "Gentoo") for row in wrong)
    clusters = dict(ran.first(section, "SELECT penguin_groups(p)").rows)
    assert sorted(clusters) == [1, 2, 3] and sum(clusters.values()) == 344


@pytest.mark.parametrize(
    ("sql", "error", "message"),
    [
        (
            "CREATE MODEL m OPTIONS (model_type = 'dnn_regressor', input_label_cols = "
            "['body_mass_g'], dropout = 0.2) AS SELECT * FROM penguins",
            sqlml.OptionError,
            "scikit-learn's multi-layer perceptron has no dropout",
        ),
        (
            "SELECT ML.ONE_HOT_ENCODER(island) OVER () FROM penguins",
            sqlml.ArgumentError,
            "ML.ONE_HOT_ENCODER is available in a CREATE MODEL's TRANSFORM",
        ),
        (
            "SELECT ML.LABEL_ENCODER(island) OVER () FROM penguins",
            sqlml.ArgumentError,
            "ML.LABEL_ENCODER is available in a CREATE MODEL's TRANSFORM",
        ),
        (
            "CREATE MODEL m OPTIONS (model_type = 'kmeans', num_trials = 3, "
            "num_clusters = HPARAM_CANDIDATES([2, 3, 4])) AS SELECT body_mass_g FROM penguins",
            sqlml.OptionError,
            "sqlml tunes supervised models only",
        ),
    ],
)
def test_documented_limitations(ran, sql, error, message):
    with pytest.raises(error, match=re.escape(message)):
        ran.con.sql(sql)


def test_documented_exact_boosting_holdout_and_null_scaling(ran):
    ran.con.sql(
        """CREATE OR REPLACE MODEL exact OPTIONS (model_type = 'boosted_tree_regressor',
               input_label_cols = ['body_mass_g'], tree_method = 'exact', max_iterations = 5)
           AS SELECT body_mass_g, flipper_length_mm FROM penguins"""
    )
    metadata = json.loads(
        ran.query("SELECT metadata FROM sqlml.model_versions WHERE model_name = 'exact'")[0][0]
    )
    params = metadata["training"]["estimator_params"]
    assert (params["validation_fraction"], params["n_iter_no_change"]) == (0.1, 1)
    ran.con.sql("DROP MODEL exact")
    # The scalers keep NULL as NULL, in a query as in a TRANSFORM.
    scaled = ran.query(
        "SELECT ML.MIN_MAX_SCALER(body_mass_g) OVER () FROM penguins WHERE body_mass_g IS NULL"
    )
    assert scaled == [(None,), (None,)]
    values = [
        v for (v,) in ran.query("SELECT ML.MIN_MAX_SCALER(body_mass_g) OVER () FROM penguins")
    ]
    known = [v for v in values if v is not None]
    assert (len(known), min(known), max(known)) == (342, 0.0, 1.0)
