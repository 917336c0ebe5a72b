"""The superficial-alignment test by token-distribution shift (Lin et al. 2023, "URIAL"; docs/paper.md sec. 6).

For every position of the fine-tuned model's response, the rank of the token it wrote under the BASE model
given the same prefix (prompt + response so far): rank 1 = unshifted, rank 2-3 = marginal, beyond = shifted.
LIMA's hypothesis predicts few, mostly stylistic shifted tokens. Lin et al. decoded the aligned model greedily;
LIMA's recipe samples (top-p 0.9, T 0.7), so the same ranks are also computed under the fine-tuned model itself as
a control: its own share of non-top-1 tokens is the part of the shift that sampling alone explains (`note` says
which applies to a run).
Responses are re-tokenized from their stored text, which can differ slightly from the sampled ids.
"""

from __future__ import annotations

import gc
from collections import Counter

import torch

from . import models
from .chat_format import ChatFormat, encode_prompt
from .config import ConfigError
from .data import DataError
from .runs import RunDir

URIAL = "URIAL (Lin et al. 2023): 7.8% shifted for Llama-2-7B-chat, 4.8% Vicuna-7B, 5.2% Mistral-7B-Instruct"


def note(g) -> str:
    """What the share means for answers decoded as `g` (GenerateConfig) says: greedy answers are URIAL's setting;
    sampled ones need the control (the tuned model's own share of non-top-1 tokens) subtracted."""
    how = (
        "here the answers are greedy too, so the shares compare in kind"
        if g.temperature == 0
        else f"here the answers are sampled (top-p {g.top_p:g}, T {g.temperature:g}), so the tuned model's own "
        "share of non-top-1 tokens (the control) is the part sampling explains, and what is left over is the shift"
    )
    return (
        "Computed on the tuned model's answers (responses that ended their turn), each token ranked under the base "
        f"model given the same prefix. URIAL's 5-8% compare 7B chat models with their bases on greedy answers; {how}. "
        "Which tokens move says whether the shift is stylistic; the share measures this run's model and data, not "
        "how large models align in general."
    )


@torch.no_grad()
def token_ranks(model, prompt_ids: list[int], response_ids: list[int]) -> list[int]:
    """Rank (1 = most probable) of each response token under `model`, given the prompt and the response before it."""
    if not response_ids:
        return []
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids + response_ids], device=device)
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float()  # position t predicts token t+1
    target = torch.tensor(response_ids, device=device)
    picked = logits.gather(1, target[:, None])
    return ((logits > picked).sum(dim=1) + 1).tolist()


def shift_stats(ranks: list[int]) -> dict:
    """Shares (%) of unshifted (rank 1), marginal (rank 2-3) and shifted (rank > 3) positions."""
    n = len(ranks)
    if n == 0:
        return {"positions": 0, "unshifted_pct": None, "marginal_pct": None, "shifted_pct": None}
    return {
        "positions": n,
        "unshifted_pct": 100.0 * sum(r == 1 for r in ranks) / n,
        "marginal_pct": 100.0 * sum(2 <= r <= 3 for r in ranks) / n,
        "shifted_pct": 100.0 * sum(r > 3 for r in ranks) / n,
    }


def encode_rows(rows: list[dict], tokenizer, fmt: ChatFormat) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids) of each row in format `fmt`, with the fine-tuned model's tokenizer."""
    return [
        (encode_prompt(tokenizer, r["messages"], fmt), tokenizer(r["response"], add_special_tokens=False)["input_ids"])
        for r in rows
    ]


def ranks_under(model, encoded: list[tuple[list[int], list[int]]]) -> list[list[int]]:
    """Every response token's rank under `model` (`token_ranks` per row)."""
    model.eval()
    return [token_ranks(model, p, resp) for p, resp in encoded]


