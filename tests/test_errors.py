"""Every error of the core: the right sqlml error, a message that names the problem, and the
database exactly as it was before (no model row, no function, no half-written table)."""

from __future__ import annotations

import copy

import duckdb
import pytest

import sqlml
from sqlml import onnx_export, parity
from sqlml.functions import udf_name
from tests.conftest import snapshot

CREATE_MASS = """CREATE MODEL mass OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
                 AS SELECT body_mass_g, flipper_length_mm, species FROM penguins"""


@pytest.fixture(params=["fresh", "with_model"])
def db(request, con):
    """A database without a catalog yet, and one that already holds a model."""
    if request.param == "with_model":
        con.sql(CREATE_MASS)
    return con


def fails(con, sql: str, error: type[Exception], *fragments: str) -> Exception:
    before = snapshot(con)
    with pytest.raises(error) as info:
        con.sql(sql)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert snapshot(con) == before
    return info.value


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM ML.PREDICT(MODEL nope, TABLE penguins)",
        "SELECT * FROM ML.EVALUATE(MODEL nope)",
        "DROP MODEL nope",
        "DESCRIBE MODEL nope",
        "SELECT * FROM ML.PREDICT(MODEL other.mass, TABLE penguins)",
    ],
)
def test_unknown_model(db, sql):
    error = fails(db, sql, sqlml.ModelNotFound, "does not exist")
    assert isinstance(error, LookupError)
    assert "nope" in str(error) or "other.mass" in str(error)


def test_unknown_model_lists_the_models(con):
    con.sql(CREATE_MASS)
    fails(con, "DROP MODEL mas", sqlml.ModelNotFound, "main.mas does not exist", "main.mass")


def test_drop_if_exists_of_unknown_model_is_a_no_op(db):
    before = snapshot(db)
    db.sql("DROP MODEL IF EXISTS nope")
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("sql", "error", "fragments"),
    [
        (
            "CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['weight']) "
            "AS SELECT * FROM penguins",
            sqlml.ColumnNotFound,
            ["'weight'", "main.m", "species, island"],
        ),
        (
            "CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g']) "
            "AS SELECT * FROM penguins WHERE false",
            sqlml.DataError,
            ["returned no rows"],
        ),
        (
            "CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g']) "
            "AS SELECT * FROM penguins WHERE body_mass_g IS NULL",
            sqlml.DataError,
            ["All 2 rows", "NULL label", "body_mass_g"],
        ),
        (
            "CREATE MODEL m OPTIONS (model_type = 'logistic_reg', input_label_cols = ['species']) "
            "AS SELECT * FROM penguins WHERE species = 'Adelie'",
            sqlml.DataError,
            ["single value", "'Adelie'"],
        ),
        (
            "CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g']) "
            "AS SELECT body_mass_g, [bill_length_mm] AS bills FROM penguins",
            sqlml.UnsupportedType,
            ["'bills'", "DOUBLE[]"],
        ),
        (
            "CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'], "
            "l3_reg = 1) AS SELECT * FROM penguins",
            sqlml.OptionError,
            ["'l3_reg'", "Valid options:", "l2_reg"],
        ),
        (
            "CREATE MODEL m OPTIONS (model_type = 'neural_net') AS SELECT * FROM penguins",
            sqlml.OptionError,
            ["'neural_net'", "linear_reg", "kmeans"],
        ),
        (
            "CREATE MODEL m OPTIONS (model_type = 'kmeans', num_clusters = 'three') "
            "AS SELECT bill_length_mm FROM penguins",
            sqlml.OptionError,
            ["'num_clusters'", "integer", "'three'"],
        ),
        (
            "CREATE MODEL m OPTIONS (model_type = 'kmeans', num_clusters = 500) "
            "AS SELECT bill_length_mm FROM penguins",
            sqlml.DataError,
            ["num_clusters=500", "344"],
        ),
        (
            "CREATE MODEL m OPTIONS (model_type = 'linear_reg' AS SELECT * FROM penguins",
            sqlml.ParseError,
            ["near 'AS' (line 1, column 51)"],
        ),
        (
            "CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g']) "
            "AS SELECT * FROM penguin",
            sqlml.QueryError,
            ["training query of model main.m", "penguin"],
        ),
        (
            "CREATE MODEL nowhere.m OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g']) "
            "AS SELECT * FROM penguins",
            sqlml.SchemaNotFound,
            ["nowhere", "CREATE SCHEMA"],
        ),
    ],
    ids=[
        "label_missing",
        "empty_training_set",
        "label_all_null",
        "one_class",
        "unsupported_feature_type",
        "unknown_option",
        "unknown_model_type",
        "bad_option_value",
        "more_clusters_than_rows",
        "syntax_error",
        "failing_feature_query",
        "missing_schema",
    ],
)
def test_create_model_errors(db, sql, error, fragments):
    fails(db, sql, error, *fragments)


