"""The ablation harness: `run_ablations(config) -> <run_dir>/ablations` (LIMA sec. 5, docs/paper.md sec. 4-5).

Every condition is a matched sub-run in `<run_dir>/ablations/<condition>/` (a run directory of its own): a deep
copy of the configuration in which only the condition's data settings (`curate.*`) differ, run through the
ordinary stages (`run_curate`, `run_train`, `run_generate` with `ablations.num_samples` samples per prompt,
`run_judge` with the Likert protocol). Base model, hyperparameters, seeds, test prompts and the judge (one object
shared by all conditions) are the same. Besides:
- a condition with a size `x` (Fig. 6) must curate exactly x examples, else it fails with every filter step's
  kept/dropped counts (`check_size`);
- a `without_multi_turn` condition trains on `curate.train_files` minus their multi-turn rows, a file the harness
  writes into the sub-run (`write_without_multi_turn`);
- a `dialogue` condition (Fig. 7), once trained, holds the scripted conversations (`ablations.dialogue_*`) with
  `generate.Chat`, and the judge grades every assistant turn (`results["dialogue_turns"]`).
A failing condition is recorded with its stage and error and the others still run; a rerun skips every condition
whose sub-run already holds `judge/results.json`. Each condition leaves its summary row in its sub-run, and
`summary.{json,csv}` merge every configured condition's row, so conditions can run as independent jobs
(`python -m lima_repro ablations --run-dir R --condition NAME`); conditions never run are listed as `not_run`.
"""

from __future__ import annotations

import copy
import shutil
import time
import traceback
from pathlib import Path

import pandas as pd

from . import data
from .config import Config, apply_overrides, dotted_to_nested
from .config.ablations import check_condition
from .curate import run_curate
from .files import read_json, sha256_file, write_csv, write_json, write_jsonl
from .generate import Chat, run_generate
from .judge import run_judge
from .judging import make_judge
from .judging.dialogue import hold_conversations, read_script
from .runs import RunDir
from .stage import Stage
from .train import run_train

CHAT_SETTINGS = ("top_p", "temperature", "repetition_penalty", "max_new_tokens", "precision")  # = the sub-run's


def condition_config(cfg: Config, name: str, spec: dict) -> Config:
    """The sub-run's configuration: `ablations.common`, then the condition's `set` (curate.* only)."""
    check_condition(name, spec)
    a = cfg.ablations
    sub = copy.deepcopy(cfg)
    sub_run = RunDir.of(cfg).ablation(name)
    sub.run_dir = str(sub_run.root)
    apply_overrides(sub, dotted_to_nested(dict(a.common)))
    apply_overrides(sub, dotted_to_nested(dict(spec.get("set", {}))))
    sub.generate.num_samples = a.num_samples  # LIMA sec. 5: 5 samples per test prompt
    sub.generate.include_base, sub.generate.checkpoints = False, "last"
    sub.judge.protocols = list(spec.get("protocols", a.protocols))
    sub.judge.system, sub.judge.baselines, sub.judge.baseline_files = "last", [], {}
    sub.judge.dialogue_files = {name: str(sub_run.dialogue_transcripts)} if "dialogue" in spec.get("groups", []) else {}
    sub.judge.token_shift = False  # the ablations compare Likert means only
    if spec.get("x") is not None:
        sub.curate.strict_counts = False  # curation finishes and counts every step; check_size then fails loudly
    if spec.get("without_multi_turn"):
        sub.curate.se_dialogue.dumps = []  # no comment chains from the raw dumps either
    sub.notebooks = []
    sub.check()
    return sub


def is_multi_turn(example: dict) -> bool:
    """GAIR/lima marks its 30 dialogue chains `source: multi_turn`, canonical rows may tag them `multi_turn`; any
    row with more than one user turn is one too."""
    return (
        example["source"] == "multi_turn"
        or "multi_turn" in example.get("tags", [])
        or sum(m["role"] == "user" for m in example["messages"]) > 1
    )


def write_without_multi_turn(sub: Config, dest: Path) -> dict:
    """The `without` training file: every row of the sub-run's `curate.train_files` that is not multi-turn,
    written to `dest`, which curate then reads instead. Fails when there is nothing to drop (the two models
    of the dialogue ablation would be trained on the same data)."""
    examples = data.read_many(sub.curate.train_files)
    kept = [ex for ex in examples if not is_multi_turn(ex)]
    if len(kept) == len(examples):
        raise data.DataError(
            ", ".join(sub.curate.train_files),
            None,
            "no multi-turn rows to drop (source `multi_turn`, tag `multi_turn`, or more than one user turn)",
            "point the condition's curate.train_files at data holding the dialogue chains "
            "(GAIR/lima train.jsonl has 30)",
        )
    write_jsonl(dest, kept)
    sub.curate.train_files = [str(dest)]
    return {"read": len(examples), "multi_turn_dropped": len(examples) - len(kept)}


