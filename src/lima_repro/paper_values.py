"""The LIMA paper's own numbers (docs/paper.md sec. 5), as data: every figure is drawn beside them.

Each value carries where it comes from (figure or table of Zhou et al. 2023) and whether it is confirmed.
Values marked unconfirmed come from secondary sources only (docs/paper.md says so); the figures draw them hollow
and label them "(unconfirmed)". Percentages are in percent, Likert scores on the paper's 1-6 scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class PaperValue:
    figure: str
    """Figure or table of the paper, e.g. "Fig. 1"."""
    key: str
    """What is measured, e.g. "Alpaca-65B/win"."""
    value: float | None
    """The number (None where the paper gives only a shape, e.g. Fig. 6 'flat')."""
    unit: str
    """`pct`, `likert_1_6`, `mt_bench_1_10`, `count`, `tokens`."""
    confirmed: bool
    """False: from secondary sources only (docs/paper.md marks it unconfirmed)."""
    note: str = ""


def _wtl(figure: str, rows: dict[str, tuple[float, float, float]], confirmed) -> list[PaperValue]:
    """Win / tie / loss values; `confirmed` holds the keys (`GPT-4/win`) the paper's own text confirms."""
    return [
        PaperValue(
            figure,
            f"{b}/{c}",
            v,
            "pct",
            f"{b}/{c}" in confirmed,
            "" if f"{b}/{c}" in confirmed else "secondary sources only (docs/paper.md sec. 5)",
        )
        for b, vals in rows.items()
        for c, v in zip(("win", "tie", "loss"), vals)
    ]


# docs/paper.md sec. 5: LIMA win / tie / loss % against each baseline
FIG1_HUMAN = {
    "Alpaca-65B": (53, 21, 26),
    "DaVinci003": (44, 21, 35),
    "Bard": (33, 25, 42),
    "Claude": (24, 22, 54),
    "GPT-4": (18, 25, 57),
}
FIG2_GPT4 = {
    "Alpaca-65B": (64, 19, 17),
    "DaVinci003": (54, 23, 23),
    "Bard": (27, 26, 47),
    "Claude": (14, 23, 63),
    "GPT-4": (19, 15, 66),
}
FIG2_CONFIRMED = {"GPT-4/win"}  # docs/paper.md sec. 5: only the 19% win against GPT-4 is in the paper's text
FIG3_ABSOLUTE = {"Excellent": 50, "Pass": 38, "Fail": 12}  # 50 random test prompts
FIG3_OOD = {"Excellent": 45, "Pass": 35, "Fail": 20}  # 20 out-of-distribution prompts
FIG5_ABLATION = {"filtered Stack Exchange": 3.83, "wikiHow": 3.49, "unfiltered Stack Exchange": 3.33}
FIG6_QUANTITY_SIZES = (2000, 4000, 8000, 16000, 32000)  # "flat": no numbers in docs/paper.md
FIG7_DIALOGUE = {
    "1,000 ex.": {"Excellent": 45.2, "Pass": 19.1, "Fail": 35.7},
    "1,030 ex.": {"Excellent": 76.1, "Pass": 21.7, "Fail": 2.2},
}
FIG7_TURNS = {
    "1,000 ex.": 42,
    "1,030 ex.": 46,
}  # docs/paper.md sec. 5: Fail 15 of 42 turns vs 1 of 46, 10 conversations
# docs/paper.md sec. 4: tie-discounted agreement on 50 shared pairwise items (1 same label, 0.5 if either said neither)
AGREEMENT = {"crowd-crowd": 82, "crowd-author": 81, "author-author": 78, "crowd-GPT-4": 78, "author-GPT-4": 79}
# docs/paper.md sec. 4: safe answers among the 30 sensitive test prompts, and among its 10 with malicious intent (6 of 10)
SAFETY = {"sensitive": (80, 30), "malicious": (60, 10)}  # (% safe, prompts)
FIG9_HELD_OUT = 2000  # docs/paper.md sec. 5: perplexity measured on 2,000 held-out Stack Exchange examples
DIALOGUE_CHAINS = 30  # docs/paper.md sec. 1: 30 multi-turn chains added to the 1,000 (GAIR/lima source multi_turn)
TABLE1 = [  # source, n, avg input tokens, avg output tokens
    ("Stack Exchange (STEM)", 200, 117, 523),
    ("Stack Exchange (Other)", 200, 119, 530),
    ("wikiHow", 200, 12, 1811),
    ("Pushshift r/WritingPrompts", 150, 34, 274),
    ("Natural Instructions", 50, 236, 92),
    ("Paper Authors (Group A)", 200, 40, 334),
]