def test_failing_feature_query_keeps_duckdb_error_as_cause(con):
    error = fails(
        con,
        "CREATE MODEL m OPTIONS (model_type = 'linear_reg', input_label_cols = ['y']) "
        "AS SELECT 1 / 0 AS x, CAST('a' AS INTEGER) AS y",
        sqlml.QueryError,
        "Could not convert string 'a' to INT32",
    )
    assert isinstance(error.__cause__, duckdb.Error)


def test_prediction_input_missing_features_are_named(db):
    if db.catalog.current("main", "mass") is None:
        db.sql(CREATE_MASS)
    fails(
        db,
        "SELECT * FROM ML.PREDICT(MODEL mass, (SELECT body_mass_g, island FROM penguins))",
        sqlml.ColumnNotFound,
        "flipper_length_mm, species",
        "model main.mass",
    )
    fails(
        db,
        "SELECT * FROM ML.EVALUATE(MODEL mass, (SELECT flipper_length_mm, species FROM penguins))",
        sqlml.ColumnNotFound,
        "label column body_mass_g",
    )
    fails(
        db,
        "SELECT * FROM ML.PREDICT(MODEL mass, (SELECT 'x' AS flipper_length_mm, species FROM penguins))",
        sqlml.UnsupportedType,
        "flipper_length_mm is VARCHAR",
        "BIGINT",
    )


def test_create_over_existing_model(con):
    con.sql(CREATE_MASS)
    fails(con, CREATE_MASS, sqlml.ModelExists, "main.mass already exists", "CREATE OR REPLACE")
    # IF NOT EXISTS leaves the model alone and trains nothing.
    before = snapshot(con)
    con.sql(
        CREATE_MASS.replace("CREATE MODEL", "CREATE MODEL IF NOT EXISTS").replace(
            "flipper_length_mm, species", "island"
        )
    )
    assert snapshot(con) == before


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("abs", "a built-in"), ("my_macro", "a macro in schema main"), ("my_udf", "registered")],
)
def test_model_name_taken_by_a_function(con, name, fragment):
    con.sql("CREATE MACRO my_macro(x) AS x + 1")
    con.duckdb.create_function("my_udf", lambda x: x, ["DOUBLE"], "DOUBLE")
    fails(
        con,
        CREATE_MASS.replace("MODEL mass", f"MODEL {name}"),
        sqlml.NameConflict,
        f"{name}()",
        fragment,
    )


def test_probs_function_name_taken(con):
    con.sql("CREATE MACRO sp_probs(x) AS x")
    fails(
        con,
        "CREATE MODEL sp OPTIONS (model_type = 'logistic_reg', input_label_cols = ['species']) "
        "AS SELECT species, bill_length_mm FROM penguins",
        sqlml.NameConflict,
        "sp_probs()",
    )


