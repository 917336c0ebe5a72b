"""The ablation harness: `run_ablations(config) -> <run_dir>/ablations` (LIMA sec. 5, PAPER.md sec. 4-5).

Every condition is a matched sub-run in `<run_dir>/ablations/<condition>/` (a run directory of its own): a deep
copy of the configuration in which only the condition's data settings (`curate.*`) differ, run through the
ordinary stages (`run_curate`, `run_train`, `run_generate` with `ablations.num_samples` samples per prompt,
`run_judge` with the Likert protocol). Base model, hyperparameters, seeds, test prompts and the judge (one object
shared by all conditions) are the same. A failing condition is recorded with its stage and error and the others
still run; a rerun skips every condition whose sub-run already holds `judge/results.json`. Writes `summary.json`
and `summary.csv` (Fig. 5-7 read them). The conditions themselves are checked with the config
(`config/ablations.py`).
"""
from __future__ import annotations

import copy
import shutil
import time
import traceback
from pathlib import Path

import pandas as pd

from .config import Config, apply_overrides, dotted_to_nested
from .config.ablations import check_condition
from .curate import run_curate
from .files import sha256_file, write_json
from .generate import run_generate
from .judge import run_judge
from .judging import make_judge
from .runs import RunDir, Stage
from .train import run_train


def condition_config(cfg: Config, name: str, spec: dict) -> Config:
    """The sub-run's configuration: `ablations.common`, then the condition's `set` (curate.* only)."""
    check_condition(name, spec)
    a = cfg.ablations
    sub = copy.deepcopy(cfg)
    sub.run_dir = str(RunDir.of(cfg).ablation(name).root)
    apply_overrides(sub, dotted_to_nested(dict(a.common)))
    apply_overrides(sub, dotted_to_nested(dict(spec.get("set", {}))))
    sub.generate.num_samples = a.num_samples  # LIMA sec. 5: 5 samples per test prompt
    sub.generate.include_base, sub.generate.checkpoints = False, "last"
    sub.judge.protocols = list(spec.get("protocols", a.protocols))
    sub.judge.system, sub.judge.baselines, sub.judge.baseline_files = "last", [], {}
    sub.judge.token_shift = False  # the ablations compare Likert means only
    sub.notebooks = []
    sub.check()
    return sub


def _row(sub: RunDir) -> dict:
    """Summary row of a finished sub-run, read from its files."""
    res = sub.read_results()
    system = res["system"]
    test = sub.split("test")
    return {"likert": res.get("likert", {}).get(system, {}), "dialogue": res.get("dialogue", {}).get(system),
            "n_examples": sub.read_datacard()["files"][sub.split("train").name]["rows"], "system": system,
            "judge": res.get("judge"), "test_sha256": sha256_file(test) if test.is_file() else None}


def run_condition(cfg: Config, name: str, spec: dict, judge_factory) -> dict:
    """One condition, stage by stage; returns its summary row (status `ok` or `failed` with stage and error)."""
    sub_run = RunDir.of(cfg).ablation(name)
    row = {"condition": name, "groups": spec.get("groups", []), "x": spec.get("x"), "paper": spec.get("paper"),
           "run_dir": str(sub_run.root)}
    if sub_run.results.is_file():
        return {**row, "status": "ok", "resumed": True, **_row(sub_run)}
    t0, stage = time.time(), "config"
    try:
        sub = condition_config(cfg, name, spec)
        for stage, fn in (("curate", run_curate), ("train", run_train), ("generate", run_generate)):
            fn(sub)
        stage = "judge"
        run_judge(sub, judge=judge_factory())
    except Exception as e:  # noqa: BLE001  a failing condition is recorded; the others still run
        sub_run.root.mkdir(parents=True, exist_ok=True)
        sub_run.ablation_error.write_text(traceback.format_exc(), encoding="utf-8")
        return {**row, "status": "failed", "failed_stage": stage, "error": f"{type(e).__name__}: {e}",
                "wall_time_s": round(time.time() - t0, 1)}
    if not cfg.ablations.keep_checkpoints:
        for d in (sub_run.checkpoints, sub_run.state):
            shutil.rmtree(d, ignore_errors=True)
    return {**row, "status": "ok", "resumed": False, "wall_time_s": round(time.time() - t0, 1), **_row(sub_run)}


def write_summary(run: RunDir, rows: list[dict], cfg: Config) -> dict:
    a = cfg.ablations
    ok = [r for r in rows if r["status"] == "ok"]
    judges = sorted({r["judge"] for r in ok if r.get("judge")})
    summary = {
        "note": a.note, "n_examples_target": a.n_examples, "num_samples": a.num_samples, "protocols": a.protocols,
        "judge": judges[0] if len(judges) == 1 else judges or None,
        "matched": {"test_prompts": len({r["test_sha256"] for r in ok}) <= 1,
                    "size_mismatch": [r["condition"] for r in ok if "quantity" not in r["groups"]
                                      and r["n_examples"] != a.n_examples]},
        "counts": {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed")},
        "conditions": rows,
    }
    write_json(run.ablation_summary, summary)
    pd.DataFrame([{"condition": r["condition"], "groups": "+".join(r["groups"]), "n_examples": r.get("n_examples"),
                   "likert_mean": r.get("likert", {}).get("mean"), "likert_lo": r.get("likert", {}).get("lo"),
                   "likert_hi": r.get("likert", {}).get("hi"), "likert_n_prompts": r.get("likert", {}).get("n"),
                   "status": r["status"], "error": r.get("error")} for r in rows]).to_csv(run.ablation_table, index=False)
    return summary


def run_ablations(cfg: Config, judge=None) -> Path:
    """Run every configured condition as a matched sub-run; returns `<run_dir>/ablations`.
    `judge` may be passed in (tests); default = the one `cfg.judge` names, loaded once for all conditions."""
    a = cfg.ablations
    names = [n for n in a.conditions if a.only is None or n in a.only]
    shared: list = [judge]

    def judge_factory():
        if shared[0] is None:
            shared[0] = make_judge(cfg.judge)
        return shared[0]

    with Stage(cfg, "ablations") as st:
        rows = []
        for name in names:
            rows.append(run_condition(cfg, name, a.conditions[name], judge_factory))
            write_summary(st.run, rows, cfg)  # a killed harness still leaves the summary so far
        summary = write_summary(st.run, rows, cfg)
        st.extra["counts"] = summary["counts"]
    return st.out
