"""Typed OPTIONS: what each option accepts, its default, and the checks with clear messages."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from sqlml.errors import OptionError


@dataclass(frozen=True)
class HParam:
    """A hyperparameter to tune: HPARAM_RANGE(low, high) or HPARAM_CANDIDATES([...])."""

    kind: str  # "range" or "candidates"
    values: tuple[Any, ...]

    def to_json(self) -> dict[str, list[Any]]:
        return {f"hparam_{self.kind}": list(self.values)}


def jsonable_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options as stored in JSON: tuned ones as {"hparam_range": [low, high]} or
    {"hparam_candidates": [...]}."""
    return {k: v.to_json() if isinstance(v, HParam) else v for k, v in options.items()}


def literal_value(node: exp.Expr, option: str) -> Any:
    """The Python value of an OPTIONS value written in SQL: strings, numbers, booleans, NULL,
    arrays and STRUCTs of those, and HPARAM_RANGE / HPARAM_CANDIDATES."""
    if isinstance(node, exp.Anonymous | exp.Func) and node.name.upper() in (
        "HPARAM_RANGE",
        "HPARAM_CANDIDATES",
    ):
        args = [literal_value(a, option) for a in node.expressions]
        if node.name.upper() == "HPARAM_RANGE":
            if len(args) != 2:
                raise OptionError(f"Option {option!r}: HPARAM_RANGE takes (low, high)", option)
            return HParam("range", tuple(args))
        if len(args) != 1 or not isinstance(args[0], list) or not args[0]:
            raise OptionError(
                f"Option {option!r}: HPARAM_CANDIDATES takes an array, e.g. "
                "HPARAM_CANDIDATES([0.1, 0.3])",
                option,
            )
        return HParam("candidates", tuple(args[0]))
    if isinstance(node, exp.Struct):
        return [
            literal_value(e.this if isinstance(e, exp.Alias) else e, option)
            for e in node.expressions
        ]
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        try:
            return int(text)
        except ValueError:
            return float(text)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Neg):
        value = literal_value(node.this, option)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value
    if isinstance(node, exp.Array | exp.Tuple):
        return [literal_value(e, option) for e in node.expressions]
    if isinstance(node, exp.Paren):
        return literal_value(node.this, option)
    raise OptionError(
        f"Option {option!r}: {node.sql(dialect='duckdb')!r} is not a literal value; "
        "write a string, a number, TRUE/FALSE or an array like ['a', 'b']",
        option,
    )


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "NULL" if value is None else type(value).__name__


@dataclass(frozen=True)
class Option:
    """One OPTIONS key. ``kind`` is str, int, float, bool or str_list."""

    name: str
    kind: str
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False

    def expects(self) -> str:
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        text = {
            "str": "a string",
            "int": "an integer",
            "float": "a number",
            "bool": "TRUE or FALSE",
            "str_list": "an array of column names like ['a', 'b']",
            "int_list": "an array of integers like [64, 32]",
            "weights": "an array of (label, weight) pairs like [STRUCT('a', 0.3)]",
        }[self.kind]
        if self.minimum is not None and self.maximum is not None:
            low = "(" if self.exclusive_minimum else "["
            text += f" in {low}{self.minimum:g}, {self.maximum:g}]"
        elif self.minimum is not None:
            text += f" {'>' if self.exclusive_minimum else '>='} {self.minimum:g}"
        return text

    def convert(self, value: Any) -> Any:
        if isinstance(value, HParam):
            return self._convert_hparam(value)

        def bad() -> OptionError:
            return OptionError(
                f"Option {self.name!r} must be {self.expects()}, got {value!r} "
                f"({_describe(value)})",
                self.name,
            )

        if self.kind == "bool":
            if not isinstance(value, bool):
                raise bad()
            return value
        if self.kind == "str":
            if not isinstance(value, str):
                raise bad()
            if self.choices:
                lowered = value.lower()
                if lowered not in self.choices:
                    raise bad()
                return lowered
            return value
        if self.kind == "str_list":
            if isinstance(value, str):  # a single column is a list of one
                value = [value]
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(v, str) for v in value)
            ):
                raise bad()
            return value
        if self.kind == "weights":
            # [('label', weight), ...] or [STRUCT('label', weight), ...]
            if not isinstance(value, list) or not all(
                isinstance(v, list) and len(v) == 2 and isinstance(v[1], int | float) for v in value
            ):
                raise bad()
            return [[label, float(weight)] for label, weight in value]
        if self.kind == "int_list":
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise bad()
            return value
        if self.kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad()
            if self.kind == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise bad()
                value = int(value)
            else:
                value = float(value)
                if not math.isfinite(value):
                    raise bad()
            if self.minimum is not None and (
                value < self.minimum or (self.exclusive_minimum and value == self.minimum)
            ):
                raise bad()
            if self.maximum is not None and value > self.maximum:
                raise bad()
            return value
        raise AssertionError(self.kind)

    def _convert_hparam(self, value: HParam) -> HParam:
        if value.kind == "range":
            if self.kind not in ("int", "float"):
                raise OptionError(
                    f"Option {self.name!r} is {self.expects()}: tune it with "
                    "HPARAM_CANDIDATES([...]), not HPARAM_RANGE",
                    self.name,
                )
            low, high = (self.convert(v) for v in value.values)
            if not low < high:
                raise OptionError(
                    f"Option {self.name!r}: HPARAM_RANGE needs low < high, got {low}, {high}",
                    self.name,
                )
            return HParam("range", (low, high))
        return HParam("candidates", tuple(self.convert(v) for v in value.values))


def resolve(
    given: Mapping[str, Any],
    specs: Sequence[Option],
    model_type: str,
    unsupported: Mapping[str, str],
) -> dict[str, Any]:
    """Check ``given`` (lower-cased keys) against ``specs``; return every option with
    defaults filled in."""
    by_name = {spec.name: spec for spec in specs}
    for key in given:
        if key in by_name:
            continue
        if key in unsupported:
            raise OptionError(
                f"Option {key!r} is not supported for model_type {model_type!r}: "
                f"{unsupported[key]}",
                key,
            )
        raise OptionError(
            f"Unknown option {key!r} for model_type {model_type!r}. "
            f"Valid options: {', '.join(sorted(by_name))}",
            key,
        )
    resolved: dict[str, Any] = {}
    for spec in specs:
        resolved[spec.name] = spec.convert(given[spec.name]) if spec.name in given else spec.default
    return resolved


def option_names(specs: Iterable[Option]) -> list[str]:
    return sorted(spec.name for spec in specs)