@pytest.mark.parametrize("inference", ["sql", "onnx"])
def test_failure_during_replace_keeps_previous_version(con, monkeypatch, inference):
    con.sql(CREATE_MASS.replace("['body_mass_g']", f"['body_mass_g'], inference = '{inference}'"))
    expected = con.sql("SELECT mass(p) FROM penguins p").fetchall()

    def broken_storage(*args, **kwargs):
        raise duckdb.IOException("IO Error: disk full")

    monkeypatch.setattr(con.functions, "create_macros", broken_storage)
    error = fails(
        con,
        CREATE_MASS.replace("CREATE MODEL", "CREATE OR REPLACE MODEL").replace(", species", ""),
        sqlml.CatalogError,
        "Storing model main.mass failed",
        "disk full",
    )
    assert isinstance(error.__cause__, duckdb.IOException)
    monkeypatch.undo()
    assert con.sql("SELECT mass(p) FROM penguins p").fetchall() == expected
    assert con.sql("SELECT version FROM (SHOW MODELS)").fetchall() == [(1,)]
    # No UDF of the failed version 2 is left behind (models scored in SQL have none).
    names = [
        r[0]
        for r in con.sql(
            "SELECT function_name FROM duckdb_functions() WHERE function_name LIKE '__sqlml%'"
        ).fetchall()
    ]
    v1 = udf_name(con.catalog.current("main", "mass"))
    assert sorted(names) == ([v1, f"{v1}_0"] if inference == "onnx" else [])


def test_onnx_that_disagrees_is_refused(con, monkeypatch):
    real = onnx_export._preprocessing

    def shifted(features, output, ml_opset):
        # Corrupt the exported graph (not the scikit-learn side): every mean is off by one.
        features = copy.deepcopy(features)
        for feature in features:
            feature.means = [m + 1.0 for m in feature.means]
        return real(features, output, ml_opset)

    monkeypatch.setattr(onnx_export, "_preprocessing", shifted)
    error = fails(
        con,
        "CREATE MODEL mass OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g']) "
        "AS SELECT * FROM penguins",
        sqlml.ParityError,
        "main.mass disagrees with scikit-learn",
        "not stored",
    )
    assert isinstance(error, sqlml.Error)
    assert parity.TOLERANCE["float64"] == 1e-9


def test_plain_duckdb_errors_are_duckdbs(con):
    with pytest.raises(duckdb.CatalogException):
        con.sql("SELECT * FROM no_such_table")
    with pytest.raises(duckdb.ParserException):
        con.sql("SELEC 1")
    # Also when the statement mentions models but is DuckDB's.
    with pytest.raises(duckdb.CatalogException):
        con.sql("SELECT model FROM models")


def test_error_hierarchy():
    assert issubclass(sqlml.ParseError, ValueError)
    assert issubclass(sqlml.OptionError, ValueError)
    assert issubclass(sqlml.ModelNotFound, LookupError)
    assert issubclass(sqlml.ColumnNotFound, LookupError)
    for name in sqlml.errors.__all__:
        assert issubclass(getattr(sqlml, name), sqlml.Error)


@pytest.mark.parametrize("end", ["COMMIT", "ROLLBACK"])
def test_failure_in_the_callers_transaction_cannot_be_committed(con, monkeypatch, end):
    """sqlml cannot undo its own writes alone in the caller's transaction (DuckDB has no
    savepoints): it fails the transaction, so that COMMIT cannot store half a model."""
    con.sql(CREATE_MASS.replace("['body_mass_g']", "['body_mass_g'], inference = 'onnx'"))
    expected = con.sql("SELECT mass(p) FROM penguins p").fetchall()
    before = snapshot(con)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Python's own, which does not fail DuckDB's transaction

    monkeypatch.setattr(con.functions, "create_macros", interrupted)
    con.sql("BEGIN")
    with pytest.raises(KeyboardInterrupt):
        con.sql(CREATE_MASS.replace("CREATE MODEL", "CREATE OR REPLACE MODEL"))
    monkeypatch.undo()
    con.sql(end)  # DuckDB ends a failed transaction with a rollback either way
    assert con.sql("SELECT mass(p) FROM penguins p").fetchall() == expected
    assert snapshot(con) == before


def test_ctrl_c_while_a_neural_network_trains_stores_nothing(con, monkeypatch):
    """scikit-learn's MLP catches KeyboardInterrupt, warns, and returns the network half
    trained: sqlml must not store it. The SIGINT is raised in the third epoch."""
    import signal

    from sklearn.neural_network import MLPClassifier

    epochs = []
    update = MLPClassifier._update_no_improvement_count

    def epoch_ends(self, *args, **kwargs):
        epochs.append(1)
        if len(epochs) == 3:
            signal.raise_signal(signal.SIGINT)
        return update(self, *args, **kwargs)

    monkeypatch.setattr(MLPClassifier, "_update_no_improvement_count", epoch_ends)
    before = snapshot(con)
    with pytest.raises(KeyboardInterrupt):
        con.sql(
            "CREATE MODEL net OPTIONS (model_type = 'dnn_classifier', input_label_cols = "
            "['species'], max_iterations = 50) AS SELECT species, bill_length_mm, body_mass_g "
            "FROM penguins"
        )
    assert len(epochs) == 3  # the fit stopped there
    assert snapshot(con) == before


