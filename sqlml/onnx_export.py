"""Trained pipeline -> one self-contained ONNX model.

The graph takes the raw columns (one input per feature, named after it) and does the
preprocessing itself, so any caller needs only the columns: numeric and date/time inputs
are double tensors (NaN for NULL), categorical inputs are string tensors (NULL as
``features.NULL_TOKEN``). The estimator part comes from skl2onnx; the preprocessing part
is built here from the fitted facts, in double precision. Tree ensembles get their
features cast to float32 at the end (onnxruntime runs trees on float32 only).

Outputs, by task: regression ``prediction`` [N, 1]; classification ``label`` [N] (class
index) and ``probabilities`` [N, classes]; clustering ``label`` [N] (0-based cluster) and
``distances`` [N, clusters]; pca ``components`` [N, k]; isolation forest ``label`` (1 normal,
-1 anomaly) and ``scores`` (scikit-learn's decision_function). An output is renamed if a
feature already has its name.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from sqlml.families import (
    ANOMALY_DETECTION,
    CLASSIFICATION,
    CLUSTERING,
    DIMENSIONALITY_REDUCTION,
    REGRESSION,
    Family,
)
from sqlml.features import CATEGORICAL, NULL_TOKEN, Feature

TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}
OUTPUT_ROLES = {
    REGRESSION: ("prediction",),
    CLASSIFICATION: ("label", "probabilities"),
    CLUSTERING: ("label", "distances"),
    DIMENSIONALITY_REDUCTION: ("components",),
    ANOMALY_DETECTION: ("label", "scores"),
}
_ESTIMATOR_PREFIX = "estimator/"
_FEATURES = "sqlml/features"


def to_onnx(
    features: list[Feature],
    estimator: Any,
    family: Family,
    metadata: dict[str, str],
) -> tuple[bytes, dict[str, str]]:
    """The ONNX bytes and the output name of each role."""
    import onnx
    from onnx import TensorProto, compose, helper

    width = sum(f.width for f in features)
    estimator_model = _convert_estimator(estimator, family, width)
    estimator_model = compose.add_prefix(estimator_model, _ESTIMATOR_PREFIX)
    graph = estimator_model.graph
    estimator_input = graph.input[0].name

    opsets: dict[str, int] = {}
    for entry in estimator_model.opset_import:
        opsets[entry.domain] = max(opsets.get(entry.domain, 0), entry.version)
    opsets.setdefault("ai.onnx.ml", 1)
    nodes, initializers, inputs = _preprocessing(features, _FEATURES, opsets["ai.onnx.ml"])
    if family.float32:
        nodes.append(helper.make_node("Cast", [_FEATURES], [estimator_input], to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Identity", [_FEATURES], [estimator_input]))

    taken = {f.name for f in features}
    outputs: dict[str, str] = {}
    output_infos = []
    for role, produced in zip(OUTPUT_ROLES[family.task], graph.output, strict=True):
        name = role
        while name in taken:
            name = f"output_{name}"
        taken.add(name)
        outputs[role] = name
        nodes_after = helper.make_node("Identity", [produced.name], [name])
        graph.node.append(nodes_after)
        info = onnx.ValueInfoProto()
        info.CopyFrom(produced)
        info.name = name
        output_infos.append(info)

    merged = helper.make_graph(
        nodes + list(graph.node),
        "sqlml",
        inputs,
        output_infos,
        initializer=initializers + list(graph.initializer),
    )
    model = helper.make_model(
        merged,
        opset_imports=[helper.make_opsetid(domain, v) for domain, v in sorted(opsets.items())],
        producer_name="sqlml",
        producer_version=metadata.get("sqlml_version", ""),
        ir_version=estimator_model.ir_version,
    )
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key = f"sqlml.{key}"
        entry.value = value
    entry = model.metadata_props.add()
    entry.key = "sqlml.outputs"
    entry.value = json.dumps(outputs)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString(), outputs


def properties(metadata: dict[str, Any]) -> dict[str, str]:
    """What an ONNX file sqlml writes says about itself (``sqlml.*`` metadata_props):
    enough for another sqlml to import it as the model it is (onnx_import). The fitted
    parameters go along except a tree ensemble's (large, and only used to compile trees to
    SQL and explain them)."""
    properties = {
        "sqlml_version": metadata["libraries"]["sqlml"],
        "model": f"{metadata['schema']}.{metadata['name']}",
        "version": str(metadata["version"]),
        "model_type": metadata["model_type"],
        "task": metadata["task"],
        "features": json.dumps(metadata["features"]),
        "label": json.dumps(metadata["label"]),
        "classes": json.dumps(metadata["classes"]),
    }
    if metadata.get("transform"):
        properties["transform"] = json.dumps(metadata["transform"])
    parameters = metadata.get("parameters")
    if parameters is not None and "trees" not in parameters:
        properties["parameters"] = json.dumps(parameters)
    return properties


def with_category_codes(model_bytes: bytes, features: list[Feature]) -> bytes:
    """The same model taking each text feature as an int64 category code instead of a
    string: the graph's LabelEncoder lookup removed, its output made the input. sqlml
    computes the codes in Arrow (features.category_codes), which spares a Python string
    per value; the stored and exported model keeps its string inputs."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    for feature in features:
        if feature.kind != CATEGORICAL:
            continue
        [lookup] = [
            n for n in graph.node if n.op_type == "LabelEncoder" and n.input[0] == feature.name
        ]
        graph.node.remove(lookup)
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == lookup.output[0]:
                    node.input[i] = feature.name
        [graph_input] = [i for i in graph.input if i.name == feature.name]
        graph_input.type.tensor_type.elem_type = onnx.TensorProto.INT64
    return model.SerializeToString()


