"""Typed configuration helpers: traced vs static fields, and checks that speak to the user.

A configuration is a frozen dataclass. Fields created with `traced(default)` are
hyperparameters that enter the jitted computation as *values* (a batch of them can be `vmap`ped
in one compile: learning rate, discount, clip range, loss coefficients); every other field is
*static*: it fixes array shapes or program structure (numbers of environments, steps, epochs,
network widths), and a change means a new compile.

Checks raise `ValueError` with one line that names the field, the value and the fix, before
anything is traced or compiled.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

__all__ = [
    "check_nonnegative",
    "check_positive",
    "check_unit_interval",
    "config_from_dict",
    "config_to_dict",
    "flag",
    "static_fields",
    "traced",
    "traced_fields",
]


def traced(default: float) -> Any:
    """A dataclass field holding a hyperparameter that may be batched (`vmap`ped)."""
    return dataclasses.field(default=default, metadata={"traced": True})


def traced_fields(config_cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(config_cls) if f.metadata.get("traced"))


def static_fields(config_cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(config_cls) if not f.metadata.get("traced"))


def flag(name: str) -> str:
    """The command-line spelling of a (possibly nested) field name."""
    return "--" + name.replace("_", "-")


def check_positive(name: str, value: float, hint: str = "") -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(
            f"{name}={value!r} must be a positive number; {hint or f'pass e.g. {flag(name)} 1'}"
        )


def check_nonnegative(name: str, value: float, hint: str = "") -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(
            f"{name}={value!r} must be >= 0; {hint or f'pass e.g. {flag(name)} 0'}"
        )


def check_unit_interval(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
        raise ValueError(
            f"{name}={value!r} must lie in [0, 1]; pass e.g. {flag(name)} 0.99"
        )


def config_to_dict(config) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(config_cls, data: dict[str, Any]):
    """Rebuilds a (nested) frozen config dataclass from `config_to_dict`'s output.

    Unknown keys raise `ValueError` naming them, so a config written by another version or
    algorithm never half-loads.
    """
    names = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(
            f"{config_cls.__name__} has no field(s) {unknown}; the file was written for another "
            "configuration type or version"
        )
    kwargs = {}
    for name, value in data.items():
        default = getattr(config_cls(), name) if _has_default(names[name]) else None
        if dataclasses.is_dataclass(default):
            value = config_from_dict(type(default), value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return config_cls(**kwargs)


def _has_default(field: dataclasses.Field) -> bool:
    return (
        field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
    )