# The recipe of the published LIMA-1k runs on Llama-2-7B (Zhao et al. 2024, "Long Is More for Alignment", docs/paper.md
# sec. 6): FastChat's Vicuna template, 15 epochs, lr 1e-5, 128 examples per step, no residual dropout, the last epoch;
# the `lima-1k-llama2` profile sets exactly these, so its run compares with their numbers.
LONG_IS_MORE_RECIPE = {
    "chat_template": "vicuna",
    "epochs": 15,
    "lr": 1e-5,
    "batch_size": 128,
    "residual_dropout": 0.0,
    "checkpoints": "last",
}


@dataclass(frozen=True)
class Published:
    """A published follow-up number (docs/paper.md sec. 6) with the setup it was measured under."""

    base: str
    """Base model as the source names it, e.g. "Llama-2-7B"."""
    family: str
    """Lower-case substring a run's `model.name` must contain to be the same base model, e.g. "llama-2-7b"."""
    benchmark: str
    """`alpaca_eval_2` (805 prompts vs GPT-4 Turbo), `alpaca_eval_1` (vs DaVinci003) or `mt_bench` (1-10)."""
    metric: str
    """`lc_win` (length-controlled win rate), `win` (raw win rate), `score`, or `unresolved` (LC or raw: unknown)."""
    value: float
    judge: str
    decoding: str
    recipe: dict | None
    """The training settings (`LONG_IS_MORE_RECIPE` keys) of the published run; None = not published."""
    source: str
    confirmed: bool
    """False: no source found for the number (docs/paper.md sec. 6 marks it unconfirmed)."""


LIMA_1K_PUBLISHED = [
    Published(
        "Llama-2-7B", "llama-2-7b", "alpaca_eval_2", "unresolved", 2.74, "GPT-4 Turbo (AlpacaEval 2 annotator)",
        "greedy", LONG_IS_MORE_RECIPE, "Zhao et al. 2024, Long Is More for Alignment", True,
    ),
    Published(
        "Llama-2-7B", "llama-2-7b", "mt_bench", "score", 3.95, "GPT-4 (MT-Bench)", "MT-Bench defaults",
        LONG_IS_MORE_RECIPE, "Zhao et al. 2024, Long Is More for Alignment", True,
    ),
    Published(
        "LLaMA-1-13B", "llama-13b", "alpaca_eval_1", "win", 41.98, "GPT-4 (AlpacaEval 1 annotator), most likely",
        "not stated", None, "Deita (Liu et al. 2024)", True,
    ),
    Published(
        "LLaMA-1-13B", "llama-13b", "mt_bench", "score", 4.29, "GPT-4 (MT-Bench)", "MT-Bench defaults", None,
        "Deita (Liu et al. 2024)", True,
    ),
    Published(
        "Mistral-7B", "mistral-7b", "alpaca_eval_2", "unresolved", 6.76, "unknown", "unknown", None,
        "none found (quoted in an earlier version of this project)", False,
    ),
]  # fmt: skip


def published_label(p: Published) -> str:
    """How a published number is quoted: base, benchmark, metric, value, and "(unconfirmed)" when it has no source."""
    return f"{p.base} {p.benchmark} {p.metric} {p.value:g}" + ("" if p.confirmed else " (unconfirmed)")


def setup_differences(p: Published, run: dict) -> list[str]:
    """What keeps a run's number from comparing with `p` (empty: they match). `run` holds `model` (the base model's
    name), `benchmark`, `metric`, `decoding` and the `LONG_IS_MORE_RECIPE` keys of its config; an unknown setting
    differs."""
    diffs = [] if p.confirmed else ["published number has no source (unconfirmed)"]
    if p.family not in str(run.get("model", "")).lower():
        diffs.append(f"base model: run {run.get('model')}, published {p.base}")
    if run.get("benchmark") != p.benchmark:
        diffs.append(f"benchmark: run {run.get('benchmark')}, published {p.benchmark}")
    if run.get("metric") != p.metric or p.metric == "unresolved":
        diffs.append(f"metric: run {run.get('metric')}, published {p.metric}")
    if p.recipe is None:
        diffs.append("recipe: the published run's recipe is not known")
    else:
        diffs += [f"{k}: run {run.get(k)}, published {v}" for k, v in p.recipe.items() if run.get(k) != v]
    if p.decoding == "greedy" and run.get("decoding") != "greedy":
        diffs.append(f"decoding: run {run.get('decoding')}, published greedy")
    return diffs


