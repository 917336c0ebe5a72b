"""Two CPU processes (gloo, launched by torchrun; `accelerate launch` uses the same environment variables on
GPUs) train exactly like one process: same global batch, token-weighted loss over the whole step, under DDP and
under FSDP2 (sharded). Launches start from any folder, and processes that do not form the job they were launched as
refuse to start.

Run as a script (under torchrun), this file is the FSDP worker: `_train_sharded_on_cpu`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from helpers import tiny_overrides
from safetensors.torch import load_file
from torch.distributed.tensor import DTensor

from lima_repro import train as train_module
from lima_repro.cli import main as cli_main
from lima_repro.config import load_config, to_dict
from lima_repro.curate import run_curate
from lima_repro.files import read_jsonl_plain
from lima_repro.pipeline import (
    LaunchError,
    accelerate_config,
    launch_env,
    launched_world_size,
    run_pipeline,
    train_command,
)
from lima_repro.train import run_train

ROOT = Path(__file__).resolve().parents[1]


def _losses(train_dir):
    return [r["loss"] for r in read_jsonl_plain(Path(train_dir) / "metrics.jsonl") if r["type"] == "train"]


def _torchrun(port: int, *target: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port), *target],
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
        cwd=cwd,
    )


def _reference_and_launch_config(tmp_path, tiny_llama, name: str, extra: dict) -> tuple[list[float], Path, dict]:
    """One process's losses, and the config.json and environment of the same run (in `name`) for 2 CPU processes."""
    single = load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path / "single", **extra))
    run_curate(single)
    reference = _losses(run_train(single))
    launched = load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path / name, **extra))
    run_curate(launched)
    cfg_file = tmp_path / name / "config.json"
    cfg_file.write_text(json.dumps(to_dict(launched)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(ROOT / "src")}
    return reference, cfg_file, env


@pytest.mark.multiprocess
def test_two_process_ddp_matches_single_process(tmp_path, tiny_llama):
    extra = {"train.max_steps": 3, "train.residual_dropout": 0.0, "train.epochs": 1}
    reference, cfg_file, env = _reference_and_launch_config(tmp_path, tiny_llama, "ddp", extra)
    proc = _torchrun(29517, "-m", "lima_repro", "train", "--config-json", str(cfg_file), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "ddp" / "train" / "train_info.json").read_text())
    assert info["processes"] == 2
    assert _losses(tmp_path / "ddp" / "train") == pytest.approx(reference, rel=1e-4)
    assert (tmp_path / "ddp" / "train" / "checkpoints" / "step-3" / "model.safetensors").exists()


@pytest.mark.multiprocess
def test_pipeline_launches_training_as_its_own_command(tmp_path, tiny_llama, monkeypatch):
    """`run --launcher CMD`: the train stage runs as a separate multi-process command (2 CPU processes, gloo)."""
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_llama, tmp_path / "run", **{"train.max_steps": 2, "train.epochs": 1, "notebooks": ["02_train"]}
        ),
    )
    run_curate(cfg)
    for k, v in {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)  # the pipeline sets it on a machine without GPUs
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # not the repository root
    launcher = f"{sys.executable} -m torch.distributed.run --nproc_per_node 2 --master_port 29519"
    assert run_pipeline(cfg, launcher=launcher) == (tmp_path / "run").resolve()
    info = json.loads((tmp_path / "run" / "train" / "train_info.json").read_text())
    assert info["processes"] == 2 and info["steps_total"] == 2
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["02_train"]["status"] == "ok"
    assert manifest["stages"]["02_train"]["launched"].endswith(
        f"lima_repro train --config-json {(tmp_path / 'run' / 'config.json').resolve()}"
    )
    assert len(read_jsonl_plain(tmp_path / "run" / "train" / "metrics.jsonl")) == 2 + 2  # one writer: 2 steps, 2 evals


def test_accelerate_launcher_uses_the_packaged_config_and_one_process_per_gpu(tmp_path, monkeypatch):
    """The accelerate command names its config by absolute path (any folder works) and starts one process per GPU
    (the config's own num_processes, 8, started 8 copies on any machine); the launched processes are told how many
    they should be."""
    monkeypatch.chdir(tmp_path)
    cmd = train_command("accelerate", Path("c.json"), gpus=2)
    fsdp = ROOT / "src" / "lima_repro" / "accelerate_configs" / "fsdp.yaml"
    assert cmd == [
        *("accelerate", "launch", "--config_file", str(fsdp), "--num_processes", "2"),
        *("-m", "lima_repro", "train", "--config-json", "c.json"),
    ]
    assert accelerate_config() == fsdp and fsdp.is_file() and (ROOT / "configs" / "accelerate" / "fsdp.yaml").is_file()
    assert launched_world_size(cmd) == 2 and launch_env(cmd)["LIMA_REPRO_WORLD_SIZE"] == "2"
    with pytest.raises(LaunchError, match="--launcher accelerate: FSDP needs GPUs and none is visible"):
        train_command("accelerate", Path("c.json"), gpus=0)
    sizes = {
        "torchrun --nproc_per_node 4": 4,
        "torchrun --nnodes=2 --nproc-per-node=8": 16,
        "torchrun --nnodes 1:2 --nproc_per_node 8": None,  # elastic: the job's size is not known in advance
        f"accelerate launch --config_file {accelerate_config('fsdp-multinode')}": 32,
        f"accelerate launch --config_file {accelerate_config('ddp')} --num_processes 3": 3,
        "python -m mylauncher": None,
    }
    for launcher, n in sizes.items():
        assert launched_world_size(train_command(launcher, Path("c.json"))) == n, launcher
        assert launch_env(train_command(launcher, Path("c.json"))).get("LIMA_REPRO_WORLD_SIZE") == (
            None if n is None else str(n)
        )