def check_size(sub_run: RunDir, name: str, target: int) -> None:
    """A condition with a size `x` curated exactly x examples, or a DataError listing every filter step."""
    card = sub_run.read_datacard()
    n = card["files"][sub_run.split("train").name]["rows"]
    if n == target:
        return
    steps = "; ".join(
        f"{src}: " + ", ".join(f"{s['step']} {s['kept']} kept / {s['dropped']} dropped" for s in info["steps"])
        for src, info in card.get("sources", {}).items()
        if info["steps"]
    )
    raise data.DataError(
        sub_run.datacard,
        "train split",
        f"condition {name!r} curated {n} training examples "
        f"for its size x = {target}. Filter steps: {steps or 'none ran'}",
        "add raw dumps, raise curate.stackexchange.candidates_per_site (the per-site cap counted "
        "as se.top_scoring_questions), or lower the condition's x",
    )


def hold_dialogues(sub: Config, name: str) -> Path:
    """The dialogue condition's scripted conversations with its last checkpoint, sampled with the sub-run's
    generate settings; written afresh to the sub-run's transcripts file."""
    a, run = sub.ablations, RunDir.of(sub)
    path = run.dialogue_transcripts
    path.unlink(missing_ok=True)
    script = read_script(a.dialogue_prompts, a.dialogue_conversations)
    chat = Chat(run.list_checkpoints()[-1]["path"], **{k: getattr(sub.generate, k) for k in CHAT_SETTINGS})
    hold_conversations(chat, script, a.dialogue_follow_ups, name, path, seed=sub.generate.seed)
    return path


def _row(sub: RunDir, name: str) -> dict:
    """Summary row of a finished sub-run, read from its files."""
    res = sub.read_results()
    system = res["system"]
    test = sub.split("test")
    card = sub.read_datacard()
    train = card["splits"].get("train", [])
    total = next((r for r in train if r["source"] == "total"), None)
    return {
        "likert": res.get("likert", {}).get(system, {}),
        "dialogue_turns": res.get("dialogue_turns", {}).get(name),
        "n_examples": card["files"][sub.split("train").name]["rows"],
        "system": system,
        "n_multi_turn": total["multi_turn"] if total else sum(r.get("multi_turn", 0) for r in train),
        "judge": res.get("judge"),
        "test_sha256": sha256_file(test) if test.is_file() else None,
    }


def _record(sub_run: RunDir, row: dict) -> dict:
    write_json(sub_run.condition_row, row)
    return row


def run_condition(cfg: Config, name: str, spec: dict, judge_factory) -> dict:
    """One condition, stage by stage; returns its summary row (status `ok` or `failed` with stage and error),
    also left in the sub-run for the summary to merge."""
    sub_run = RunDir.of(cfg).ablation(name)
    row = {
        "condition": name,
        "groups": spec.get("groups", []),
        "x": spec.get("x"),
        "paper": spec.get("paper"),
        "run_dir": str(sub_run.root),
    }
    if sub_run.read_results() is not None:  # judged and finished: resume
        before = read_json(sub_run.condition_row) if sub_run.condition_row.is_file() else {}
        return _record(sub_run, {**before, **row, "status": "ok", "resumed": True, **_row(sub_run, name)})
    t0, stage, extra = time.time(), "config", {}
    try:
        sub = condition_config(cfg, name, spec)
        stage = "curate"
        if spec.get("without_multi_turn"):
            extra = write_without_multi_turn(sub, sub_run.without_multi_turn)
        run_curate(sub)
        if spec.get("x") is not None:
            check_size(sub_run, name, spec["x"])
        stage = "train"
        run_train(sub)
        if "dialogue" in spec.get("groups", []):
            stage = "dialogue"
            hold_dialogues(sub, name)
        stage = "generate"
        run_generate(sub)
        stage = "judge"
        run_judge(sub, judge=judge_factory())
    except Exception as e:  # noqa: BLE001  a failing condition is recorded; the others still run
        sub_run.root.mkdir(parents=True, exist_ok=True)
        sub_run.ablation_error.write_text(traceback.format_exc(), encoding="utf-8")
        return _record(
            sub_run,
            {
                **row,
                "status": "failed",
                "failed_stage": stage,
                "error": f"{type(e).__name__}: {e}",
                "wall_time_s": round(time.time() - t0, 1),
            },
        )
    if not cfg.ablations.keep_checkpoints:
        for d in (sub_run.checkpoints, sub_run.state):
            shutil.rmtree(d, ignore_errors=True)
    return _record(
        sub_run,
        {
            **row,
            **extra,
            "status": "ok",
            "resumed": False,
            "wall_time_s": round(time.time() - t0, 1),
            **_row(sub_run, name),
        },
    )


