"""Super-Natural Instructions task files -> one example from each of n generation tasks (LIMA sec. 1: 50).

A task file is one JSON object (`Definition`, `Categories`, `Instances`, ...); the prompt is the task's
definition followed by the instance input, the response the instance's first reference output.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from . import DataError, StepLog, make_example, require_file


def task_files(specs: list[str | Path]) -> list[Path]:
    """Folders (their `task*.json`, or `tasks/task*.json`) and single files, sorted by name."""
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        require_file(p, "Natural Instructions tasks", "natinst.tasks")
        if p.is_dir():
            found = sorted(p.glob("task*.json")) or sorted(p.glob("tasks/task*.json"))
            if not found:
                raise DataError(p, None, "no task*.json files here", "point curate.natinst.tasks at the repo's tasks/")
            out += found
        else:
            out.append(p)
    return out


_FIX_TASK = "re-download the task file from allenai/natural-instructions, or remove it from curate.natinst.tasks"


def _strings(task: dict, key: str, path: Path, default: list[str]) -> list[str]:
    """A task field holding a list of strings (a plain string counts as one: old commits wrote Definition so)."""
    v = task.get(key, default)
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise DataError(path, f"key {key!r}", f"expected a list of strings, got {json.dumps(v)[:80]}", _FIX_TASK)
    return v


def _usable(inst, path: Path, i: int, log: StepLog) -> bool:
    """An instance with a non-empty input string and a non-empty first output string; wrong types are counted."""
    if not (
        isinstance(inst, dict)
        and isinstance(inst.get("input"), str)
        and isinstance(inst.get("output"), list)
        and inst["output"]
        and all(isinstance(o, str) for o in inst["output"])
    ):
        log.skip("natinst: instance without a string input and a list of string outputs", path, f"Instances[{i}]")
        return False
    return bool(inst["input"].strip() and inst["output"][0].strip())


def load_task(path: Path) -> dict:
    require_file(path, "task file", "natinst.tasks")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError as e:
        raise DataError(path, None, "JSON nested too deeply to read", _FIX_TASK) from e
    except UnicodeDecodeError as e:
        raise DataError(path, f"byte {e.start}", f"not valid UTF-8 ({e.reason})", "re-save the file as UTF-8") from e
    except json.JSONDecodeError as e:
        raise DataError(
            path,
            f"line {e.lineno}, column {e.colno}",
            f"invalid JSON ({e.msg})",
            "re-download the task file from allenai/natural-instructions",
        ) from e


def candidates(cfg, log: StepLog, rng: random.Random) -> list[dict]:
    """One seeded random instance from every eligible task (generation category, English), by task name."""
    cats = {c.lower() for c in cfg.categories}
    out = []
    for path in task_files(cfg.tasks):
        task = load_task(path)
        if not isinstance(task, dict) or not isinstance(task.get("Instances"), list):
            log.skip("natinst: task file without an Instances list", path, None)
            continue
        task_cats = {c.lower() for c in _strings(task, "Categories", path, [])}
        if not log.count("ni.generation_task", bool(task_cats & cats)):
            continue
        english = all(
            _strings(task, k, path, ["English"]) == ["English"] for k in ("Input_language", "Output_language")
        )
        if not log.count("ni.english", english or not cfg.english_only):
            continue
        usable = [x for i, x in enumerate(task["Instances"]) if _usable(x, path, i, log)]
        if not log.count("ni.has_instances", bool(usable)):
            continue
        inst = rng.choice(usable)
        prompt = f"{' '.join(_strings(task, 'Definition', path, [])).strip()}\n\n{inst['input'].strip()}"
        out.append(
            make_example(
                f"ni-{path.stem}",
                "natural_instructions",
                prompt,
                inst["output"][0].strip(),
                [f"task:{path.stem}"],
                {"task": path.stem},
            )
        )
    return out
