"""Ablation settings (`Config.ablations`): the matched sub-runs of LIMA sec. 5 (PAPER.md sec. 4-5).

A condition is a spec {groups, set, x, paper, protocols}; `set` holds dotted `curate.*` overrides, since only
the data may differ between sub-runs. The paper's conditions live in ablation_conditions.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .ablation_conditions import paper_conditions
from .base import ConfigError, raise_first
from .judge import PROTOCOL_NAMES

GROUPS = ("diversity", "quality", "quantity", "selector", "dialogue")
# test prompts must be the same in every condition, so a condition may not touch where they come from
FIXED_CURATE = ("curate.test_files", "curate.dev_files", "curate.askreddit")
SPEC_KEYS = {"groups", "set", "x", "paper", "protocols"}


def check_condition(name: str, spec: Any) -> None:
    """One condition's spec: known keys and groups, and a `set` that changes only the data."""
    if not isinstance(spec, dict):
        raise ConfigError(f"ablations.conditions.{name}: expected a mapping of groups/set/x/paper/protocols, "
                          f"got {spec!r}")
    unknown = set(spec) - SPEC_KEYS
    if unknown or not set(spec.get("groups", [])) <= set(GROUPS):
        raise ConfigError(f"ablations.conditions.{name}: keys must be groups/set/x/paper/protocols and groups among "
                          f"{GROUPS}; got {sorted(spec)} with groups {spec.get('groups')}")
    if not isinstance(spec.get("set", {}), dict):
        raise ConfigError(f"ablations.conditions.{name}.set: expected a mapping of dotted curate.* keys to values, "
                          f"got {spec['set']!r}")
    bad = [k for k in spec.get("set", {}) if not k.startswith("curate.") or k.startswith(FIXED_CURATE)]
    if bad:
        raise ConfigError(f"ablations.conditions.{name}.set: {bad} would unmatch the sub-runs; a condition may change "
                          "only curate.* (not test/dev prompts); put shared changes in ablations.common")
    unknown_protocols = [p for p in spec.get("protocols", []) if p not in PROTOCOL_NAMES]
    if unknown_protocols:
        raise ConfigError(f"ablations.conditions.{name}.protocols: unknown judge protocol(s) {unknown_protocols}; "
                          f"available: {', '.join(PROTOCOL_NAMES)}")


@dataclass
class AblationConfig:
    conditions: dict[str, dict] = field(default_factory=paper_conditions)
    """name -> {groups: [diversity|quality|quantity|selector|dialogue], set: {dotted curate.* overrides: the
    condition's data}, x: size for the quantity curve, paper: the paper's label it matches, protocols: judge
    protocols if not `protocols`}. Only curate.* may differ (train, generate and judge stay matched)."""
    only: list[str] | None = None
    """Run only these conditions (None = all)."""
    common: dict[str, Any] = field(default_factory=dict)
    """Dotted overrides applied to EVERY condition (so they stay matched), e.g. a smaller train/generate for CPU."""
    num_samples: int = 5  # LIMA sec. 4-5: 5 samples per test prompt in the ablations
    protocols: list[str] = field(default_factory=lambda: ["likert"])  # LIMA sec. 4-5: ChatGPT 1-6 helpfulness
    n_examples: int = 2000  # LIMA sec. 5: 2,000 examples per condition (recorded; a mismatch is flagged)
    keep_checkpoints: bool = False
    """Keep each condition's train/checkpoints and train/state after it is judged (they are ~4x the model size)."""
    note: str = ""
    """Shown in the notebook and the summary (the demo says it is a plumbing check, not evidence)."""

    def check(self) -> None:
        """Every condition's spec, `only`, and the settings every sub-run's generate/judge take from here.
        Whether `common` and `set` apply cleanly to the rest of the config is Config.check()'s (it needs both)."""
        for name, spec in self.conditions.items():
            check_condition(name, spec)
        missing = sorted(set(self.only or []) - set(self.conditions))
        unknown_protocols = [p for p in self.protocols if p not in PROTOCOL_NAMES]
        raise_first([
            (bool(missing), f"ablations.only names unknown conditions {missing}; have {sorted(self.conditions)}"),
            (self.num_samples < 1, f"ablations.num_samples must be >= 1, got {self.num_samples}"),
            (bool(unknown_protocols), f"ablations.protocols: unknown judge protocol(s) {unknown_protocols}; "
                                      f"available: {', '.join(PROTOCOL_NAMES)}"),
        ])
