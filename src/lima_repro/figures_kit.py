"""The figures' drawing kit: one look for every figure, a record of what was drawn, files written together.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas: no pyplot, no global backend switch. Each
is saved as PNG + PDF with the CSV of exactly what it draws (`save`).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .analysis import GRADES as WORST_FIRST
from .files import read_json, write_csv
from .runs import RunDir

OUTCOMES = ("win", "tie", "loss")
GRADES = tuple(reversed(WORST_FIRST))  # drawn best first: Excellent, Pass, Fail
COLORS = dict(zip(OUTCOMES, sns.color_palette("RdYlGn_r", 3))) | dict(zip(GRADES, sns.color_palette("YlGn_r", 3)))
PAPER_C, RUN_C = "0.55", sns.color_palette("deep")[0]


@dataclass
class Drawn:
    """One figure's outcome: drawn (with its files and the DataFrame drawn) or skipped (with why)."""

    name: str
    status: str
    reason: str = ""
    source: str | None = None
    files: list[str] = field(default_factory=list)
    data: pd.DataFrame | None = None
    fig: Figure | None = None

    def record(self) -> dict:
        return {"status": self.status, "reason": self.reason, "source": self.source, "files": self.files}


def new_fig(w: float, h: float, ncols: int = 1, **kw):
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig = Figure(figsize=(w, h), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, ncols, squeeze=False, **kw)[0]
    return fig, list(axes)


def footer(source) -> str:
    """Who made the figure's numbers: the run, its base model and its judge (config.json, judge/results.json)."""
    run = RunDir(source)
    cfg = read_json(run.config) if run.config.is_file() else {}
    judge = (run.read_results() or {}).get("judge") or cfg.get("judge", {}).get("model") or "unknown"
    return f"run: {run.root.name} | base model: {cfg.get('model', {}).get('name', 'unknown')} | judge: {judge}"


def save(d: Drawn, out: Path, formats: tuple[str, ...], dpi: int) -> Drawn:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / f"{d.name}.csv", d.data)
    d.files = [str(out / f"{d.name}.csv")]
    if d.fig is not None:
        for ax in d.fig.axes:
            ax.title.set_fontsize(9)
        if d.source:  # every PNG says which run, base model and judge it shows, under any caption
            above = d.fig.get_supxlabel()
            d.fig.supxlabel((above + "\n" if above else "") + footer(d.source), x=0.01, ha="left", fontsize=6.5)
        for fmt in formats:
            d.fig.savefig(out / f"{d.name}.{fmt}", dpi=dpi)
            d.files.append(str(out / f"{d.name}.{fmt}"))
    return d


def stacked(ax, rows: list[tuple[str, dict[str, float]]], cats: tuple[str, ...], hollow=frozenset()):
    """Horizontal 100% stacked bars, one per row label, categories left to right. `hollow` holds the unconfirmed
    (row, category) values, drawn hatched one by one. A row without values says so ("not run") in its place."""
    for i, (lab, vals) in enumerate(rows):
        left = 0.0
        if all(vals.get(c) is None or pd.isna(vals.get(c)) for c in cats):
            ax.text(50, i, "not run", ha="center", va="center", fontsize=7, color="0.3")
        for c in cats:
            v = 0.0 if vals.get(c) is None or pd.isna(vals.get(c)) else vals[c]
            unconfirmed = (lab, c) in hollow
            ax.barh(
                i,
                v,
                left=left,
                color="none" if unconfirmed else COLORS[c],
                edgecolor=COLORS[c],
                hatch="//" if unconfirmed else None,
                label=c if i == 0 else None,
            )
            if v >= 6:
                ax.text(left + v / 2, i, f"{v:.0f}", ha="center", va="center", fontsize=7)
            left += v
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)


def grades_figure(
    name: str, src, df: pd.DataFrame, xlabel: str, title: str, out: Path, formats, dpi, note: str = ""
) -> Drawn:
    """Fail / Pass / Excellent stacked bars, one row per `df.row` (figures 3 and 7); `note` is written under it."""
    lines = max(str(r).count("\n") + 1 for r in df.row.unique())  # a row label of 3 lines needs more than one bar
    fig, (ax,) = new_fig(6.5, 1.2 + max(0.42, 0.1 + 0.17 * lines) * df.row.nunique())
    stacked(ax, [(r, dict(zip(g.label, g.pct))) for r, g in df.groupby("row", sort=False)], GRADES)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    caption(fig, note, width=120)
    return save(Drawn(name, "drawn", source=str(src), data=df, fig=fig), out, formats, dpi)


def same_grade_note(df: pd.DataFrame, text: str) -> str:
    """`text` with its `{grade}` filled in when every model (`df.model`, two or more with grades) got 100% of one
    and the same grade (`df.label`, `df.pct`): the grader could not tell them apart (Fig. 3 and 7); else ""."""
    full, models = df[df.pct == 100.0], set(df[df.pct.notna()].model)
    if len(models) < 2 or set(full.model) != models or full.label.nunique() != 1:
        return ""
    return text.format(grade=full.label.iloc[0])


def hbars(ax, rows: list[tuple[str, float | None, str, bool]], xlabel: str, xmax: float = 100) -> None:
    """One horizontal bar per (label, value, note, is_paper); the note ("n = 30", "not run: ...") is written after
    the bar, so a zero or missing value still reads as what it is."""
    for i, (_label, v, note, paper) in enumerate(rows):
        missing, v = v is None or pd.isna(v), 0.0 if v is None or pd.isna(v) else v
        ax.barh(i, v, color=PAPER_C if paper else RUN_C)
        if v == 0 and not missing:  # a measured zero: a mark at the floor, so it is not read as "not run"
            ax.plot([0], [i], "|", color=PAPER_C if paper else RUN_C, markersize=10, markeredgewidth=3)
        ax.text(v + xmax * 0.01, i, note, va="center", fontsize=6.5)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, xmax * 1.45)  # room for the notes
    ax.set_xticks([xmax * k / 4 for k in range(5)])
    ax.set_xlabel(xlabel)


CAPTION_CHARS_PER_INCH = 15  # 6.5 pt DejaVu Sans averages ~16 characters per inch; one less keeps a margin


def caption(fig, text: str, width: int = 150) -> None:
    """A sentence under the figure saying what its numbers mean (e.g. that a judge could not tell systems apart),
    wrapped at `width` characters or the figure's width, whichever is narrower, so no line runs off the image."""
    if text:
        width = min(width, int(fig.get_figwidth() * CAPTION_CHARS_PER_INCH))
        fig.supxlabel(textwrap.fill(text, width), x=0.01, ha="left", fontsize=6.5)


def markdown(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' tomarkdown needs the tabulate package)."""

    def cell(v) -> str:
        return "" if pd.isna(v) else (f"{v:g}" if isinstance(v, float) else str(v))

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)])
