"""Count how the whole malformed-input corpus ends, per class: every case of the folders (`jsonl/`, `stackexchange/`,
`wikihow/`, `reddit/`, `natinst/`, `baselines/`, `config/`, `set_strings.txt`) and every generated one (`hostile.py`,
`hostile_files.py`), each as `python -m lima_repro ...` in its own process, 60 s and 2 GiB of address space, as
`tests/test_bad_inputs.py` bounds them. A case ends as a clean one-line error (exit 2, one stderr line, no
traceback), accepted (exit 0), a traceback, a hang (killed at 60 s), a memory failure (MemoryError, a failed
allocation or a kill by signal) or otherwise (any other exit). CI does not run this: the tests run the same cases
and assert each one; this prints the counts a closing note states.

    PYTHONPATH=src python tests/bad_inputs/count.py [--jobs 2]    # from the repository root; minutes
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

import test_bad_inputs as t  # noqa: E402  (the tests' own case lists and bounded runner)
from bad_inputs.hostile import cases as hostile_cases  # noqa: E402
from bad_inputs.hostile_files import cases as file_cases  # noqa: E402

OUTCOMES = ("clean", "accepted", "traceback", "hang", "memory", "other")
MEMORY_SIGNS = ("MemoryError", "Cannot allocate memory", "bad_alloc", "out of memory")


def corpus(scratch: Path) -> list[tuple[str, str, list[str], Path]]:
    """(class, case, argv, cwd) of every case; the generated inputs and each case's run directory are written
    under `scratch`."""
    out: list[tuple[str, str, list[str], Path]] = []

    def add(kind: str, name: str, argv: list[str], cwd: Path = TESTS) -> None:
        out.append((kind, name, [a.replace("{run}", str(scratch / f"run-{len(out)}")) for a in argv], cwd))

    for name, sets, _ in t._cases():
        add("curate inputs", name, ["curate", *t.BASE, "--run-dir", "{run}", *sets])
    generations = t._set("judge.generations_file", str(t.CORPUS / "generations.jsonl"))
    for f in sorted((t.CORPUS / "baselines").iterdir()):
        sets = [*generations, *t._set("judge.baseline_files", {"b": str(f)})]
        add("judge baselines", f.name, ["judge", "--profile", "demo", "--run-dir", "{run}", *sets])
    for f in sorted((t.CORPUS / "config").glob("*.yaml")):
        add("config files", f.name, ["config", "--profile", "demo", "--config", str(f)])
    for f in sorted((t.CORPUS / "config").glob("*.json")):
        add("config files", f.name, ["curate", "--config-json", str(f), "--run-dir", "{run}"])
    for item in t._set_lines():
        add("--set strings", item, ["config", "--profile", "demo", "--set", item])
    for c in hostile_cases(scratch / "hostile"):
        add("hostile configs", c.name, c.argv, scratch / "hostile")
    for c in file_cases(scratch / "hostile_files"):
        add("hostile files", c.name, c.argv, scratch / "hostile_files" / c.name)
    return out


def outcome(argv: list[str], cwd: Path) -> str:
    try:
        p = t._run_bounded(argv, cwd)
    except subprocess.TimeoutExpired:
        return "hang"
    if any(sign in p.stderr for sign in MEMORY_SIGNS) or p.returncode < 0:
        return "memory"
    if "Traceback" in p.stderr:
        return "traceback"
    if p.returncode == 2 and len(p.stderr.splitlines()) == 1:
        return "clean"
    return "accepted" if p.returncode == 0 else "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lima-corpus-") as scratch:
        cases = corpus(Path(scratch))
        with ThreadPoolExecutor(args.jobs) as pool:
            ends = list(pool.map(lambda c: outcome(c[2], c[3]), cases))
    counts: dict[str, Counter] = {}
    for (kind, _, _, _), end in zip(cases, ends):
        counts.setdefault(kind, Counter())[end] += 1
    counts["all"] = sum(counts.values(), Counter())
    print(f"| class | cases | {' | '.join(OUTCOMES)} |\n|---|" + "---|" * (len(OUTCOMES) + 1))
    for kind, c in counts.items():
        print(f"| {kind} | {c.total()} | {' | '.join(str(c[o]) for o in OUTCOMES)} |")
    for (kind, name, _, _), end in zip(cases, ends):
        if end != "clean":
            print(f"{kind}: {name}: {end}")


if __name__ == "__main__":
    main()
