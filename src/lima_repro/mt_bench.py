"""MT-Bench as FastChat scores it: `run_mt_bench(cfg, questions, judge_prompts, reference) -> <run>/mt_bench`.

MT-Bench (Zheng et al. 2023, lm-sys/FastChat `fastchat/llm_judge/`) is 80 two-turn questions; FastChat's rules,
followed here from the files the user supplies from that repository (`data/mt_bench/question.jsonl`,
`data/judge_prompts.jsonl`, `data/mt_bench/reference_answer/gpt-4.jsonl`):

- answers (`gen_model_answer.py`): the second turn is asked after the model's own first answer; temperature per
  category (`common.temperature_config`; greedy below 1e-4, 0.7 for unknown categories), at most 1,024 new
  tokens, no top-p and no repetition penalty (transformers' defaults). Written as FastChat's
  `model_answer/<model_id>.jsonl`, so FastChat's own `gen_judgment.py` can grade the same answers;
- grading (`gen_judgment.py --mode single`, `common.run_judge_single`): the judge at temperature 0 with at most
  2,048 tokens, the prompt's `system_prompt` as the system message; `single-v1` (turn 1) and
  `single-v1-multi-turn` (turn 2), and for math, reasoning and coding (`NEED_REF_CATS`) `single-math-v1` and
  `single-math-v1-multi-turn` with the reference answers;
- the rating: `[[x]]`, else `[x]`, else -1 (unparsable: counted, and left out of every mean as `show_result.py`
  does); the score is the mean over all turn scores (160 for the full benchmark), here with a percentile-bootstrap
  95% CI, per turn and per category.

The judge is the run's OpenAI-compatible `judge` config (model, server, key, cost cap) with its on-disk cache, so
a rerun pays for nothing twice; answers already in the run for the same model id are reused for the same reason.
"""

from __future__ import annotations

import ast
import re
import time
import uuid
from dataclasses import replace
from pathlib import Path

from . import analysis, models
from .chat_format import ChatFormat, encode_prompt
from .config import Config, GenerateConfig
from .data import DataError
from .files import iter_jsonl, read_jsonl_plain, write_json, write_jsonl
from .judging.base import JudgeError, Request, cache_key
from .judging.items import check_generator, generator_name
from .judging.protocols import template_hash
from .judging.remote import OpenAIJudge
from .judging.runner import JudgmentCache, check_cost
from .provenance import seed_everything
from .runs import RunDir
from .sampling import sample
from .stage import Stage

NEED_REF_CATS = ("math", "reasoning", "coding", "arena-hard-200")  # FastChat common.NEED_REF_CATS
TEMPERATURE = {  # FastChat common.temperature_config
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
    "arena-hard-200": 0.0,
}
DEFAULT_TEMPERATURE = 0.7  # gen_model_answer.py: a category not in the table
MAX_NEW_TOKENS = 1024  # gen_model_answer.py --max-new-token
JUDGE_TEMPERATURE, JUDGE_MAX_TOKENS = 0.0, 2048  # common.run_judge_single with an OpenAI judge
# (needs a reference, second turn) -> the judge prompt's name in judge_prompts.jsonl (gen_judgment.make_judge_single)
JUDGE_PROMPTS = {
    (False, False): "single-v1",
    (True, False): "single-math-v1",
    (False, True): "single-v1-multi-turn",
    (True, True): "single-math-v1-multi-turn",
}
PROMPT_FIELDS = ("name", "type", "system_prompt", "prompt_template", "output_format")
ONE_SCORE = re.compile(r"\[\[(\d+\.?\d*)\]\]")  # common.one_score_pattern
ONE_SCORE_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")  # common.one_score_pattern_backup
FIX = "give the file from FastChat's fastchat/llm_judge/data/ unchanged"


def parse_rating(text: str) -> float:
    """FastChat's rating of a single-answer judgment: `[[7]]`, else `[7]`, else -1 (unparsable)."""
    match = ONE_SCORE.search(text) or ONE_SCORE_BACKUP.search(text)
    return float(ast.literal_eval(match.group(1))) if match else -1.0


