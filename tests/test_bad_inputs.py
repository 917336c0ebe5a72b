"""The malformed-input corpus (tests/bad_inputs/) through the CLI: every case exits with status 2 and one stderr
line that names the file (or the config key) and holds no traceback; dirty rows of raw dumps are accepted as
counted skips in the data card. Most cases call `cli.main` in-process (a subprocess pays ~3 s of imports); a few
run `python -m lima_repro` for real."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from bad_inputs.hostile import KEY as HOSTILE_KEY
from bad_inputs.hostile import RUN as HOSTILE_RUN
from bad_inputs.hostile import cases as hostile_cases
from bad_inputs.hostile_files import KEPT
from bad_inputs.hostile_files import cases as file_cases

from lima_repro import cli
from lima_repro.files import sha256_file
from lima_repro.sources import se_archive

CORPUS = Path(__file__).parent / "bad_inputs"
BASE = ["--profile", "demo", "--config", str(CORPUS / "curate_base.yaml")]


def _set(key: str, value) -> list[str]:
    return ["--set", f"{key}={json.dumps(value)}"]  # JSON is YAML: paths with any characters stay strings


def run(capsys, argv: list[str]) -> tuple[int, list[str]]:
    code = cli.main(argv)
    return code, capsys.readouterr().err.splitlines()


def assert_clear(code: int, lines: list[str], named: str) -> None:
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and named in lines[0], lines[0]


def curate(tmp_path, *sets: list[str]) -> list[str]:
    return ["curate", *BASE, "--run-dir", str(tmp_path / "run"), *[a for s in sets for a in s]]


# ---- (case, --set of the input, what the error line must name) ------------------------------------------------
def _cases() -> list[tuple[str, list[str], str]]:
    cases = []
    for f in sorted((CORPUS / "jsonl").iterdir()):
        key = "curate.test_files" if f.name.startswith("test_") else "curate.train_files"
        cases.append((f"jsonl/{f.name}", _set(key, [str(f)]), f.name))
    for case in sorted((CORPUS / "stackexchange").iterdir()):
        if case.name != "dirty_rows":
            dump = next(case.iterdir())  # the site folder or the site's .7z
            cases.append((f"stackexchange/{case.name}", _set("curate.stackexchange.dumps", [str(dump)]), case.name))
    for f in sorted((CORPUS / "wikihow").iterdir()):
        if f.name != "dirty_rows.csv":
            extra = _set("curate.wikihow.category_column", "cat") if "bad_category" in f.name else []
            cases.append((f"wikihow/{f.name}", _set("curate.wikihow.files", [str(f)]) + extra, f.name))
    for f in sorted((CORPUS / "reddit").iterdir()):
        if f.name != "dirty_rows.zst":
            cases.append((f"reddit/{f.name}", _set("curate.askreddit.submissions", [str(f)]), f.name))
            cases.append((f"reddit-wp/{f.name}", _set("curate.writingprompts.submissions", [str(f)]), f.name))
    for case in sorted((CORPUS / "natinst").iterdir()):
        if case.name != "dirty_instances":
            cases.append((f"natinst/{case.name}", _set("curate.natinst.tasks", [str(case)]), case.name))
    missing = str(CORPUS / "no_such_input")
    for key in (
        "curate.train_files",
        "curate.dev_files",
        "curate.test_files",
        "curate.stackexchange.dumps",
        "curate.wikihow.files",
        "curate.askreddit.submissions",
        "curate.natinst.tasks",
        "curate.se_dialogue.dumps",
    ):
        cases.append((f"missing/{key}", _set(key, [missing]), "no_such_input"))
    return cases


@pytest.mark.parametrize("case,sets,named", _cases(), ids=[c[0] for c in _cases()])
def test_curate_input_is_one_clear_line(tmp_path, capsys, case, sets, named):
    assert_clear(*run(capsys, curate(tmp_path, sets)), named)


def test_big_fields_fail_fast_and_small(tmp_path, capsys):
    """A 50 MB XML attribute and a 10 MB JSONL line: a clear error, in well under a second each of parsing."""
    site = tmp_path / "huge" / "math.stackexchange.com"
    site.mkdir(parents=True)
    (site / "Posts.xml").write_bytes(
        b'<?xml version="1.0"?>\n<posts>\n  <row Id="1" PostTypeId="1" Score="5" Body="'
        + b"a" * 50_000_000
        + b'" />\n</posts>\n'
    )
    code, lines = run(capsys, curate(tmp_path, _set("curate.stackexchange.dumps", [str(site)])))
    assert_clear(code, lines, "Posts.xml:line 3: a row longer than 4 MiB")
    line = json.dumps(
        {
            "messages": [
                {"role": "user", "content": "Summarise this."},
                {"role": "assistant", "content": "x" * 10_000_000},
            ]
        }
    )
    (tmp_path / "long.jsonl").write_text(line + "\n", encoding="utf-8")
    code, lines = run(capsys, curate(tmp_path, _set("curate.train_files", [str(tmp_path / "long.jsonl")])))
    assert_clear(code, lines, "long.jsonl:1: the conversation is 10,000,015 characters long")
    (tmp_path / "wikihowAll.csv").write_text('title,text\nHow to Wait,"' + "z" * 5_000_000 + '"\n', encoding="utf-8")
    code, lines = run(capsys, curate(tmp_path, _set("curate.wikihow.files", [str(tmp_path / "wikihowAll.csv")])))
    assert_clear(code, lines, "wikihowAll.csv:line 2: unreadable CSV (field larger than field limit")


@pytest.mark.parametrize("f", sorted((CORPUS / "baselines").iterdir()), ids=lambda f: f.name)
def test_judge_baseline_file_is_one_clear_line(tmp_path, capsys, f):
    argv = [
        "judge",
        "--profile",
        "demo",
        "--run-dir",
        str(tmp_path / "run"),
        *_set("judge.generations_file", str(CORPUS / "generations.jsonl")),
        *_set("judge.baseline_files", {"b": str(f)}),
    ]
    assert_clear(*run(capsys, argv), f.name)


def test_judge_missing_baseline_file(tmp_path, capsys):
    argv = [
        "judge",
        "--profile",
        "demo",
        "--run-dir",
        str(tmp_path / "run"),
        *_set("judge.generations_file", str(CORPUS / "generations.jsonl")),
        *_set("judge.baseline_files", {"b": str(tmp_path / "gone.json")}),
    ]
    assert_clear(*run(capsys, argv), "gone.json: No such file or directory")


def _set_lines() -> list[str]:
    lines = (CORPUS / "set_strings.txt").read_text(encoding="utf-8").splitlines()
    return [x for x in lines if x.strip() and not x.startswith("#")]


@pytest.mark.parametrize("item", _set_lines())
def test_config_set_out_of_range_is_one_clear_line(capsys, item):
    key = item.split("=", 1)[0]
    assert_clear(*run(capsys, ["config", "--profile", "demo", "--set", item]), key or item)


@pytest.mark.parametrize("f", sorted((CORPUS / "config").glob("*.yaml")), ids=lambda f: f.name)
def test_config_file_is_one_clear_line(capsys, f):
    assert_clear(*run(capsys, ["config", "--profile", "demo", "--config", str(f)]), f.name)


@pytest.mark.parametrize(
    "f", sorted((CORPUS / "config").glob("*.json")) + [CORPUS / "config", CORPUS / "gone.json"], ids=lambda f: f.name
)
def test_config_json_is_one_clear_line(tmp_path, capsys, f):
    assert_clear(*run(capsys, ["curate", "--config-json", str(f), "--run-dir", str(tmp_path)]), f.name)


@pytest.mark.parametrize("path,named", [(CORPUS / "config", "is a folder"), (CORPUS / "gone.yaml", "file not found")])
def test_config_missing_or_folder(capsys, path, named):
    code, lines = run(capsys, ["config", "--config", str(path)])
    assert_clear(code, lines, f"--config {path}: {named}")


@pytest.mark.parametrize(
    "argv,named",
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["config", "--sett", "x"], "--sett"),
        (["train"], "give --run-dir"),
        (["config", "--profile", "nope"], "'nope'"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, named):
    assert_clear(*run(capsys, argv), named)


# ---- dirty rows in raw dumps: accepted, each counted in the data card ---------------------------------------
@pytest.mark.parametrize(
    "source,sets,skipped",
    [
        (
            "stackexchange_stem",
            _set("curate.stackexchange.dumps", [str(CORPUS / "stackexchange/dirty_rows/math.stackexchange.com")])
            + _set("curate.stackexchange.n_per_group", 0),
            {"stackexchange: row without a numeric Id or Score": 4},
        ),
        (
            "askreddit",
            _set("curate.askreddit.submissions", [str(CORPUS / "reddit/dirty_rows.zst")])
            + _set("curate.askreddit.n", 1),
            {
                "reddit: submission whose `title` is not a string": 2,
                "reddit: submission whose `selftext` is not a string": 1,
                "reddit: submission whose `id` is not a string": 1,
                "reddit: submission with a non-numeric score": 2,
                "reddit: line is not valid JSON": 1,
                "reddit: line is not valid UTF-8": 1,
                "reddit: line is not a JSON object": 1,
            },
        ),
        (
            "wikihow",
            _set("curate.wikihow.files", [str(CORPUS / "wikihow/dirty_rows.csv")]) + _set("curate.wikihow.n", 1),
            {"wikihow: row with the wrong number of fields": 2},
        ),
        (
            "natural_instructions",
            _set("curate.natinst.tasks", [str(CORPUS / "natinst/dirty_instances")]) + _set("curate.natinst.n_tasks", 1),
            {"natinst: instance without a string input and a list of string outputs": 5},
        ),
    ],
)
def test_dirty_rows_are_counted_skips(tmp_path, capsys, source, sets, skipped):
    code, lines = run(capsys, curate(tmp_path, sets))
    assert code == 0 and lines == []
    card = json.loads((tmp_path / "run" / "curate" / "datacard.json").read_text())
    assert card["sources"][source]["skipped"] == skipped


# ---- archives: confined, and no extracted copy left behind -------------------------------------------------
def _scratch() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"{se_archive.SCRATCH_PREFIX}{os.getpid()}-*"))


def test_archive_member_is_never_read_outside_and_leaves_nothing(tmp_path):
    before = _scratch()
    good = tmp_path / "ok.7z"
    py7zr = pytest.importorskip("py7zr")  # an optional extra of the package
    with py7zr.SevenZipFile(good, "w") as z:
        z.writestr(b"<posts>\n</posts>\n", "site/Posts.xml")
    with se_archive.archive_table(good, "Posts.xml", "stackexchange.dumps") as fh:
        scratch = _scratch() - before
        assert len(scratch) == 1 and not any(p.is_file() for p in next(iter(scratch)).rglob("*"))  # unlinked at open
        assert fh.read() == b"<posts>\n</posts>\n"
    assert _scratch() == before
    for case in ("7z_absolute_member", "7z_dotdot_member", "7z_symlink_member"):
        with pytest.raises(se_archive.DataError, match="member"):
            with se_archive.archive_table(next((CORPUS / "stackexchange" / case).iterdir()), "Posts.xml", "x"):
                pass
    assert _scratch() == before


def test_scratch_of_a_killed_read_is_removed_by_the_next(tmp_path):
    dead = 2**22 + 1  # above the largest pid Linux hands out (pid_max <= 2**22), so never a live process
    stale = Path(tempfile.mkdtemp(prefix=f"{se_archive.SCRATCH_PREFIX}{dead}-"))
    (stale / "Posts.xml").write_bytes(b"left by a killed read")
    with pytest.raises(se_archive.DataError):
        with se_archive.archive_table(
            CORPUS / "stackexchange/7z_truncated/math.stackexchange.com.7z", "Posts.xml", "x"
        ):
            pass
    assert not stale.exists()


# ---- --debug, the environment variable, and bugs --------------------------------------------------------------
def test_debug_flag_and_environment_show_the_traceback(capsys, monkeypatch):
    from lima_repro.config import ConfigError

    with pytest.raises(ConfigError, match="train.epochs must be >= 1"):
        cli.main(["config", "--set", "train.epochs=0", "--debug"])
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ConfigError):
        cli.main(["config", "--set", "train.epochs=0"])
    monkeypatch.setenv(cli.DEBUG_ENV, "0")
    assert cli.main(["config", "--set", "train.epochs=0"]) == 2


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def broken(cfg):
        return {}["missing"]

    monkeypatch.setattr(cli, "_entry", lambda spec: broken)
    with pytest.raises(KeyError):
        cli.main(["curate", "--run-dir", str(tmp_path)])


def test_real_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    bad = CORPUS / "jsonl" / "integer_row.jsonl"
    argv = [sys.executable, "-m", "lima_repro", *curate(tmp_path, _set("curate.train_files", [str(bad)]))]
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and p.stderr.splitlines() == [
        f"input error: {bad}:2: expected a JSON object, got int. Fix: write one object per line"
    ]
    p = subprocess.run([*argv, "--debug"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 1 and "Traceback (most recent call last)" in p.stderr and "DataError" in p.stderr


def test_a_torn_package_file_is_one_clear_line(tmp_path):
    """A generations/metrics file the package wrote, cut mid-line or edited by hand: the file and line, not a
    JSONDecodeError traceback."""
    from lima_repro.files import CorruptFileError, read_jsonl_plain

    path = tmp_path / "generations.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n', encoding="utf-8")
    with pytest.raises(CorruptFileError) as err:
        read_jsonl_plain(path)
    assert str(err.value).startswith(f"{path}:3: malformed JSON") and "\n" not in str(err.value)
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert read_jsonl_plain(path) == [{"a": 1}, {"a": 2}]


# ---- hostile configs (bad_inputs/hostile.py): each in its own process, bounded in time and memory ------------
CASE_SECONDS = 60
CASE_MEMORY = 2 * 1024**3  # address space; `config` itself needs ~0.3 GB of it, a billion laughs ~3 GB of RSS


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CASE_MEMORY, CASE_MEMORY))


def _run_bounded(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`python -m lima_repro ARGV` in its own process, CASE_SECONDS and CASE_MEMORY at most."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    return subprocess.run(
        [sys.executable, "-m", "lima_repro", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=CASE_SECONDS,
        preexec_fn=_bounded,
    )


def _digests(folder: Path) -> dict[str, str]:
    """Every file below `folder` and its SHA-256: what a case must leave as it found it."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    return folder, {c.name: c for c in hostile_cases(folder)}


