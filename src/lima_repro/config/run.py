"""The root configuration (`Config`): run-level settings and one section per stage, in pipeline order.

`Config.check()` runs each section's own check in that order, then the checks that need two sections.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from .ablations import AblationConfig
from .base import ConfigError, check_ranges, raise_first, shown
from .curate import CurateConfig
from .figures import FiguresConfig
from .generate import GenerateConfig
from .judge import JudgeConfig
from .model import ModelConfig
from .overrides import apply_overrides, dotted_to_nested
from .train import TrainConfig

# the stage notebooks shipped in notebooks/ (a test keeps this in step with the folder): `notebooks` names some of
# them, never a path, so `run` executes only the package's own code
NOTEBOOKS = ("01_curate", "02_train", "02b_select", "03_generate", "04_judge", "05_ablations", "06_figures")
# a profile names the run directory (<output_root>/<time>-<profile>): a plain name keeps it inside output_root
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass
class Config:
    profile: str = "paper"
    """Name of the profile this configuration came from."""
    run_dir: str | None = None
    """Pipeline run directory; each stage writes into `<run_dir>/<stage>`. None = a new one under `output_root`."""
    output_root: str = "runs"
    """Where new run directories are created."""
    seed: int = 42
    """Global seed (seed_everything at the top of each stage)."""
    notebooks: list[str] = field(
        default_factory=lambda: ["01_curate", "02_train", "03_generate", "04_judge", "05_ablations", "06_figures"]
    )
    """Notebooks `python -m lima_repro run` executes, in order."""
    model: ModelConfig = field(default_factory=ModelConfig)
    curate: CurateConfig = field(default_factory=CurateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    ablations: AblationConfig = field(default_factory=AblationConfig)
    """Matched sub-runs of LIMA sec. 5 (05_ablations)."""
    figures: FiguresConfig = field(default_factory=FiguresConfig)
    """Figures and tables beside the paper's numbers (06_figures)."""

    def check(self) -> None:
        """Every section's check() in pipeline order, then the checks that need two sections."""
        check_ranges(self, "", {"seed": "seed"})
        odd = [shown("", n) for n in self.notebooks if n not in NOTEBOOKS]
        raise_first(
            [
                (
                    not PROFILE_NAME.fullmatch(self.profile),
                    f"profile must be a plain name such as demo (letters, digits, _ and -, at most 64), got "
                    f"{shown('', self.profile)}: it names the run directory inside output_root",
                ),
                (not self.output_root, "output_root must name a folder for new run directories (e.g. runs)"),
                (
                    bool(odd),
                    f"notebooks: {', '.join(odd)} is not a notebook of the package; name some of {', '.join(NOTEBOOKS)}",
                ),
            ]
        )
        for section in (self.model, self.curate, self.train, self.generate, self.judge, self.ablations, self.figures):
            section.check()
        self._check_ablation_subruns()

    def _check_ablation_subruns(self) -> None:
        """Each ablation sub-run is this config with `ablations.common` and then the condition's `set` applied
        (the ablation stage's condition_config). Apply them here too and check the sections they produce, so a
        misspelt key or a bad value fails when the config is loaded, not hours later inside one condition."""
        a = self.ablations
        common = copy.deepcopy(self)
        try:
            apply_overrides(common, dotted_to_nested(dict(a.common)))
        except ConfigError as e:
            raise ConfigError(f"ablations.common: {e}") from e
        for name, spec in a.conditions.items():
            sub = copy.deepcopy(common)
            try:
                apply_overrides(sub, dotted_to_nested(dict(spec.get("set", {}))))
                # not sub.check(): its ablations are ours, already checked, and would recurse
                for section in (sub.model, sub.curate, sub.train, sub.generate, sub.judge, sub.figures):
                    section.check()
            except ConfigError as e:
                raise ConfigError(f"ablations.conditions.{name} (after ablations.common and its set): {e}") from e