def _rows(path: Path, need: dict[str, type]) -> list[tuple[int, dict]]:
    """(line, object) of a FastChat JSONL file whose rows hold the fields `need` with their types (the line checks:
    `files.iter_jsonl`)."""
    out = []
    for n, row in iter_jsonl(path, FIX):
        bad = [k for k, t in need.items() if not isinstance(row.get(k), t)]
        if bad:
            raise DataError(path, f"line {n}", f"needs {', '.join(bad)} ({', '.join(need)} as FastChat writes)", FIX)
        out.append((n, row))
    if not out:
        raise DataError(path, None, "holds no rows", FIX)
    return out


def read_questions(path: str | Path) -> list[dict]:
    """question.jsonl: {question_id, category, turns: [first, second]}."""
    out = []
    for n, q in _rows(Path(path), {"question_id": (int, str), "category": str, "turns": list}):
        if len(q["turns"]) != 2 or not all(isinstance(t, str) and t.strip() for t in q["turns"]):
            raise DataError(path, f"line {n}", "MT-Bench `turns` must be two non-empty texts", FIX)
        out.append(q)
    return out


def read_judge_prompts(path: str | Path) -> dict[str, dict]:
    """judge_prompts.jsonl: name -> {name, type, system_prompt, prompt_template, output_format, ...}; the four
    single-answer prompts MT-Bench grades with must be there, in the `[[rating]]` format."""
    prompts = {p["name"]: p for _, p in _rows(Path(path), dict.fromkeys(PROMPT_FIELDS, str))}
    for name in JUDGE_PROMPTS.values():
        p = prompts.get(name)
        if p is None or p["type"] != "single" or p["output_format"] != "[[rating]]":
            raise DataError(path, name, "missing, or not a single-answer `[[rating]]` prompt", FIX)
    return prompts


def read_reference(path: str | Path) -> dict[str, list[str]]:
    """reference_answer/gpt-4.jsonl: question_id (as text) -> the reference's turns (its first choice)."""
    out = {}
    for n, row in _rows(Path(path), {"question_id": (int, str), "choices": list}):
        first = row["choices"][0] if row["choices"] else None
        turns = first.get("turns") if isinstance(first, dict) else None
        if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
            raise DataError(path, f"line {n}", "needs choices[0].turns, a list of texts", FIX)
        out[str(row["question_id"])] = turns
    return out


def resolve_system(run: RunDir, checkpoint: str | None) -> tuple[str, str | None]:
    """(label, checkpoint folder) of `checkpoint`: `base` (folder None), a checkpoint's name, or None = the last."""
    if checkpoint == "base":
        return "base", None
    known = {c["name"]: c["path"] for c in run.list_checkpoints()}
    label = checkpoint or (list(known) or [None])[-1]
    if label not in known:
        have = ", ".join(["base", *known])
        raise DataError(run.checkpoint_index, None, f"has no checkpoint {label!r}", f"give --checkpoint one of {have}")
    return label, known[label]


def load_system(cfg: Config, path: str | None):
    """(model on the inference device, tokenizer, EOT id) of a checkpoint folder, or of the base model (None)."""
    dtype = models.torch_dtype(cfg.generate.precision)
    if path is None:
        model, tokenizer, eot_id = models.load_base(cfg.model, dtype=dtype)
    else:
        model, tokenizer = models.load_checkpoint(path, dtype=dtype)
        eot_id = models.checkpoint_eot_id(tokenizer, path, ChatFormat.of(cfg.model))
    return models.to_inference_device(model), tokenizer, eot_id


def saved_answers(path: Path, questions: list[dict]) -> list[list[str]] | None:
    """The answers already in `path` to every question (a rerun for the same model id), else None."""
    if not path.is_file():
        return None
    by_id = {str(r["question_id"]): r["choices"][0]["turns"] for r in read_jsonl_plain(path)}
    answers = [by_id.get(str(q["question_id"])) for q in questions]
    return None if any(a is None or len(a) != 2 for a in answers) else answers