# -- infinite values, PCA sizes, syntax, settings, read-only databases ------------------------

INFINITE_FEATURE = """CREATE MODEL mi OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g']{streaming})
    AS SELECT bill_length_mm, CASE WHEN year = 2009 THEN '{value}'::DOUBLE ELSE bill_depth_mm END AS z,
              body_mass_g FROM penguins"""
# In memory, and streamed in batches (statistics computed in SQL).
STREAMING = pytest.mark.parametrize("streaming", ["", ", streaming = TRUE"], ids=["", "streaming"])


@STREAMING
@pytest.mark.parametrize("value", ["inf", "-inf"])
def test_infinite_feature_values_are_a_data_error(db, capfd, value, streaming):
    capfd.readouterr()
    error = fails(
        db,
        INFINITE_FEATURE.format(value=value, streaming=streaming),
        sqlml.DataError,
        "Column 'z' of model main.mi holds infinite values",
        "(119 of 342 rows)",
        "WHERE isfinite(z)",
        "NULL, which is imputed",
    )
    assert isinstance(error, ValueError)
    assert capfd.readouterr().err == ""  # no numpy warning on the way


@STREAMING
def test_infinite_label_values_are_a_data_error(db, capfd, streaming):
    capfd.readouterr()
    fails(
        db,
        f"CREATE MODEL mi OPTIONS (model_type = 'linear_reg', input_label_cols = ['mass']{streaming}) "
        "AS SELECT bill_length_mm, CASE WHEN year = 2009 THEN '-inf'::DOUBLE ELSE body_mass_g "
        "END AS mass FROM penguins",
        sqlml.DataError,
        "The label 'mass' of model main.mi holds infinite values",
        "(120 of 343 rows)",
        "WHERE isfinite(mass)",
        "NULL label",
    )
    assert capfd.readouterr().err == ""


def test_tree_feature_values_beyond_float32_are_a_data_error(db):
    """Trees split float32 values: 1e300 would be infinite there."""
    fails(
        db,
        "CREATE MODEL big OPTIONS (model_type = 'boosted_tree_regressor', input_label_cols = "
        "['body_mass_g'], max_iterations = 2) AS SELECT body_mass_g, flipper_length_mm * "
        "CASE WHEN year = 2009 THEN 1e300 ELSE 1 END AS flipper FROM penguins",
        sqlml.DataError,
        "Column 'flipper' of model main.big holds values beyond +-3.4e38",
        "boosted_tree_regressor",
        "float32",
    )


@pytest.mark.parametrize(
    ("query", "fragments"),
    [
        (
            "SELECT bill_length_mm, bill_depth_mm FROM penguins",
            ["num_principal_components = 10 of model main.p", "at most 2", "2 feature columns"],
        ),
        (
            "SELECT bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g, year, island, "
            "sex FROM penguins LIMIT 5",
            ["num_principal_components = 10 of model main.p", "at most 5", "5 training rows"],
        ),
    ],
    ids=["more_than_features", "more_than_rows"],
)
def test_pca_components_beyond_what_the_query_allows(db, query, fragments):
    error = fails(
        db,
        f"CREATE MODEL p OPTIONS (model_type = 'pca', num_principal_components = 10) AS {query}",
        sqlml.OptionError,
        *fragments,
        "Set num_principal_components to",
        "pca_explained_variance_ratio",
    )
    assert error.option == "num_principal_components"


def test_pca_components_count_one_hot_columns(con):
    # island encodes to 3 columns, so 2 numeric + island allow 5 components.
    con.sql(
        "CREATE MODEL p OPTIONS (model_type = 'pca', num_principal_components = 5) "
        "AS SELECT bill_length_mm, bill_depth_mm, island FROM penguins"
    )
    assert con.sql("SELECT count(*) FROM ML.PRINCIPAL_COMPONENT_INFO(MODEL p)").fetchall() == [(5,)]