@pytest.mark.parametrize("name", [c.name for c in hostile_cases()])
def test_hostile_config_is_one_bounded_line(hostile, name):
    folder, cases = hostile
    case, run_before = cases[name], _digests(folder / HOSTILE_RUN)
    p = _run_bounded(case.argv, folder)
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
    assert case.named in lines[0] and "Traceback" not in lines[0], lines[0]
    assert HOSTILE_KEY not in p.stdout + p.stderr and len(lines[0]) < 1000
    assert _digests(folder / HOSTILE_RUN) == run_before  # nothing already written is lost or changed


# ---- hostile data files (bad_inputs/hostile_files.py): each in its own process, 60 s and 2 GiB of address space ----
# (a stage's imports take ~0.4 GB of RSS; before issue 24 the size cases needed 2-4 GB or ran out of memory)
@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile_files")
    return folder, {c.name: c for c in file_cases(folder)}


@pytest.mark.slow
@pytest.mark.parametrize("name", [c.name for c in file_cases()])
def test_hostile_file_is_one_bounded_line(hostile_files, name):
    folder, cases = hostile_files
    case, before = cases[name], _digests(folder / name)
    p = _run_bounded(case.argv, folder / name)
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr[-2000:]
    assert case.named in lines[0] and "Traceback" not in lines[0], lines[0]
    after = _digests(folder / name)
    assert KEPT in before and {k: after.get(k) for k in before} == before  # nothing already written changed