def answer_questions(
    model,
    tokenizer,
    eot_id: int,
    fmt: ChatFormat,
    questions: list[dict],
    batch_size: int = 8,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> list:
    """Both turns of every question: turn 2 asked after the model's own first answer, each category at its
    temperature (0 = greedy), at most `max_new_tokens` new tokens (FastChat's 1,024). Returns each question's [first, second] answer."""
    history: list[list[dict]] = [[] for _ in questions]
    for turn in range(2):
        by_temperature: dict[float, list[int]] = {}
        for i, q in enumerate(questions):
            by_temperature.setdefault(TEMPERATURE.get(q["category"], DEFAULT_TEMPERATURE), []).append(i)
        for temperature, idx in by_temperature.items():
            g = GenerateConfig(
                temperature=temperature if temperature >= 1e-4 else 0.0,  # FastChat: below 1e-4 is greedy
                top_p=1.0,
                repetition_penalty=1.0,
                max_new_tokens=max_new_tokens,
                batch_size=batch_size,
            )
            for i in idx:
                history[i].append({"role": "user", "content": questions[i]["turns"][turn]})
            prompts = [encode_prompt(tokenizer, history[i], fmt) for i in idx]
            for i, r in zip(idx, sample(model, tokenizer, eot_id, prompts, g, desc=f"mt-bench turn {turn + 1}")):
                text = tokenizer.decode(r["ids"], skip_special_tokens=True).strip()
                history[i].append({"role": "assistant", "content": text})
    return [[m["content"] for m in h if m["role"] == "assistant"] for h in history]


def answer_rows(questions: list[dict], answers: list[list[str]], model_id: str) -> list[dict]:
    """FastChat's model_answer rows (gen_model_answer.py), sorted by question id as its reorg_answer_file does."""
    rows = [
        {
            "question_id": q["question_id"],
            "answer_id": uuid.uuid4().hex,
            "model_id": model_id,
            "choices": [{"index": 0, "turns": turns}],
            "tstamp": time.time(),
        }
        for q, turns in zip(questions, answers)
    ]
    return sorted(rows, key=lambda r: (str(type(r["question_id"])), r["question_id"]))


class FastChatJudge(OpenAIJudge):
    """remote.OpenAIJudge (retries, key redaction, cost) at FastChat's temperature 0 and 2,048 tokens; a request's
    messages (FastChat's system prompt, then the user's) are sent as they are."""

    def __init__(self, jc):
        super().__init__(replace(jc, temperature=JUDGE_TEMPERATURE, max_tokens=JUDGE_MAX_TOKENS))


def grading_requests(questions, answers, reference, prompts, identity: dict, model_id: str) -> list[Request]:
    """One request per (question, turn), rendered with FastChat's prompt for its category and turn."""
    reqs = []
    for q, (a1, a2) in zip(questions, answers):
        ref = q["category"] in NEED_REF_CATS
        for turn in (1, 2):
            p = prompts[JUDGE_PROMPTS[(ref, turn == 2)]]
            values = {"question": q["turns"][0], "answer": a1} if turn == 1 else {}
            if turn == 2:
                values = {"question_1": q["turns"][0], "question_2": q["turns"][1], "answer_1": a1, "answer_2": a2}
            if ref:
                ref_turns = reference.get(str(q["question_id"]), [])
                values |= {f"ref_answer_{k + 1}": t for k, t in enumerate(ref_turns[:turn])}
            try:
                user = p["prompt_template"].format(**values)
            except (KeyError, IndexError) as e:
                raise DataError(p["name"], None, f"its prompt_template needs {e} ({q['question_id']})", FIX) from e
            system = [{"role": "system", "content": p["system_prompt"]}] if p["system_prompt"] else []
            messages = (*system, {"role": "user", "content": user})
            thash = template_hash(p["system_prompt"] + p["prompt_template"])
            key = cache_key(identity, "mt_bench", thash, user, messages)
            meta = {"question_id": q["question_id"], "category": q["category"], "turn": turn, "name": p["name"]}
            reqs.append(
                Request(key=key, protocol="mt_bench", prompt=user, meta={**meta, "model": model_id}, messages=messages)
            )
    return reqs


def grade(judge, requests: list[Request], cache: JudgmentCache, max_cost_usd: float | None) -> tuple[list, dict]:
    """Ask the judge for every uncached request once (FastChat does not ask again for an unparsable rating);
    returns FastChat's model_judgment rows (score -1: unparsable or failed) and counts."""
    pending = list({r.key: r for r in requests if r.key not in cache}.values())
    check_cost(judge, pending, max_cost_usd)
    errors: dict[str, str] = {}
    for i, c in judge.complete_many(pending):
        if c.error:
            errors[pending[i].key] = c.error
            continue
        cache.put({"key": pending[i].key, "judge": judge.name, "raw": c.text, "usage": c.usage, "cost": c.cost})
    rows = []
    for r in requests:
        hit = cache.get(r.key) or {"raw": "", "error": errors.get(r.key, "not judged")}
        judge_pair = [judge.identity()["model"], r.meta["name"]]
        score = parse_rating(hit["raw"]) if "error" not in hit else -1.0
        rows.append({**r.meta, "judge": judge_pair, "user_prompt": r.prompt, "judgment": hit["raw"], "score": score})
        if "error" in hit:
            rows[-1]["error"] = hit["error"]
    failed = sum("error" in r for r in rows)
    if rows and failed == len(rows):
        raise JudgeError(f"judge {judge.name}: all {failed} MT-Bench requests failed (first: {rows[0]['error'][:300]})")
    counts = {"requests": len(rows), "sent": len(pending), "cached": len(rows) - len(pending), "failed": failed}
    return rows, counts


def summarize(scores: list[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """The MT-Bench score: the mean of the valid turn scores with a bootstrap CI, per turn and per category;
    unparsable ratings (-1) are counted and left out, as FastChat's show_result.py does."""

    def mean(rows):
        return analysis.bootstrap_mean([r["score"] for r in rows if r["score"] != -1], n_boot, seed)

    return {
        "score": mean(scores),
        "turns": {str(t): mean([r for r in scores if r["turn"] == t]) for t in (1, 2)},
        "categories": {
            c: mean([r for r in scores if r["category"] == c]) for c in sorted({r["category"] for r in scores})
        },
        "turn_scores": len(scores),
        "invalid": sum(r["score"] == -1 for r in scores),
    }


def run_mt_bench(
    cfg: Config,
    questions: str | Path,
    judge_prompts: str | Path,
    reference: str | Path,
    checkpoint: str | None = None,
    model_id: str | None = None,
    grade_answers: bool = True,
    judge=None,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> Path:
    """Answer MT-Bench with `checkpoint` (default: the last), write FastChat's answers file, grade it with
    `cfg.judge` (or `judge`), and write `<run>/mt_bench/results.json`; returns `<run>/mt_bench`. `max_new_tokens`
    other than FastChat's 1,024 (tests) is recorded in results.json: such a score is not comparable."""
    run = RunDir.of(cfg)
    qs, prompts, refs = read_questions(questions), read_judge_prompts(judge_prompts), read_reference(reference)
    missing = [
        q["question_id"] for q in qs if q["category"] in NEED_REF_CATS and len(refs.get(str(q["question_id"]), [])) < 2
    ]
    if missing:
        raise DataError(reference, None, f"has no two-turn reference for questions {missing}", FIX)
    label, path = resolve_system(run, checkpoint)
    model_id = check_generator(model_id or generator_name(cfg.model.name, label), "--model-id")
    answers_path = run.mt_bench_answers(model_id)
    with Stage(cfg, "mt_bench", inputs=[questions, judge_prompts, reference]) as st:
        answers = saved_answers(answers_path, qs)  # reused: the same answers hit the judge cache on a rerun
        if answers is None:
            model, tokenizer, eot_id = load_system(cfg, path)
            seed_everything(cfg.generate.seed)
            answers = answer_questions(
                model, tokenizer, eot_id, ChatFormat.of(cfg.model), qs, cfg.generate.batch_size, max_new_tokens
            )
            write_jsonl(answers_path, answer_rows(qs, answers, model_id))
        st.extra["mt_bench"] = {"model_id": model_id, "answers": str(answers_path), "questions": len(qs)}
        if grade_answers:
            judge = judge or FastChatJudge(cfg.judge)
            reqs = grading_requests(qs, answers, refs, prompts, judge.identity(), model_id)
            cache = JudgmentCache.for_judge(run.judge_cache(cfg, "mt_bench"), judge)
            rows, counts = grade(judge, reqs, cache, cfg.judge.max_cost_usd)
            write_jsonl(run.mt_bench_judgments, rows)
            res = {"model_id": model_id, "judge": judge.name, "requests": counts, "max_new_tokens": max_new_tokens}
            res |= summarize(rows, cfg.judge.n_bootstrap, cfg.seed)
            write_json(run.mt_bench_results, res)
            st.extra["mt_bench"] |= {"score": res["score"], "invalid": res["invalid"], "requests": counts}
    return st.out
