"""ONNX out and in: EXPORT MODEL writes a file plain onnxruntime runs (plus a JSON sidecar);
CREATE MODEL ... model_type = 'onnx' imports sqlml's exports and other ONNX files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import sqlml
from tests.conftest import snapshot

NULL_TEXT = "\x00"


def bare_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def feed_from_sidecar(con: sqlml.Connection, sidecar: dict, source: str) -> dict:
    """What a program without sqlml does with the sidecar: compute the TRANSFORM and the
    date parts with DuckDB, then one tensor per input, NULLs as the sidecar says."""
    select = []
    for item in sidecar["inputs"]:
        if "parts" in item:
            select += [p["duckdb_sql"] for p in item["parts"]]
        else:
            select.append(f'"{item["name"]}"')
    if sidecar["transform"]:
        features = ", ".join(
            f'{f["sql"]} AS "{f["name"]}"' for f in sidecar["transform"]["features"]
        )
        source = f"(SELECT {features} FROM {source})"
    rows = con.sql(f"SELECT {', '.join(select)} FROM {source}").fetchall()
    feed, position = {}, 0
    for item in sidecar["inputs"]:
        width = item["shape"][1]
        values = [row[position : position + width] for row in rows]
        position += width
        if item["onnx_type"] == "string":
            column = [
                item["null"]
                if v[0] is None
                else ("true" if v[0] is True else "false")
                if isinstance(v[0], bool)
                else str(v[0])
                for v in values
            ]
            feed[item["name"]] = np.array(column, dtype=object).reshape(-1, 1)
        else:
            feed[item["name"]] = np.array(
                [[np.nan if x is None else x for x in v] for v in values], dtype=np.float64
            )
    return feed


@pytest.mark.parametrize("model_type", ["boosted_tree_classifier", "logistic_reg"])
def test_export_runs_in_bare_onnxruntime(con, tmp_path, model_type):
    con.sql(
        f"""CREATE MODEL sp OPTIONS (model_type = '{model_type}', input_label_cols = ['species'])
            AS SELECT species, island, bill_length_mm, flipper_length_mm, sex FROM penguins"""
    )
    con.sql(f"EXPORT MODEL sp OPTIONS (uri = '{tmp_path / 'sp.onnx'}')")
    sidecar = json.loads((tmp_path / "sp.json").read_text())
    assert sidecar["onnx_file"] == "sp.onnx"
    assert [i["name"] for i in sidecar["inputs"]] == [
        "island", "bill_length_mm", "flipper_length_mm", "sex"
    ]  # fmt: skip
    assert sidecar["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert sidecar["inputs"][3]["null"] == NULL_TEXT

    session = bare_session(tmp_path / "sp.onnx")
    feed = feed_from_sidecar(con, sidecar, "penguins")
    probabilities = session.run([sidecar["outputs"]["probabilities"]], feed)[0]
    expected = con.sql(
        "SELECT list_transform(predicted_species_probs, lambda p: p.prob) "
        "FROM ML.PREDICT(MODEL sp, TABLE penguins)"
    ).fetchall()
    np.testing.assert_allclose(probabilities, [r[0] for r in expected], rtol=1e-6, atol=1e-7)
    assert con.sql("SELECT count(*) FROM penguins WHERE sex IS NULL").fetchall()[0][0] > 0


def test_export_with_dates_and_transform(con, tmp_path):
    con.sql(
        """CREATE TABLE visits AS SELECT *, DATE '2007-11-01' + INTERVAL (row_number() OVER ()) DAY
           AS seen FROM penguins"""
    )
    con.sql(
        """CREATE MODEL mass TRANSFORM (ML.STANDARD_SCALER(flipper_length_mm) OVER () AS f,
               CAST(seen AS DATE) AS seen_day, ML.FEATURE_CROSS(STRUCT(island, sex)) AS c,
               body_mass_g)
           OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'])
           AS SELECT * FROM visits"""
    )
    folder = tmp_path / "out"
    folder.mkdir()
    con.sql(f"EXPORT MODEL mass OPTIONS (uri = '{folder}')")  # a folder: <name>.onnx in it
    sidecar = json.loads((folder / "mass.json").read_text())
    assert [i["name"] for i in sidecar["inputs"]] == ["f", "seen_day", "c_island_sex"]
    assert [p["part"] for p in sidecar["inputs"][1]["parts"]][:2] == ["unix_days", "year"]
    assert sidecar["outside_the_graph"][0].startswith("TRANSFORM:")
    feed = feed_from_sidecar(con, sidecar, "visits")
    [prediction] = bare_session(folder / "mass.onnx").run(["prediction"], feed)
    expected = con.sql(
        "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL mass, TABLE visits)"
    ).fetchall()
    np.testing.assert_allclose(prediction.ravel(), [r[0] for r in expected], rtol=1e-9)


def numbers(value: object) -> list:
    """The numbers inside a value (nested lists, dicts, tuples), in order."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    items = value.values() if isinstance(value, dict) else value
    return [n for item in items for n in numbers(item)]  # type: ignore[union-attr]


