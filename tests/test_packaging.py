"""pyproject.toml and environment.yml name the same dependencies; notebooks are committed stripped."""

import json
import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert conda_python == "python=3.11"
    assert "-e ." in pip and pip.index("torch==2.13.0") == 0  # torch first: the CPU wheel, not the CUDA stack
    core = set(project["dependencies"])
    extras = re.search(r"^EXTRAS := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split(",")
    demo = {p for extra in extras for p in project["optional-dependencies"][extra]}  # what make demo installs
    assert core | demo == {p for p in pip if p != "-e ."}


def test_notebooks_are_committed_without_outputs():
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code), nb.name
        params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
        source = "".join(params[0]["source"]) if params else ""
        assert len(params) == 1 and "# type:" in source, nb.name  # papermill --help-notebook documents them
