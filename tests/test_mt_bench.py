"""MT-Bench as FastChat scores it, end to end on invented fixtures in FastChat's formats: a tiny model answers both
turns (the second after its own first answer), the answers file has FastChat's fields, a scripted OpenAI-compatible
judge on 127.0.0.1 returns ratings in FastChat's shapes, the reference answers reach math's prompts, the means
are exact, and a rerun sends nothing."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from helpers import ChatServer, chat_completion, tiny_overrides

from lima_repro import models
from lima_repro.cli import main
from lima_repro.config import ModelConfig, load_config, to_dict
from lima_repro.data import DataError
from lima_repro.files import read_json, read_jsonl_plain, write_json
from lima_repro.mt_bench import (
    TEMPERATURE,
    grading_requests,
    parse_rating,
    read_judge_prompts,
    read_questions,
    read_reference,
    run_mt_bench,
    summarize,
)
from lima_repro.runs import RunDir

FIXTURES = Path(__file__).parent / "fixtures" / "mt_bench"
FILES = [
    "--questions",
    str(FIXTURES / "question.jsonl"),
    "--judge-prompts",
    str(FIXTURES / "judge_prompts.jsonl"),
    "--reference",
    str(FIXTURES / "reference_answer" / "gpt-4.jsonl"),
]
# (question's first words, turn) -> the judge's answer, in FastChat's rating shapes; the second math turn has none
RATINGS = {
    ("Write two lines", 1): "Vivid. Rating: [[7]]",
    ("Write two lines", 2): "Rhymes well. [[7.5]]",
    ("What is 12 times 3", 1): "Correct. [8]",
    ("What is 12 times 3", 2): "I cannot grade this.",
    ("Why does ice float", 1): "[[10]]",
    ("Why does ice float", 2): "Rating: [[4]]",
}


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("Rating: [[7]]", 7.0),
        ("[[7.5]]", 7.5),
        ("Rating: [7]", 7.0),
        ("first [3], then [[9]]", 9.0),  # the double brackets win, wherever they are
        ("[[10]] and [[2]]", 10.0),
        ("Rating: 8/10", -1.0),
        ("", -1.0),
    ],
)
def test_rating_parse_as_fastchat(text, rating):
    assert parse_rating(text) == rating


class Judge(ChatServer):
    def __init__(self):
        self.bodies: list[dict] = []
        lock = threading.Lock()

        def respond(body, headers):
            with lock:
                self.bodies.append(body)
            user = body["messages"][-1]["content"]
            turn = 2 if "<|Turn 2 user|>" in user else 1
            text = next(t for (q, n), t in RATINGS.items() if n == turn and q in user)
            return 200, chat_completion(body["model"], text), None

        super().__init__(respond)


def test_mt_bench_end_to_end_with_a_tiny_model_and_a_scripted_judge(tmp_path, tiny_llama, capsys):
    ckpt = tmp_path / "ckpt"
    model, tok, _ = models.load_base(ModelConfig(name=str(tiny_llama)))  # LIMA's EOT and template, untrained
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    judge = Judge()
    try:
        over = tiny_overrides(tiny_llama, tmp_path / "run")
        over |= {"judge.base_url": judge.url, "judge.api_key_env": "", "judge.model": "gpt-4", "judge.max_tokens": 7}
        cfg = load_config("paper", overrides=over)
        run = RunDir(cfg.run_dir)
        write_json(run.config, to_dict(cfg))
        write_json(run.checkpoint_index, [{"name": "epoch-1", "path": str(ckpt), "step": 1, "epoch": 1}])
        files = [
            FIXTURES / "question.jsonl",
            FIXTURES / "judge_prompts.jsonl",
            FIXTURES / "reference_answer" / "gpt-4.jsonl",
        ]
        run_mt_bench(cfg, *files, max_new_tokens=6)  # FastChat's 1,024 would overflow the tiny model's 512 positions

        # FastChat's model_answer file, named by the model id rule, one row per question, two turns each
        answers = read_jsonl_plain(run.mt_bench_answers(f"lima-{tiny_llama.name}-epoch-1"))
        assert [r["question_id"] for r in answers] == [901, 902, 903]
        assert all(set(r) == {"question_id", "answer_id", "model_id", "choices", "tstamp"} for r in answers)
        assert all([c["index"] for c in r["choices"]] == [0] and len(r["choices"][0]["turns"]) == 2 for r in answers)

        # FastChat's judge call: system prompt first, temperature 0, 2,048 tokens whatever judge.max_tokens says
        assert len(judge.bodies) == 6
        assert {(b["temperature"], b["max_tokens"], b["model"]) for b in judge.bodies} == {(0.0, 2048, "gpt-4")}
        prompts = {p["name"]: p for p in map(json.loads, (FIXTURES / "judge_prompts.jsonl").read_text().splitlines())}
        systems = sorted(b["messages"][0]["content"] for b in judge.bodies)
        names = ["single-v1"] * 2 + ["single-math-v1", "single-v1-multi-turn", "single-v1-multi-turn"]
        assert systems == sorted(prompts[n]["system_prompt"] for n in [*names, "single-math-v1-multi-turn"])
        users = [b["messages"][-1]["content"] for b in judge.bodies]
        math2 = next(u for u in users if "<|Reference 2|>\n12 times 4 is 48." in u)
        first, second = answers[1]["choices"][0]["turns"]
        assert f"<|Turn 1 assistant|>\n{first}\n<|Turn 2 user|>\nAnd 12 times 4?" in math2  # its own first answer
        assert f"<|Turn 2 assistant|>\n{second}\n" in math2
        assert any("[Reference]\n12 times 3 is 36." in u for u in users)

        res = read_json(run.mt_bench_results)
        assert res["turn_scores"] == 6 and res["invalid"] == 1 and res["requests"]["sent"] == 6
        assert res["score"]["n"] == 5 and res["score"]["mean"] == pytest.approx((7 + 7.5 + 8 + 10 + 4) / 5)
        assert res["score"]["lo"] <= res["score"]["mean"] <= res["score"]["hi"]
        assert {t: r["mean"] for t, r in res["turns"].items()} == {"1": pytest.approx(25 / 3), "2": 5.75}
        assert {c: r["mean"] for c, r in res["categories"].items()} == {"math": 8.0, "stem": 7.0, "writing": 7.25}
        judged = read_jsonl_plain(run.mt_bench_judgments)  # FastChat's model_judgment fields, for show_result.py
        assert {"question_id", "model", "judge", "user_prompt", "judgment", "score", "turn"} <= set(judged[0])
        assert run.read_mt_bench_results() == res

        # the CLI's rerun reuses the answers and the judge cache: nothing is generated or sent
        assert main(["mt-bench", cfg.run_dir, *FILES]) == 0
        assert "mt-bench output:" in capsys.readouterr().out
        assert len(judge.bodies) == 6 and read_json(run.mt_bench_results)["requests"]["cached"] == 6
    finally:
        judge.close()


def test_summary_is_exact_and_leaves_unparsable_ratings_out():
    rows = [
        {"turn": 1, "category": "math", "score": 2.0},
        {"turn": 2, "category": "math", "score": -1.0},
        {"turn": 1, "category": "stem", "score": 6.0},
        {"turn": 2, "category": "stem", "score": 6.0},
    ]
    res = summarize(rows, n_boot=500, seed=0)
    assert (res["score"]["mean"], res["score"]["n"], res["invalid"], res["turn_scores"]) == (14 / 3, 3, 1, 4)
    assert res["categories"]["stem"] == {"n": 2, "mean": 6.0, "lo": 6.0, "hi": 6.0}
    assert res["turns"]["2"]["mean"] == 6.0 and 2.0 <= res["score"]["lo"] <= res["score"]["hi"] <= 6.0


def test_fastchat_files_are_checked(tmp_path):
    assert TEMPERATURE["writing"] == 0.7 and TEMPERATURE["math"] == 0.0 and TEMPERATURE["stem"] == 0.1
    assert [q["question_id"] for q in read_questions(FIXTURES / "question.jsonl")] == [901, 902, 903]
    bad = tmp_path / "question.jsonl"
    bad.write_text(json.dumps({"question_id": 1, "category": "math", "turns": ["only one"]}) + "\n")
    with pytest.raises(DataError, match=r"question.jsonl:line 1: MT-Bench `turns` must be two non-empty texts"):
        read_questions(bad)
    prompts = tmp_path / "judge_prompts.jsonl"
    prompts.write_text(
        "\n".join(x for x in (FIXTURES / "judge_prompts.jsonl").read_text().splitlines() if "math" not in x)
    )
    with pytest.raises(DataError, match="single-math-v1: missing"):
        read_judge_prompts(prompts)


def test_grading_requests_carry_fastchats_messages_under_the_keys_cached_before():
    questions, prompts = (
        read_questions(FIXTURES / "question.jsonl"),
        read_judge_prompts(FIXTURES / "judge_prompts.jsonl"),
    )
    reference = read_reference(FIXTURES / "reference_answer" / "gpt-4.jsonl")
    reqs = grading_requests(
        questions, [["one", "two"]] * 3, reference, prompts, {"kind": "openai", "model": "gpt-4"}, "m"
    )
    assert len(reqs) == 6
    for r in reqs:
        system = prompts[r.meta["name"]]["system_prompt"]
        assert r.messages == ({"role": "system", "content": system}, {"role": "user", "content": r.prompt})
    # the keys of the JSON-in-the-prompt requests of before (pinned then): a rerun finds what was paid for
    assert reqs[0].key == "59f172232baa9e5eb5e978681bfec8198af635cb2fa24cbbdaa8a9e709a917b1"
