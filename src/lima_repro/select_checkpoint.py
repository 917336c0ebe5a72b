"""The select stage: `run_select(config) -> <run_dir>/select`, checkpoint selection on the dev set (LIMA sec. 3).

(Named select_checkpoint.py, not select.py, which would shadow the standard library's `select` module.)

The paper picks its checkpoint between epochs 5 and 10 by the quality of generations on 50 dev prompts (held-out
perplexity rises while quality does too, so perplexity cannot choose). This stage samples dev-set responses with
every checkpoint inside `judge.selection_window` (all checkpoints when none is inside) to `judge.max_prompts` dev
prompts drawn at random with the run's seed (as the judge stage draws its test prompts), grades them with the 1-6
Likert protocol and records the best in `select/selection.json`, which `generate.checkpoints: selected` reads.
"""

from __future__ import annotations

from pathlib import Path

from . import analysis, data
from .config import Config
from .files import read_jsonl_plain, write_json
from .generate import generate_rows
from .judging import make_judge
from .judging.runner import judge_rows, sample_prompts
from .runs import RunDir, checkpoint_epoch
from .sampling import sampling_record
from .stage import Stage


def in_window(label: str, window) -> bool:
    """The one window rule of this stage: an `epoch-N` checkpoint with N inside `judge.selection_window`
    (a `step-N` checkpoint, saved mid-epoch, never is)."""
    epoch = checkpoint_epoch(label)
    return epoch is not None and window[0] <= epoch <= window[1]


def run_select(cfg: Config, judge=None) -> Path:
    """Sample dev-set responses with each checkpoint in the window, judge them, choose; returns `<run_dir>/select`.
    `judge` may be passed in (tests); default = the one `cfg.judge` names."""
    run = RunDir.of(cfg)
    ckpts = run.list_checkpoints()
    pool = [c for c in ckpts if in_window(c["name"], cfg.judge.selection_window)] or ckpts
    dev = run.eval_file(cfg)
    examples = data.read_examples(dev, ends_with=None)
    keep = set(sample_prompts([ex["id"] for ex in examples], cfg.judge.max_prompts, cfg.seed))
    examples = [ex for ex in examples if ex["id"] in keep]
    with Stage(cfg, "select", inputs=[dev]) as st:  # marked running before the dev generations are written
        generate_rows(cfg, examples, [(c["name"], c["path"]) for c in pool], dev, run.dev_generations)
        choose_checkpoint(cfg, run.dev_generations, judge, generation=sampling_record(cfg.generate))
    return st.out


def select_checkpoint(cfg: Config, generations_file: str | Path, judge=None, generation: dict | None = None) -> dict:
    """`choose_checkpoint` as a select stage of its own (dev-set generations made elsewhere)."""
    with Stage(cfg, "select", inputs=[generations_file]):
        return choose_checkpoint(cfg, generations_file, judge, generation)


def choose_checkpoint(cfg: Config, generations_file: str | Path, judge=None, generation: dict | None = None) -> dict:
    """Judge dev-set generations of several checkpoints with the Likert protocol and choose the best mean score
    inside `judge.selection_window` epochs (LIMA sec. 3); writes `<run_dir>/select/selection.json` (inside the
    select stage the caller opened). `generation`: how the dev-set responses were sampled, recorded with the choice."""
    rows = read_jsonl_plain(generations_file)
    labels = list(dict.fromkeys(r["checkpoint"] for r in rows if r["checkpoint"] != "base"))
    if not labels:
        raise data.DataError(
            generations_file,
            None,
            "no generations of a trained checkpoint to choose from (only `base` rows, or no rows)",
            "generate dev-set responses with the train stage's checkpoints (python -m lima_repro select --run-dir ...)",
        )
    lo, hi = cfg.judge.selection_window
    run = RunDir.of(cfg)
    judge = judge or make_judge(cfg.judge)
    judged, stats = judge_rows(
        judge, cfg.judge, rows, labels[0], labels[1:], ["likert"], run.judge_cache(cfg, "select")
    )
    scores = {lab: analysis.likert_summary([j for j in judged if j["system"] == lab]) for lab in labels}
    window = [lab for lab in labels if in_window(lab, (lo, hi))]
    chosen = max(
        window or labels,
        key=lambda lab: (scores[lab]["mean"] if scores[lab]["mean"] is not None else -1, checkpoint_epoch(lab) or 0),
    )
    why = (
        f"highest mean 1-6 helpfulness ({scores[chosen]['mean']}) on {scores[chosen]['n']} dev prompts among "
        + (f"epochs {lo}-{hi} (LIMA sec. 3)" if window else f"all checkpoints (none inside epochs {lo}-{hi})")
        + f", judged by {judge.name}"
    )
    sel = {
        "chosen": chosen,
        "path": next(r["checkpoint_path"] for r in rows if r["checkpoint"] == chosen),
        "why": why,
        "scores": scores,
        "window": [lo, hi],
        "requests": stats,
        "prompt_ids": list(dict.fromkeys(r["prompt_id"] for r in rows)),  # the dev prompts judged
        **({"generation": generation} if generation else {}),
    }
    write_json(run.selection, sel)
    return sel
