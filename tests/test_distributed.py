"""Two CPU processes (gloo, launched by torchrun; `accelerate launch` uses the same environment variables on
GPUs) train exactly like one process: same global batch, token-weighted loss over the whole step."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from helpers import tiny_overrides

from lima_repro.config import load_config, to_dict
from lima_repro.curate import run_curate
from lima_repro.files import read_jsonl_plain
from lima_repro.pipeline import run_pipeline, train_command
from lima_repro.train import run_train

ROOT = Path(__file__).resolve().parents[1]


def _losses(train_dir):
    return [r["loss"] for r in read_jsonl_plain(Path(train_dir) / "metrics.jsonl") if r["type"] == "train"]


@pytest.mark.multiprocess
def test_two_process_ddp_matches_single_process(tmp_path, tiny_llama):
    extra = {"train.max_steps": 3, "train.residual_dropout": 0.0, "train.epochs": 1}
    single = load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path / "single", **extra))
    run_curate(single)
    reference = _losses(run_train(single))

    ddp = load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path / "ddp", **extra))
    run_curate(ddp)
    cfg_file = tmp_path / "ddp" / "config.json"
    cfg_file.write_text(json.dumps(to_dict(ddp)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            "29517",
            "-m",
            "lima_repro",
            "train",
            "--config-json",
            str(cfg_file),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
        cwd=tmp_path,
    )
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
    for k, v in {"OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": str(ROOT / "src")}.items():
        monkeypatch.setenv(k, v)
    launcher = f"{sys.executable} -m torch.distributed.run --nproc_per_node 2 --master_port 29519"
    assert run_pipeline(cfg, launcher=launcher) == (tmp_path / "run").resolve()
    info = json.loads((tmp_path / "run" / "train" / "train_info.json").read_text())
    assert info["processes"] == 2 and info["steps_total"] == 2
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["stages"]["02_train"]["status"] == "ok"
    assert manifest["stages"]["02_train"]["launched"].endswith(
        f"lima_repro train --config-json {(tmp_path / 'run' / 'config.json').resolve()}"
    )
    assert train_command("accelerate", Path("c.json")) == [
        "accelerate",
        "launch",
        "--config_file",
        "configs/accelerate/fsdp.yaml",
        "-m",
        "lima_repro",
        "train",
        "--config-json",
        "c.json",
    ]


def test_shipped_fsdp_configs():
    """Full shard per decoder layer, bf16, activation checkpointing, on one node and on several."""
    for name, machines in (("fsdp", 1), ("fsdp-multinode", 4)):
        c = load_config_from_file(str(ROOT / "configs" / "accelerate" / f"{name}.yaml"))
        f = c.fsdp_config
        assert (c.distributed_type.value, c.mixed_precision, c.num_machines, c.num_processes) == (
            "FSDP",
            "bf16",
            machines,
            8 * machines,
        )
        assert (f["fsdp_auto_wrap_policy"], f["fsdp_reshard_after_forward"], f["fsdp_activation_checkpointing"]) == (
            "TRANSFORMER_BASED_WRAP",
            True,
            True,
        )
