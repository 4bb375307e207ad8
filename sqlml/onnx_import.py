"""CREATE MODEL m OPTIONS (model_type = 'onnx', model_path = '...'): a model trained
elsewhere, imported from an ONNX file.

The file is read once, checked (onnx's full checker; external data only from files inside
the model's own folder), and stored in the catalog with its external data inlined, so the
database file stays self-contained. Then:

- a file sqlml exported (EXPORT MODEL) carries its features, label, classes and TRANSFORM
  in its ``sqlml.*`` metadata, and behaves as the model it was: the same ML.PREDICT columns,
  ML.EVALUATE on rows with the label;
- any other file: each graph input is fed from the column of the same name (a tensor of
  shape [N] or [N, 1] from a scalar column, [N, k] from a LIST of k numbers), and each
  output becomes a column ``predicted_<output>``: a scalar for [N] or [N, 1], a DOUBLE[]
  for [N, k]. The model function returns the first output.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlml.catalog import ModelRecord
from sqlml.errors import ModelFileError
from sqlml.features import Feature
from sqlml.runtime import ModelRuntime, runtime_for

# ONNX tensor element type -> (NumPy dtype fed, SQL type of a column).
_ELEMENTS = {
    1: ("float32", "DOUBLE"),  # FLOAT
    11: ("float64", "DOUBLE"),  # DOUBLE
    6: ("int32", "INTEGER"),  # INT32
    7: ("int64", "BIGINT"),  # INT64
    8: ("object", "VARCHAR"),  # STRING
    9: ("bool", "BOOLEAN"),  # BOOL
}
# What a sqlml export says about itself (onnx_export.properties).
_SQLML_KEYS = ("sqlml.task", "sqlml.features", "sqlml.outputs", "sqlml.model_type")


@dataclass
class Imported:
    path: str
    onnx: bytes
    sqlml: dict[str, Any] | None  # the metadata of a sqlml export, or None
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        return {"path": self.path, "inputs": self.inputs, "outputs": self.outputs}


def read(path_text: str, model: str) -> Imported:
    """Read and check the ONNX file at ``path_text`` for model ``model``."""
    import onnx
    from onnx import external_data_helper

    path = Path(path_text).expanduser()
    where = f"model_path {path_text!r} of model {model}"
    if not path.is_file():
        raise ModelFileError(f"{where}: no such file. Give the path of an .onnx file")
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError and friends
        raise ModelFileError(f"{where} is not an ONNX model: {e}") from None
    folder = path.resolve().parent
    for tensor in external_data_helper._get_all_tensors(proto):
        if not external_data_helper.uses_external_data(tensor):
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ModelFileError(
                f"{where} reads tensor {tensor.name!r} from {location!r}, outside the "
                f"model's folder {folder}; sqlml reads external data only from that folder"
            )
        if not target.is_file():
            raise ModelFileError(
                f"{where} reads tensor {tensor.name!r} from {location!r}, which does not exist"
            )
    try:
        external_data_helper.load_external_data_for_model(proto, str(folder))
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise ModelFileError(f"{where} is not a valid ONNX model: {e}") from None

    initializers = {i.name for i in proto.graph.initializer}
    inputs = [
        _tensor_spec(v, "input", where) for v in proto.graph.input if v.name not in initializers
    ]
    outputs = [_tensor_spec(v, "output", where) for v in proto.graph.output]
    properties = {p.key: p.value for p in proto.metadata_props}
    sqlml = None
    if all(key in properties for key in _SQLML_KEYS):
        sqlml = {
            k.removeprefix("sqlml."): v for k, v in properties.items() if k.startswith("sqlml.")
        }
    if not inputs:
        raise ModelFileError(f"{where} has no inputs a column could feed")
    return Imported(str(path), proto.SerializeToString(), sqlml, inputs, outputs)


def _tensor_spec(value: Any, role: str, where: str) -> dict[str, Any]:
    """How one graph input or output meets a column: dtype, shape, SQL type, width."""
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        hint = (
            " (a ZipMap: convert the classifier with options={'zipmap': False})"
            if kind == "sequence_type"
            else ""
        )
        raise ModelFileError(
            f"{where}: {role} {value.name!r} is a {kind.replace('_type', '')}{hint}; sqlml "
            f"maps only tensors to columns"
        )
    tensor = value.type.tensor_type
    if tensor.elem_type not in _ELEMENTS:
        raise ModelFileError(
            f"{where}: {role} {value.name!r} has element type "
            f"{_element_name(tensor.elem_type)}; sqlml maps float, double, int32, int64, "
            "string and bool tensors to columns"
        )
    dtype, sql_type = _ELEMENTS[tensor.elem_type]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    shape: list[int | None] = [None, *dims[1:]]
    width = None
    if len(dims) == 2 and dims[1] != 1:
        if dims[1] is None:
            raise ModelFileError(
                f"{where}: {role} {value.name!r} has shape [N, ?]; sqlml needs the second "
                "dimension fixed to map it to a column"
            )
        width = dims[1]
        sql_type = "DOUBLE[]" if dtype.startswith("float") else f"{sql_type}[]"
    elif len(dims) not in (1, 2):
        raise ModelFileError(
            f"{where}: {role} {value.name!r} has shape {_shape_text(dims)}; sqlml maps "
            "tensors of shape [N], [N, 1] (one value per row) or [N, k] (a list) to columns"
        )
    spec = {"name": value.name, "dtype": dtype, "shape": shape, "width": width}
    if role == "output":
        spec["column"] = f"predicted_{value.name}"
        if width is None and dtype.startswith("float"):
            sql_type = "DOUBLE"
    spec["sql_type"] = sql_type
    return spec


def _element_name(elem_type: int) -> str:
    from onnx import TensorProto

    return TensorProto.DataType.Name(elem_type).lower()


def _shape_text(dims: list[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


# -- the plan's parts and the stored version -------------------------------------------------


def features(imported: Imported) -> list[Feature]:
    if imported.sqlml is None:
        return []
    return [Feature.from_dict(f) for f in json.loads(imported.sqlml["features"])]


def label(imported: Imported) -> dict[str, Any] | None:
    return json.loads(imported.sqlml["label"]) if imported.sqlml else None


def task(imported: Imported, default: str) -> str:
    return imported.sqlml["task"] if imported.sqlml else default


def transform(imported: Imported) -> dict[str, Any] | None:
    if imported.sqlml is None or "transform" not in imported.sqlml:
        return None
    return json.loads(imported.sqlml["transform"])


def build(
    plan: Any, version: int, metadata: dict[str, Any]
) -> tuple[ModelRecord, bytes, ModelRuntime]:
    """The stored version of an imported model: metadata read from the file."""
    imported: Imported = plan.imported
    exported = imported.sqlml
    metadata["imported"] = imported.summary()
    metadata["metrics"] = {}
    metadata["evaluated_on"] = None
    metadata["inference"] = {"path": "onnx", "reason": "an imported ONNX model"}
    if exported is not None:
        metadata["imported"]["sqlml_model_type"] = exported["model_type"]
        metadata["classes"] = json.loads(exported.get("classes", "null"))
        if "parameters" in exported:
            metadata["parameters"] = json.loads(exported["parameters"])
        outputs = json.loads(exported["outputs"])
    else:
        outputs = {o["name"]: o["name"] for o in imported.outputs}
    metadata["onnx"] = {
        "size_bytes": len(imported.onnx),
        "outputs": outputs,
        "precision": None,
        "opset": None,
    }
    sha = hashlib.sha256(imported.onnx).hexdigest()
    record = ModelRecord(plan.schema, plan.name, version, metadata, sha)
    onnx_bytes = imported.onnx
    return record, onnx_bytes, runtime_for(record, lambda: onnx_bytes)
