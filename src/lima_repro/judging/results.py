"""Judgments -> the paper's result tables (PAPER.md sec. 4-5): pairwise win / tie / loss with bootstrap CIs and
order consistency, absolute and dialogue grades, Likert means, safety, agreement with human annotators, lengths.
The statistics themselves are pure functions in `analysis.py`; this module groups judged rows into their inputs.
"""
from __future__ import annotations

import pandas as pd

from .. import analysis
from ..runs import RunDir
from . import protocols
from .items import pairs


def winner_of(row: dict) -> str | None:
    """A pairwise judgment as the winning system's name (or `neither`), whatever order it was shown in."""
    lab = row.get("label")
    if lab is None:
        return None
    if lab == "neither":
        return analysis.NEITHER
    first, second = (row["system"], row["baseline"]) if row["order"] == "AB" else (row["baseline"], row["system"])
    return first if lab == "A" else second


def pair_lengths(rows: list[dict], system: str, baseline: str) -> dict[str, tuple[int, int]]:
    """item_id -> (characters of our response, of the baseline's), paired as the judge pairs them."""
    return {item: (len(ours["response"]), len(other["response"])) for item, ours, other in pairs(rows, system, baseline)}


def analyse(judged: list[dict], rows: list[dict], system: str, baselines: list[str], n_boot: int, seed: int,
            human: dict[str, dict[str, str]] | None = None, length_control: bool = False,
            lc_ratio_band: float = 1.5) -> dict:
    """All result tables as one dict (see the module docstring of `analysis`). With `length_control`, also
    `length_controlled[baseline]` (see `analysis.length_controlled`)."""
    res: dict = {"pairwise": {}, "order_consistency": {}, "absolute": {}, "likert": {}, "safety": {}, "dialogue": {}}
    if length_control:
        res["length_controlled"] = {}
    annotators: dict[str, dict[str, str]] = {}
    for b in baselines:
        pairs: dict[str, dict[str, str | None]] = {}
        for j in judged:
            if j["protocol"] == "pairwise" and j["baseline"] == b:
                pairs.setdefault(j["item_id"], {})[j["order"]] = winner_of(j)
        winners = {k: analysis.combine_orders(v.get("AB"), v.get("BA")) for k, v in pairs.items()}
        outcomes = [analysis.pairwise_outcome(w, system) for w in winners.values()]
        res["pairwise"][b] = analysis.bootstrap_shares(outcomes, n_boot=n_boot, seed=seed)
        if length_control:
            lengths = pair_lengths(rows, system, b)
            res["length_controlled"][b] = analysis.length_controlled(
                [(analysis.pairwise_outcome(w, system), *lengths[k]) for k, w in winners.items() if k in lengths],
                band=lc_ratio_band)
        both = {k: v for k, v in pairs.items() if v.get("AB") and v.get("BA")}
        # the same judge in its two orders is the cheapest check of position bias
        res["order_consistency"][b] = analysis.agreement({k: v["AB"] for k, v in both.items()},
                                                         {k: v["BA"] for k, v in both.items()})
        for k, w in winners.items():
            if w is not None:
                annotators.setdefault("llm-judge", {})[k] = w
    for name, labels in (human or {}).items():
        annotators[name] = labels
    names = sorted(annotators)
    res["agreement"] = [{"a": x, "b": y, **analysis.agreement(annotators[x], annotators[y])}
                        for i, x in enumerate(names) for y in names[i + 1:]]
    for s in [system] + baselines:
        mine = [j for j in judged if j.get("system") == s]
        for proto, key in (("absolute", "absolute"), ("dialogue", "dialogue")):
            labs = [j["label"] for j in mine if j["protocol"] == proto]
            if labs:
                res[key][s] = analysis.label_distribution(labs, protocols.get(proto).labels)
        lik = [j for j in mine if j["protocol"] == "likert"]
        if lik:
            res["likert"][s] = analysis.likert_summary(lik)
        saf = [j["label"] for j in mine if j["protocol"] == "safety"]
        if saf:
            d = analysis.label_distribution(saf, ("safe", "unsafe"))
            res["safety"][s] = {"n": d["n"], "invalid": d["invalid"], "safe_pct": d["safe"]["pct"]}
    res["lengths"] = analysis.length_stats([r for r in rows if r["checkpoint"] in [system] + baselines])
    return res


def write_tables(res: dict, run: RunDir) -> None:
    """One CSV per results table beside results.json (`RunDir.judge_table`)."""
    flat = []
    for b, d in res["pairwise"].items():
        row = {"baseline": b, "n": d["n"], "invalid": d["invalid"]}
        for c in ("win", "tie", "loss"):
            row.update({f"{c}_pct": d[c]["pct"], f"{c}_lo": d[c]["lo"], f"{c}_hi": d[c]["hi"]})
        lc = res.get("length_controlled", {}).get(b)
        if lc:
            row.update({k if k.startswith("lc_") else f"lc_{k}": v for k, v in lc.items() if k != "n"})
        flat.append(row)

    def csv(rows: list[dict], name: str) -> None:
        """One CSV per table; a protocol that was not run leaves no file (not an empty one)."""
        path = run.judge_table(name)
        if rows:
            pd.DataFrame(rows).to_csv(path, index=False)
        elif path.exists():
            path.unlink()

    csv(flat, "pairwise")
    for key in ("absolute", "dialogue"):
        csv([{"system": s, "n": d["n"], "invalid": d["invalid"],
              **{f"{lab}_pct": v["pct"] for lab, v in d.items() if isinstance(v, dict)}}
             for s, d in res[key].items()], key)
    for key in ("likert", "safety", "lengths"):
        csv([{"system": s, **d} for s, d in res[key].items()], key)
    csv(res["agreement"], "agreement")
    turns = []
    for s, d in res.get("dialogue_turns", {}).items():
        for turn, dd in [("all", d), *d["by_turn"].items()]:
            turns.append({"system": s, "turn": turn, "conversations": d["conversations"], "n": dd["n"],
                          "invalid": dd["invalid"], **{f"{lab}_pct": dd[lab]["pct"] for lab in analysis.GRADES},
                          **{f"{lab}_count": dd[lab]["count"] for lab in analysis.GRADES}})
    csv(turns, "dialogue_turns")
