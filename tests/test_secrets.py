"""No path writes the judge's API key to disk: a key pasted into `judge.api_key_env` is refused without being
repeated, a server whose errors echo the request's headers is redacted before anything is stored, and a key pasted
as `judge.model`, inside `judge.base_url`, as a notebook parameter or on the command line reaches no file, file name
or printed line (`redaction`). The key is planted and every file written is searched for it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import ChatServer, ScriptJudge, chat_completion, generation_rows

from lima_repro import cli, redaction
from lima_repro.ablations import write_summary
from lima_repro.config import Config, ConfigError, JudgeConfig, load_config, to_dict
from lima_repro.config.base import looks_like_key
from lima_repro.config.judge import key_name_problem
from lima_repro.config.overrides import apply_overrides
from lima_repro.figures_kit import Drawn, save
from lima_repro.files import read_jsonl_plain, write_csv, write_json, write_jsonl
from lima_repro.judge import run_judge
from lima_repro.judging import JudgeError, make_judge
from lima_repro.judging.remote import redact
from lima_repro.notebook import refuse_secret_parameters
from lima_repro.pipeline import scrub_notebook
from lima_repro.runs import RunDir

KEY = "sk-proj-7f3a9c1e5b2d8f4a6c0e9b7d5f3a1c8e"
ROOT = Path(__file__).resolve().parents[1]


class EchoServer(ChatServer):
    """A judge server whose errors repeat every request header (Authorization too): 401 for prompts in `refuse`
    (or all with refuse="*"), 500 for `crash`; a verdict otherwise."""

    def __init__(self, refuse: str, crash: str = "\0"):
        def respond(body, headers):
            prompt = body["messages"][-1]["content"]
            if refuse == "*" or refuse in prompt:
                return 401, {"error": {"message": f"invalid key; request headers: {dict(headers)}"}}, None
            if crash in prompt:
                return 500, {"error": {"message": f"upstream failed for\n{headers}"}}, None
            return 200, chat_completion(body["model"], "Verdict: A", 5, 2), None

        super().__init__(respond)


def _files_holding(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def _cfg(tmp_path, url: str) -> Config:
    cfg = Config(run_dir=str(tmp_path / "run"))
    write_jsonl(tmp_path / "run" / "generate" / "generations.jsonl", generation_rows())
    cfg.judge = JudgeConfig(
        backend="openai",
        model="echo",
        base_url=url,
        api_key_env="LIMA_TEST_SECRET_KEY",
        max_retries=1,
        backoff_s=0.01,
        timeout_s=10,
        protocols=["pairwise"],
        token_shift=False,
        n_bootstrap=50,
    )
    return cfg


def test_echoed_headers_are_redacted_in_every_file_the_judge_writes(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("LIMA_TEST_SECRET_KEY", KEY)
    server = EchoServer(refuse="cook rice", crash="boil a pot")  # p1 refused (401), p3 crashes (500): 4 of 8
    try:
        out = run_judge(_cfg(tmp_path, server.url))
    finally:
        server.close()
    judged = read_jsonl_plain(out / "judgments.jsonl")
    errors = [j["error"] for j in judged if j.get("error")]
    assert len(errors) == 4 and len(judged) == 8
    assert all("[redacted]" in e for e in errors)  # the server did echo it
    assert any(e.startswith("AuthenticationError") for e in errors) and any("after 2 attempts" in e for e in errors)
    assert json.loads((out / "manifest.json").read_text())["status"] == "ok"
    assert _files_holding(tmp_path, KEY) == []
    captured = capfd.readouterr()
    assert KEY not in captured.out and KEY not in captured.err


def test_a_judge_run_failing_on_echoed_headers_stores_no_key(tmp_path, monkeypatch):
    monkeypatch.setenv("LIMA_TEST_SECRET_KEY", KEY)
    server = EchoServer(refuse="*")
    try:
        with pytest.raises(JudgeError, match="all 8 requests failed") as err:
            run_judge(_cfg(tmp_path, server.url))
    finally:
        server.close()
    assert KEY not in str(err.value) and "[redacted]" in str(err.value) and "\n" not in str(err.value)
    status = json.loads((tmp_path / "run" / "judge" / "manifest.json").read_text())["status"]
    assert status.startswith("failed: JudgeError") and "[redacted]" in status
    assert _files_holding(tmp_path, KEY) == []


def test_redact_removes_the_key_and_header_values_it_was_not_told_about():
    text = f"headers: {{'Authorization': 'Bearer {KEY}'}} x-api-key: abc123 token Bearer zzz9; api_key=qq"
    assert redact(text, (KEY,)) == (
        "headers: {'Authorization': 'Bearer [redacted]'} x-api-key: [redacted] token "
        "Bearer [redacted]; api_key=[redacted]"
    )
    assert KEY not in redact(f"Authorization: Bearer {KEY}")  # by the header pattern alone
    assert redact("Verdict: A", (KEY,), headers=False) == "Verdict: A"


@pytest.mark.parametrize("name", ["OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "MY_JUDGE_KEY_2", "", "_x"])
def test_variable_names_are_accepted(name):
    assert key_name_problem(name) is None


@pytest.mark.parametrize(
    "pasted", [KEY, "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567", "a1b2c3d4e5f60718293a4b5c6d7e8f90", "my key", "OPENAI-KEY"]
)
def test_a_pasted_key_is_refused_without_being_repeated(pasted, tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as err:
        load_config("paper", overrides={"judge.api_key_env": pasted})
    assert pasted not in str(err.value) and "judge.api_key_env must be the NAME" in str(err.value)
    with pytest.raises(JudgeError) as err:
        make_judge(JudgeConfig(api_key_env=pasted))
    assert pasted not in str(err.value)
    # a config built in Python skips Config.check(): the stage still refuses before writing anything
    cfg = Config(run_dir=str(tmp_path / "run"))
    write_jsonl(tmp_path / "run" / "generate" / "generations.jsonl", generation_rows())
    cfg.judge = JudgeConfig(api_key_env=pasted, token_shift=False, protocols=["pairwise"])
    with pytest.raises(ConfigError):
        run_judge(cfg, judge=ScriptJudge())
    assert not (tmp_path / "run" / "judge").exists() or not any((tmp_path / "run" / "judge").iterdir())
    assert _files_holding(tmp_path, pasted) == []


def test_cli_refuses_a_pasted_key_without_printing_it():
    proc = subprocess.run(
        [sys.executable, "-m", "lima_repro", "config", "--set", f"judge.api_key_env={KEY}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 2 and "judge.api_key_env must be the NAME" in proc.stderr
    assert KEY not in proc.stdout + proc.stderr


@pytest.mark.parametrize("pasted", [7314159265358979323, ["sk-abc123def456"], {"sk-x": "y"}])
def test_a_type_error_in_a_key_field_never_shows_the_value(pasted):
    """A pasted key that YAML reads as a number, list or mapping fails the type check; the message names the field
    and the type, never the value."""
    cfg = load_config("demo")
    with pytest.raises(ConfigError) as err:
        apply_overrides(cfg, {"judge": {"api_key_env": pasted}})
    assert "judge.api_key_env" in str(err.value)
    assert str(pasted)[:12] not in str(err.value) and "sk-" not in str(err.value)


# a second and third key, so each place a key was pasted is searched for separately
URL_KEY = "hf_Zq8RtY3uVw5xNm2KpL7sDf4GhJ9aBc"
QUERY_KEY = "Xa93kLmQ27vBn48TrWz61PsEe05YuCiO"


def _key_server() -> ChatServer:
    return ChatServer(lambda body, headers: (200, chat_completion(body["model"], "Verdict: A", 5, 2), None))


@pytest.mark.parametrize("url_form", ["user", "query"])
def test_keys_pasted_on_the_command_line_reach_no_file_name_file_or_output(url_form, tmp_path, capfd):
    """A key as judge.model and one inside judge.base_url (`user:KEY@` or `?api_key=KEY`), given with --set: the
    judge runs with them (the server sees the model), but no file, file name, progress bar or printed line holds
    either."""
    server = _key_server()
    secret = URL_KEY if url_form == "user" else QUERY_KEY
    host = server.url.split("://")[1]
    url = f"http://user:{secret}@{host}" if url_form == "user" else f"{server.url}?api_key={secret}"
    base = _cfg(tmp_path, server.url)
    base.judge.api_key_env = ""
    (tmp_path / "in").mkdir()
    write_json(tmp_path / "in" / "base.json", to_dict(base))
    argv = ["judge", "--config-json", str(tmp_path / "in" / "base.json"), "--run-dir", str(tmp_path / "run")]
    try:
        status = cli.main([*argv, "--set", f"judge.model={KEY}", "--set", f"judge.base_url={url}"])
    finally:
        server.close()
    out = capfd.readouterr()
    assert status == 0 and "judge openai:[redacted]: 100%" in out.err  # the progress bar names the judge, not the key
    assert (tmp_path / "run" / "judge" / "config.json").is_file()
    written = [p for p in tmp_path.rglob("*") if "in" not in p.relative_to(tmp_path).parts[:1]]
    for key in (KEY, secret):
        assert [str(p) for p in written if key in str(p)] == []
        assert _files_holding(tmp_path / "run", key) == []
        assert key not in out.out + out.err
    assert "[redacted]" in (tmp_path / "run" / "judge" / "config.json").read_text()


def test_a_key_as_judge_model_is_sent_but_never_written(tmp_path, capfd):
    server = _key_server()
    cfg = _cfg(tmp_path, server.url)
    cfg.judge.api_key_env, cfg.judge.model = "", KEY
    try:
        out = run_judge(cfg)
    finally:
        server.close()
    judged = read_jsonl_plain(out / "judgments.jsonl")
    assert len(judged) == 8 and not any(j.get("error") for j in judged)  # the server was asked with the real name
    assert [p.name for p in (out / "cache").iterdir()] == ["openai_[redacted].jsonl"]
    assert _files_holding(tmp_path, KEY) == []
    assert json.loads((out / "config.json").read_text())["judge"]["model"] == "[redacted]"
    captured = capfd.readouterr()
    assert KEY not in captured.out + captured.err


@pytest.mark.parametrize("name", ["openai_key", "key", "judge_key", "bearer", "notes"])
def test_a_notebook_parameter_holding_a_key_is_refused_whatever_its_name(name):
    with pytest.raises(ConfigError, match=f"notebook parameter {name} looks like a secret") as err:
        refuse_secret_parameters({"config_path": "", "run_dir": "", name: KEY, "In": [f"{name} = {KEY!r}"]})
    assert KEY not in str(err.value)
    with pytest.raises(ConfigError, match="notebook parameter overrides looks like a secret"):
        refuse_secret_parameters({"overrides": {"judge.model": URL_KEY}})
    refuse_secret_parameters({"config_path": "/runs/20250101-120000-demo/config.json", "overrides": {"a": 1}})


def test_the_pipeline_scrubs_an_executed_notebook_of_keys(tmp_path):
    nb = {
        "metadata": {"papermill": {"parameters": {"config_path": "/c.json", "judge_key": KEY}}},
        "cells": [
            {
                "cell_type": "code",
                "source": f"judge_key = {KEY!r}\n",
                "outputs": [{"text": [f"url http://u:{URL_KEY}@h"]}],
            }
        ],
    }
    plain = {"metadata": {}, "cells": [{"cell_type": "code", "source": "x = 1\n", "outputs": []}]}
    write_json_unredacted = (tmp_path / "a.ipynb", tmp_path / "b.ipynb")
    write_json_unredacted[0].write_text(json.dumps(nb))
    write_json_unredacted[1].write_text(json.dumps(plain, indent=1))
    for path in write_json_unredacted:
        scrub_notebook(path)
    text = write_json_unredacted[0].read_text()
    assert KEY not in text and URL_KEY not in text and text.count("[redacted]") == 3
    assert write_json_unredacted[1].read_text() == json.dumps(plain, indent=1)  # nothing to scrub: left as it was


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"model {KEY}", "model [redacted]"),
        (f"https://user:{URL_KEY}@host/v1", "https://[redacted]@host/v1"),
        (f"https://host/v1?api_key={QUERY_KEY}&x=1", "https://host/v1?api_key=[redacted]&x=1"),
        ("https://host/v1?token=abc&key=k", "https://host/v1?token=[redacted]&key=[redacted]"),
        ("Authorization: Bearer eyJhbGciOi.J9xY1z2Q3", "Authorization: Bearer [redacted]"),
        ("the bearer of bad news; a bearer instrument", "the bearer of bad news; a bearer instrument"),
        ("ssh://git@host/repo and a1B2c3D4e5F60718293a4b5c6d7e8f9a", "ssh://git@host/repo and [redacted]"),
        ("event a1b2c3d4e5f60718293a4b5c6d7e8f9a", "event a1b2c3d4e5f60718293a4b5c6d7e8f9a"),  # uuid4().hex
        ("commit " + "ab" * 20 + " sha " + "0f" * 32, "commit " + "ab" * 20 + " sha " + "0f" * 32),
        ("runs/20250101-120000-demo/train/checkpoints/epoch-2", "runs/20250101-120000-demo/train/checkpoints/epoch-2"),
    ],
)
def test_redaction_finds_keys_and_keeps_digests_and_prose(text, expected):
    assert redaction.redact(text) == expected


def test_redact_value_reaches_every_string_of_a_nested_value_and_keeps_the_rest():
    value = {"judge": {"model": KEY, "n": 3, "ok": True, "none": None}, KEY: [f"x {URL_KEY}", 1.5], "t": ("a",)}
    assert redaction.redact_value(value) == {
        "judge": {"model": "[redacted]", "n": 3, "ok": True, "none": None},
        "[redacted]": ["x [redacted]", 1.5],
        "t": ["a"],
    }
    assert looks_like_key("a1b2c3d4e5f60718293a4b5c6d7e8f90") and not looks_like_key("OPENAI_API_KEY")


def test_config_prints_no_key_pasted_on_the_command_line(capsys):
    assert cli.main(["config", "--set", f"judge.model={KEY}", "--set", f"judge.base_url=https://u:{URL_KEY}@h/v1"]) == 0
    out = capsys.readouterr().out
    assert KEY not in out and URL_KEY not in out
    assert json.loads(out)["judge"]["base_url"] == "https://[redacted]@h/v1"


def test_a_key_written_into_the_base_url_is_no_part_of_the_identity_and_is_redacted(tmp_path):
    """`judge.base_url` with `user:KEY@` or `?api_key=KEY`: the server's identity (cache keys, results) drops it,
    and every error text the judge returns has it redacted."""
    for url in (f"http://u:{KEY}@localhost:9/v1", f"http://127.0.0.1:9/v1?api_key={KEY}"):
        judge = make_judge(JudgeConfig(base_url=url, api_key_env="", max_retries=0, max_retry_s=0))
        assert judge.identity()["base_url"] == "http://127.0.0.1:9/v1" and KEY not in judge.name
        shown = redact(f"cannot reach {url}", judge.secrets)
        assert (
            KEY not in shown and "[redacted]" in shown and "127.0.0.1:9/v1" in shown.replace("localhost", "127.0.0.1")
        )


def test_a_csv_is_redacted_as_the_json_writers_redact_and_a_clean_table_is_written_as_pandas_writes_it(tmp_path):
    frame = pd.DataFrame(
        {
            "system": ["epoch-2", f"model {KEY}"],
            f"note {URL_KEY}": ["ok", None],
            "tags": [["a"], [f"https://u:{URL_KEY}@h"]],
            "n": [1, 2],
            "pct": [0.5, float("nan")],
        }
    )
    write_csv(tmp_path / "t.csv", frame)
    assert (tmp_path / "t.csv").read_text() == (
        "system,note [redacted],tags,n,pct\nepoch-2,ok,['a'],1,0.5\nmodel [redacted],,['https://[redacted]@h'],2,\n"
    )
    clean = frame.drop(columns=[f"note {URL_KEY}"]).iloc[:1]
    write_csv(tmp_path / "clean.csv", clean)
    assert (tmp_path / "clean.csv").read_text() == clean.to_csv(index=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.csv", "t.csv"]  # no temporary file left beside them


def _csvs(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.csv"))}


def test_the_csvs_the_stages_write_hold_no_key(tmp_path, monkeypatch):
    """A key in the system's and a baseline's names and in every judge rationale (the judge's tables), in an ablation condition's name
    (a config value: the ablation summary) and in a figure's data reaches no CSV; each CSV shows `[redacted]`."""
    monkeypatch.setenv("LIMA_TEST_SECRET_KEY", QUERY_KEY)  # an environment secret is removed wherever it turns up
    cfg = Config(run_dir=str(tmp_path / "run"))
    write_jsonl(tmp_path / "run" / "generate" / "generations.jsonl", generation_rows(system=f"tuned-{KEY}"))
    other = tmp_path / "other.jsonl"  # a baseline imported under a key-like name (a config value)
    write_jsonl(other, [{"prompt_id": r["prompt_id"], "output": "no"} for r in generation_rows()[:4]])
    cfg.judge = JudgeConfig(protocols=["pairwise", "absolute"], token_shift=False, n_bootstrap=50)
    cfg.judge.baselines, cfg.judge.baseline_files = [f"other-{KEY}"], {f"other-{KEY}": str(other)}

    class LeakyJudge(ScriptJudge):
        def complete_many(self, requests):
            for i, c in super().complete_many(requests):
                yield i, dataclasses.replace(c, text=f"as {QUERY_KEY} told me at http://u:{URL_KEY}@h: {c.text}")

    run_judge(cfg, judge=LeakyJudge())
    cfg.ablations.conditions = {f"quality-{KEY}": {"groups": ["quality"], "x": 1}}
    write_summary(RunDir(cfg.run_dir), cfg)
    data = pd.DataFrame({"run": [f"run with {KEY}"], "value": [1.0]})
    save(Drawn("fig_x", "drawn", data=data), tmp_path / "run" / "figures", (), 72)
    csvs = _csvs(tmp_path / "run")
    assert sorted(csvs) == [
        "ablations/summary.csv",
        "figures/fig_x.csv",
        "judge/absolute.csv",
        "judge/lengths.csv",
        "judge/pairwise.csv",
    ]
    for name, text in csvs.items():
        assert "[redacted]" in text, name
    for key in (KEY, URL_KEY, QUERY_KEY):
        assert _files_holding(tmp_path / "run", key) == []


@pytest.mark.notebooks
@pytest.mark.slow
def test_a_hand_run_papermill_refusing_a_key_leaves_no_key_in_the_notebook_it_wrote(tmp_path):
    """`papermill 04_judge.ipynb out.ipynb -p openai_key sk-... -p hf_token ...` by hand: the notebook refuses both
    (one looks like a key, one is named like one), and once papermill exits the notebook it wrote holds neither."""
    named = "hunter2hunter2"  # no key's shape: removed because the parameter's name says it is one
    papermill = Path(sys.executable).parent / "papermill"
    argv = [str(papermill), str(ROOT / "notebooks" / "04_judge.ipynb"), "out.ipynb", "--log-level", "ERROR"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    argv += ["-p", "openai_key", KEY, "-p", "hf_token", named]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 1 and "notebook parameter hf_token, openai_key looks like a secret" in proc.stderr
    assert f"papermill's {tmp_path / 'out.ipynb'} is rewritten without the value" in proc.stderr
    assert KEY not in proc.stderr and named not in proc.stderr
    for _ in range(600):  # the scrubbing process starts when papermill has exited
        data = (tmp_path / "out.ipynb").read_bytes()
        if KEY.encode() not in data and named.encode() not in data:
            break
        time.sleep(0.2)
    assert KEY.encode() not in data and named.encode() not in data
    nb = json.loads(data)
    assert nb["metadata"]["papermill"]["parameters"] == {"openai_key": "[redacted]", "hf_token": "[redacted]"}