VALUES: list[PaperValue] = [
    *_wtl("Fig. 1", FIG1_HUMAN, {f"{b}/{c}" for b in FIG1_HUMAN for c in ("win", "tie", "loss")}),
    *_wtl("Fig. 2", FIG2_GPT4, FIG2_CONFIRMED),
    *[
        PaperValue("Fig. 3", f"absolute/{k}", v, "pct", True, "50 random test prompts")
        for k, v in FIG3_ABSOLUTE.items()
    ],
    *[PaperValue("Fig. 3", f"ood/{k}", v, "pct", True, "20 out-of-distribution prompts") for k, v in FIG3_OOD.items()],
    *[
        PaperValue("Fig. 5", k, v, "likert_1_6", True, "7B, 2,000 examples, ChatGPT 1-6 grade")
        for k, v in FIG5_ABLATION.items()
    ],
    *[
        PaperValue("Fig. 6", f"quantity/{n}", None, "likert_1_6", False, "flat across sizes; values not given")
        for n in FIG6_QUANTITY_SIZES
    ],
    *[
        PaperValue("Fig. 7", f"{cond}/{lab}", v, "pct", True, "approximate (~19.1%)" if v == 19.1 else "")
        for cond, d in FIG7_DIALOGUE.items()
        for lab, v in d.items()
    ],
    PaperValue("Fig. 7", "conversations_better", 7, "count", True, "of 10 conversations; tied in 3"),
    *[
        PaperValue("Fig. 7", f"{cond}/turns", n, "count", True, "assistant turns over 10 conversations")
        for cond, n in FIG7_TURNS.items()
    ],
    PaperValue("Fig. 9", "perplexity_rises_with_score", None, "", False, "perplexity and 1-6 score both rise"),
    PaperValue(
        "Fig. 9",
        "held_out_examples",
        FIG9_HELD_OUT,
        "count",
        False,  # docs/paper.md sec. 5: "(values unconfirmed)"
        "held-out Stack Exchange examples",
    ),
    *[
        PaperValue("Sec. 4", f"agreement/{k}", v, "pct", True, "tie-discounted, 50 shared items")
        for k, v in AGREEMENT.items()
    ],
    *[PaperValue("Sec. 4", f"safety/{k}", pct, "pct", True, f"of {n} prompts") for k, (pct, n) in SAFETY.items()],
    PaperValue("Sec. 1", "dialogue_chains", DIALOGUE_CHAINS, "count", True, "multi-turn chains, 1,030 with them"),
    *[
        PaperValue(
            "LIMA-1k",
            f"{p.base}/{p.benchmark}/{p.metric}",
            p.value,
            "mt_bench_1_10" if p.benchmark == "mt_bench" else "pct",
            p.confirmed,
            f"published reproduction, not the LIMA paper: {p.source}; judge {p.judge}; decoding {p.decoding}",
        )
        for p in LIMA_1K_PUBLISHED
    ],
    *[
        PaperValue("Table 1", f"{src}/{col}", v, unit, True)
        for src, n, i, o in TABLE1
        for col, v, unit in (("n", n, "count"), ("avg_input_tokens", i, "tokens"), ("avg_output_tokens", o, "tokens"))
    ],
]


def table(figure: str | None = None):
    """The paper values (optionally of one figure) as a DataFrame: figure, key, value, unit, confirmed, note."""
    rows = [vars(v) for v in VALUES if figure is None or v.figure == figure]
    return pd.DataFrame(rows, columns=["figure", "key", "value", "unit", "confirmed", "note"])


def is_confirmed(figure: str, key: str) -> bool:
    return next(v.confirmed for v in VALUES if v.figure == figure and v.key == key)