def _csv_row(r: dict) -> dict:
    lik, turns = r.get("likert") or {}, r.get("dialogue_turns") or {}
    return {
        "condition": r["condition"],
        "groups": "+".join(r["groups"]),
        "n_examples": r.get("n_examples"),
        "likert_mean": lik.get("mean"),
        "likert_lo": lik.get("lo"),
        "likert_hi": lik.get("hi"),
        "likert_n_prompts": lik.get("n"),
        "x": r.get("x"),
        "n_multi_turn": r.get("n_multi_turn"),
        "dialogue_turns_n": turns.get("n"),
        **{f"dialogue_{g}_pct": (turns.get(g) or {}).get("pct") for g in ("Excellent", "Pass", "Fail")},
        "status": r["status"],
        "error": r.get("error"),
    }


def write_summary(run: RunDir, cfg: Config) -> dict:
    """summary.{json,csv} from every configured condition's row in its sub-run (whichever job ran it); the
    conditions without one are listed under `not_run`."""
    a = cfg.ablations
    rows, not_run = [], []
    for name, spec in a.conditions.items():
        path = run.ablation(name).condition_row
        if path.is_file():
            rows.append(read_json(path))
        else:
            not_run.append(
                {
                    "condition": name,
                    "groups": spec.get("groups", []),
                    "x": spec.get("x"),
                    "paper": spec.get("paper"),
                    "status": "not_run",
                }
            )
    ok = [r for r in rows if r["status"] == "ok"]
    judges = sorted({r["judge"] for r in ok if r.get("judge")})
    matched_size = {"diversity", "quality", "selector"}  # LIMA sec. 5: 2,000 examples each
    summary = {
        "note": a.note,
        "n_examples_target": a.n_examples,
        "num_samples": a.num_samples,
        "protocols": a.protocols,
        "judge": judges[0] if len(judges) == 1 else judges or None,
        "matched": {
            "test_prompts": len({r["test_sha256"] for r in ok}) <= 1,
            "size_mismatch": [
                r["condition"] for r in ok if matched_size & set(r["groups"]) and r["n_examples"] != a.n_examples
            ],
        },
        "counts": {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed")} | {"not_run": len(not_run)},
        "order": list(a.conditions),  # the configured order (conditions and not_run are each a part of it)
        "conditions": rows,
        "not_run": not_run,
    }
    write_json(run.ablation_summary, summary)
    write_csv(run.ablation_table, pd.DataFrame([_csv_row(r) for r in rows + not_run]))
    return summary


def with_parameters(cfg: Config, conditions=(), follow_ups=(), prompts: str = "") -> Config:
    """A copy of `cfg` with 05_ablations' parameters over its `ablations` settings: each one given (not empty)
    replaces `only`, `dialogue_follow_ups` or `dialogue_prompts`; checked like the config's own."""
    out = copy.deepcopy(cfg)
    a = out.ablations
    a.only = list(conditions) or a.only
    a.dialogue_follow_ups = list(follow_ups) or a.dialogue_follow_ups
    a.dialogue_prompts = prompts or a.dialogue_prompts
    a.check()
    return out


def run_ablations(cfg: Config, judge=None) -> Path:
    """Run the configured conditions (`ablations.only`, else all) as matched sub-runs; returns
    `<run_dir>/ablations`. `judge` may be passed in (tests); default = the one `cfg.judge` names, loaded once
    for all conditions, and only when a condition needs judging."""
    a = cfg.ablations
    names = [n for n in a.conditions if a.only is None or n in a.only]
    shared: list = [judge]

    def judge_factory():
        if shared[0] is None:
            shared[0] = make_judge(cfg.judge)
        return shared[0]

    with Stage(cfg, "ablations") as st:
        for name in names:
            run_condition(cfg, name, a.conditions[name], judge_factory)
            write_summary(st.run, cfg)  # a killed harness still leaves the summary so far
        summary = write_summary(st.run, cfg)
        st.extra.update(counts=summary["counts"], ran=names)
    return st.out
