"""The run directory, the one contract between stages: `RunDir` owns every path of a run and every read of one; no
other module spells a run file's name.

    <run>/config.json, manifest.json, notebooks/      the resolved config, provenance, executed notebooks
    <run>/curate/{train,dev,test}.jsonl, datacard.json
    <run>/train/checkpoints/<epoch-N>/, checkpoints.json, metrics.jsonl, train_info.json, state/
    <run>/select/dev_generations.jsonl, selection.json   checkpoint selection on the dev set (LIMA sec. 3)
    <run>/generate/generations.jsonl, dev_generations.jsonl      (the latter: answers to the dev prompts)
    <run>/judge/judgments.jsonl, results.json, <table>.csv, token_shift.{json,csv}, alpaca_eval/, cache/
    <run>/annotations/<annotator>.jsonl                   human labels (annotate.ipynb)
    <run>/ablations/summary.{json,csv}, <condition>/      each condition is a run directory of its own; <run>/figures/
    <run>/mt_bench/model_answer/<model_id>.jsonl, judgments.jsonl, results.json, cache/   (FastChat's MT-Bench)
    <run>/alpaca_eval/<generator>/model_outputs.json, export.json, leaderboard.json     (the alpaca-eval command)

Every stage folder also holds its `config.json` and a `manifest.json` (`stage.Stage`: "running", then "ok" or
"failed: ..."); `RunDir.require_finished` refuses an earlier stage's folder that did not finish, while a folder with no
manifest (made by hand or imported) is taken as it is.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from .config import Config, ConfigError
from .data import DataError
from .files import path_faults, read_json, read_jsonl_plain
from .readers import read_results_object, read_summary_object

PROGRESS = "progress.json"  # inside train/state/: the optimizer step that state was saved at
STAGES = ("curate", "train", "select", "generate", "judge", "ablations", "figures", "mt_bench")


def checkpoint_name(step: int, epoch: int, at_epoch_end: bool) -> str:
    """`epoch-N` for a checkpoint saved at an epoch's end, `step-N` for one saved mid-epoch (max_steps)."""
    return f"epoch-{epoch}" if at_epoch_end else f"step-{step}"


def checkpoint_epoch(label: str) -> int | None:
    """The epoch of an `epoch-N` checkpoint label; None for `step-N`, `base` or imported systems."""
    m = re.fullmatch(r"epoch-(\d+)", label)
    return int(m.group(1)) if m else None


def alpaca_eval_files(folder: str | Path) -> dict[str, Path]:
    """The files of one AlpacaEval export folder (inside a run or not): AlpacaEval's `model_outputs.json`, what
    the export left out (`export.json`) and the leaderboard row `alpaca_eval` computed (`leaderboard.json`)."""
    folder = Path(folder)
    names = {"outputs": "model_outputs.json", "export": "export.json", "leaderboard": "leaderboard.json"}
    return {k: folder / name for k, name in names.items()}


