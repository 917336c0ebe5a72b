"""Judgments -> results.json (docs/paper.md sec. 4-5): `build_results` assembles it from the judge config; pairwise
win / tie / loss with bootstrap CIs and order consistency, absolute and dialogue grades, Likert means, safety,
agreement with human annotators, lengths, per-turn dialogue grades, what was judged, the reference check.
The statistics themselves are pure functions in `analysis.py`; this module groups judged rows into their inputs.
Prompt tags select the paper's subsets: `ood` (Fig. 3's 20 out-of-distribution prompts: `absolute_ood`), and
`malicious` among the `sensitive` ones (sec. 4's "6 of the 10 with malicious intent": `malicious_n` and
`malicious_safe_pct` in `safety[system]`). `write_tables` writes one CSV per table.
"""

from __future__ import annotations

import pandas as pd

from .. import analysis
from ..config import Config, JudgeConfig
from ..files import write_csv
from ..reference import reference_check
from ..runs import RunDir
from . import protocols
from .base import Judge
from .dialogue import KIND as DIALOGUE_TURN
from .items import pairs
from .local import WEAK_NOTE

# results.json's tables in the order it lists them (notebooks 04-06 and the figures read them by key)
PAIRWISE_TABLES = ("pairwise", "pairwise_swap", "pairwise_calibration", "order_consistency", "pairwise_winners")
GRADED_TABLES = ("absolute", "absolute_ood", "likert", "safety", "dialogue")


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


def build_results(
    cfg: Config,
    judged: list[dict],
    rows: list[dict],
    system: str,
    baselines: list[str],
    *,
    judge: Judge,
    requests: dict,
    human: dict[str, dict[str, str]] | None = None,
) -> dict:
    """results.json, all but `token_shift` (the judge stage adds it): the result tables of docs/paper.md sec. 4-5
    from `judge_rows`'s judgments (`pairwise_tables` per baseline, `graded_tables`, agreement with the `human`
    annotators, lengths), the per-turn dialogue grades of Fig. 7 when transcripts were judged, what was judged by
    whom (`requests`: the runner's counts), and with `judge.reference_check` the reference check."""
    jc = cfg.judge
    turns = [j for j in judged if j.get("kind") == DIALOGUE_TURN]
    judged = [j for j in judged if j.get("kind") != DIALOGUE_TURN]
    res: dict = {key: {} for key in PAIRWISE_TABLES + GRADED_TABLES}
    if jc.length_control:
        res["length_controlled"] = {}
    for b in baselines:
        for key, table in pairwise_tables(judged, rows, system, b, jc=jc, seed=cfg.seed).items():
            res[key][b] = table
    res.update(graded_tables(judged, rows, [system] + baselines))
    ours = {k: w for b in baselines for k, w in res["pairwise_winners"][b].items() if w is not None}
    # a judge with no pairwise verdict is no annotator: no agreement rows against it
    annotators = ({"llm-judge": ours} if ours else {}) | (human or {})
    names = sorted(annotators)
    res["agreement"] = [
        {"a": x, "b": y, **analysis.agreement(annotators[x], annotators[y])}
        for i, x in enumerate(names)
        for y in names[i + 1 :]
    ]
    res["lengths"] = analysis.length_stats([r for r in rows if r["checkpoint"] in [system] + baselines])
    if turns:
        res["dialogue_turns"] = analysis.dialogue_turn_shares(turns)
        transcripts = list(jc.dialogue_files)
        res["dialogue_compare"] = [
            analysis.dialogue_conversation_compare(turns, a, b)
            for i, a in enumerate(transcripts)
            for b in transcripts[i + 1 :]
        ]
    res.update(
        {
            "judge": judge.name,
            "judge_note": WEAK_NOTE if judge.weak else None,
            "system": system,
            "baselines": baselines,
            "requests": requests,
            "protocols": jc.protocols,
            "prompt_ids": list(dict.fromkeys(r["prompt_id"] for r in rows)),  # the prompts judged (judge.max_prompts)
            "missing_inputs": missing_inputs(cfg, rows, baselines),
        }
    )
    if jc.reference_check:
        res["reference"] = reference_check(RunDir.of(cfg), [system, *baselines], jc.n_bootstrap, cfg.seed)
    return res


