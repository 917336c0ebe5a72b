"""Setting config fields from nested mappings, with every value checked against its dataclass annotation.

Used by the loader (profiles, YAML, --set) and by `Config.check()` to build the ablation sub-runs' configs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from .base import ConfigError, shown


def _check_type(key: str, value: Any, tp: Any) -> Any:
    """Validate (and gently coerce int->float) `value` against the annotation `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return _check_type(key, value, arm)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: {shown(key, value)} does not match {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {shown(key, value)}")
        (arm,) = typing.get_args(tp)
        return [_check_type(f"{key}[{i}]", v, arm) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {shown(key, value)}")
        key_tp, value_tp = typing.get_args(tp) or (Any, Any)
        for k in value:  # keys name things (conditions, systems): a number or null there is a slip
            _check_type(f"{key} key", k, key_tp)
        return {k: _check_type(f"{key}.{k}", v, value_tp) for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "3e-5" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {shown(key, value)}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {shown(key, value)}")
    return value


def apply_overrides(cfg: Any, data: dict, prefix: str = "") -> None:
    """Set fields of dataclass `cfg` from nested mapping `data`; unknown keys raise ConfigError."""
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {shown('', full)}; valid keys here: {', '.join(sorted(names))}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{full}: expected a mapping of {sorted(f.name for f in dataclasses.fields(current))}"
                )
            apply_overrides(current, value, prefix=f"{full}.")
        else:
            setattr(cfg, key, _check_type(full, value, hints[key]))


def dotted_to_nested(pairs: dict[str, Any]) -> dict:
    """{'train.epochs': 2} -> {'train': {'epochs': 2}}."""
    nested: dict = {}
    for dotted, value in pairs.items():
        node = nested
        *parents, leaf = dotted.split(".")
        for i, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    f"{dotted}: {'.'.join(parents[: i + 1])} is also set to a single value; set either "
                    "the section or its fields, not both"
                )
        node[leaf] = value
    return nested
