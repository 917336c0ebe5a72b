"""Judgments -> the paper's result tables (PAPER.md sec. 4-5): pairwise win / tie / loss with bootstrap CIs and
order consistency, absolute and dialogue grades, Likert means, safety, agreement with human annotators, lengths.
The statistics themselves are pure functions in `analysis.py`; this module groups judged rows into their inputs.
Prompt tags select the paper's subsets: `ood` (Fig. 3's 20 out-of-distribution prompts: `absolute_ood`), and
`malicious` among the `sensitive` ones (sec. 4's "6 of the 10 with malicious intent": `malicious_n` and
`malicious_safe_pct` in `safety[system]`).
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
    return {
        item: (len(ours["response"]), len(other["response"])) for item, ours, other in pairs(rows, system, baseline)
    }


def calibrated_winners(
    calibrated: dict[str, dict[str, float]] | None,
    swapped: dict[str, str | None],
    system: str,
    baseline: str,
    margin: float,
) -> tuple[dict[str, str | None], str]:
    """Each pair's winner (a system's name or `neither`) and the method used: `balanced` position calibration
    when calibrated probabilities are given (`balanced_probabilities`), else `swap`."""
    if calibrated is None:
        return swapped, "swap"
    name = {"win": system, "loss": baseline, "tie": analysis.NEITHER}
    return {k: name[analysis.calibrated_outcome(p, margin)] for k, p in calibrated.items()}, "balanced"


def balanced_probabilities(by_item: dict[str, dict[str, dict]]) -> dict[str, dict[str, float]] | None:
    """item -> position-calibrated probabilities, or None unless every pair has label probabilities in both orders."""
    probs = {k: (v.get("AB", {}).get("label_probs"), v.get("BA", {}).get("label_probs")) for k, v in by_item.items()}
    if not probs or not all(ab and ba for ab, ba in probs.values()):
        return None
    return {k: analysis.balanced_preference(ab, ba) for k, (ab, ba) in probs.items()}


def preference_verdict(pref: dict, system: str, baseline: str, consistency: dict) -> str:
    """One sentence a reader can act on: does the (calibrated) judge prefer one system, or can it not tell?"""
    if not pref["n"]:
        return f"no valid pairwise judgments of {system} against {baseline}"
    ci = f"preference for {system} {pref['pct']:.0f}% (95% CI {pref['lo']:.0f}-{pref['hi']:.0f}%, n = {pref['n']})"
    oc = consistency.get("agreement")
    order = f"; the judge agreed with itself across the two orders on {oc:.0%} of pairs" if oc is not None else ""
    if pref["excludes_chance"]:
        better, worse = (system, baseline) if pref["pct"] > 50 else (baseline, system)
        return f"The judge prefers {better} to {worse}: {ci} excludes a coin flip{order}."
    return (
        f"The judge cannot tell {system} from {baseline}: {ci} includes 50%, a coin flip{order}. "
        "These verdicts say nothing about which system is better."
    )


def analyse(
    judged: list[dict],
    rows: list[dict],
    system: str,
    baselines: list[str],
    n_boot: int,
    seed: int,
    human: dict[str, dict[str, str]] | None = None,
    length_control: bool = False,
    lc_ratio_band: float = 1.5,
    calibration: str = "balanced",
    margin: float = 0.05,
) -> dict:
    """All result tables as one dict (see the module docstring of `analysis`). Pairwise outcomes use `calibration`
    (`balanced` or `swap`, see `calibrated_winners`); `pairwise_swap` keeps the swap-to-tie shares beside them.
    With `length_control`, also `length_controlled[baseline]` (see `analysis.length_controlled`)."""
    res: dict = {
        "pairwise": {},
        "pairwise_swap": {},
        "pairwise_calibration": {},
        "order_consistency": {},
        "pairwise_winners": {},
        "absolute": {},
        "absolute_ood": {},
        "likert": {},
        "safety": {},
        "dialogue": {},
    }
    tags = {r["prompt_id"]: set(r.get("tags") or ()) for r in rows}
    if length_control:
        res["length_controlled"] = {}
    annotators: dict[str, dict[str, str]] = {}
    for b in baselines:
        by_item: dict[str, dict[str, dict]] = {}
        for j in judged:
            if j["protocol"] == "pairwise" and j["baseline"] == b:
                by_item.setdefault(j["item_id"], {})[j["order"]] = j
        swapped = {
            k: analysis.combine_orders(*(winner_of(v[o]) if o in v else None for o in ("AB", "BA")))
            for k, v in by_item.items()
        }
        calibrated = balanced_probabilities(by_item) if calibration == "balanced" else None
        winners, method = calibrated_winners(calibrated, swapped, system, b, margin)
        outcomes = [analysis.pairwise_outcome(w, system) for w in winners.values()]
        res["pairwise"][b] = analysis.bootstrap_shares(outcomes, n_boot=n_boot, seed=seed)
        res["pairwise_swap"][b] = analysis.bootstrap_shares(
            [analysis.pairwise_outcome(w, system) for w in swapped.values()], n_boot=n_boot, seed=seed
        )
        # the same judge in its two orders is the cheapest check of position bias
        both = {k: v for k, v in by_item.items() if winner_of(v.get("AB", {})) and winner_of(v.get("BA", {}))}
        res["order_consistency"][b] = analysis.agreement(
            {k: winner_of(v["AB"]) for k, v in both.items()}, {k: winner_of(v["BA"]) for k, v in both.items()}
        )
        pref = analysis.preference_ci(outcomes, n_boot=n_boot, seed=seed)
        res["pairwise_calibration"][b] = {
            "method": method,
            "margin": margin if method == "balanced" else None,
            "preference": pref,
            # how far apart the two systems' calibrated probabilities are, on average
            "mean_difference": analysis.bootstrap_mean(
                [p["ours"] - p["theirs"] for p in calibrated.values()], n_boot, seed
            )
            if calibrated
            else None,
            "verdict": preference_verdict(pref, system, b, res["order_consistency"][b]),
        }
        if length_control:
            lengths = pair_lengths(rows, system, b)
            res["length_controlled"][b] = analysis.length_controlled(
                [(analysis.pairwise_outcome(w, system), *lengths[k]) for k, w in winners.items() if k in lengths],
                band=lc_ratio_band,
            )
        # per item, so that agreement with annotators who label later can be computed (figures, Fig. 1)
        res["pairwise_winners"][b] = winners
        for k, w in winners.items():
            if w is not None:
                annotators.setdefault("llm-judge", {})[k] = w
    for name, labels in (human or {}).items():
        annotators[name] = labels
    names = sorted(annotators)
    res["agreement"] = [
        {"a": x, "b": y, **analysis.agreement(annotators[x], annotators[y])}
        for i, x in enumerate(names)
        for y in names[i + 1 :]
    ]
    for s in [system] + baselines:
        mine = [j for j in judged if j.get("system") == s]
        for proto, key, tag in (
            ("absolute", "absolute", None),
            ("absolute", "absolute_ood", "ood"),
            ("dialogue", "dialogue", None),
        ):
            labs = [
                j["label"]
                for j in mine
                if j["protocol"] == proto and (tag is None or tag in tags.get(j["prompt_id"], ()))
            ]
            if labs:
                res[key][s] = analysis.label_distribution(labs, protocols.get(proto).labels)
        lik = [j for j in mine if j["protocol"] == "likert"]
        if lik:
            res["likert"][s] = analysis.likert_summary(lik)
        saf = [j for j in mine if j["protocol"] == "safety"]
        if saf:
            d = analysis.label_distribution([j["label"] for j in saf], ("safe", "unsafe"))
            res["safety"][s] = {"n": d["n"], "invalid": d["invalid"], "safe_pct": d["safe"]["pct"]}
            bad = [j["label"] for j in saf if "malicious" in tags.get(j["prompt_id"], ())]
            if bad:
                m = analysis.label_distribution(bad, ("safe", "unsafe"))
                res["safety"][s].update(malicious_n=m["n"], malicious_safe_pct=m["safe"]["pct"])
    res["lengths"] = analysis.length_stats([r for r in rows if r["checkpoint"] in [system] + baselines])
    return res


def write_tables(res: dict, run: RunDir) -> None:
    """One CSV per results table beside results.json (`RunDir.judge_table`)."""
    flat = []
    for b, d in res["pairwise"].items():
        row = {"baseline": b, "n": d["n"], "invalid": d["invalid"]}
        for c in ("win", "tie", "loss"):
            row.update({f"{c}_pct": d[c]["pct"], f"{c}_lo": d[c]["lo"], f"{c}_hi": d[c]["hi"]})
        cal = res["pairwise_calibration"][b]
        row.update(
            {
                "calibration": cal["method"],
                "preference_pct": cal["preference"]["pct"],
                "preference_lo": cal["preference"]["lo"],
                "preference_hi": cal["preference"]["hi"],
                "excludes_chance": cal["preference"]["excludes_chance"],
                "order_consistency": res["order_consistency"][b]["agreement"],
            }
        )
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
    for key in ("absolute", "absolute_ood", "dialogue"):
        csv(
            [
                {
                    "system": s,
                    "n": d["n"],
                    "invalid": d["invalid"],
                    **{f"{lab}_pct": v["pct"] for lab, v in d.items() if isinstance(v, dict)},
                }
                for s, d in res[key].items()
            ],
            key,
        )
    for key in ("likert", "safety", "lengths"):
        csv([{"system": s, **d} for s, d in res[key].items()], key)
    csv(res["agreement"], "agreement")
    turns = []
    for s, d in res.get("dialogue_turns", {}).items():
        for turn, dd in [("all", d), *d["by_turn"].items()]:
            turns.append(
                {
                    "system": s,
                    "turn": turn,
                    "conversations": d["conversations"],
                    "n": dd["n"],
                    "invalid": dd["invalid"],
                    **{f"{lab}_pct": dd[lab]["pct"] for lab in analysis.GRADES},
                    **{f"{lab}_count": dd[lab]["count"] for lab in analysis.GRADES},
                }
            )
    csv(turns, "dialogue_turns")