class RunDir:
    """Paths and reads of one run directory (an ablation condition's sub-run is a RunDir too)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def of(cls, cfg: Config) -> RunDir:
        if not cfg.run_dir:
            raise ConfigError(
                "run_dir is not set: give --run-dir (CLI), `run_dir` (notebook), or call runs.new_run_dir(cfg) first"
            )
        return cls(cfg.run_dir)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def stage(self, name: str) -> Path:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
        return self.root / name

    # ---- the run as a whole ------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def notebooks(self) -> Path:
        return self.root / "notebooks"

    # ---- whether a stage finished ----------------------------------------------------------------------------
    def stage_manifest(self, name: str) -> Path:
        return self.stage(name) / "manifest.json"

    def stage_lock(self, name: str) -> Path:
        """Held (flock) by the one process writing the stage's folder (`stage.Stage`); gone when none is."""
        return self.stage(name) / ".lock"

    def stage_status(self, name: str) -> str | None:
        """The status in the stage's manifest.json ("running", "ok", "failed: ..."); None when it has none."""
        path = self.stage_manifest(name)
        if not path.is_file():
            return None
        try:
            status = read_json(path).get("status")
        except (ValueError, AttributeError):  # a manifest cut short or not an object
            return "unreadable manifest.json"
        return status if isinstance(status, str) else "unreadable manifest.json"

    def finished(self, name: str) -> bool:
        """True when the stage's folder is complete: its manifest says "ok", or it has no manifest (made by hand)."""
        return self.stage_status(name) in (None, "ok")

    def require_finished(self, name: str) -> None:
        """Refuse (DataError naming the folder and the fix) a stage folder whose manifest says it did not finish."""
        status = self.stage_status(name)
        if status in (None, "ok"):
            return
        why = "still running or killed" if status == "running" else "it failed"
        raise DataError(
            self.stage(name),
            None,
            f"the {name} stage did not finish (manifest.json status "
            f"{status.splitlines()[0][:200]!r}: {why}), so its files may be incomplete",
            f"rerun it (python -m lima_repro {name} --run-dir {self.root}) or wait for it to end",
        )

    # ---- curate --------------------------------------------------------------------------------------------
    def split(self, name: str) -> Path:
        """`train`, `dev` or `test` JSONL written by the curate stage."""
        return self.stage("curate") / f"{name}.jsonl"

    @property
    def datacard(self) -> Path:
        return self.stage("curate") / "datacard.json"

    def read_datacard(self) -> dict:
        return read_json(self.datacard)

    # ---- train ---------------------------------------------------------------------------------------------
    @property
    def checkpoints(self) -> Path:
        return self.stage("train") / "checkpoints"

    @property
    def checkpoint_index(self) -> Path:
        return self.stage("train") / "checkpoints.json"

    @property
    def metrics(self) -> Path:
        return self.stage("train") / "metrics.jsonl"

    @property
    def train_info(self) -> Path:
        return self.stage("train") / "train_info.json"

    @property
    def state(self) -> Path:
        """Resumable training state (model, optimizer, scheduler, RNG, progress.json)."""
        return self.stage("train") / "state"

    @property
    def state_partial(self) -> Path:
        """Where a new state is written before it replaces `state` (a kill never leaves half a state)."""
        return self.stage("train") / "state.partial"

    @property
    def tracker_logs(self) -> Path:
        """Local logs of the experiment trackers (`train.report_to`): `tensorboard --logdir <run>/train/trackers`."""
        return self.stage("train") / "trackers"

    def list_checkpoints(self) -> list[dict]:
        """Checkpoints of a finished train stage, oldest first: {name, path, step, epoch, eot_token, perplexity}."""
        self.require_finished("train")  # first: a killed stage says so (no manifest, e.g. made by hand: passes)
        if not self.checkpoint_index.is_file():
            raise FileNotFoundError(f"{self.checkpoint_index} not found: run the train stage first")
        return read_json(self.checkpoint_index)

    def read_metrics(self) -> list[dict]:
        return read_jsonl_plain(self.metrics)

    # ---- select --------------------------------------------------------------------------------------------
    @property
    def selection(self) -> Path:
        return self.stage("select") / "selection.json"

    @property
    def dev_generations(self) -> Path:
        return self.stage("select") / "dev_generations.jsonl"

    def read_selection(self) -> dict:
        self.require_finished("select")
        if not self.selection.is_file():
            raise FileNotFoundError(
                f"{self.selection} not found: run the select stage first "
                "(`python -m lima_repro select --run-dir ...` or notebooks/02b_select.ipynb)"
            )
        return read_json(self.selection)

    # ---- generate ------------------------------------------------------------------------------------------
    @property
    def generations(self) -> Path:
        return self.stage("generate") / "generations.jsonl"

    @property
    def reference_generations(self) -> Path:
        """Every model's answers to the dev prompts, each row with its `reference` answer (generate.dev_responses)."""
        return self.stage("generate") / "dev_generations.jsonl"

    # ---- judge ---------------------------------------------------------------------------------------------
    @property
    def results(self) -> Path:
        return self.stage("judge") / "results.json"

    @property
    def judgments(self) -> Path:
        return self.stage("judge") / "judgments.jsonl"

    def judge_table(self, name: str) -> Path:
        """One CSV per results table (pairwise, absolute, likert, safety, dialogue, lengths, agreement, ...)."""
        return self.stage("judge") / f"{name}.csv"

    @property
    def token_shift(self) -> Path:
        return self.stage("judge") / "token_shift.json"

    @property
    def token_shift_table(self) -> Path:
        return self.stage("judge") / "token_shift.csv"

    def alpaca_eval(self, system: str) -> Path:
        """Our responses in AlpacaEval's model_outputs.json format."""
        return self.stage("judge") / "alpaca_eval" / f"{system}.json"

    def read_results(self) -> dict | None:
        """judge/results.json, or None when the judge stage has not finished."""
        if not (self.results.is_file() and self.finished("judge")):
            return None
        return read_results_object(self.results)

    @property
    def annotations(self) -> Path:
        return self.root / "annotations"

    # ---- ablations and figures -----------------------------------------------------------------------------
    def ablation(self, condition: str) -> RunDir:
        return RunDir(self.stage("ablations") / condition)

    @property
    def ablation_summary(self) -> Path:
        return self.stage("ablations") / "summary.json"

    @property
    def ablation_table(self) -> Path:
        return self.stage("ablations") / "summary.csv"

    @property
    def ablation_error(self) -> Path:
        """In a condition's sub-run: the traceback of the stage that failed."""
        return self.root / "error.txt"

    # In a condition's sub-run, beside the stage folders: its summary row (ok or failed; summary.json merges them),
    # the `without` training set (LIMA Fig. 7: 1,000 ex. vs 1,030) and the scripted conversations the judge grades.
    condition_row = property(lambda self: self.root / "condition.json")
    without_multi_turn = property(lambda self: self.root / "train_without_multi_turn.jsonl")
    dialogue_transcripts = property(lambda self: self.root / "dialogue_transcripts.jsonl")

    def read_ablation_summary(self) -> dict | None:
        """ablations/summary.json, or None when the ablations stage has not finished."""
        if not (self.ablation_summary.is_file() and self.finished("ablations")):
            return None
        return read_summary_object(self.ablation_summary)

    @property
    def figures(self) -> Path:
        return self.stage("figures")

    # ---- MT-Bench (mt_bench.py) and AlpacaEval (export.py), as FastChat and alpaca_eval read them --------------
    @property
    def mt_bench_answer_dir(self) -> Path:
        """FastChat's `model_answer/` folder: one `<model_id>.jsonl` per model, as gen_judgment.py reads it."""
        return self.stage("mt_bench") / "model_answer"

    def mt_bench_answers(self, model_id: str) -> Path:
        return self.mt_bench_answer_dir / f"{model_id}.jsonl"

    @property
    def mt_bench_judgments(self) -> Path:
        return self.stage("mt_bench") / "judgments.jsonl"

    @property
    def mt_bench_results(self) -> Path:
        return self.stage("mt_bench") / "results.json"

    def read_mt_bench_results(self) -> dict | None:
        """mt_bench/results.json, or None when MT-Bench was not graded in this run."""
        ok = self.mt_bench_results.is_file() and self.finished("mt_bench")
        return read_json(self.mt_bench_results) if ok else None

    def alpaca_eval_export(self, generator: str) -> dict[str, Path]:
        """`alpaca_eval_files` of `<run>/alpaca_eval/<generator>/`."""
        return alpaca_eval_files(self.root / "alpaca_eval" / generator)

    def read_alpaca_eval_leaderboards(self) -> dict[str, dict]:
        """generator -> the leaderboard row `alpaca-eval --evaluate` stored in this run."""
        name = alpaca_eval_files(".")["leaderboard"].name
        found = sorted((self.root / "alpaca_eval").glob(f"*/{name}"))
        return {p.parent.name: read_json(p) for p in found}

    # ---- inputs: a config value when set, else the file the earlier stage wrote (which must have finished) ----
    def _upstream(self, stage: str, path: Path) -> Path:
        self.require_finished(stage)
        return path

    def train_file(self, cfg: Config) -> Path:
        return Path(cfg.train.train_file) if cfg.train.train_file else self._upstream("curate", self.split("train"))

    def eval_file(self, cfg: Config) -> Path:
        """Held-out examples with references: perplexity per epoch, checkpoint selection (the dev set)."""
        return Path(cfg.train.eval_file) if cfg.train.eval_file else self._upstream("curate", self.split("dev"))

    def prompts_file(self, cfg: Config) -> Path:
        return (
            Path(cfg.generate.prompts_file)
            if cfg.generate.prompts_file
            else self._upstream("curate", self.split("test"))
        )

    def generations_file(self, cfg: Config) -> Path:
        if cfg.judge.generations_file:
            return Path(cfg.judge.generations_file)
        return self._upstream("generate", self.generations)

    def judge_cache(self, cfg: Config, stage: str = "judge") -> Path:
        """Judgment cache folder: `judge.cache_dir` (shared across runs) or `<stage>/cache`."""
        return Path(cfg.judge.cache_dir) if cfg.judge.cache_dir else self.stage(stage) / "cache"

    def annotations_dir(self, cfg: Config) -> Path:
        return Path(cfg.judge.annotations_dir) if cfg.judge.annotations_dir else self.annotations


def new_run_dir(cfg: Config) -> RunDir:
    """Create `<output_root>/<timestamp>-<profile>` and record it in cfg.run_dir."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.output_root) / f"{stamp}-{cfg.profile}"
    path, i = base, 1
    while path.exists() or path.is_symlink():  # a dangling link is taken too: mkdir would fail on it
        path, i = Path(f"{base}-{i}"), i + 1
    with path_faults():  # output_root a symlink loop, a dangling link or read-only: one line, not a traceback
        path.mkdir(parents=True)
    cfg.run_dir = str(path.resolve())
    return RunDir(path)