@pytest.mark.multiprocess
def test_a_launch_that_starts_fewer_processes_than_asked_refuses_to_train(tmp_path, tiny_llama, capfd):
    """accelerate's FSDP config with --cpu starts one process whatever --num_processes says: it trained alone and
    exited 0; now it stops before the stage writes anything (so do N copies that each find themselves alone)."""
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(tiny_llama, tmp_path / "run", **{"train.max_steps": 1, "notebooks": ["02_train"]}),
    )
    run_curate(cfg)
    launcher = (
        f"{sys.executable} -m accelerate.commands.launch --config_file {accelerate_config()} --cpu --num_processes 2"
    )
    with pytest.raises(subprocess.CalledProcessError):
        run_pipeline(cfg, launcher=launcher)
    err = capfd.readouterr().err
    assert "error: train: launched as 2 processes (LIMA_REPRO_WORLD_SIZE=2) but this process is in a job of 1" in err
    assert not (tmp_path / "run" / "train" / "manifest.json").exists()


@pytest.mark.multiprocess
@pytest.mark.parametrize("frozen", [False, True], ids=["full", "freeze_embeddings"])
def test_two_process_fsdp2_shards_and_matches_single_process(tmp_path, tiny_llama, frozen):
    """FSDP2 (`fully_shard`, what configs/accelerate/fsdp.yaml runs on GPUs) on 2 CPU processes: every parameter is
    a DTensor holding half the model, the losses equal one process's, and the gathered checkpoint is whole (with
    `train.freeze_embeddings` its trained EOT rows are merged back into the sharded embedding and head first, after
    the held-out evaluation that precedes the checkpoint left the root's parameters gathered)."""
    extra = {"train.max_steps": 2, "train.residual_dropout": 0.0, "train.epochs": 1, "train.freeze_embeddings": frozen}
    reference, cfg_file, env = _reference_and_launch_config(tmp_path, tiny_llama, "fsdp", extra)
    proc = _torchrun(29527 + frozen, str(Path(__file__).resolve()), str(cfg_file), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shards = [json.loads((tmp_path / "fsdp" / f"shards-{r}.json").read_text()) for r in (0, 1)]
    assert all(s["dtensors"] for s in shards) and shards[0]["global"] == shards[1]["global"]
    assert shards[0]["local"] + shards[1]["local"] == shards[0]["global"]  # each process holds its half only
    # held-out evaluation (before training, after the epoch) leaves no gathered copy of the root's parameters
    after_eval = [json.loads((tmp_path / "fsdp" / f"after-eval-{r}.json").read_text()) for r in (0, 1)]
    assert after_eval[0] == after_eval[1] == [True, True]
    assert _losses(tmp_path / "fsdp" / "train") == pytest.approx(reference, rel=1e-6)
    whole = load_file(tmp_path / "fsdp" / "train" / "checkpoints" / "step-2" / "model.safetensors")
    alone = load_file(tmp_path / "single" / "train" / "checkpoints" / "step-2" / "model.safetensors")
    assert whole.keys() == alone.keys()
    for k in alone:
        torch.testing.assert_close(whole[k], alone[k], rtol=1e-4, atol=1e-6, msg=k)


class _FSDPOnCPU(Accelerator):
    """accelerate maps CPU processes to DDP (MULTI_CPU) whatever the config says; this forces its FSDP2 path."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state.distributed_type = DistributedType.FSDP
        self.state.fsdp_plugin = FullyShardedDataParallelPlugin(
            fsdp_version=2, auto_wrap_policy="transformer_based_wrap", state_dict_type="FULL_STATE_DICT"
        )

    def get_state_dict(self, model, unwrap=True):
        # its FSDP2 state dict (torch's get_model_state_dict with cpu_offload) comes back as ungathered DTensors on
        # CPU processes; gathered here, on every rank, as on GPUs
        state = super().get_state_dict(model, unwrap)
        return {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in state.items()}


def _train_sharded_on_cpu(config_json: str) -> None:
    """torchrun worker: `python -m lima_repro train` under FSDP2, recording how each process's parameters are held."""
    prepare = train_module.prepare_training

    def recording(acc, *args, **kwargs):
        loss_model, optimizer, scheduler = prepare(acc, *args, **kwargs)
        params = list(loss_model.parameters())
        record = {
            "dtensors": all(isinstance(p, DTensor) for p in params),
            "local": sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in params),
            "global": sum(p.numel() for p in params),
        }
        (Path(config_json).parent / f"shards-{acc.process_index}.json").write_text(json.dumps(record))
        return loss_model, optimizer, scheduler

    evaluate = train_module.evaluate_perplexity
    after_eval = []

    def recording_eval(loss_model, *args, **kwargs):  # are the parameters back in their shards after evaluation?
        out = evaluate(loss_model, *args, **kwargs)
        after_eval.append(all(isinstance(p, DTensor) for p in loss_model.parameters()))
        rank = torch.distributed.get_rank()
        (Path(config_json).parent / f"after-eval-{rank}.json").write_text(json.dumps(after_eval))
        return out

    train_module.Accelerator, train_module.prepare_training = _FSDPOnCPU, recording
    train_module.evaluate_perplexity = recording_eval
    sys.exit(cli_main(["train", "--config-json", config_json]))


if __name__ == "__main__":
    _train_sharded_on_cpu(sys.argv[1])
