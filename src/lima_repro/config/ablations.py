"""Ablation settings (`Config.ablations`): the matched sub-runs of LIMA sec. 5 (docs/paper.md sec. 4-5).

A condition is a spec {groups, set, x, paper, protocols, without_multi_turn}; `set` holds dotted `curate.*`
overrides, since only the data may differ between sub-runs. The paper's conditions live in ablation_conditions.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .ablation_conditions import paper_conditions
from .base import ConfigError, check_ranges, raise_first
from .judge import protocol_problem

GROUPS = ("diversity", "quality", "quantity", "selector", "dialogue")
# test prompts must be the same in every condition, so a condition may not touch where they come from
FIXED_CURATE = ("curate.test_files", "curate.dev_files", "curate.askreddit")
SPEC_KEYS = {"groups", "set", "x", "paper", "protocols", "without_multi_turn"}
# training-set sizes: LIMA's conditions hold 2,000 examples and its largest source pool ~2.6M (Stack Exchange)
MAX_EXAMPLES = 10_000_000


def check_condition(name: str, spec: Any) -> None:
    """One condition's spec: known keys and groups, and a `set` that changes only the data."""
    where = f"ablations.conditions.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping of {'/'.join(sorted(SPEC_KEYS))}, got {spec!r}")
    unknown = set(spec) - SPEC_KEYS
    if unknown or not set(spec.get("groups", [])) <= set(GROUPS):
        raise ConfigError(
            f"{where}: keys must be among {sorted(SPEC_KEYS)} and groups among {GROUPS}; got "
            f"{sorted(spec)} with groups {spec.get('groups')}"
        )
    if not isinstance(spec.get("set", {}), dict):
        raise ConfigError(f"{where}.set: expected a mapping of dotted curate.* keys to values, got {spec['set']!r}")
    bad = [k for k in spec.get("set", {}) if not k.startswith("curate.") or k.startswith(FIXED_CURATE)]
    if bad:
        raise ConfigError(
            f"{where}.set: {bad} would unmatch the sub-runs; a condition may change "
            "only curate.* (not test/dev prompts); put shared changes in ablations.common"
        )
    problem = protocol_problem(spec.get("protocols", []), f"{where}.protocols")
    if problem:
        raise ConfigError(problem)
    x = spec.get("x")
    raise_first(
        [
            (
                x is not None and (isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= MAX_EXAMPLES),
                f"{where}.x: the condition's training-set size must be a whole number in [1, {MAX_EXAMPLES:,}], "
                f"got {x!r}",
            ),
            (
                "quantity" in spec.get("groups", []) and x is None,
                f"{where}: a quantity condition needs `x`, its training-set size (Fig. 6's x axis), e.g. x: 2000",
            ),
            (
                not isinstance(spec.get("without_multi_turn", False), bool),
                f"{where}.without_multi_turn must be true or false, got {spec.get('without_multi_turn')!r}",
            ),
        ]
    )


@dataclass
class AblationConfig:
    # Upper bounds no real run reaches (check_ranges `limits`); LIMA sec. 5: 5 samples per prompt, 2,000 examples
    # per condition, 10 conversations
    LIMITS: ClassVar[dict[str, int]] = {
        "num_samples": 1_000,
        "n_examples": MAX_EXAMPLES,
        "dialogue_conversations": 100_000,
    }

    conditions: dict[str, dict] = field(default_factory=paper_conditions)
    """name -> {groups: [diversity|quality|quantity|selector|dialogue], set: {dotted curate.* overrides: the
    condition's data}, x: training-set size (required for quantity: the run fails when curation cannot reach it),
    paper: the paper's label it matches, protocols: judge protocols if not `protocols`, without_multi_turn: train
    on `curate.train_files` minus their multi-turn rows (the harness writes that file)}. Only curate.* may differ.
    A `dialogue` condition also holds the scripted conversations below; every assistant turn is judged (Fig. 7)."""
    only: list[str] | None = None
    """Run only these conditions (None = all); the summary still merges every condition that has finished."""
    common: dict[str, Any] = field(default_factory=dict)
    """Dotted overrides applied to EVERY condition (so they stay matched), e.g. a smaller train/generate for CPU."""
    num_samples: int = 5  # LIMA sec. 4-5: 5 samples per test prompt in the ablations
    protocols: list[str] = field(default_factory=lambda: ["likert"])  # LIMA sec. 4-5: ChatGPT 1-6 helpfulness
    n_examples: int = 2000  # LIMA sec. 5: 2,000 examples per condition (recorded; a mismatch is flagged)
    dialogue_prompts: str = "demo:dialogue_prompts.jsonl"
    """Opening user turns of the dialogue conditions' conversations: JSONL {"id", "prompt", "follow_ups"?}."""
    dialogue_conversations: int | None = 10  # LIMA sec. 5 (Fig. 7): 10 live conversations per model
    """Hold the first N conversations of `dialogue_prompts` (None = all of them)."""
    dialogue_follow_ups: list[str] = field(
        default_factory=lambda: [
            "Can you give me a concrete example?",
            "What would you do differently if it had to be done in half the time?",
            "Can you sum that up in two sentences?",
        ]
    )
    """User turns asked after the opening, in order, in every conversation whose row has no follow_ups of its
    own (ours: the paper's conversations were live; 3 follow-ups give ~4 assistant turns, as its 42-46 over 10)."""
    keep_checkpoints: bool = False
    """Keep each condition's train/checkpoints and train/state after it is judged (they are ~4x the model size)."""
    note: str = ""
    """Shown in the notebook and the summary (the demo says it is a plumbing check, not evidence)."""

    def check(self) -> None:
        """Every condition's spec, `only`, and the settings every sub-run's generate/judge take from here.
        Whether `common` and `set` apply cleanly to the rest of the config is Config.check()'s (it needs both)."""
        for name, spec in self.conditions.items():
            check_condition(name, spec)
        check_ranges(
            self,
            "ablations",
            {"num_samples": ">=1", "n_examples": ">=1", "dialogue_conversations": ">=1?"},
            self.LIMITS,
        )
        missing = sorted(set(self.only or []) - set(self.conditions))
        protocols = protocol_problem(self.protocols, "ablations.protocols")
        raise_first(
            [
                (bool(missing), f"ablations.only names unknown conditions {missing}; have {sorted(self.conditions)}"),
                (bool(protocols), protocols or ""),
                (
                    not self.dialogue_prompts,
                    "ablations.dialogue_prompts must name a JSONL of conversation openings "
                    "(e.g. demo:dialogue_prompts.jsonl)",
                ),
                (
                    not all(isinstance(t, str) and t.strip() for t in self.dialogue_follow_ups),
                    'ablations.dialogue_follow_ups must be non-empty user turns, e.g. ["Can you give an example?"]',
                ),
            ]
        )
