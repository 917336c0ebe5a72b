"""The pipeline: execute the stage notebooks in order with papermill into one run directory.

`<run_dir>/config.json` is the resolved configuration every notebook reads; `<run_dir>/notebooks/` holds the
executed notebooks; `<run_dir>/manifest.json` records git commit, package versions, input hashes, seed,
device and the wall time of each stage.
"""
from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

from . import data
from .config import Config, to_dict
from .rundir import device_info, git_commit, new_run_dir, package_versions, sha256_file, write_json


def notebooks_dir() -> Path:
    """The repository's notebooks/ (editable install), or $LIMA_REPRO_NOTEBOOKS, or ./notebooks."""
    candidates = [os.environ.get("LIMA_REPRO_NOTEBOOKS"), Path(__file__).resolve().parents[2] / "notebooks",
                  Path.cwd() / "notebooks"]
    for c in candidates:
        if c and (Path(c) / "01_curate.ipynb").exists():
            return Path(c)
    raise FileNotFoundError("cannot find the notebooks/ folder: run from the repository root or set LIMA_REPRO_NOTEBOOKS")


def run_pipeline(cfg: Config, kernel_name: str = "python3") -> Path:
    """Run every notebook in `cfg.notebooks` in order; returns the run directory."""
    import papermill as pm

    run_dir = Path(cfg.run_dir) if cfg.run_dir else new_run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.run_dir = str(run_dir.resolve())
    config_path = write_json(run_dir / "config.json", to_dict(cfg))
    inputs = [data.resolve_path(s) for s in (*cfg.curate.train_files, *cfg.curate.dev_files, *cfg.curate.test_files)]
    manifest = {
        "profile": cfg.profile, "started": datetime.now(timezone.utc).isoformat(), "git_commit": git_commit(),
        "packages": package_versions(), "seed": cfg.seed, "device": device_info(),
        "inputs": {str(p): sha256_file(p) for p in inputs if p.is_file()}, "stages": {}, "status": "running",
    }
    write_json(run_dir / "manifest.json", manifest)
    t_all = time.time()
    src = notebooks_dir()
    (run_dir / "notebooks").mkdir(exist_ok=True)
    for name in cfg.notebooks:
        t0 = time.time()
        try:
            pm.execute_notebook(
                str(src / f"{name}.ipynb"), str(run_dir / "notebooks" / f"{name}.ipynb"),
                parameters={"config_path": str(config_path)}, kernel_name=kernel_name, cwd=os.getcwd(),
                progress_bar=False, log_output=True,
            )
        except Exception as e:
            manifest["stages"][name] = {"wall_time_s": round(time.time() - t0, 2), "status": f"failed: {type(e).__name__}"}
            manifest["status"] = f"failed in {name}"
            write_json(run_dir / "manifest.json", manifest)
            raise
        manifest["stages"][name] = {"wall_time_s": round(time.time() - t0, 2), "status": "ok"}
        write_json(run_dir / "manifest.json", manifest)
    manifest["status"] = "ok"
    manifest["wall_time_s"] = round(time.time() - t_all, 2)
    write_json(run_dir / "manifest.json", manifest)
    return run_dir
