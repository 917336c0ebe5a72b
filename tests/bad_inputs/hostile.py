"""Hostile configuration inputs (issue 24), generated rather than kept as files: most are large or built from a
pattern (an alias bomb, 100,000 nested brackets, a 5,000-digit number), and each class is a few lines here.

`cases(folder)` writes the files a case needs into `folder` and returns one `Case` per input: the command-line
arguments after `python -m lima_repro` and the text its one error line must hold. `tests/test_bad_inputs.py`
runs each in its own process, bounded in time and memory. `RUN` is the name of a finished-looking run directory
(a config.json and a stage file) some cases point `--run-dir` at: none of them may change it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

KEY = "sk-proj-7f3a9c1e5b2d8f4a6c0e9b7d5f3a1c8e"  # a made-up key: never to appear in any error line
RUN = "run"


@dataclass
class Case:
    name: str
    argv: list[str]
    named: str  # the error line must hold this (the file, the --set key, or what is wrong)


def laughs(levels: int = 9, width: int = 10) -> str:
    """The "billion laughs" in YAML flow style: each level a list of `width` aliases to the one before, so
    `levels` short lines expand to width**levels strings (a billion with the defaults)."""
    rows = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(rows) + "\n"


def nested(depth: int, open_: str = "[", close: str = "]", inner: str = "") -> str:
    return open_ * depth + inner + close * depth


def cases(folder: Path | None = None) -> list[Case]:
    """The cases, their files written into `folder`; with None, only their names and arguments (for collecting)."""
    write = folder is not None
    folder = folder or Path("unwritten")
    run = folder / RUN
    if write:
        (run / "curate").mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text('{"profile": "demo"}\n')
        (run / "curate" / "train.jsonl").write_text('{"id": "kept"}\n')

    def yaml_file(name: str, text: str) -> Path:
        if write:
            (folder / name).write_text(text, encoding="utf-8")
        return folder / name

    out: list[Case] = []

    def config(name: str, text: str, named: str = "") -> None:
        f = yaml_file(name, text)
        out.append(Case(f"--config {name}", ["config", "--profile", "demo", "--config", str(f)], named or name))

    def config_json(name: str, text: str, named: str = "") -> None:
        f = yaml_file(name, text)
        argv = ["curate", "--config-json", str(f), "--run-dir", str(run)]
        out.append(Case(f"--config-json {name}", argv, named or name))

    def set_(name: str, item: str, named: str, command: str = "config") -> None:
        extra = ["--run-dir", str(run)] if command != "config" else []
        out.append(Case(f"--set {name}", [command, "--profile", "demo", *extra, "--set", item], named))

    # aliases: a few lines that expand to a billion strings
    config("laughs.yaml", "ablations:\n  common:\n" + "".join(f"    {x}" for x in laughs().splitlines(True)))
    set_("laughs", "ablations.common={" + laughs().replace("\n", ", ").rstrip(", ") + "}", "alias", "curate")
    config("merge_alias.yaml", "base: &b {epochs: 2}\ntrain:\n  <<: *b\n", "alias")
    # nesting: a RecursionError in a recursive reader
    config("deep_flow.yaml", "ablations:\n  common:\n    x: " + nested(100_000) + "\n", "nested deeper than 32")
    config("deep_block.yaml", "".join(f"{'  ' * i}k{i}:\n" for i in range(40)) + "  " * 40 + "v: 1\n", "nested")
    set_("deep", "ablations.common=" + nested(20_000, "{a: ", "}", "1"), "nested deeper than 32")
    config_json("deep_list.json", nested(100_000), "nested deeper than 32")
    config_json("deep_object.json", nested(100, '{"a": ', "}", "1"), "nested deeper than 32")
    # keys: not text, or twice
    config("int_key.yaml", "train:\n  1: 2\n", "is not text")
    config("null_key.yaml", "null: 3\n", "is not text")
    config("bool_key.yaml", "train:\n  yes: 1\n", "is not text")
    config("list_key.yaml", "? [a, b]\n: 1\n", "list_key.yaml")
    config("duplicate_key.yaml", "train:\n  epochs: 2\n  lr: 1e-5\n  epochs: 3\n", "appears twice")
    config_json("duplicate_key.json", '{"train": {"epochs": 2}, "train": {"epochs": 3}}', "appears twice")
    # numbers Python will not read, and counts no run could use
    digits = "9" * 5000
    config("huge_int.yaml", f"train:\n  epochs: {digits}\n", "5,000 characters")
    set_("huge_int", f"train.epochs={digits}", "train.epochs")
    config_json("huge_int.json", '{"train": {"epochs": ' + digits + "}}", "5,000 digits")
    for item in (
        "train.epochs=1000000000",
        "train.max_length=1000000000000",
        "generate.num_samples=10000000",
        "generate.max_new_tokens=1000000000000",
        "judge.n_bootstrap=1000000000",
        "judge.timeout_s=1e12",
    ):
        set_(item, item, item.split("=")[0] + " must be at most")
    # size: a config file far larger than any config, or one that never ends
    config("huge_file.yaml", "# padding\n" * 30_000, "larger than 256 KiB")
    config_json("huge_file.json", json.dumps({"note": "x" * 300_000}), "larger than 256 KiB")
    out.append(Case("--config /dev/zero", ["config", "--config", "/dev/zero"], "larger than 256 KiB"))
    # paths: notebooks and profile outside the package and output_root
    set_("notebooks ../", 'notebooks=["../../../tmp/evil"]', "not a notebook of the package")
    set_("profile ../", "profile=../../X", "profile must be a plain name", "curate")
    config("profile_path.yaml", "profile: /etc\n", "profile must be a plain name")
    # a key typed where it does not belong: never echoed
    out.append(Case("key as positional", [KEY], "invalid choice"))
    out.append(Case("key as --profile", ["config", "--profile", KEY], "unknown profile"))
    out.append(Case("key as --config", ["config", "--config", KEY], "file not found"))
    set_("key without =", KEY, "expected KEY=VALUE")
    set_("key in bad YAML", f"judge.api_key_env=[{KEY}", "judge.api_key_env")
    set_("key as a count", f"train.epochs={KEY}", "train.epochs")
    config("key_as_key.yaml", f"{KEY}: 1\n", "unknown config key")
    return out
