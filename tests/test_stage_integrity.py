"""Stage folders never look finished when they are not: a stage says "running" before it writes anything, readers
refuse an upstream folder that did not finish, a judge run where every request failed fails, the token-shift test
runs only after every judgment is on disk, and `judge.max_prompts` draws its prompts at random."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import ScriptJudge, generation_rows

from lima_repro import judge as judge_module
from lima_repro import select_checkpoint as select_module
from lima_repro.config import Config, JudgeConfig
from lima_repro.data import DataError
from lima_repro.files import read_jsonl_plain, write_json, write_jsonl
from lima_repro.judge import run_judge
from lima_repro.judging import Completion, Judge, JudgeError
from lima_repro.judging.runner import sample_prompts
from lima_repro.runs import RunDir
from lima_repro.select_checkpoint import run_select
from lima_repro.stage import Stage, StageBusy

ROOT = Path(__file__).resolve().parents[1]


def _cfg(tmp_path, rows=None, **judge) -> Config:
    cfg = Config(run_dir=str(tmp_path / "run"))
    if rows is not None:
        write_jsonl(tmp_path / "run" / "generate" / "generations.jsonl", rows)
    cfg.judge = JudgeConfig(token_shift=False, n_bootstrap=50, protocols=["pairwise"], **judge)
    return cfg


def _status(path) -> str:
    return json.loads((path / "manifest.json").read_text())["status"]


def test_a_rerun_is_running_from_its_first_write_and_old_results_are_not_trusted(tmp_path):
    cfg = _cfg(tmp_path, generation_rows())
    out = run_judge(cfg, judge=ScriptJudge())
    run = RunDir(cfg.run_dir)
    assert _status(out) == "ok" and run.read_results()["system"] == "epoch-2"
    seen = {}
    with pytest.raises(RuntimeError, match="boom"):
        with Stage(cfg, "judge"):
            seen["status"] = run.stage_status("judge")
            seen["results"] = run.read_results()  # the previous run's results.json is still on disk
            raise RuntimeError("boom")
    assert seen == {"status": "running", "results": None}
    assert _status(out) == "failed: RuntimeError: boom" and run.read_results() is None
    assert not run.finished("judge")


class ManifestWatcher(Judge):
    """Records the select stage's status when it is asked (the dev generations were written before that)."""

    kind = "watcher"

    def __init__(self, run: RunDir):
        self.run, self.status = run, None

    def identity(self):
        return {"kind": self.kind, "model": "w"}

    def complete_many(self, requests):
        self.status = self.run.stage_status("select")
        for i, _ in enumerate(requests):
            yield i, Completion(text="Score: 4")


def test_select_marks_itself_running_before_writing_and_samples_dev_prompts(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, max_prompts=3)
    run = RunDir(cfg.run_dir)
    dev = [
        {
            "id": f"d{i}",
            "source": "demo",
            "messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "answer"}],
        }
        for i in range(8)
    ]
    write_jsonl(run.split("dev"), dev)
    write_json(run.checkpoint_index, [{"name": "epoch-5", "path": "/ck/5", "step": 5, "epoch": 5}])
    write_json(run.stage_manifest("select"), {"status": "ok"})  # a previous select: must not survive the start
    statuses, asked = [], []

    def fake_generate(cfg, examples, targets, prompts_path, out_file):
        statuses.append(run.stage_status("select"))
        asked.extend(ex["id"] for ex in examples)
        rows = [
            {
                "checkpoint": "epoch-5",
                "checkpoint_path": "/ck/5",
                "prompt_id": ex["id"],
                "sample": 0,
                "messages": ex["messages"][:1],
                "response": "x",
                "tags": [],
            }
            for ex in examples
        ]
        write_jsonl(out_file, rows)
        return rows

    monkeypatch.setattr(select_module, "generate_rows", fake_generate)
    out = run_select(cfg, judge=ManifestWatcher(run))
    assert statuses == ["running"] and _status(out) == "ok"
    expected = sample_prompts([d["id"] for d in dev], 3, cfg.seed)
    assert asked == expected == ["d0", "d1", "d5"]  # not the first three
    assert run.read_selection()["prompt_ids"] == expected and run.read_selection()["chosen"] == "epoch-5"