# ---- logs a full disk cut short: repaired before the next append, nothing paid lost ---------------------------
def test_judge_cache_moves_a_torn_tail_aside_and_keeps_a_paid_row_appended_onto_it(tmp_path):
    from lima_repro.judging.runner import JudgmentCache

    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"key": "k1"}\n{"key": "k2", "lab')
    with pytest.warns(UserWarning, match=r"j.jsonl: moved a judgment cut short \(18 bytes"):
        cache = JudgmentCache(path)
    cache.put({"key": "k3"})
    assert path.read_bytes() == b'{"key": "k1"}\n{"key": "k3"}\n'
    assert (tmp_path / "j.jsonl.torn").read_bytes() == b'{"key": "k2", "lab\n'
    path.write_bytes(b'{"key": "k1"}\n{"key": "k2", "lab{"key": "k4", "label": "A"}\n')  # appended onto (old versions)
    with pytest.warns(UserWarning, match=r"j.jsonl:2: kept the judgment after 18 torn bytes"):
        assert JudgmentCache(path).get("k4") == {"key": "k4", "label": "A"}


def test_a_failed_append_is_rolled_back_and_a_torn_one_moved_aside(tmp_path, monkeypatch):
    from lima_repro import files

    path = tmp_path / "log.jsonl"
    files.append_jsonl(path, {"a": 1})
    real = os.fsync
    monkeypatch.setattr(files.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        files.append_jsonl(path, {"a": 2})
    monkeypatch.setattr(files.os, "fsync", real)
    assert path.read_bytes() == b'{"a": 1}\n'  # the failed row is gone, not left half-written
    with open(path, "ab") as fh:
        fh.write(b'{"a": 3')  # a kill mid-write, which no rollback can undo
    with pytest.warns(UserWarning, match="moved a row cut short"):
        files.repair_tail(path, "a row")
    files.append_jsonl(path, {"a": 4})
    assert files.read_jsonl_plain(path) == [{"a": 1}, {"a": 4}]
    files.repair_tail(path, "a row")  # a clean file: untouched, no warning
    assert (tmp_path / "log.jsonl.torn").read_bytes() == b'{"a": 3\n'


def test_posts_id_of_5000_digits_is_a_counted_skip(tmp_path):
    from lima_repro.sources import StepLog
    from lima_repro.sources.se_dump import question_pool

    posts = tmp_path / "math.stackexchange.com" / "Posts.xml"
    posts.parent.mkdir()
    posts.write_text(
        f'<posts>\n<row Id="{"9" * 5000}" PostTypeId="1" Score="5" Title="Q" Body="b" />\n'
        '<row Id="2" PostTypeId="1" Score="3" Title="Q2" Body="b" />\n</posts>\n'
    )
    log = StepLog()
    assert [q["id"] for q in question_pool(posts.parent, 5, log, "k", ("bad row", "fake"))[2]] == ["2"]
    assert log.skips == {"bad row": 1}