def texts(value: object) -> list:
    if isinstance(value, str | bool) or value is None:
        return [value]
    if isinstance(value, int | float):
        return []
    items = value.values() if isinstance(value, dict) else value
    return [t for item in items for t in texts(item)]  # type: ignore[union-attr]


def assert_same(a: list, b: list, rtol: float) -> None:
    assert texts(a) == texts(b)
    np.testing.assert_allclose(numbers(a), numbers(b), rtol=rtol, atol=rtol * 1e-3)


@pytest.mark.parametrize(
    ("model_type", "label", "extra"),
    [
        ("boosted_tree_classifier", "species", ""),
        ("linear_reg", "body_mass_g", ""),
        ("kmeans", None, ", num_clusters = 3"),
        ("pca", None, ", num_principal_components = 2"),
    ],
)
def test_exported_and_imported_again_predicts_the_same(con, tmp_path, model_type, label, extra):
    labels = f", input_label_cols = ['{label}']" if label else ""
    columns = "bill_length_mm, flipper_length_mm, island, sex" + (f", {label}" if label else "")
    con.sql(
        f"""CREATE MODEL original OPTIONS (model_type = '{model_type}' {labels} {extra})
            AS SELECT {columns} FROM penguins"""
    )
    con.sql(f"EXPORT MODEL original OPTIONS (uri = '{tmp_path / 'm.onnx'}')")
    con.sql(
        f"CREATE MODEL copy OPTIONS (model_type = 'onnx', model_path = '{tmp_path / 'm.onnx'}')"
    )
    assert con.sql("SELECT * FROM ML.PREDICT(MODEL copy, TABLE penguins)").columns == (
        con.sql("SELECT * FROM ML.PREDICT(MODEL original, TABLE penguins)").columns
    )
    # The original may score as SQL or natively (doubles), the copy through onnxruntime
    # (float32 for trees): equal to rounding.
    rtol = 1e-5 if "tree" in model_type else 1e-9
    first = con.sql("SELECT * FROM ML.PREDICT(MODEL original, TABLE penguins)").fetchall()
    again = con.sql("SELECT * FROM ML.PREDICT(MODEL copy, TABLE penguins)").fetchall()
    assert len(first) == len(again) == 344
    assert_same(first, again, rtol)
    assert_same(
        con.sql("SELECT copy(p) FROM penguins p").fetchall(),
        con.sql("SELECT original(p) FROM penguins p").fetchall(),
        rtol,
    )
    if label:
        np.testing.assert_allclose(
            con.sql("SELECT * FROM ML.EVALUATE(MODEL copy, TABLE penguins)").fetchall(),
            con.sql("SELECT * FROM ML.EVALUATE(MODEL original, TABLE penguins)").fetchall(),
            rtol=rtol,
        )
    described = {n: v for s, n, v in con.sql("DESCRIBE MODEL copy").fetchall() if s == "imported"}
    assert described["sqlml_model_type"] == model_type
    with pytest.raises(sqlml.ModelTypeError, match="was imported from an ONNX file"):
        con.sql("SELECT * FROM ML.FEATURE_INFO(MODEL copy)")


