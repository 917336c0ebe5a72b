"""The superficial-alignment test by token-distribution shift (Lin et al. 2023, "URIAL"; PAPER.md sec. 6).

For every position of the fine-tuned model's response, the rank of the token it wrote under the BASE model
given the same prefix (prompt + response so far): rank 1 = unshifted, rank 2-3 = marginal, beyond = shifted.
LIMA's hypothesis predicts few, mostly stylistic shifted tokens. Lin et al. decoded the aligned model greedily;
our responses are sampled (top-p 0.9, T 0.7), so the same ranks are also computed under the fine-tuned model
itself as a control: its own share of non-top-1 tokens is the part of the shift that sampling alone explains.
Responses are re-tokenized from their stored text, which can differ slightly from the sampled ids.
"""
from __future__ import annotations

from collections import Counter

import torch

from . import models
from .chat_format import encode_prompt


URIAL = "URIAL (Lin et al. 2023): 7.8% shifted for Llama-2-7B-chat, 4.8% Vicuna-7B, 5.2% Mistral-7B-Instruct"
NOTE = ("Computed on the tuned model's answers (responses that ended at EOT), each token ranked under the base model "
        "given the same prefix. URIAL's 5-8% compare 7B chat models with their bases on greedy answers; here the "
        "answers are sampled (top-p 0.9, T 0.7), so the tuned model's own share of non-top-1 tokens (the control) "
        "is the part sampling explains, and what is left over is the shift. A 270M model tuned for minutes on a few "
        "dozen examples can show whether the shift is small and stylistic (which tokens move); its share is not a "
        "measurement of how a large model aligns.")


@torch.no_grad()
def token_ranks(model, prompt_ids: list[int], response_ids: list[int]) -> list[int]:
    """Rank (1 = most probable) of each response token under `model`, given the prompt and the response before it."""
    if not response_ids:
        return []
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids + response_ids], device=device)
    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1: -1].float()  # position t predicts token t+1
    target = torch.tensor(response_ids, device=device)
    picked = logits.gather(1, target[:, None])
    return ((logits > picked).sum(dim=1) + 1).tolist()


def shift_stats(ranks: list[int]) -> dict:
    """Shares (%) of unshifted (rank 1), marginal (rank 2-3) and shifted (rank > 3) positions."""
    n = len(ranks)
    if n == 0:
        return {"positions": 0, "unshifted_pct": None, "marginal_pct": None, "shifted_pct": None}
    return {"positions": n, "unshifted_pct": 100.0 * sum(r == 1 for r in ranks) / n,
            "marginal_pct": 100.0 * sum(2 <= r <= 3 for r in ranks) / n,
            "shifted_pct": 100.0 * sum(r > 3 for r in ranks) / n}


def analyse_rows(rows: list[dict], base_model, tokenizer, eot: str, control_model=None, top_k: int = 20) -> dict:
    """Token-shift statistics over generation rows (one system). `tokenizer` must be the fine-tuned model's
    (the base model gets the same EOT token added, so ids agree)."""
    base_ranks, control_ranks, shifted, per_row = [], [], Counter(), []
    for r in rows:
        prompt_ids = encode_prompt(tokenizer, r["messages"], eot)
        resp_ids = tokenizer(r["response"], add_special_tokens=False)["input_ids"]
        ranks = token_ranks(base_model, prompt_ids, resp_ids)
        base_ranks += ranks
        for tok, rank in zip(resp_ids, ranks):
            if rank > 3:
                shifted[tokenizer.decode([tok])] += 1
        row = {"prompt_id": r["prompt_id"], "sample": r.get("sample", 0), **shift_stats(ranks)}
        if control_model is not None:
            own = token_ranks(control_model, prompt_ids, resp_ids)
            control_ranks += own
            row["control_unshifted_pct"] = shift_stats(own)["unshifted_pct"]
        per_row.append(row)
    out = {"base": shift_stats(base_ranks), "per_response": per_row,
           "top_shifted_tokens": [{"token": t, "count": c} for t, c in shifted.most_common(top_k)]}
    if control_model is not None:
        out["control_finetuned_self"] = shift_stats(control_ranks)
    return out


def run_token_shift(cfg, rows: list[dict], system: str, control: bool = True) -> dict:
    """Load the base model and the `system` checkpoint and analyse its responses (the judge stage writes the
    result to judge/token_shift.{json,csv})."""
    responses = [r for r in rows if r["checkpoint"] == system]
    mine = [r for r in responses if r.get("stopped_at_eot") is not False]  # answers: they ended at EOT
    paths = {r["checkpoint_path"] for r in responses}
    if len(paths) != 1 or None in paths:
        raise ValueError(f"token shift needs one checkpoint folder for {system!r}, found {sorted(map(str, paths))}")
    ckpt_model, tokenizer = models.load_checkpoint(paths.pop())
    base_model, base_tok, _ = models.load_base(cfg.model)
    if len(base_tok) != len(tokenizer):
        raise ValueError(f"base tokenizer has {len(base_tok)} tokens, the checkpoint's {len(tokenizer)}: not the same base")
    ckpt_model, base_model = models.to_inference_device(ckpt_model), models.to_inference_device(base_model)
    result = analyse_rows(mine, base_model.eval(), tokenizer, cfg.model.eot_token,
                          control_model=ckpt_model.eval() if control else None)
    result.update({"system": system, "base_model": cfg.model.name, "responses": len(responses),
                   "answers_analysed": len(mine), "reference": URIAL, "note": NOTE})
    return result
