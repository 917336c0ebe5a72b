"""The paper's statistics over judgments (docs/paper.md sec. 4-5): pure functions of lists, so they test by hand.

- Pairwise (Fig. 1-2): each pair is judged in both orders. With label probabilities (local judges) the two orders
  are combined by balanced position calibration (`balanced_preference`); otherwise MT-Bench's swap-to-tie: the
  same verdict twice is a win or a loss, anything else is a tie (`combine_orders`). Win / tie / loss % with
  percentile-bootstrap 95% CIs over items, and the preference (win + tie/2) with whether its CI excludes 50%.
- Absolute (Fig. 3, 7): the Fail / Pass / Excellent distribution. Likert (Fig. 5-6): samples of a prompt are
  averaged first, then mean and two-sided 95% t-interval over prompts. Safety: share of sensitive prompts answered
  safely.
- Agreement (sec. 4): tie-discounted accuracy, 1 for the same label, 0.5 when the labels differ and one is `neither`.
Invalid judgments are counted in every table and left out of its shares, never guessed.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter

import numpy as np
from scipy.stats import t as student_t

NEITHER = "neither"
GRADES = ("Fail", "Pass", "Excellent")  # LIMA sec. 4: absolute and per-turn dialogue labels, worst first
PREFERENCE = {"win": 1.0, "tie": 0.5, "loss": 0.0}  # a pairwise outcome as a preference for ours


def combine_orders(first: str | None, second: str | None) -> str | None:
    """Winner of a pair judged in both orders (each given as the winning system's name or `neither`).
    None when either order is invalid; a disagreement is a tie."""
    if first is None or second is None:
        return None
    return first if first == second else NEITHER


def pairwise_outcome(winner: str | None, system: str) -> str:
    if winner is None:
        return "invalid"
    return "tie" if winner == NEITHER else ("win" if winner == system else "loss")


def balanced_preference(ab: dict[str, float], ba: dict[str, float]) -> dict[str, float]:
    """Balanced position calibration (Wang et al. 2023, "Large Language Models are not Fair Evaluators"): the label
    probabilities of one pair judged in both orders (`ab`: ours shown as A; `ba`: ours shown as B), averaged so that
    each system is scored once in each position. A judge that prefers position A whatever it reads gives both
    systems the same probability. Returns {"ours", "theirs", "neither"}."""
    return {
        "ours": (ab["A"] + ba["B"]) / 2,
        "theirs": (ab["B"] + ba["A"]) / 2,
        "neither": (ab["neither"] + ba["neither"]) / 2,
    }


def calibrated_outcome(p: dict[str, float], margin: float) -> str:
    """win / tie / loss from calibrated probabilities: a tie when `neither` is the most likely label or the two
    systems' probabilities differ by at most `margin`."""
    diff = p["ours"] - p["theirs"]
    if abs(diff) <= margin or p["neither"] >= max(p["ours"], p["theirs"]):
        return "tie"
    return "win" if diff > 0 else "loss"


def bootstrap_mean(values: list[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean with a percentile-bootstrap CI (values resampled with replacement)."""
    if not values:
        return {"n": 0, "mean": None, "lo": None, "hi": None}
    rng = random.Random(seed)
    boots = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(n_boot))
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "lo": _quantile(boots, (1 - level) / 2),
        "hi": _quantile(boots, 1 - (1 - level) / 2),
    }


def preference_ci(outcomes: list[str], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Preference for ours (win 1, tie 1/2, loss 0) in %, with a percentile-bootstrap CI over items, and whether the
    CI excludes 50% (a coin flip: no preference either way)."""
    b = bootstrap_mean([100.0 * PREFERENCE[o] for o in outcomes if o in PREFERENCE], n_boot, seed, level)
    excludes = None if b["mean"] is None else b["lo"] > 50.0 or b["hi"] < 50.0
    return {"n": b["n"], "pct": b["mean"], "lo": b["lo"], "hi": b["hi"], "excludes_chance": excludes}


def bootstrap_shares(
    outcomes: list[str],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    categories: tuple[str, ...] = ("win", "tie", "loss"),
) -> dict[str, dict]:
    """Percentages of each category among valid outcomes, each with a percentile-bootstrap CI (items resampled
    with replacement). Invalid outcomes are reported as a count only."""
    valid = [o for o in outcomes if o in categories]
    n = len(valid)
    out: dict[str, dict] = {"n": n, "invalid": len(outcomes) - n}
    if n == 0:
        return {**out, **{c: {"pct": None, "lo": None, "hi": None} for c in categories}}
    rng = random.Random(seed)
    counts = {c: [] for c in categories}
    for _ in range(n_boot):
        sample = Counter(rng.choices(valid, k=n))
        for c in categories:
            counts[c].append(100.0 * sample[c] / n)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    for c in categories:
        vals = sorted(counts[c])
        out[c] = {"pct": 100.0 * valid.count(c) / n, "lo": _quantile(vals, lo_q), "hi": _quantile(vals, hi_q)}
    return out


def _quantile(sorted_vals: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default)."""
    pos = q * (len(sorted_vals) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def mean_ci(values: list[float], level: float = 0.95) -> dict:
    """Mean with a two-sided t-interval (LIMA sec. 5 reports mean and 95% CI of the 1-6 scores)."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "lo": None, "hi": None}
    mean = statistics.fmean(values)
    if n == 1:
        return {"n": 1, "mean": mean, "lo": None, "hi": None}
    half = float(student_t.ppf(1 - (1 - level) / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)
    return {"n": n, "mean": mean, "lo": mean - half, "hi": mean + half}


def likert_summary(rows: list[dict], level: float = 0.95) -> dict:
    """rows: {prompt_id, label ('1'..'6' or None)}; samples of one prompt are averaged before the interval."""
    per_prompt: dict[str, list[int]] = {}
    invalid = 0
    for r in rows:
        if r["label"] is None:
            invalid += 1
            continue
        per_prompt.setdefault(r["prompt_id"], []).append(int(r["label"]))
    res = mean_ci([statistics.fmean(v) for v in per_prompt.values()], level)
    return {**res, "judgments": len(rows), "invalid": invalid}


def label_distribution(labels: list[str | None], categories: tuple[str, ...]) -> dict:
    """Counts and percentages of each label among valid ones; invalid ones counted apart."""
    valid = [lab for lab in labels if lab in categories]
    n = len(valid)
    out: dict = {"n": n, "invalid": len(labels) - n}
    for c in categories:
        out[c] = {"count": valid.count(c), "pct": 100.0 * valid.count(c) / n if n else None}
    return out


def agreement(a: dict[str, str], b: dict[str, str]) -> dict:
    """Tie-discounted agreement on the items both annotators labelled (LIMA sec. 4): 1 point for the same label,
    0.5 when they differ and either said `neither`, else 0. Labels must be in a shared frame (the winning system's
    name, not the displayed position)."""
    shared = sorted(set(a) & set(b))
    if not shared:
        return {"n": 0, "agreement": None}
    score = 0.0
    for k in shared:
        if a[k] == b[k]:
            score += 1.0
        elif NEITHER in (a[k], b[k]):
            score += 0.5
    return {"n": len(shared), "agreement": score / len(shared)}


def majority_winner(votes: list[str]) -> str:
    """Several annotators' winners for one pair (system names or `neither`) as one: the most frequent; a draw
    between the top labels is a tie (`neither`), as two disagreeing orders of one judge are."""
    top = Counter(votes).most_common()
    return top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else NEITHER


def majority_grade(votes: list[str], order: tuple[str, ...] = GRADES) -> str:
    """Several annotators' grades of one response as one: the most frequent; a draw goes to the lower grade."""
    counts = Counter(votes)
    best = max(counts.values())
    return next(g for g in order if counts.get(g) == best)


def pooled_agreement(results: list[dict]) -> dict:
    """Agreement over several annotator pairs (`agreement` results), weighted by their shared items."""
    n = sum(r["n"] for r in results)
    return {"n": n, "agreement": sum(r["n"] * r["agreement"] for r in results if r["n"]) / n if n else None}


def length_stats(rows: list[dict]) -> dict[str, dict]:
    """Per system: response length in characters, words and tokens (mean, median, max)."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["checkpoint"], []).append(r)
    out = {}
    for name, rs in by.items():
        chars = [len(r["response"]) for r in rs]
        words = [len(r["response"].split()) for r in rs]
        toks = [r["response_tokens"] for r in rs if r.get("response_tokens") is not None]
        out[name] = {
            "n": len(rs),
            "chars_mean": statistics.fmean(chars),
            "chars_median": statistics.median(chars),
            "words_mean": statistics.fmean(words),
            "chars_max": max(chars),
            "tokens_mean": statistics.fmean(toks) if toks else None,
        }
    return out


def dialogue_turn_shares(rows: list[dict], categories: tuple[str, ...] = GRADES) -> dict[str, dict]:
    """Fig. 7: per system, the Fail / Pass / Excellent shares over every judged assistant turn (rows: {system,
    dialogue_id, turn, label or None}). Also the same shares by turn position (`by_turn`, 1 = first assistant turn)
    and the number of conversations. Invalid turns are counted, never in the shares."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["system"], []).append(r)
    out = {}
    for s, rs in by.items():
        d = label_distribution([r.get("label") for r in rs], categories)
        turns: dict[int, list] = {}
        for r in rs:
            turns.setdefault(int(r["turn"]), []).append(r.get("label"))
        d["conversations"] = len({r["dialogue_id"] for r in rs})
        d["turns"] = len(rs)
        d["by_turn"] = {str(k): label_distribution(v, categories) for k, v in sorted(turns.items())}
        out[s] = d
    return out


def dialogue_conversation_compare(rows: list[dict], a: str, b: str, categories: tuple[str, ...] = GRADES) -> dict:
    """LIMA compares conversations too ("better in 7 of 10, tied in 3"): per conversation id present for both
    systems, the mean grade (Fail 0, Pass 1, Excellent 2) over its valid turns; counts where `a` is better / tied /
    worse. Conversations are matched by id (the same opening, e.g. the same first user turn per id)."""
    score = {c: i for i, c in enumerate(categories)}
    means: dict[str, dict[str, float]] = {a: {}, b: {}}
    for s in (a, b):
        per: dict[str, list[int]] = {}
        for r in rows:
            if r["system"] == s and r.get("label") in score:
                per.setdefault(r["dialogue_id"], []).append(score[r["label"]])
        means[s] = {k: statistics.fmean(v) for k, v in per.items()}
    shared = sorted(set(means[a]) & set(means[b]))
    better = sum(means[a][k] > means[b][k] for k in shared)
    worse = sum(means[a][k] < means[b][k] for k in shared)
    return {
        "a": a,
        "b": b,
        "n": len(shared),
        "a_better": better,
        "tied": len(shared) - better - worse,
        "a_worse": worse,
    }


def _logistic_intercept(x: list[float], y: list[float], ridge: float = 1e-6, iters: int = 100) -> tuple[float, float]:
    """Logistic regression y ~ sigmoid(a + b x) with soft targets y in [0, 1] (binomial log-likelihood), fitted by
    Newton's method with a tiny L2 ridge on the slope only (keeps a perfectly length-separated sample finite; the
    intercept stays unpenalised, so equal lengths give exactly the mean preference). Returns (a, b)."""
    X = np.column_stack([np.ones(len(x)), np.asarray(x, dtype=float)])
    t = np.asarray(y, dtype=float)
    w = np.zeros(2)
    pen = np.diag([0.0, ridge])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        grad = X.T @ (p - t) + pen @ w
        hess = (X * (p * (1 - p))[:, None]).T @ X + pen
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]  # (near-)singular when the x are all equal
        w = w - step
        if np.max(np.abs(step)) < 1e-12:
            break
    return float(w[0]), float(w[1])


def length_controlled(pairs: list[tuple[str, float, float]], band: float = 1.5) -> dict:
    """Length-controlled win rate of "ours" over a baseline. pairs: (outcome win/tie/loss/invalid, length of our
    response, length of the baseline's) in characters; invalid outcomes are left out.

    - Preference p = win 1, tie 0.5, loss 0; `pref_pct` = its mean (the plain tie-as-half win rate).
    - Band: the win / tie / loss % among pairs whose longer response (+1 char) is at most `band` times the shorter
      (`band_n` pairs; None when none is in the band).
    - Regression: p ~ sigmoid(a + b x) with x = log2(len ours / len baseline) (+1 char each, so empty responses
      work); `lc_win_pct` = 100 sigmoid(a), the predicted preference at equal lengths, and `length_slope` = b
      (> 0: the judge prefers the longer answer). With all lengths equal it is `pref_pct` exactly; with all wins
      (or all losses) there is nothing to fit: `lc_win_pct` = `pref_pct` and `length_slope` None.
    """
    valid = [(o, la, lb) for o, la, lb in pairs if o in PREFERENCE]
    out: dict = {
        "n": len(valid),
        "band": band,
        "pref_pct": None,
        "lc_win_pct": None,
        "length_slope": None,
        "band_n": 0,
        "band_win_pct": None,
        "band_tie_pct": None,
        "band_loss_pct": None,
    }
    if not valid:
        return out
    x = [math.log2((la + 1) / (lb + 1)) for _, la, lb in valid]
    y = [PREFERENCE[o] for o, _, _ in valid]
    out["pref_pct"] = 100.0 * statistics.fmean(y)
    if min(y) == max(y) and y[0] in (0.0, 1.0):  # all wins or all losses: no fit (a = +-inf), nothing to control
        out["lc_win_pct"] = out["pref_pct"]
    else:
        a, b = _logistic_intercept(x, y)
        out["lc_win_pct"] = 100.0 / (1.0 + math.exp(-a))
        out["length_slope"] = b
    inside = [o for (o, la, lb), xi in zip(valid, x) if abs(xi) <= math.log2(band) + 1e-12]
    out["band_n"] = len(inside)
    if inside:
        for c in ("win", "tie", "loss"):
            out[f"band_{c}_pct"] = 100.0 * inside.count(c) / len(inside)
    return out
