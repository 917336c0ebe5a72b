"""The ablation harness: `run_ablations(config) -> <run_dir>/ablations` (LIMA sec. 5, PAPER.md sec. 4-5).

Every condition is a matched sub-run in `<run_dir>/ablations/<condition>/`: a deep copy of the configuration in
which only the condition's data settings (`curate.*`) differ, run through the ordinary stages (`run_curate`,
`run_train`, `run_generate` with `ablations.num_samples` samples per prompt, `run_judge` with the Likert protocol).
Base model, hyperparameters, seeds, test prompts and the judge (one object shared by all conditions) are the same.
A failing condition is recorded with its stage and error and the others still run; a rerun skips every condition
whose sub-run already holds `judge/results.json`. Writes `summary.json` and `summary.csv` (Fig. 5-7 read them).
"""
from __future__ import annotations

import copy
import shutil
import time
import traceback
from pathlib import Path

from .config import Config, ConfigError, apply_overrides, dotted_to_nested, validate
from .rundir import Stage, sha256_file, write_json

GROUPS = ("diversity", "quality", "quantity", "selector", "dialogue")
# test prompts must be the same in every condition, so a condition may not touch where they come from
FIXED_CURATE = ("curate.test_files", "curate.dev_files", "curate.askreddit")


def condition_config(cfg: Config, name: str, spec: dict) -> Config:
    """The sub-run's configuration: `ablations.common`, then the condition's `set` (curate.* only)."""
    unknown = set(spec) - {"groups", "set", "x", "paper", "protocols"}
    if unknown or not set(spec.get("groups", [])) <= set(GROUPS):
        raise ConfigError(f"ablations.conditions.{name}: keys must be groups/set/x/paper/protocols and groups among "
                          f"{GROUPS}; got {sorted(spec)} with groups {spec.get('groups')}")
    bad = [k for k in spec.get("set", {}) if not k.startswith("curate.") or k.startswith(FIXED_CURATE)]
    if bad:
        raise ConfigError(f"ablations.conditions.{name}.set: {bad} would unmatch the sub-runs; a condition may change "
                          "only curate.* (not test/dev prompts); put shared changes in ablations.common")
    a = cfg.ablations
    sub = copy.deepcopy(cfg)
    sub.run_dir = str(Path(cfg.run_dir) / "ablations" / name)
    apply_overrides(sub, dotted_to_nested(dict(a.common)))
    apply_overrides(sub, dotted_to_nested(dict(spec.get("set", {}))))
    sub.generate.num_samples = a.num_samples  # LIMA sec. 5: 5 samples per test prompt
    sub.generate.include_base, sub.generate.checkpoints = False, "last"
    sub.judge.protocols = list(spec.get("protocols", a.protocols))
    sub.judge.system, sub.judge.baselines, sub.judge.baseline_files = "last", [], {}
    sub.judge.token_shift = False  # the ablations compare Likert means only
    sub.notebooks = []
    validate(sub)
    return sub


def _finished(sub_dir: Path) -> bool:
    return (sub_dir / "judge" / "results.json").is_file()


def _row(name: str, spec: dict, sub_dir: Path) -> dict:
    """Summary row of a finished sub-run, read from its files."""
    import json

    res = json.loads((sub_dir / "judge" / "results.json").read_text())
    card = json.loads((sub_dir / "curate" / "datacard.json").read_text())
    system = res["system"]
    test = sub_dir / "curate" / "test.jsonl"
    return {"likert": res.get("likert", {}).get(system, {}), "dialogue": res.get("dialogue", {}).get(system),
            "n_examples": card["files"]["train.jsonl"]["rows"], "system": system, "judge": res.get("judge"),
            "test_sha256": sha256_file(test) if test.is_file() else None}


def run_condition(cfg: Config, name: str, spec: dict, judge_factory) -> dict:
    """One condition, stage by stage; returns its summary row (status `ok` or `failed` with stage and error)."""
    from .curate import run_curate
    from .generate import run_generate
    from .judge import run_judge
    from .train import run_train

    sub_dir = Path(cfg.run_dir) / "ablations" / name
    row = {"condition": name, "groups": spec.get("groups", []), "x": spec.get("x"), "paper": spec.get("paper"),
           "run_dir": str(sub_dir)}
    if _finished(sub_dir):
        return {**row, "status": "ok", "resumed": True, **_row(name, spec, sub_dir)}
    t0, stage = time.time(), "config"
    try:
        sub = condition_config(cfg, name, spec)
        for stage, fn in (("curate", run_curate), ("train", run_train), ("generate", run_generate)):
            fn(sub)
        stage = "judge"
        run_judge(sub, judge=judge_factory())
    except Exception as e:  # noqa: BLE001  a failing condition is recorded; the others still run
        sub_dir.mkdir(parents=True, exist_ok=True)
        (sub_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        return {**row, "status": "failed", "failed_stage": stage, "error": f"{type(e).__name__}: {e}",
                "wall_time_s": round(time.time() - t0, 1)}
    if not cfg.ablations.keep_checkpoints:
        for d in ("checkpoints", "state"):
            shutil.rmtree(sub_dir / "train" / d, ignore_errors=True)
    return {**row, "status": "ok", "resumed": False, "wall_time_s": round(time.time() - t0, 1),
            **_row(name, spec, sub_dir)}


def write_summary(out: Path, rows: list[dict], cfg: Config) -> dict:
    import pandas as pd

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
    write_json(out / "summary.json", summary)
    pd.DataFrame([{"condition": r["condition"], "groups": "+".join(r["groups"]), "n_examples": r.get("n_examples"),
                   "likert_mean": r.get("likert", {}).get("mean"), "likert_lo": r.get("likert", {}).get("lo"),
                   "likert_hi": r.get("likert", {}).get("hi"), "likert_n_prompts": r.get("likert", {}).get("n"),
                   "status": r["status"], "error": r.get("error")} for r in rows]).to_csv(out / "summary.csv", index=False)
    return summary


def run_ablations(cfg: Config, judge=None) -> Path:
    """Run every configured condition as a matched sub-run; returns `<run_dir>/ablations`.
    `judge` may be passed in (tests); default = the one `cfg.judge` names, loaded once for all conditions."""
    from .judging import make_judge

    a = cfg.ablations
    names = [n for n in a.conditions if a.only is None or n in a.only]
    missing = sorted(set(a.only or []) - set(a.conditions))
    if missing:
        raise ConfigError(f"ablations.only names unknown conditions {missing}; have {sorted(a.conditions)}")
    shared: list = [judge]

    def judge_factory():
        if shared[0] is None:
            shared[0] = make_judge(cfg.judge)
        return shared[0]

    with Stage(cfg, "ablations") as st:
        rows = []
        for name in names:
            rows.append(run_condition(cfg, name, a.conditions[name], judge_factory))
            write_summary(st.out, rows, cfg)  # a killed harness still leaves the summary so far
        summary = write_summary(st.out, rows, cfg)
        st.extra["counts"] = summary["counts"]
    return st.out