def missing_inputs(cfg: Config, rows: list[dict], baselines: list[str]) -> list[str]:
    """What the paper used but never released that this run lacks (docs/evaluation.md lists the formats): the
    configured baselines' outputs, the test prompts tagged `sensitive` (safety) and `ood` (Fig. 3), the dev set."""
    jc, tags = cfg.judge, {t for r in rows for t in r.get("tags") or ()}
    lost = [b for b in dict.fromkeys(jc.baselines + list(jc.baseline_files)) if b not in baselines]
    out = [f"baseline outputs: {', '.join(lost)} (judge.baseline_files)"] if lost else []
    if "safety" in jc.protocols and "sensitive" not in tags:
        out.append("sensitive test prompts: no prompt tagged sensitive, so no safety verdicts")
    if "absolute" in jc.protocols and "ood" not in tags:
        out.append("out-of-distribution test prompts: no prompt tagged ood, so no OOD grades")
    if not cfg.curate.dev_files:
        out.append("dev set: curate.dev_files is empty")
    return out


def pairwise_tables(
    judged: list[dict], rows: list[dict], system: str, baseline: str, *, jc: JudgeConfig, seed: int
) -> dict:
    """`system` against one baseline, one entry per table of `PAIRWISE_TABLES` (and `length_controlled` with
    `judge.length_control`, see `analysis.length_controlled`). Outcomes use `judge.position_calibration` (see
    `calibrated_winners`); `pairwise_swap` keeps the swap-to-tie shares beside them."""
    n_boot = jc.n_bootstrap
    by_item: dict[str, dict[str, dict]] = {}
    for j in judged:
        if j["protocol"] == "pairwise" and j["baseline"] == baseline:
            by_item.setdefault(j["item_id"], {})[j["order"]] = j
    swapped = {
        k: analysis.combine_orders(*(winner_of(v[o]) if o in v else None for o in ("AB", "BA")))
        for k, v in by_item.items()
    }
    calibrated = balanced_probabilities(by_item) if jc.position_calibration == "balanced" else None
    winners, method = calibrated_winners(calibrated, swapped, system, baseline, jc.calibration_margin)
    outcomes = [analysis.pairwise_outcome(w, system) for w in winners.values()]
    # the same judge in its two orders is the cheapest check of position bias
    both = {k: v for k, v in by_item.items() if winner_of(v.get("AB", {})) and winner_of(v.get("BA", {}))}
    consistency = analysis.agreement(
        {k: winner_of(v["AB"]) for k, v in both.items()}, {k: winner_of(v["BA"]) for k, v in both.items()}
    )
    pref = analysis.preference_ci(outcomes, n_boot=n_boot, seed=seed)
    out = {
        "pairwise": analysis.bootstrap_shares(outcomes, n_boot=n_boot, seed=seed),
        "pairwise_swap": analysis.bootstrap_shares(
            [analysis.pairwise_outcome(w, system) for w in swapped.values()], n_boot=n_boot, seed=seed
        ),
        "order_consistency": consistency,
        "pairwise_calibration": {
            "method": method,
            "margin": jc.calibration_margin if method == "balanced" else None,
            "preference": pref,
            # how far apart the two systems' calibrated probabilities are, on average
            "mean_difference": analysis.bootstrap_mean(
                [p["ours"] - p["theirs"] for p in calibrated.values()], n_boot, seed
            )
            if calibrated
            else None,
            "verdict": preference_verdict(pref, system, baseline, consistency),
        },
        # per item, so that agreement with annotators who label later can be computed (figures, Fig. 1)
        "pairwise_winners": winners,
    }
    if jc.length_control:
        lengths = pair_lengths(rows, system, baseline)
        out["length_controlled"] = analysis.length_controlled(
            [(analysis.pairwise_outcome(w, system), *lengths[k]) for k, w in winners.items() if k in lengths],
            band=jc.lc_ratio_band,
        )
    return out


def graded_tables(judged: list[dict], rows: list[dict], systems: list[str]) -> dict:
    """Each system's grades, one entry per table of `GRADED_TABLES`: absolute (absolute's own draw) and
    absolute_ood (the `ood` draw of the prompts tagged ood; `items.sample_requests`),
    final-turn dialogue, Likert means, safety (and its `malicious` subset)."""
    res: dict = {key: {} for key in GRADED_TABLES}
    tags = {r["prompt_id"]: set(r.get("tags") or ()) for r in rows}
    for s in systems:
        mine = [j for j in judged if j.get("system") == s]
        for proto, key, tag in (
            ("absolute", "absolute", None),
            ("absolute", "absolute_ood", "ood"),
            ("dialogue", "dialogue", None),
        ):
            labs = [
                j["label"]
                for j in mine
                if j["protocol"] == proto
                and j.get("draw") != ("absolute" if tag else "ood")  # each table its own draw (items.sample_requests)
                and (tag is None or tag in tags.get(j["prompt_id"], ()))
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
            write_csv(path, pd.DataFrame(rows))
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