def test_import_a_scikit_learn_pipeline(con, tmp_path):
    """An ONNX file made elsewhere: inputs fed by name, outputs as predicted_<output>."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = con.sql(
        "SELECT island, bill_length_mm, flipper_length_mm, species FROM penguins "
        "WHERE bill_length_mm IS NOT NULL"
    ).df()
    pipeline = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("island", OneHotEncoder(handle_unknown="ignore"), ["island"]),
                        ("numbers", "passthrough", ["bill_length_mm", "flipper_length_mm"]),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=2000)),
        ]
    ).fit(frame[["island", "bill_length_mm", "flipper_length_mm"]], frame["species"])
    model = convert_sklearn(
        pipeline,
        initial_types=[
            ("island", StringTensorType([None, 1])),
            ("bill_length_mm", FloatTensorType([None, 1])),
            ("flipper_length_mm", FloatTensorType([None, 1])),
        ],
        options={id(pipeline): {"zipmap": False}},
    )
    path = tmp_path / "species.onnx"
    path.write_bytes(model.SerializeToString())
    con.sql(f"CREATE MODEL imported OPTIONS (model_type = 'onnx', model_path = '{path}')")
    rows = con.sql(
        "SELECT predicted_label, predicted_probabilities FROM ML.PREDICT(MODEL imported, "
        "(SELECT * FROM penguins WHERE bill_length_mm IS NOT NULL))"
    ).fetchall()
    features = frame[["island", "bill_length_mm", "flipper_length_mm"]]
    assert [r[0] for r in rows] == list(pipeline.predict(features))
    np.testing.assert_allclose(
        [r[1] for r in rows], pipeline.predict_proba(features), rtol=1e-4, atol=1e-6
    )
    # The function returns the first output; ML.EVALUATE has nothing to compare against.
    assert con.sql(
        "SELECT imported(island, bill_length_mm, flipper_length_mm) FROM penguins "
        "WHERE bill_length_mm IS NOT NULL"
    ).fetchall() == [(r[0],) for r in rows]
    with pytest.raises(sqlml.ColumnNotFound, match="the input has no column flipper_length_mm"):
        con.sql(
            "SELECT * FROM ML.PREDICT(MODEL imported, (SELECT island, bill_length_mm FROM penguins))"
        )
    with pytest.raises(sqlml.ModelTypeError, match=re.escape("ML.EVALUATE applies to regression")):
        con.sql("SELECT * FROM ML.EVALUATE(MODEL imported, TABLE penguins)")


def test_import_a_list_input(con, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    x = np.array(
        con.sql(
            "SELECT bill_length_mm, flipper_length_mm FROM penguins WHERE sex IS NOT NULL"
        ).fetchall()
    )
    y = np.array(con.sql("SELECT body_mass_g FROM penguins WHERE sex IS NOT NULL").fetchall())
    regression = LinearRegression().fit(x, y.ravel())
    path = tmp_path / "mass.onnx"
    path.write_bytes(to_onnx(regression, x[:1].astype(np.float64)).SerializeToString())
    con.sql(f"CREATE MODEL mass OPTIONS (model_type = 'onnx', model_path = '{path}')")
    got = con.sql(
        "SELECT predicted_variable FROM ML.PREDICT(MODEL mass, (SELECT "
        "[bill_length_mm, flipper_length_mm] AS X FROM penguins WHERE sex IS NOT NULL))"
    ).fetchall()
    np.testing.assert_allclose([g[0] for g in got], regression.predict(x), rtol=1e-9)


def _matmul_model() -> onnx.ModelProto:
    """y = x @ [[1], [2]] + 4, its weights an initializer (which can live outside the file)."""
    helper = onnx.helper
    weights = onnx.numpy_helper.from_array(np.array([[1.0], [2.0]]), "weights")
    bias = onnx.numpy_helper.from_array(np.array([4.0]), "bias")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "weights"], ["product"]),
            helper.make_node("Add", ["product", "bias"], ["y"]),
        ],
        "matmul",
        [helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, [None, 2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, [None, 1])],
        initializer=[weights, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _save_external(folder: Path, name: str) -> Path:
    folder.mkdir(exist_ok=True)
    onnx.save_model(
        _matmul_model(), str(folder / name), save_as_external_data=True,
        all_tensors_to_one_file=True, location="weights.bin", size_threshold=0,
    )  # fmt: skip
    return folder / name


def test_external_data_is_read_from_the_model_folder_and_stored(con, tmp_path):
    path = _save_external(tmp_path / "model", "lin.onnx")
    con.sql(f"CREATE MODEL lin OPTIONS (model_type = 'onnx', model_path = '{path}')")
    (tmp_path / "model" / "weights.bin").unlink()  # the catalog has its own copy
    assert con.sql("SELECT lin([3.0, 4.0])").fetchall() == [(15.0,)]
    assert con.sql(
        "SELECT predicted_y FROM ML.PREDICT(MODEL lin, (SELECT [1.0, 1.0] AS x))"
    ).fetchall() == [(7.0,)]


def _with_external_location(tmp_path: Path, location: str, case: str) -> Path:
    (tmp_path / "secret.bin").write_bytes(b"\0" * 64)
    path = _save_external(tmp_path / case, "evil.onnx")
    model = onnx.load_model(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(path))
    return path


def test_bad_files_are_refused_and_nothing_is_stored(con, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model")
    x = np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32)
    classifier = LogisticRegression().fit(x, x[:, 0] > 0)
    zipmap = tmp_path / "zipmap.onnx"
    zipmap.write_bytes(to_onnx(classifier, x[:1]).SerializeToString())
    broken = onnx.load_model_from_string(
        to_onnx(classifier, x[:1], options={"zipmap": False}).SerializeToString()
    )
    broken.graph.node[0].input[0] = "nowhere"
    invalid = tmp_path / "invalid.onnx"
    invalid.write_bytes(broken.SerializeToString())
    image = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["pixels"], ["same"])],
            "g",
            [onnx.helper.make_tensor_value_info("pixels", onnx.TensorProto.FLOAT, [None, 3, 8, 8])],
            [onnx.helper.make_tensor_value_info("same", onnx.TensorProto.FLOAT, [None, 3, 8, 8])],
        )
    )
    images = tmp_path / "image.onnx"
    images.write_bytes(image.SerializeToString())
    cases = [
        (tmp_path / "missing.onnx", "no such file"),
        (garbage, "is not an ONNX model"),
        (invalid, "is not a valid ONNX model"),
        (zipmap, r"a ZipMap: convert the classifier with options=\{'zipmap': False\}"),
        (images, r"input 'pixels' has shape \[\?, 3, 8, 8\]"),
        (_with_external_location(tmp_path, "../secret.bin", "up"), "outside the model's folder"),
        (
            _with_external_location(tmp_path, str(tmp_path / "secret.bin"), "absolute"),
            "outside the model's folder",
        ),
        (_with_external_location(tmp_path, "gone.bin", "gone"), "which does not exist"),
    ]
    before = snapshot(con)
    for path, message in cases:
        with pytest.raises(sqlml.ModelFileError, match=message):
            con.sql(f"CREATE MODEL m OPTIONS (model_type = 'onnx', model_path = '{path}')")
        assert snapshot(con) == before


def test_export_errors_and_trials(con, tmp_path):
    con.sql(
        """CREATE MODEL t OPTIONS (model_type = 'linear_reg', input_label_cols = ['body_mass_g'],
               num_trials = 3, l2_reg = HPARAM_CANDIDATES([0.1, 100, 10000]),
               data_split_method = 'random')
           AS SELECT body_mass_g, flipper_length_mm, bill_depth_mm FROM penguins"""
    )
    with pytest.raises(
        sqlml.OptionError, match=re.escape("needs OPTIONS (uri = 'path/model.onnx')")
    ):
        con.sql("EXPORT MODEL t")
    with pytest.raises(
        sqlml.OptionError, match=re.escape("must name an .onnx file or an existing folder")
    ):
        con.sql(f"EXPORT MODEL t OPTIONS (uri = '{tmp_path / 'm.txt'}')")
    with pytest.raises(sqlml.ModelFileError, match="does not exist; create it first"):
        con.sql(f"EXPORT MODEL t OPTIONS (uri = '{tmp_path / 'no' / 'm.onnx'}')")
    with pytest.raises(sqlml.OptionError, match="Unknown option 'path' for EXPORT MODEL"):
        con.sql(f"EXPORT MODEL t OPTIONS (path = '{tmp_path / 'm.onnx'}')")
    with pytest.raises(sqlml.ModelNotFound, match=re.escape("main.nope does not exist")):
        con.sql(f"EXPORT MODEL nope OPTIONS (uri = '{tmp_path / 'm.onnx'}')")
    assert list(tmp_path.iterdir()) == []

    # Each trial exports as itself.
    for trial in (1, 2, 3):
        path = tmp_path / f"trial{trial}.onnx"
        con.sql(f"EXPORT MODEL t OPTIONS (uri = '{path}', trial_id = {trial})")
        assert json.loads(path.with_suffix(".json").read_text())["trial_id"] in (trial, None)
        feed = {
            name: np.array(
                con.sql(f"SELECT coalesce({name}::DOUBLE, 'NaN'::DOUBLE) FROM penguins").fetchall()
            )
            for name in ("flipper_length_mm", "bill_depth_mm")
        }
        [prediction] = bare_session(path).run(["prediction"], feed)
        expected = con.sql(
            "SELECT predicted_body_mass_g FROM ML.PREDICT(MODEL t, TABLE penguins, "
            f"STRUCT({trial} AS trial_id))"
        ).fetchall()
        np.testing.assert_allclose(prediction.ravel(), [e[0] for e in expected], rtol=1e-9)
