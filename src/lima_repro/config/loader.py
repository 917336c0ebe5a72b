"""Reading a configuration: paper defaults <- profile <- user YAML files <- dotted overrides, then cfg.check().

Unknown keys and wrongly typed values are errors naming the key; values are checked against the dataclass
annotations (`overrides.py`), the rules the types cannot express by each section's check().
"""
from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .base import ConfigError
from .overrides import apply_overrides, dotted_to_nested
from .run import Config


def list_profiles() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("lima_repro.profiles").iterdir() if p.name.endswith(".yaml"))


def _read_yaml(path: str | Path, text: str | None = None) -> dict:
    try:
        data = yaml.safe_load(text if text is not None else Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}); fix the syntax") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return data


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse CLI `key=value` strings; values are read as YAML scalars (`2`, `1e-5`, `null`, `[a, b]`)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=2")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def load_config(
    profile: str = "paper",
    files: list[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Resolve a configuration: paper defaults <- profile <- user YAML files <- dotted overrides."""
    cfg = Config()
    if profile not in list_profiles():
        raise ConfigError(f"unknown profile '{profile}'; available: {', '.join(list_profiles())}")
    src = resources.files("lima_repro.profiles").joinpath(f"{profile}.yaml")
    apply_overrides(cfg, _read_yaml(f"profile {profile}", src.read_text(encoding="utf-8")))
    cfg.profile = profile
    for f in files or []:
        apply_overrides(cfg, _read_yaml(f))
    if overrides:
        flat = {k: v for k, v in overrides.items()}
        apply_overrides(cfg, dotted_to_nested(flat) if any("." in k for k in flat) else flat)
    cfg.check()
    return cfg


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> Config:
    """Rebuild a Config from `to_dict` output (e.g. a run directory's config.json)."""
    cfg = Config()
    apply_overrides(cfg, data)
    cfg.check()
    return cfg


def load_resolved(path: str | Path) -> Config:
    """Load the config.json a pipeline run wrote."""
    return from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