@pytest.mark.parametrize(
    "status,why", [("running", "still running or killed"), ("failed: KeyboardInterrupt: ", "it failed")]
)
def test_judge_refuses_a_generate_stage_that_did_not_finish(tmp_path, status, why):
    cfg = _cfg(tmp_path, generation_rows()[:3])  # half the rows: the stage was killed halfway
    write_json(tmp_path / "run" / "generate" / "manifest.json", {"stage": "generate", "status": status})
    judge = ScriptJudge()
    with pytest.raises(DataError) as err:
        run_judge(cfg, judge=judge)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "run" / "generate") in msg and why in msg
    assert f"python -m lima_repro generate --run-dir {tmp_path / 'run'}" in msg
    assert judge.sent == 0 and not (tmp_path / "run" / "judge").exists()


def test_cli_judge_on_a_killed_generate_stage_is_one_line_and_status_2(tmp_path):
    _cfg(tmp_path, generation_rows()[:3])
    write_json(tmp_path / "run" / "generate" / "manifest.json", {"stage": "generate", "status": "running"})
    proc = subprocess.run(
        [sys.executable, "-m", "lima_repro", "judge", "--run-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert f"{tmp_path / 'run' / 'generate'}: the generate stage did not finish" in proc.stderr


def test_upstream_readers_refuse_unfinished_train_select_and_curate(tmp_path):
    cfg = _cfg(tmp_path)
    run = RunDir(cfg.run_dir)
    write_json(run.checkpoint_index, [{"name": "epoch-1", "path": "/x", "step": 1, "epoch": 1}])
    write_json(run.selection, {"chosen": "epoch-1", "path": "/x"})
    write_jsonl(run.split("test"), [])
    assert run.list_checkpoints()[0]["name"] == "epoch-1"  # no manifests: folders made by hand are taken as they are
    for stage, read in (
        ("train", run.list_checkpoints),
        ("select", run.read_selection),
        ("curate", lambda: run.prompts_file(cfg)),
    ):
        write_json(run.stage_manifest(stage), {"status": "running"})
        with pytest.raises(DataError, match=f"the {stage} stage did not finish"):
            read()
        write_json(run.stage_manifest(stage), {"status": "ok"})
        read()
    cfg.generate.prompts_file = str(tmp_path / "mine.jsonl")  # a file given in the config is not a stage's
    write_json(run.stage_manifest("curate"), {"status": "running"})
    assert run.prompts_file(cfg) == tmp_path / "mine.jsonl"


def test_a_stage_killed_before_its_index_was_written_says_it_did_not_finish(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="run the train stage first"):
        run.list_checkpoints()
    with pytest.raises(FileNotFoundError, match=r"run the select stage first .*notebooks/02b_select\.ipynb"):
        run.read_selection()
    for stage, read in (("train", run.list_checkpoints), ("select", run.read_selection)):
        write_json(run.stage_manifest(stage), {"status": "running"})  # killed before checkpoints.json/selection.json
        with pytest.raises(DataError, match=f"the {stage} stage did not finish"):
            read()


class DeadJudge(Judge):
    kind = "dead"

    def identity(self):
        return {"kind": self.kind, "model": "dead"}

    def complete_many(self, requests):
        for i, _ in enumerate(requests):
            yield i, Completion(error="APIConnectionError after 7 attempts: Connection refused")


def test_a_judge_run_where_every_request_failed_fails(tmp_path):
    cfg = _cfg(tmp_path, generation_rows())
    with pytest.raises(JudgeError, match=r"all 8 requests failed \(first: APIConnectionError") as err:
        run_judge(cfg, judge=DeadJudge())
    assert "\n" not in str(err.value) and "Fix: check that the server at judge.base_url answers" in str(err.value)
    out = tmp_path / "run" / "judge"
    assert _status(out).startswith("failed: JudgeError: judge dead:dead: all 8 requests failed")
    assert not (out / "results.json").exists() and RunDir(cfg.run_dir).read_results() is None


def test_token_shift_out_of_memory_does_not_lose_the_judge_results(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, generation_rows(ckpt_path=str(tmp_path / "ckpt")))
    cfg.judge.token_shift = True
    order = []

    def oom(cfg, rows, system):
        run = RunDir(cfg.run_dir)
        order.append((run.judgments.is_file(), run.results.is_file()))  # results.json: once, after this test
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(judge_module, "run_token_shift", oom)
    (tmp_path / "run" / "judge").mkdir(parents=True)
    (tmp_path / "run" / "judge" / "token_shift.json").write_text("{}")  # a previous run's: not kept as if current
    with pytest.warns(UserWarning, match="token-shift test skipped: out of memory"):
        out = run_judge(cfg, judge=ScriptJudge())
    res = RunDir(cfg.run_dir).read_results()
    assert order == [(True, False)] and _status(out) == "ok"
    assert res["pairwise"]["base"]["n"] == 4 and "out of memory (OutOfMemoryError)" in res["token_shift"]["error"]
    assert not (out / "token_shift.json").exists()


def test_max_prompts_draws_random_prompts_with_the_seed_and_records_them():
    ids = [f"p{i}" for i in range(10)]
    assert sample_prompts(ids, None, 0) == ids and sample_prompts(ids + ids, 20, 0) == ids
    picks = {s: sample_prompts(ids, 3, s) for s in range(8)}
    for s, got in picks.items():  # a random subset, in file order, the same for the same seed
        chosen = set(random.Random(s).sample(ids, 3))
        assert got == [i for i in ids if i in chosen] and got == sample_prompts(ids, 3, s)
    assert len({tuple(p) for p in picks.values()}) > 1 and any(p != ids[:3] for p in picks.values())


def test_judge_stage_judges_the_sampled_prompts(tmp_path):
    cfg = _cfg(tmp_path, generation_rows(), max_prompts=2)
    cfg.seed = 3
    out = run_judge(cfg, judge=ScriptJudge())
    expected = sample_prompts(["p1", "p2", "p3", "p4"], 2, 3)
    assert expected == ["p2", "p3"]  # not the first two
    res = json.loads((out / "results.json").read_text())
    assert (
        res["prompt_ids"] == expected
        and json.loads((out / "manifest.json").read_text())["judge"]["prompt_ids"] == expected
    )
    assert {j["prompt_id"] for j in read_jsonl_plain(out / "judgments.jsonl")} == set(expected)


HOLD_STAGE = """
import sys
from lima_repro.config import Config
from lima_repro.stage import Stage
with Stage(Config(run_dir=sys.argv[1]), "judge"):
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes stdin or kills this process
"""


def test_a_second_process_on_a_stage_folder_stops_at_once_naming_the_holder(tmp_path):
    run_dir = Path(_cfg(tmp_path, generation_rows()).run_dir)  # with generations: `judge` would start at once
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_STAGE, str(run_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    ) as holder:
        assert holder.stdout.readline() == b"holding\n"
        with pytest.raises(StageBusy) as busy:
            with Stage(Config(run_dir=str(run_dir)), "judge"):
                pytest.fail("entered a stage another process holds")
        assert str(busy.value) == (
            f"{run_dir / 'judge'} is being written by process {holder.pid} (another `judge` on this run): "
            "wait for it to finish or stop it, or give this one another --run-dir"
        )
        assert _status(run_dir / "judge") == "running"  # the holder's manifest, untouched
        proc = subprocess.run(
            [sys.executable, "-m", "lima_repro", "judge", "--run-dir", str(run_dir)],
            capture_output=True,
            text=True,
            env=env,
        )
        assert proc.returncode == 2 and proc.stderr.startswith(f"error: {run_dir / 'judge'} is being written by")
        holder.kill()  # a killed holder: flock dies with the process
    with Stage(Config(run_dir=str(run_dir)), "judge"):
        assert RunDir(str(run_dir)).stage_lock("judge").read_text() == str(os.getpid())
    assert not RunDir(str(run_dir)).stage_lock("judge").exists() and _status(run_dir / "judge") == "ok"


@pytest.mark.parametrize("var", ["WORLD_SIZE", "LIMA_REPRO_WORLD_SIZE"])
def test_a_process_launched_as_one_of_two_that_is_alone_refuses_to_start(tmp_path, monkeypatch, var):
    monkeypatch.setenv(var, "2")
    with pytest.raises(
        StageBusy, match=f"train: launched as 2 processes \\({var}=2\\) but this process is in a job of 1"
    ):
        with Stage(Config(run_dir=str(tmp_path / "run")), "train"):
            pytest.fail("started")
    assert not (tmp_path / "run" / "train" / "manifest.json").exists()
    monkeypatch.setenv(var, "1")
    with Stage(Config(run_dir=str(tmp_path / "run")), "train"):
        pass
    assert _status(tmp_path / "run" / "train") == "ok"
