"""No path writes the judge's API key to disk: a key pasted into `judge.api_key_env` is refused without being
repeated, and a server whose errors echo the request's headers is redacted before anything is stored. The key is
planted in the environment and every file the judge stage writes is searched for it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ChatServer, ScriptJudge, chat_completion, generation_rows

from lima_repro.config import Config, ConfigError, JudgeConfig, load_config
from lima_repro.config.judge import key_name_problem
from lima_repro.config.overrides import apply_overrides
from lima_repro.files import read_jsonl_plain, write_jsonl
from lima_repro.judge import run_judge
from lima_repro.judging import JudgeError, make_judge
from lima_repro.judging.remote import redact

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


def test_a_key_written_into_the_base_url_is_no_part_of_the_identity_and_is_redacted(tmp_path):
    """`judge.base_url` with `user:KEY@` or `?api_key=KEY`: the server's identity (cache keys, results) drops it,
    and every error text the judge returns has it redacted."""
    for url in (f"http://u:{KEY}@localhost:9/v1", f"http://127.0.0.1:9/v1?api_key={KEY}"):
        judge = make_judge(JudgeConfig(base_url=url, api_key_env="", max_retries=0, max_retry_s=0))
        assert judge.identity()["base_url"] == "http://127.0.0.1:9/v1" and KEY not in judge.name
        assert redact(f"cannot reach {url}", judge.secrets) == f"cannot reach {url.replace(KEY, '[redacted]')}"
