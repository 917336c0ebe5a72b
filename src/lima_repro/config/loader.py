"""Reading a configuration: paper defaults <- profile <- user YAML files <- dotted overrides, then cfg.check().

Unknown keys and wrongly typed values are errors naming the key; values are checked against the dataclass
annotations (`overrides.py`), the rules the types cannot express by each section's check().
"""

from __future__ import annotations

import dataclasses
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .base import ConfigError
from .overrides import apply_overrides, dotted_to_nested
from .run import Config


def list_profiles() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("lima_repro.profiles").iterdir() if p.name.endswith(".yaml"))


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: what the parser says and where (line and column, 1-based)."""
    mark = getattr(e, "problem_mark", None)
    what = " ".join(str(getattr(e, "problem", None) or e).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}" if mark is not None else what


def _read_yaml(path: str | Path, text: str | None = None) -> dict:
    if text is None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"--config {path}: file not found; check the path (relative paths start in {Path.cwd()})")
        if not p.is_file():
            raise ConfigError(f"--config {path}: is a folder, not a YAML file; name the file, e.g. {p / 'config.yaml'}")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not valid UTF-8 at byte {e.start}; re-save the file as UTF-8") from e
        except OSError as e:
            raise ConfigError(f"{path}: cannot be read ({e.strerror}); check its permissions") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(e)}); fix the syntax") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of config keys at the top level (e.g. `train:` then "
            f"indented `epochs: 2`), got {type(data).__name__}"
        )
    return data


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse CLI `key=value` strings; values are read as YAML scalars (`2`, `1e-5`, `null`, `[a, b]`)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=2")
        k, v = item.split("=", 1)
        if not k.strip():
            raise ConfigError(f"--set {item!r}: the key before '=' is empty; e.g. train.epochs=2")
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError as e:
            raise ConfigError(
                f"--set {item!r}: the value is not valid YAML ({_yaml_problem(e)}); quote a string "
                "value, or write a list as [a, b]"
            ) from e
    return out


def load_config(
    profile: str = "paper",
    files: list[str | Path] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Resolve a configuration: paper defaults <- profile <- user YAML files <- dotted overrides. A bad value
    is a ConfigError naming the key and the layer that set it (the profile, a --config file or --set)."""
    cfg = Config()
    if profile not in list_profiles():
        raise ConfigError(f"unknown profile '{profile}'; available: {', '.join(list_profiles())}")
    src = resources.files("lima_repro.profiles").joinpath(f"{profile}.yaml")
    origin: dict[str, str] = {}  # dotted key -> the layer that set it last
    _apply(cfg, _read_yaml(f"profile {profile}", src.read_text(encoding="utf-8")), f"profile {profile}", origin)
    cfg.profile = profile
    for f in files or []:
        _apply(cfg, _read_yaml(f), f"--config {f}", origin)
    return _set_and_check(cfg, overrides, origin)


def _set_and_check(cfg: Config, overrides: dict[str, Any] | None, origin: dict[str, str]) -> Config:
    """Apply the --set layer, then check the whole config once; an error names the layer that set the bad key."""
    if overrides:
        _apply(
            cfg, dotted_to_nested(overrides) if any("." in k for k in overrides) else dict(overrides), "--set", origin
        )
    try:
        cfg.check()
    except ConfigError as e:
        raise ConfigError(f"{e}{_set_by(str(e), origin)}") from e
    return cfg


def _apply(cfg: Config, data: dict, layer: str, origin: dict[str, str]) -> None:
    try:
        apply_overrides(cfg, data)
    except ConfigError as e:
        raise ConfigError(f"{layer}: {e}") from e
    origin.update(dict.fromkeys(_leaf_keys(cfg, data), layer))


def _leaf_keys(section: Any, data: dict, prefix: str = "") -> list[str]:
    """The dotted config fields a mapping sets (a dict-valued field such as judge.baseline_files is one)."""
    out = []
    for k, v in data.items():
        current = getattr(section, k)
        if dataclasses.is_dataclass(current) and isinstance(v, dict):
            out += _leaf_keys(current, v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def _set_by(message: str, origin: dict[str, str]) -> str:
    """' (set by LAYER)' for the first config key the message names that a layer set; '' for a default value."""
    found = [(m.start(), key) for key in origin if (m := re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message))]
    return f" (set by {origin[min(found)[1]]})" if found else ""


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict, overrides: dict[str, Any] | None = None, layer: str = "the config") -> Config:
    """Rebuild a Config from `to_dict` output (e.g. a run directory's config.json, named by `layer` in errors),
    then `overrides` (--set) on top; checked once, after both."""
    cfg, origin = Config(), {}
    _apply(cfg, data, layer, origin)
    return _set_and_check(cfg, overrides, origin)


def load_resolved(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Load the config.json a pipeline run wrote, then `overrides` (--set) on top; checked once, after both, so
    that --set can correct a value the run's file holds but today's checks reject."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"--config-json {path}: {'is a folder' if p.is_dir() else 'file not found'}; give the "
            "config.json of a run or stage folder (e.g. runs/X/config.json)"
        )
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f"line {e.lineno}, column {e.colno}" if isinstance(e, json.JSONDecodeError) else f"byte {e.start}"
        raise ConfigError(
            f"{path}:{where}: not valid JSON ({e.msg if isinstance(e, json.JSONDecodeError) else e.reason}); "
            "use the config.json a run wrote, unedited"
        ) from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of config keys, got {type(data).__name__}")
    return from_dict(data, overrides, str(path))
