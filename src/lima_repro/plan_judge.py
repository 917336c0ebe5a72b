"""The judge stage in `plan`: requests per protocol, prompt and completion tokens, and dollars at `judge.price_*`.

The requests are the ones the judge stage would build (`judging.items.build_requests`, docs/paper.md sec. 4): our
system and each baseline answering the judged prompts (`judge.max_prompts` drawn as the stage draws them); pairwise
in both orders per baseline, absolute and Likert for every system, safety on prompts tagged `sensitive`, dialogue on
multi-turn prompts; each protocol on its share of the prompts (`judge.sample_sizes`, `judging.items.sample_requests`
as the stage draws it). The prompts are the test prompts when their file is here; otherwise the paper's 300 (30 of them
sensitive, docs/paper.md sec. 4; 20 others tagged `ood`, Fig. 3's out-of-distribution prompts, docs/paper.md sec. 5,
counted among the 300, which the paper does not say) at `train.max_length` tokens each, a ceiling. Every response is counted at the full
`generate.max_new_tokens` (a ceiling, as `plan`'s generation rows). Tokens and dollars come from the judge's own
estimate (`judging.remote.estimate_cost`: prompt characters / 4, `judge.max_tokens` completion tokens per request).
Transcripts in `judge.dialogue_files` are not counted.
"""

from __future__ import annotations

from . import data
from .config import Config
from .judging.items import build_requests, sample_requests
from .judging.remote import estimate_cost
from .judging.runner import sample_prompts

PAPER_SENSITIVE_PROMPTS = 30  # docs/paper.md sec. 4: 30 test prompts on sensitive topics
PAPER_OOD_PROMPTS = 20  # docs/paper.md sec. 5: Fig. 3's 20 out-of-distribution prompts
OURS = "system"


def judged_prompts(cfg: Config, path: str | None, count: int) -> list[dict]:
    """The test prompts as {id, messages, tags}: the file's when it is here, else `count` stand-ins of
    `train.max_length` tokens (chars/4), the paper's first 30 tagged sensitive and the next 20 ood."""
    if path and not data.is_hub(path) and data.resolve_path(path).is_file():
        examples = data.read_examples(path, ends_with="user")
        return [{"id": ex["id"], "messages": data.prompt_messages(ex), "tags": ex.get("tags", [])} for ex in examples]
    text = "x" * 4 * cfg.train.max_length
    return [
        {
            "id": f"p{i}",
            "messages": [{"role": "user", "content": text}],
            "tags": _stand_in_tags(i),
        }
        for i in range(count)
    ]


def _stand_in_tags(i: int) -> list[str]:
    """Stand-in prompt i's tags: the first 30 sensitive, the next 20 ood, the rest none."""
    if i < PAPER_SENSITIVE_PROMPTS:
        return ["sensitive"]
    return ["ood"] if i < PAPER_SENSITIVE_PROMPTS + PAPER_OOD_PROMPTS else []


def judge_plan(cfg: Config, prompts: list[dict]) -> dict[str, dict]:
    """Per protocol (and `total`): {"requests", "prompt_tokens", "completion_tokens", "usd"} for judging
    `prompts` (judged_prompts) as the judge stage would."""
    g, jc = cfg.generate, cfg.judge
    chosen = set(sample_prompts([p["id"] for p in prompts], jc.max_prompts, cfg.seed))
    response = "x" * 4 * g.max_new_tokens
    baselines = [b for b in jc.baselines if b != OURS]
    rows = [
        {
            "checkpoint": system,
            "prompt_id": p["id"],
            "sample": s,
            "messages": p["messages"],
            "tags": p["tags"],
            "response": response,
        }
        for p in prompts
        if p["id"] in chosen
        for system in [OURS, *baselines]
        # an imported baseline (judge.baseline_files) answered once; generated systems num_samples times
        for s in range(1 if system in jc.baseline_files else g.num_samples)
    ]
    requests = build_requests(rows, OURS, baselines, jc.protocols, {}, jc.templates_dir)
    requests, _ = sample_requests(requests, rows, jc.sample_sizes, cfg.seed)
    out = {name: estimate_cost(jc, [r for r in requests if r.protocol == name]) for name in jc.protocols}
    out["total"] = estimate_cost(jc, requests)
    return out


def format_judge_plan(jc, rows: dict[str, dict]) -> list[str]:
    """The judge block of the plan table: one line per protocol and the total."""
    lines = [
        f"judge {jc.model} at ${jc.price_input_per_mtok:g} per M prompt tokens, ${jc.price_output_per_mtok:g} per M "
        "completion tokens (judge.price_*)",
        f"{'judge protocol':30} {'requests':>9} {'prompt tokens':>14} {'completion':>12} {'USD':>10}",
    ]
    for name, r in rows.items():
        lines.append(
            f"{name:30} {r['requests']:>9,} {r['prompt_tokens']:>14,} {r['completion_tokens']:>12,} {r['usd']:>10.2f}"
        )
    lines.append(
        "judge tokens: prompt characters / 4 (the judge's own estimate) with every response at the full cap; "
        "completion = judge.max_tokens per request (a ceiling)"
    )
    return lines
