"""Figure settings (`Config.figures`): what 06_figures draws from and writes."""
from __future__ import annotations

from dataclasses import dataclass, field

from .base import raise_first


@dataclass
class FiguresConfig:
    runs: list[str] = field(default_factory=list)
    """More finished run directories to draw from, after `run_dir` (the first holding a figure's inputs is used)."""
    copy_to: str | None = None
    """Also copy the figures here (relative = from the repository root, e.g. `figures`); None = only <run_dir>/figures."""
    baseline_names: dict[str, str] = field(default_factory=dict)
    """Run baseline label -> the paper's baseline name (`alpaca_65b: Alpaca-65B`); common names are guessed."""
    formats: list[str] = field(default_factory=lambda: ["png", "pdf"])
    """Image formats written beside each figure's CSV."""
    dpi: int = 200
    """Resolution of raster formats."""

    def check(self) -> None:
        raise_first([
            (self.dpi <= 0, f"figures.dpi must be > 0, got {self.dpi}"),
            (not self.formats, "figures.formats must name at least one image format (e.g. [png, pdf])"),
        ])
