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

from .base import ConfigError, looks_like_key, shown
from .overrides import apply_overrides, dotted_to_nested
from .run import Config


def list_profiles() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("lima_repro.profiles").iterdir() if p.name.endswith(".yaml"))


# Bounds on what a config file may be. The paper's fully resolved config.json is ~12 KB and ~6 levels deep
# (ablations.conditions.<name>.set.<key>: [list]); far beyond these a file is a mistake or an attack, and
# pure-Python YAML reads 256 KiB in about 2 s.
MAX_CONFIG_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_NODES = 100_000  # values once aliases are expanded: the paper's resolved config has ~500
MAX_DIGITS = 30  # no count comes near 10**30; Python refuses to read an int of more than 4,300 digits at all


class _StrictLoader(yaml.SafeLoader):
    """YAML for configs: nesting at most MAX_DEPTH deep and at most MAX_NODES values once every alias (`*name`) is
    expanded (a few lines of nested aliases expand to billions of values, the "billion laughs"; PyYAML itself
    writes aliases when a dumped object repeats, so they are allowed within the budget), keys that are unique
    text, integers of at most MAX_DIGITS digits. Each refusal is a YAML error with its line and column."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth = 0
        self.expanded: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) once every alias is expanded

    def compose_node(self, parent, index):
        event = self.peek_event()
        if self.depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self.depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if id(node) not in self.expanded:  # an alias returns a node composed (and measured) before it
            if isinstance(event, yaml.AliasEvent):  # an alias inside the block it names: infinitely deep
                raise yaml.composer.ComposerError(
                    None, None, "an alias inside its own anchored block", event.start_mark
                )
            children = [] if isinstance(node, yaml.ScalarNode) else node.value
            children = [c for pair in children for c in pair] if isinstance(node, yaml.MappingNode) else children
            sizes = [self.expanded[id(c)] for c in children]
            values = 1 + sum(n for n, _ in sizes)
            depth = 1 + max((d for _, d in sizes), default=0)
            if values > MAX_NODES or depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"its aliases (*name) expand to {values:,} values {depth} levels deep, more than a config needs "
                    f"({MAX_NODES:,} values, {MAX_DEPTH} levels); write the values out",
                    event.start_mark,
                )
            self.expanded[id(node)] = (values, depth)
        return node

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)
        mapping = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            problem = (
                f"the key {shown('', key)} is not text; quote it"
                if not isinstance(key, str)
                else f"the key {shown('', key)} appears twice; keep one"
                if key in mapping
                else None
            )
            if problem:
                raise yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_int(self, node):
        if len(node.value) > MAX_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number of {len(node.value):,} characters; no config value needs that", node.start_mark
            )
        return super().construct_yaml_int(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error in one line: what the parser says and where (line and column, 1-based)."""
    mark = getattr(e, "problem_mark", None)
    what = " ".join(str(getattr(e, "problem", None) or e).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {what}" if mark is not None else what


def _parse_yaml(text: str) -> Any:
    """`text` read by _StrictLoader; a too-long text is refused before the parser sees it."""
    if len(text) > MAX_CONFIG_BYTES:
        raise yaml.YAMLError(f"{len(text):,} characters, more than any config needs ({MAX_CONFIG_BYTES:,})")
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_text(path: str | Path, flag: str, example: str) -> str:
    """A config file's text, for the command-line `flag` that named it; at most MAX_CONFIG_BYTES are read."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{flag} {path}: file not found; check the path (relative paths start in {Path.cwd()})")
    if p.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder, not a file; name the file, e.g. {p / example}")
    try:
        with p.open("rb") as fh:  # not read_text: a /dev/zero or a 10 GB file must not be read whole
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{flag} {path}: larger than {MAX_CONFIG_BYTES // 1024} KiB, far more than any config "
                "(the paper's whole resolved config is ~12 KB); name the right file"
            )
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid UTF-8 at byte {e.start}; re-save the file as UTF-8") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror}); check its permissions") from e


def _read_yaml(path: str | Path, text: str | None = None) -> dict:
    if text is None:
        text = _read_text(path, "--config", "config.yaml")
    try:
        data = _parse_yaml(text)
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
            raise ConfigError(f"--set {shown('', item)}: expected KEY=VALUE, e.g. train.epochs=2")
        k, v = item.split("=", 1)
        if not k.strip():
            raise ConfigError(f"--set {shown('', item)}: the key before '=' is empty; e.g. train.epochs=2")
        try:
            out[k.strip()] = _parse_yaml(v)
        except yaml.YAMLError as e:
            hidden = "key" in k.lower() or looks_like_key(v)
            where = f"'{k.strip()}=...' (the value is not shown: it may be a key)" if hidden else shown("", item)
            raise ConfigError(
                f"--set {where}: the value is not valid YAML ({_yaml_problem(e)}); quote a string "
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
        raise ConfigError(f"unknown profile {shown('', profile)}; available: {', '.join(list_profiles())}")
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
    text = _read_text(path, "--config-json", "config.json")
    fix = "use the config.json a run wrote, unedited"
    too_deep = f"{path}: nested deeper than {MAX_DEPTH} levels, which no config is; {fix}"
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_int=_short_int)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}:line {e.lineno}, column {e.colno}: not valid JSON ({e.msg}); {fix}") from e
    except RecursionError as e:  # the C decoder's own limit, near 1,000 levels
        raise ConfigError(too_deep) from e
    except ValueError as e:  # _unique_keys, _short_int
        raise ConfigError(f"{path}: {e}; {fix}") from e
    if _depth(data) > MAX_DEPTH:
        raise ConfigError(too_deep)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of config keys, got {type(data).__name__}")
    return from_dict(data, overrides, str(path))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"the key {shown('', key)} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def _short_int(text: str) -> int:
    if len(text) > MAX_DIGITS:
        raise ValueError(f"a number of {len(text):,} digits; no config value needs that")
    return int(text)


def _depth(data: Any) -> int:
    """How deeply lists and mappings nest in `data` (1 for a flat one), without recursion."""
    deepest, todo = 0, [(data, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            todo += [(child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)]
    return deepest
