"""The paper's ablation conditions (LIMA sec. 5), the default of `ablations.conditions`.

Data only: each condition is a set of dotted `curate.*` overrides on top of the profile (and, for the dialogue
pair, `without_multi_turn`); AblationConfig.check() validates them and the ablation stage runs each as a matched
sub-run. Deviation: the paper's dialogue comparison (Fig. 7) used LIMA 65B; here it runs with the ablations' model.
"""

from __future__ import annotations


def paper_conditions() -> dict[str, dict]:
    """LIMA sec. 5 (docs/paper.md sec. 4-5): 2,000 examples per condition from the raw dumps `curate` is pointed at."""
    se_only = {
        "curate.train_files": [],
        "curate.wikihow.files": [],
        "curate.writingprompts.submissions": [],
        "curate.natinst.tasks": [],
    }
    unfiltered = {
        "min_answer_score": -(10**9),
        "min_answer_chars": 0,
        "max_answer_chars": 10**9,
        "max_first_person": 10**9,
        "reference_phrases": [],
        "title_context_phrases": [],
        "min_title_words": 0,
    }
    pool = {
        **se_only,
        "curate.wikihow.files": None,
        "curate.stackexchange.n_per_group": 2000,
        "curate.wikihow.n": 2000,
        "curate.select_n": 2000,
    }
    pool = {k: v for k, v in pool.items() if v is not None}  # selectors choose 2,000 of a 6,000-example SE+wikiHow pool
    lima = [
        "data/lima/train.jsonl"
    ]  # GAIR/lima train.jsonl: 1,000 single-turn + 30 multi-turn rows (docs/paper.md sec. 1)
    conds = {
        "se_filtered": {
            "groups": ["diversity", "quality", "quantity"],
            "x": 2000,
            "paper": "filtered Stack Exchange",
            "set": {**se_only, "curate.stackexchange.n_per_group": 1000},
        },
        "wikihow": {
            "groups": ["diversity"],
            "paper": "wikiHow",
            "set": {
                **se_only,
                "curate.stackexchange.dumps": [],
                "curate.wikihow.files": None,
                "curate.wikihow.n": 2000,
            },
        },
        "se_unfiltered": {
            "groups": ["quality"],
            "paper": "unfiltered Stack Exchange",
            "set": {
                **se_only,
                "curate.stackexchange.n_per_group": 1000,
                **{f"curate.stackexchange.{k}": v for k, v in unfiltered.items()},
            },
        },
        # LIMA Fig. 6: doubling from 2K to 32K. The per-site candidate cap (1,000 by default, applied before the
        # answer filters) grows with the size, so it cannot starve 16K-32K; a size still out of reach fails
        # with every filter step's counts (ablations.check_size).
        **{
            f"se_{n // 1000}k": {
                "groups": ["quantity"],
                "x": n,
                "set": {
                    **se_only,
                    "curate.stackexchange.n_per_group": n // 2,
                    "curate.stackexchange.candidates_per_site": n // 2,
                },
            }
            for n in (4000, 8000, 16000, 32000)
        },
        # `select_quality` filters the pool with the profile's curate.stackexchange answer rules (the source's own)
        **{
            f"select_{s}": {"groups": ["selector"], "set": {**pool, "curate.selector": s}}
            for s in ("random", "longest", "kcenter", "quality")
        },
        # LIMA Fig. 7: GAIR/lima's 1,030 rows with and without its 30 multi-turn chains, each model trained from
        # the base model; the harness writes the `without` file itself (ablations.write_without_multi_turn)
        "dialogue_without": {
            "groups": ["dialogue"],
            "paper": "1,000 ex.",
            "without_multi_turn": True,
            "set": {**se_only, "curate.stackexchange.dumps": [], "curate.train_files": lima},
        },
        "dialogue_with": {
            "groups": ["dialogue"],
            "paper": "1,030 ex.",
            "set": {**se_only, "curate.stackexchange.dumps": [], "curate.train_files": lima},
        },
    }
    for c in conds.values():  # None marks "keep the profile's value" (wikiHow files) and is dropped here
        c["set"] = {k: v for k, v in c["set"].items() if v is not None}
    return conds