def test_or_replace_with_if_not_exists_is_a_parse_error(db):
    error = fails(
        db,
        CREATE_MASS.replace("CREATE MODEL mass", "CREATE OR REPLACE MODEL IF NOT EXISTS mass"),
        sqlml.ParseError,
        "CREATE OR REPLACE MODEL takes no IF NOT EXISTS",
        "(line 1, column 25)",
    )
    assert (error.line, error.col) == (1, 25)


def test_create_model_without_a_query_is_a_parse_error(db):
    error = fails(
        db,
        "CREATE MODEL x OPTIONS (model_type = 'linear_reg')",
        sqlml.ParseError,
        "Expected AS <query> after OPTIONS (...)",
        "model x",
        "model_type = 'onnx'",
    )
    assert (error.line, error.col) == (1, 50)
    # An imported model takes no query: it gets as far as reading its file.
    fails(
        db,
        "CREATE MODEL x OPTIONS (model_type = 'ONNX', model_path = 'no/such.onnx')",
        sqlml.ModelFileError,
        "no such file",
    )


@pytest.mark.parametrize(
    ("sql", "col"),
    [
        ("SELECT * FROM ML.PREDICT(MODEL, TABLE penguins)", 31),
        ("SELECT * FROM ML.EVALUATE(MODEL)", 32),
    ],
)
def test_ml_call_without_a_model_name(db, sql, col):
    error = fails(db, sql, sqlml.ParseError, "Expected a model name after MODEL")
    assert "Token" not in str(error)
    assert (error.line, error.col) == (1, col)


@pytest.mark.parametrize(
    ("settings", "fragments"),
    [
        ("STRUCT(0.5 AS threshold, 0.6 AS threshold)", ["setting threshold", "twice"]),
        ("STRUCT(NULL AS threshold)", ["setting threshold is NULL", "leave it out"]),
        (
            "STRUCT(0.5 AS threshold, NULL AS keep_original_columns)",
            ["keep_original_columns is NULL"],
        ),
    ],
)
def test_repeated_or_null_settings_are_argument_errors(con, settings, fragments):
    con.sql(
        "CREATE MODEL sex OPTIONS (model_type = 'logistic_reg', input_label_cols = ['sex']) "
        "AS SELECT sex, body_mass_g, bill_depth_mm FROM penguins"
    )
    fails(
        con,
        f"SELECT * FROM ML.PREDICT(MODEL sex, TABLE penguins, {settings})",
        sqlml.ArgumentError,
        "ML.PREDICT",
        *fragments,
    )


def test_create_model_on_a_read_only_database_fails_before_training(db_path, monkeypatch):
    from sqlml import trainer
    from tests.conftest import load_penguins

    with sqlml.connect(db_path) as con:
        load_penguins(con)
        con.sql(CREATE_MASS)

    def no_training(*args, **kwargs):
        raise AssertionError("a read-only database must be refused before training")

    monkeypatch.setattr(trainer, "train", no_training)
    with sqlml.connect(db_path, read_only=True) as con:
        for sql in (
            CREATE_MASS.replace("mass OPTIONS", "mass2 OPTIONS"),
            CREATE_MASS.replace("CREATE MODEL", "CREATE OR REPLACE MODEL"),
        ):
            fails(
                con,
                sql,
                sqlml.CatalogError,
                "Cannot create model main.mass",
                "read-only",
                "read_only=False",
            )
        # IF NOT EXISTS over an existing model does nothing, read-only or not.
        con.sql(CREATE_MASS.replace("MODEL mass", "MODEL IF NOT EXISTS mass"))


def test_a_training_query_error_gives_the_scripts_line(con):
    """DuckDB numbers lines from the start of the SQL it is given: the training query is
    given to it where it stands in the script."""
    script = """-- scored below
SELECT 1;
CREATE MODEL m
  OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
  AS SELECT bill_length_mm,
            body_mass_g,
            no_such_column
     FROM penguins"""
    error = fails(con, script, sqlml.QueryError, "The training query of model main.m failed")
    assert "LINE 7:             no_such_column" in str(error)
