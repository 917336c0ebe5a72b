"""Sampling responses: `run_generate(config) -> <run_dir>/generate` and a `Chat` helper for notebooks.

LIMA sec. 3 (PAPER.md sec. 3): nucleus sampling p = 0.9, temperature 0.7, a repetition penalty of 1.2 on
tokens generated so far (not on the prompt), at most 2,048 new tokens, stopping at the EOT token.
Prompts are sorted by length and generated in left-padded batches; `generations.jsonl` has one row per
(checkpoint, prompt, sample).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

from . import data, models
from .chat_format import encode_prompt
from .config import Config, GenerateConfig
from .rundir import Stage, seed_everything, write_jsonl
from .train import list_checkpoints, resolve_precision


class GeneratedRepetitionPenalty(LogitsProcessor):
    """CTRL-style repetition penalty applied only to tokens generated after `prompt_len` (LIMA sec. 3)."""

    def __init__(self, penalty: float, prompt_len: int):
        self.penalty, self.prompt_len = penalty, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_len :]
        if self.penalty == 1.0 or generated.shape[1] == 0:
            return scores
        picked = scores.gather(1, generated)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        return scores.scatter(1, generated, picked)


def context_length(model) -> int | None:
    return getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", None)


@torch.no_grad()
def sample(model, tokenizer, eot_id: int, prompts: list[list[int]], g: GenerateConfig, desc: str = "generate",
           progress: bool = True) -> list[dict]:
    """Sample `g.num_samples` continuations of each tokenized prompt. Returns, per (prompt, sample) in input
    order, {"prompt_index", "sample", "ids", "stopped_at_eot"}."""
    model.eval()
    items = sorted(((len(p), i, s) for i, p in enumerate(prompts) for s in range(g.num_samples)), reverse=True)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eot_id
    stops = [eot_id] + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])
    results: dict[tuple[int, int], dict] = {}
    device = next(model.parameters()).device
    bar = tqdm(total=len(items), desc=desc, unit="seq", disable=not progress)
    for start in range(0, len(items), g.batch_size):
        chunk = items[start : start + g.batch_size]
        width = chunk[0][0]
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, (n, i, _) in enumerate(chunk):  # left padding: every prompt ends at column `width`
            ids[row, width - n :] = torch.tensor(prompts[i])
            mask[row, width - n :] = 1
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True, top_p=g.top_p, top_k=0,
            temperature=g.temperature, max_new_tokens=g.max_new_tokens, eos_token_id=stops, pad_token_id=pad,
            logits_processor=LogitsProcessorList([GeneratedRepetitionPenalty(g.repetition_penalty, width)]),
            repetition_penalty=None,
        )
        for row, (_, i, s) in enumerate(chunk):
            new = out[row, width:].tolist()
            stop_at = next((k for k, t in enumerate(new) if t in stops), None)
            results[(i, s)] = {"prompt_index": i, "sample": s, "ids": new[:stop_at] if stop_at is not None else new,
                               "stopped_at_eot": stop_at is not None and new[stop_at] == eot_id}
        bar.update(len(chunk))
    bar.close()
    return [results[(i, s)] for i in range(len(prompts)) for s in range(g.num_samples)]


def _prompt_ids(examples: list[dict], tokenizer, eot: str, model, g: GenerateConfig, path: Path) -> list[list[int]]:
    limit = context_length(model)
    out = []
    for ex in examples:
        ids = encode_prompt(tokenizer, data.prompt_messages(ex), eot)
        if limit is not None and len(ids) + g.max_new_tokens > limit:
            raise data.DataError(path, f"id {ex['id']}", f"prompt has {len(ids)} tokens; with generate.max_new_tokens="
                                 f"{g.max_new_tokens} it exceeds the model's context of {limit}",
                                 "shorten the prompt or lower generate.max_new_tokens")
        out.append(ids)
    return out


def _dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if resolve_precision(precision) == "bf16" else torch.float32


def _targets(cfg: Config) -> list[tuple[str, str | None]]:
    """(label, checkpoint path) pairs to generate with; path None = the base model."""
    g, targets = cfg.generate, []
    if g.include_base:
        targets.append(("base", None))
    train_dir = Path(cfg.run_dir) / "train"
    if isinstance(g.checkpoints, list):
        known = {c["name"]: c["path"] for c in list_checkpoints(train_dir)} if (train_dir / "checkpoints.json").exists() else {}
        for c in g.checkpoints:
            if c in known:
                targets.append((c, known[c]))
            elif Path(c).is_dir():
                targets.append((Path(c).name, str(Path(c))))
            else:
                raise FileNotFoundError(f"generate.checkpoints: {c!r} is neither a checkpoint of {train_dir} nor a folder")
    else:
        ckpts = list_checkpoints(train_dir)
        if not ckpts:
            raise FileNotFoundError(f"{train_dir}/checkpoints.json lists no checkpoints: run the train stage first")
        for c in ckpts if g.checkpoints == "all" else ckpts[-1:]:
            targets.append((c["name"], c["path"]))
    return targets


def run_generate(cfg: Config) -> Path:
    """Generate responses to the test prompts with the chosen checkpoints (and optionally the base model)."""
    g = cfg.generate
    prompts_path = Path(g.prompts_file) if g.prompts_file else Path(cfg.run_dir) / "curate" / "test.jsonl"
    examples = data.read_examples(prompts_path, ends_with="user")[: g.max_prompts]
    with Stage(cfg, "generate", inputs=[prompts_path]) as st:
        rows: list[dict] = []
        for label, path in _targets(cfg):
            if path is None:
                model, tokenizer, eot_id = models.load_base(cfg.model, dtype=_dtype(g.precision))
            else:
                model, tokenizer = models.load_checkpoint(path, dtype=_dtype(g.precision))
                if cfg.model.eot_token not in tokenizer.get_vocab():
                    raise ValueError(f"{path} has no {cfg.model.eot_token} token, so it was not fine-tuned with this "
                                     "format; to sample from an untuned model use generate.include_base")
                eot_id = tokenizer.convert_tokens_to_ids(cfg.model.eot_token)
            if torch.cuda.is_available():
                model.cuda()
            prompt_ids = _prompt_ids(examples, tokenizer, cfg.model.eot_token, model, g, prompts_path)
            seed_everything(g.seed)
            for r in sample(model, tokenizer, eot_id, prompt_ids, g, desc=f"generate {label}"):
                ex = examples[r["prompt_index"]]
                rows.append({
                    "checkpoint": label, "checkpoint_path": path, "prompt_id": ex["id"], "source": ex["source"],
                    "tags": ex["tags"], "sample": r["sample"], "messages": data.prompt_messages(ex),
                    "response": tokenizer.decode(r["ids"], skip_special_tokens=True).strip(),
                    "prompt_tokens": len(prompt_ids[r["prompt_index"]]), "response_tokens": len(r["ids"]),
                    "stopped_at_eot": r["stopped_at_eot"],
                })
            write_jsonl(st.out / "generations.jsonl", rows)  # rewritten after each model: never half a file
            del model
        st.extra["generation"] = {"rows": len(rows), "prompts": len(examples), "targets": [lbl for lbl, _ in _targets(cfg)]}
    return st.out


class Chat:
    """Multi-turn chat with a checkpoint, sampled as in LIMA. In a notebook:

    >>> chat = Chat("runs/.../train/checkpoints/epoch-3")
    >>> chat("How do I keep basil alive indoors?")
    >>> chat("And in winter?")        # the history is kept; chat.reset() starts over
    """

    def __init__(self, checkpoint: str | Path, **generate_overrides):
        self.model, self.tokenizer = models.load_checkpoint(checkpoint)
        info = Path(checkpoint) / "lima_checkpoint.json"
        self.eot = json.loads(info.read_text())["eot_token"] if info.exists() else "<|eot|>"
        self.eot_id = self.tokenizer.convert_tokens_to_ids(self.eot)
        self.settings = GenerateConfig(max_new_tokens=512, num_samples=1, batch_size=1)
        for k, v in generate_overrides.items():
            setattr(self.settings, k, v)
        self.history: list[dict] = []

    def __call__(self, text: str) -> str:
        self.history.append({"role": "user", "content": text})
        ids = encode_prompt(self.tokenizer, self.history, self.eot)
        (out,) = sample(self.model, self.tokenizer, self.eot_id, [ids], self.settings, progress=False)
        reply = self.tokenizer.decode(out["ids"], skip_special_tokens=True).strip()
        self.history.append({"role": "assistant", "content": reply})
        return reply

    def reset(self) -> None:
        self.history = []