def summarize(
    rows: list[dict],
    encoded,
    base_ranks: list[list[int]],
    tokenizer,
    control_ranks: list[list[int]] | None = None,
    top_k: int = 20,
) -> dict:
    """Token-shift statistics over one system's rows from the per-row ranks under the base model (and under the
    fine-tuned model itself, the control)."""
    shifted, per_row = Counter(), []
    for i, (r, (_, resp_ids), ranks) in enumerate(zip(rows, encoded, base_ranks)):
        for tok, rank in zip(resp_ids, ranks):
            if rank > 3:
                shifted[tokenizer.decode([tok])] += 1
        row = {"prompt_id": r["prompt_id"], "sample": r.get("sample", 0), **shift_stats(ranks)}
        if control_ranks is not None:
            row["control_unshifted_pct"] = shift_stats(control_ranks[i])["unshifted_pct"]
        per_row.append(row)
    out = {
        "base": shift_stats([k for ranks in base_ranks for k in ranks]),
        "per_response": per_row,
        "top_shifted_tokens": [{"token": t, "count": c} for t, c in shifted.most_common(top_k)],
    }
    if control_ranks is not None:
        out["control_finetuned_self"] = shift_stats([k for ranks in control_ranks for k in ranks])
    return out


def analyse_rows(rows: list[dict], base_model, tokenizer, fmt: ChatFormat, control_model=None, top_k: int = 20) -> dict:
    """Token-shift statistics over generation rows (one system) with both models at hand. `tokenizer` must be the
    fine-tuned model's (the base model gets the same EOT token added, so ids agree)."""
    encoded = encode_rows(rows, tokenizer, fmt)
    control = ranks_under(control_model, encoded) if control_model is not None else None
    return summarize(rows, encoded, ranks_under(base_model, encoded), tokenizer, control, top_k)


def _free_memory() -> None:
    """After the caller drops its model: give its memory back before the next one loads."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_token_shift(cfg, rows: list[dict], system: str, control: bool = True) -> dict:
    """Analyse the `system` checkpoint's responses under the base model (and under itself, the control). The two
    models are loaded one after the other, in `generate.precision` (bf16 on GPUs), each spread over the visible GPUs
    when there are several, so the test needs one model's memory, not two in fp32 (65B: ~130 GB, not ~520 GB). The
    judge stage runs it after its judgments are written and records an out-of-memory failure instead of failing."""
    responses = [r for r in rows if r["checkpoint"] == system]
    mine = [r for r in responses if r.get("stopped_at_eot") is not False]  # answers: they ended their turn
    paths = {r["checkpoint_path"] for r in responses}
    if len(paths) != 1 or None in paths:
        raise DataError(
            RunDir.of(cfg).generations,
            f"checkpoint {system!r}",
            f"token shift needs one checkpoint folder for its responses, the rows name {sorted(map(str, paths))}",
            "generate again (each row records its checkpoint_path), or set judge.token_shift: false",
        )
    dtype, ckpt = models.torch_dtype(cfg.generate.precision), paths.pop()
    model, tokenizer = models.load_checkpoint(ckpt, dtype=dtype, device_map=models.inference_device_map())
    encoded = encode_rows(mine, tokenizer, ChatFormat.of(cfg.model))
    control_ranks = ranks_under(models.to_inference_device(model), encoded) if control else None
    del model
    _free_memory()
    model, base_tok, _ = models.load_base(cfg.model, dtype=dtype)
    if len(base_tok) != len(tokenizer):
        raise ConfigError(
            f"model.name {cfg.model.name!r}: its tokenizer has {len(base_tok)} tokens, checkpoint "
            f"{ckpt}'s {len(tokenizer)}: not the model {system!r} was fine-tuned from. Fix: set "
            "model.name to that checkpoint's base model, or judge.token_shift: false"
        )
    base_ranks = ranks_under(models.to_inference_device(model), encoded)
    del model
    _free_memory()
    result = summarize(mine, encoded, base_ranks, tokenizer, control_ranks)
    result.update(
        {
            "system": system,
            "base_model": cfg.model.name,
            "responses": len(responses),
            "answers_analysed": len(mine),
            "precision": "bf16" if dtype == torch.bfloat16 else "fp32",
            "reference": URIAL,
            "note": note(cfg.generate),
        }
    )
    return result
