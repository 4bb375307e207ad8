"""model_type 'onnx': a model trained elsewhere, imported from an ONNX file (see
onnx_import.py). Nothing is trained; the family only declares its options."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlml.errors import OptionError
from sqlml.families import IMPORTED, Family, FitContext, register
from sqlml.options import Option

_OPTIONS = (
    Option("model_type", "str", help="the model family"),
    Option("model_path", "str", None, "path of the ONNX file to import"),
)


def _not_trained(options: Mapping[str, Any], ctx: FitContext) -> Any:
    raise OptionError("model_type 'onnx' imports a trained model; it is not trained", "model_type")


register(
    Family(
        model_type="onnx",
        task=IMPORTED,
        description="a model imported from an ONNX file",
        options=_OPTIONS,
        build=_not_trained,
        standardize=lambda options: False,
    )
)
