"""The judge stage: `run_judge(config) -> <run_dir>/judge` (LIMA sec. 4 protocols, docs/paper.md sec. 4-6).

Judges `<run_dir>/generate/generations.jsonl` of a finished generate stage (ours = `judge.system`, against
`judge.baselines` and the systems imported from `judge.baseline_files`; `judge.max_prompts` random prompts or all),
grades every assistant turn of the transcripts in `judge.dialogue_files` (LIMA Fig. 7) and writes judgments.jsonl,
alpaca_eval/ and one CSV per table of the results (`judging.results.build_results`: the judgments analysed, with
human annotations when present). Then, with every judgment safely on disk, the token-shift test writes
token_shift.{json,csv}, and results.json is written once with its summary; running out of memory there is recorded
in results.json, it does not fail the stage. Request building, the cached runner and the result tables are in
`judging/`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import torch

from .config import Config, ConfigError
from .files import write_csv, write_json, write_jsonl
from .judging import make_judge
from .judging.dialogue import read_transcripts
from .judging.items import export_alpaca_eval, generator_name, import_baseline, resolve_system
from .judging.labels import pairwise_labels
from .judging.results import build_results, write_tables
from .judging.runner import judge_rows, sample_prompts
from .readers import read_generations
from .runs import RunDir
from .stage import Stage
from .token_shift import run_token_shift


def _generation_rows(cfg: Config, gen_path: Path) -> tuple[list[dict], str, list[str]]:
    """The rows to judge (`judge.max_prompts` prompts drawn with the run's seed, imported baselines added), ours,
    and the baselines."""
    jc = cfg.judge
    rows = read_generations(gen_path)
    keep = set(sample_prompts([r["prompt_id"] for r in rows], jc.max_prompts, cfg.seed))
    rows = [r for r in rows if r["prompt_id"] in keep]
    system = resolve_system(rows, jc.system)
    prompts = {r["prompt_id"]: r for r in rows if r["checkpoint"] == system}
    for name, path in jc.baseline_files.items():
        rows += import_baseline(path, name, prompts)
    present = set(r["checkpoint"] for r in rows)
    baselines = [b for b in dict.fromkeys(jc.baselines + list(jc.baseline_files)) if b in present and b != system]
    return rows, system, baselines


def run_judge(cfg: Config, judge=None) -> Path:
    """Judge the generations, analyse, run the token-shift test; returns `<run_dir>/judge`.
    `judge` may be passed in (tests, notebooks that hold a model); default = the one `cfg.judge` names."""
    jc, run = cfg.judge, RunDir.of(cfg)
    for name, path in jc.dialogue_files.items():
        if not Path(path).expanduser().is_file():
            raise ConfigError(f"judge.dialogue_files[{name!r}] = {path!r} is not a file (transcripts JSONL)")
    gen_path = run.generations_file(cfg)
    rows, system, baselines = _generation_rows(cfg, gen_path)
    transcripts = [t for name, path in jc.dialogue_files.items() for t in read_transcripts(path, name)]
    with Stage(cfg, "judge", inputs=[gen_path, *jc.baseline_files.values(), *jc.dialogue_files.values()]) as st:
        judge = judge or make_judge(jc)
        judged, stats = judge_rows(
            judge, jc, rows, system, baselines, jc.protocols, run.judge_cache(cfg), transcripts, cfg.seed
        )
        write_jsonl(run.judgments, judged)
        generator = generator_name(cfg.model.name, system)
        st.extra["alpaca_eval"] = export_alpaca_eval(rows, system, run.alpaca_eval(system), generator)
        ann_dir = run.annotations_dir(cfg)
        human = pairwise_labels(ann_dir) if ann_dir.is_dir() else {}
        res = build_results(cfg, judged, rows, system, baselines, judge=judge, requests=stats, human=human)
        write_tables(res, run)
        st.extra["judge"] = {
            "name": judge.name,
            "system": system,
            "baselines": baselines,
            "requests": stats,
            "prompt_ids": res["prompt_ids"],
        }
        # results.json is written once, after the token-shift test: every paid judgment is on disk already
        # (judgments.jsonl and the judge cache), so a crash there costs no judge request on rerun
        if jc.token_shift and next((r for r in rows if r["checkpoint"] == system), {}).get("checkpoint_path"):
            res["token_shift"] = _token_shift(cfg, run, rows, system)
        write_json(run.results, res)
    return st.out


def _token_shift(cfg: Config, run: RunDir, rows: list[dict], system: str) -> dict:
    """Run the token-shift test after the judgments are written: out of memory it is recorded, not fatal."""
    for stale in (run.token_shift, run.token_shift_table):
        stale.unlink(missing_ok=True)
    try:
        ts = run_token_shift(cfg, rows, system)
    except (torch.OutOfMemoryError, MemoryError) as e:
        msg = (
            f"token-shift test skipped: out of memory ({type(e).__name__}); the judge results stand. Fix: free "
            "the device or set judge.token_shift=false"
        )
        warnings.warn(msg, stacklevel=2)
        return {"error": msg}
    write_json(run.token_shift, ts)
    write_csv(run.token_shift_table, pd.DataFrame(ts["per_response"]))
    return {
        k: ts[k]
        for k in ("base", "control_finetuned_self", "top_shifted_tokens", "responses", "answers_analysed", "note")
        if k in ts
    }
