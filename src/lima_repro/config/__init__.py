"""Typed configuration: dataclass defaults are the paper's recipe; profiles and user YAML override fields.

Resolution order (load_config): dataclass defaults (LIMA paper) <- profile YAML (``profiles/<name>.yaml``)
<- user YAML file(s) <- dotted ``key=value`` overrides (``--set``), then ``Config.check()``. Unknown keys and
wrongly typed values are errors naming the key; so is any value a section's check() rejects.

Where things are:
  base.py                 ConfigError; raise_first, the (condition, message) style every check() uses
  model.py                ModelConfig (base model, end-of-turn token)
  curate.py               CurateConfig and one dataclass per raw source; CONFIG_SELECTORS
  train.py                TrainConfig (LIMA sec. 3 fine-tuning)
  generate.py             GenerateConfig (LIMA sec. 3 sampling)
  judge.py                JudgeConfig (LIMA sec. 4 judging); PROTOCOL_NAMES
  ablations.py            AblationConfig (LIMA sec. 5 sub-runs); GROUPS, FIXED_CURATE
  ablation_conditions.py  paper_conditions(): the paper's ablation conditions, the default table
  figures.py              FiguresConfig
  run.py                  Config, the root: run settings, one section per stage, and check()
  overrides.py            apply_overrides: nested mappings onto dataclasses, every value type-checked
  loader.py               profiles, YAML, --set: load_config, from_dict, to_dict, load_resolved

Each section's check() holds the rules its types cannot express; Config.check() calls them in pipeline order
and then checks what needs two sections (the ablation sub-runs' configs). Checks that need files or data on
disk (inputs of a stage) stay in that stage.
"""

from __future__ import annotations

from .ablations import FIXED_CURATE, GROUPS, AblationConfig
from .base import ConfigError
from .curate import (
    CONFIG_SELECTORS,
    AskRedditConfig,
    CurateConfig,
    DedupConfig,
    NatInstConfig,
    SEDialogueConfig,
    StackExchangeConfig,
    WikiHowConfig,
    WritingPromptsConfig,
)
from .figures import FiguresConfig
from .generate import GenerateConfig
from .judge import PROTOCOL_NAMES, JudgeConfig
from .loader import from_dict, list_profiles, load_config, load_resolved, parse_set, to_dict
from .model import ModelConfig
from .overrides import apply_overrides, dotted_to_nested
from .run import Config
from .train import TrainConfig

__all__ = [
    "Config",
    "ConfigError",
    "ModelConfig",
    "CurateConfig",
    "StackExchangeConfig",
    "WikiHowConfig",
    "WritingPromptsConfig",
    "AskRedditConfig",
    "NatInstConfig",
    "DedupConfig",
    "SEDialogueConfig",
    "TrainConfig",
    "GenerateConfig",
    "JudgeConfig",
    "AblationConfig",
    "FiguresConfig",
    "GROUPS",
    "FIXED_CURATE",
    "CONFIG_SELECTORS",
    "PROTOCOL_NAMES",
    "load_config",
    "load_resolved",
    "from_dict",
    "to_dict",
    "apply_overrides",
    "dotted_to_nested",
    "parse_set",
    "list_profiles",
]