def _convert_estimator(estimator: Any, family: Family, width: int) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    tensor = FloatTensorType if family.float32 else DoubleTensorType
    options = {id(estimator): {"zipmap": False}} if family.task == CLASSIFICATION else None
    model = convert_sklearn(
        estimator,
        initial_types=[("features", tensor([None, width]))],
        options=options,
        target_opset=TARGET_OPSET,
    )
    if family.mend_onnx is not None:
        family.mend_onnx(estimator, model)
    return model


def _preprocessing(features: list[Feature], output: str, ml_opset: int) -> tuple[list, list, list]:
    """Nodes, initializers and graph inputs that turn raw columns into the feature matrix.

    A categorical column is looked up in its categories (LabelEncoder: index, or -1 when
    unseen) and compared with 0..k-1, giving the one-hot block."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers, inputs, blocks = [], [], [], []
    for i, feature in enumerate(features):
        prefix = f"sqlml/f{i}/"
        if feature.kind == CATEGORICAL:
            inputs.append(
                helper.make_tensor_value_info(feature.name, TensorProto.STRING, [None, 1])
            )
            cats = [NULL_TOKEN if c is None else c for c in feature.categories]
            if ml_opset >= 2:
                lookup = {"keys_strings": cats, "values_int64s": list(range(len(cats)))}
            else:
                lookup = {"classes_strings": cats}
            nodes.append(
                helper.make_node(
                    "LabelEncoder",
                    [feature.name],
                    [prefix + "code"],
                    domain="ai.onnx.ml",
                    default_int64=-1,
                    **lookup,
                )
            )
            positions = np.arange(len(cats), dtype=np.int64).reshape(1, -1)
            initializers.append(numpy_helper.from_array(positions, prefix + "positions"))
            nodes.append(
                helper.make_node("Equal", [prefix + "code", prefix + "positions"], [prefix + "eq"])
            )
            nodes.append(
                helper.make_node("Cast", [prefix + "eq"], [prefix + "out"], to=TensorProto.DOUBLE)
            )
        else:
            inputs.append(
                helper.make_tensor_value_info(
                    feature.name, TensorProto.DOUBLE, [None, feature.input_width]
                )
            )
            means = np.array([feature.means], dtype=np.float64)
            initializers.append(numpy_helper.from_array(means, prefix + "means"))
            nodes.append(helper.make_node("IsNaN", [feature.name], [prefix + "missing"]))
            imputed = prefix + ("imputed" if feature.scales is not None else "out")
            nodes.append(
                helper.make_node(
                    "Where", [prefix + "missing", prefix + "means", feature.name], [imputed]
                )
            )
            if feature.scales is not None:
                scales = np.array([feature.scales], dtype=np.float64)
                initializers.append(numpy_helper.from_array(scales, prefix + "scales"))
                nodes.append(
                    helper.make_node("Sub", [imputed, prefix + "means"], [prefix + "centered"])
                )
                nodes.append(
                    helper.make_node(
                        "Div", [prefix + "centered", prefix + "scales"], [prefix + "out"]
                    )
                )
        blocks.append(prefix + "out")
    nodes.append(helper.make_node("Concat", blocks, [output], axis=1))
    return nodes, initializers, inputs


# -- EXPORT MODEL ------------------------------------------------------------------------------

SIDECAR_FORMAT = 1


def sidecar(record: Any, onnx_file: str) -> dict[str, Any]:
    """The JSON written beside an exported ONNX file: how to feed it from raw columns, what
    it returns, and what happens outside the graph."""
    from sqlml import compiler
    from sqlml.catalog import quote
    from sqlml.features import DATETIME

    meta = record.metadata
    inputs = []
    outside: list[str] = []
    imported = meta.get("imported")
    if imported and not record.features:  # an ONNX file from elsewhere, as it came
        inputs = [
            {
                "name": i["name"],
                "sql_type": i["sql_type"],
                "onnx_type": i["dtype"],
                "shape": i["shape"],
            }
            for i in imported["inputs"]
        ]
    for feature in record.features:
        entry: dict[str, Any] = {"name": feature.name, "sql_type": feature.sql_type}
        if feature.kind == CATEGORICAL:
            entry.update(
                onnx_type="string",
                shape=[None, 1],
                null=NULL_TOKEN,
                categories=feature.categories,
            )
            if feature.sql_type.upper() == "BOOLEAN":
                outside.append(f"{feature.name}: BOOLEAN values are fed as 'true' / 'false'")
        else:
            entry.update(onnx_type="double", shape=[None, feature.input_width], null="NaN")
            if feature.kind == DATETIME:
                sql = compiler.raw_numeric_values(feature, quote(feature.name))
                entry["parts"] = [
                    {"part": part, "duckdb_sql": expr}
                    for part, expr in zip(feature.parts, sql, strict=True)
                ]
                outside.append(
                    f"{feature.name}: the {len(feature.parts)} date/time parts (in UTC) are "
                    "computed before the graph; see parts"
                )
        inputs.append(entry)
    if any(f.kind == CATEGORICAL for f in record.features):
        outside.append(f"NULL text values are fed as {NULL_TOKEN!r} (U+0000)")
    transform = meta.get("transform")
    if transform:
        select = ", ".join(f"{f['sql']} AS {f['name']}" for f in transform["features"])
        outside.insert(
            0,
            "TRANSFORM: the graph's inputs are the TRANSFORM's outputs; compute them from the "
            f"raw columns with this DuckDB select list: {select}",
        )
    return {
        "sqlml_export": SIDECAR_FORMAT,
        "onnx_file": onnx_file,
        "model": record.qualified,
        "version": record.version,
        "trial_id": record.trial_id,
        "model_type": meta["model_type"],
        "task": meta["task"],
        "label": meta.get("label"),
        "classes": meta.get("classes"),
        "inputs": inputs,
        "outputs": meta["onnx"]["outputs"],
        "transform": transform,
        "outside_the_graph": outside,
        "sqlml_version": meta["libraries"]["sqlml"],
    }
