"""Statistics on small cases computed by hand."""

from __future__ import annotations

import statistics

import pytest

from lima_repro import analysis as an


def test_bootstrap_ci_by_hand():
    # one win, one loss: a resample of 2 has 0, 1 or 2 wins with p = 1/4, 1/2, 1/4, so the 95% interval is [0, 100]
    res = an.bootstrap_shares(["win", "loss"], n_boot=4000, seed=1)
    assert res["win"]["pct"] == 50.0 and res["win"]["lo"] == 0.0 and res["win"]["hi"] == 100.0
    # all the same outcome: no spread; invalid ones are counted but not in the shares
    res = an.bootstrap_shares(["win", "win", "win", "invalid"], n_boot=100)
    assert res["n"] == 3 and res["invalid"] == 1
    assert (res["win"]["pct"], res["win"]["lo"], res["win"]["hi"]) == (100.0, 100.0, 100.0)
    assert res["tie"]["hi"] == 0.0
    assert an.bootstrap_shares(["invalid"])["win"]["pct"] is None


def test_bootstrap_matches_binomial_spread():
    outcomes = ["win"] * 30 + ["loss"] * 70
    res = an.bootstrap_shares(outcomes, n_boot=3000, seed=0)
    half = 1.96 * (0.3 * 0.7 / 100) ** 0.5 * 100  # normal approximation: about +-9 points
    assert res["win"]["lo"] == pytest.approx(30 - half, abs=2) and res["win"]["hi"] == pytest.approx(30 + half, abs=2)


def test_combine_orders_and_outcomes():
    assert an.combine_orders("ours", "ours") == "ours"
    assert an.combine_orders("ours", "base") == "neither"  # disagreement between orders = tie
    assert an.combine_orders("ours", None) is None
    assert [an.pairwise_outcome(w, "ours") for w in ("ours", "base", "neither", None)] == [
        "win",
        "loss",
        "tie",
        "invalid",
    ]


def test_likert_mean_ci_by_hand():
    # scores 1..5: mean 3, sd sqrt(2.5), se 0.7071; t(0.975, df=4) = 2.7764 -> half width 1.9632
    res = an.mean_ci([1, 2, 3, 4, 5])
    assert res["mean"] == 3.0
    assert res["lo"] == pytest.approx(3 - 1.9632, abs=1e-3) and res["hi"] == pytest.approx(3 + 1.9632, abs=1e-3)
    # the interval's Student-t quantile (scipy) is the hand-rolled one it replaced, to 1e-9: (values, level, t)
    for values, level, t in (
        ([1, 2, 3, 4, 5], 0.95, 2.7764451051977908),
        ([1, 2, 3, 4, 5], 0.99, 4.604094871349979),
        ([3, 5], 0.95, 12.706204736174659),
        (list(range(31)), 0.95, 2.042272456301233),
    ):
        res = an.mean_ci(values, level)
        assert (res["hi"] - res["mean"]) / (statistics.stdev(values) / len(values) ** 0.5) == pytest.approx(t, abs=1e-9)
    # samples of one prompt are averaged first: prompt a -> (2+4)/2 = 3, prompt b -> 5; invalid counted apart
    rows = [
        {"prompt_id": "a", "label": "2"},
        {"prompt_id": "a", "label": "4"},
        {"prompt_id": "b", "label": "5"},
        {"prompt_id": "b", "label": None},
    ]
    res = an.likert_summary(rows)
    assert res["n"] == 2 and res["mean"] == 4.0 and res["invalid"] == 1 and res["judgments"] == 4
    # two values 3 and 5: sd sqrt(2), se 1, t(0.975, 1) = 12.706
    assert res["hi"] - res["mean"] == pytest.approx(12.7062, abs=1e-3)


def test_tie_discounted_agreement_by_hand():
    a = {"1": "ours", "2": "base", "3": "neither", "4": "ours", "5": "ours"}
    b = {"1": "ours", "2": "neither", "3": "neither", "4": "base", "6": "base"}
    # shared 1-4: same (1) + neither vs base (0.5) + both neither (1) + ours vs base (0) = 2.5 / 4
    assert an.agreement(a, b) == {"n": 4, "agreement": 0.625}
    assert an.agreement(a, {})["agreement"] is None


def test_label_distribution_and_lengths():
    d = an.label_distribution(["Pass", "Fail", "Excellent", "Excellent", None], ("Fail", "Pass", "Excellent"))
    assert d["n"] == 4 and d["invalid"] == 1 and d["Excellent"] == {"count": 2, "pct": 50.0}
    rows = [
        {"checkpoint": "x", "response": "ab cd", "response_tokens": 2},
        {"checkpoint": "x", "response": "abcdefg", "response_tokens": 4},
    ]
    s = an.length_stats(rows)["x"]
    assert s["chars_mean"] == 6.0 and s["words_mean"] == 1.5 and s["tokens_mean"] == 3.0 and s["chars_max"] == 7


def test_several_annotators_on_one_item_become_one_label():
    assert an.majority_winner(["ours", "ours", "base"]) == "ours"
    assert an.majority_winner(["ours", "base"]) == "neither"  # a draw between annotators is a tie
    assert an.majority_winner(["neither", "neither", "ours"]) == "neither"
    assert an.majority_winner(["base"]) == "base"
    assert an.majority_grade(["Excellent", "Pass"]) == "Pass"  # a draw goes to the lower grade
    assert an.majority_grade(["Excellent", "Excellent", "Fail"]) == "Excellent"
    assert an.majority_grade(["Fail", "Excellent", "Pass"]) == "Fail"


def test_pooled_agreement_weights_pairs_by_shared_items():
    # 2.5 of 4 and 1 of 2 -> 3.5 / 6; a pair with nothing shared adds nothing
    res = an.pooled_agreement([{"n": 4, "agreement": 0.625}, {"n": 2, "agreement": 0.5}, {"n": 0, "agreement": None}])
    assert res == {"n": 6, "agreement": pytest.approx(3.5 / 6)}
    assert an.pooled_agreement([]) == {"n": 0, "agreement": None}
