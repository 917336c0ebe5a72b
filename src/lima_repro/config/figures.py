"""Figure settings (`Config.figures`): what 06_figures draws from and writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import check_ranges, raise_first

IMAGE_FORMATS = ("png", "pdf", "svg", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp")  # what Agg/PDF/SVG write


@dataclass
class FiguresConfig:
    # a 6-inch figure at 1,200 dpi is 7,200 pixels wide, beyond any print; more only allocates (check_ranges `limits`)
    LIMITS: ClassVar[dict[str, int]] = {"dpi": 1200}

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
        check_ranges(self, "figures", {"dpi": ">0"}, self.LIMITS)
        odd = [f for f in self.formats if f not in IMAGE_FORMATS]
        raise_first(
            [
                (not self.formats, "figures.formats must name at least one image format (e.g. [png, pdf])"),
                (bool(odd), f"figures.formats: unknown image format(s) {odd}; use some of {', '.join(IMAGE_FORMATS)}"),
                (
                    not all(isinstance(r, str) and r for r in self.runs),
                    f"figures.runs must be a list of run directories (non-empty strings), got {self.runs!r}",
                ),
                (self.copy_to == "", "figures.copy_to must be a folder or null (None), not an empty string"),
                (
                    not all(isinstance(k, str) and isinstance(v, str) and v for k, v in self.baseline_names.items()),
                    "figures.baseline_names maps a run label to the paper's baseline name, e.g. {alpaca_65b: Alpaca-65B}",
                ),
            ]
        )
