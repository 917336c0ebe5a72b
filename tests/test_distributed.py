"""Two CPU processes (gloo, launched by torchrun; `accelerate launch` uses the same environment variables on
GPUs) train exactly like one process: same global batch, token-weighted loss over the whole step."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lima_repro.config import load_config, to_dict
from lima_repro.curate import run_curate
from lima_repro.files import read_jsonl_plain
from lima_repro.train import run_train
from helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def _losses(train_dir):
    return [r["loss"] for r in read_jsonl_plain(Path(train_dir) / "metrics.jsonl") if r["type"] == "train"]


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
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
         "-m", "lima_repro", "train", "--config-json", str(cfg_file)],
        capture_output=True, text=True, timeout=280, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "ddp" / "train" / "train_info.json").read_text())
    assert info["processes"] == 2
    assert _losses(tmp_path / "ddp" / "train") == pytest.approx(reference, rel=1e-4)
    assert (tmp_path / "ddp" / "train" / "checkpoints" / "step-3" / "model.safetensors").exists()
