"""Sampling responses: `run_generate(config) -> <run_dir>/generate` and a `Chat` helper for notebooks.

LIMA sec. 3 (PAPER.md sec. 3): nucleus sampling p = 0.9, temperature 0.7, a repetition penalty of 1.2 on
tokens generated so far (not on the prompt), at most 2,048 new tokens, stopping at the EOT token.
Prompts are sorted by length and generated in left-padded batches with the KV cache; a row leaves its
batch (and the cache) as soon as it samples EOT, so finished rows cost nothing. `generations.jsonl` has one row
per (checkpoint, prompt, sample). With `generate.backend: vllm` (or `auto` on a GPU with vLLM installed) the
sampling runs in vLLM instead and the rows are the same; `vllm_backend` says how, and what differs.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor

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


def top_p_sample(logits: torch.Tensor, top_p: float, temperature: float) -> torch.Tensor:
    """One token per row from softmax(logits / temperature) restricted to the nucleus: the most likely tokens
    whose mass before each is < top_p (transformers' TopPLogitsWarper keeps the same set). The nucleus is found
    among the top k tokens, k growing until it holds top_p of the mass, instead of sorting a 262K vocabulary."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    k = min(64, probs.shape[-1])
    while True:
        top, idx = probs.topk(k, dim=-1)
        cum = top.cumsum(-1)
        if k == probs.shape[-1] or bool((cum[:, -1] >= top_p).all()):
            break
        k = min(k * 8, probs.shape[-1])
    keep = (cum - top) < top_p
    keep[:, 0] = True  # at least one token
    choice = torch.multinomial(top * keep, 1)
    return idx.gather(1, choice).squeeze(1)


def _forward(model, takes_logits_to_keep: bool, **inputs) -> tuple[torch.Tensor, object]:
    out = model(**inputs, use_cache=True, **({"logits_to_keep": 1} if takes_logits_to_keep else {}))
    return out.logits[:, -1], out.past_key_values


@torch.no_grad()
def _decode(model, prompts: list[list[int]], pad: int, stops: list[int], g: GenerateConfig) -> list[list[int]]:
    """Sample continuations of left-padded `prompts` with the KV cache. A row that reaches a stop token leaves
    the batch and the cache at once, so finished rows cost nothing. Each result ends with its stop token if any."""
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):  # left padding: every prompt ends at column `width`
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    takes = "logits_to_keep" in inspect.signature(model.forward).parameters
    logits, cache = _forward(model, takes, input_ids=ids, attention_mask=mask, position_ids=pos)
    penalty = GeneratedRepetitionPenalty(g.repetition_penalty, prompt_len=0)
    stop = torch.tensor(stops, device=device)
    rows = torch.arange(len(prompts), device=device)  # which prompt each live row is
    generated = torch.empty((len(prompts), 0), dtype=torch.long, device=device)  # live rows' tokens so far
    out: list[list[int]] = [[] for _ in prompts]
    for step in range(g.max_new_tokens):
        token = top_p_sample(penalty(generated, logits), g.top_p, g.temperature)
        for r, t in zip(rows.tolist(), token.tolist()):
            out[r].append(t)
        live = ~torch.isin(token, stop)
        if step == g.max_new_tokens - 1 or not bool(live.any()):
            break
        if not bool(live.all()):
            keep = live.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, token, mask, pos, generated = rows[keep], token[keep], mask[keep], pos[keep], generated[keep]
        generated = torch.cat([generated, token[:, None]], 1)
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], 1)
        pos = pos[:, -1:] + 1
        logits, cache = _forward(model, takes, input_ids=token[:, None], attention_mask=mask, position_ids=pos,
                                 past_key_values=cache)
    return out


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
    bar = tqdm(total=len(items), desc=desc, unit="seq", disable=not progress)
    for start in range(0, len(items), g.batch_size):  # sorted by length: each batch holds similar lengths
        chunk = items[start : start + g.batch_size]
        for (_, i, s), new in zip(chunk, _decode(model, [prompts[i] for _, i, _ in chunk], pad, stops, g)):
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


def _checkpoint_eot_id(tokenizer, path: str | None, eot: str) -> int:
    if eot not in tokenizer.get_vocab():
        raise ValueError(f"{path} has no {eot} token, so it was not fine-tuned with this "
                         "format; to sample from an untuned model use generate.include_base")
    return tokenizer.convert_tokens_to_ids(eot)


REPETITION_PENALTY_SCOPE = {"torch": "generated", "vllm": "prompt+generated"}  # see vllm_backend's docstring


def resolve_backend(g: GenerateConfig) -> str:
    """`torch` or `vllm` for generate.backend: `auto` is vLLM when a CUDA GPU is present and vLLM imports."""
    if g.backend == "torch" or (g.backend == "auto" and not torch.cuda.is_available()):
        return "torch"
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        if g.backend == "auto":
            return "torch"
        raise ImportError("generate.backend is 'vllm' but vLLM cannot be imported: `pip install vllm` (needs a "
                          "CUDA GPU), or set generate.backend: torch") from e
    return "vllm"


def sampling_record(g: GenerateConfig) -> dict:
    """How responses are sampled under `g`, for the stage records (generate manifest, selection.json)."""
    backend = resolve_backend(g)
    return {"backend": backend, "repetition_penalty_scope": REPETITION_PENALTY_SCOPE[backend]}


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
    elif g.checkpoints == "selected":  # LIMA sec. 3: the checkpoint chosen on the dev set
        selection = Path(cfg.run_dir) / "select" / "selection.json"
        if not selection.exists():
            from .judge import run_select

            run_select(cfg)
        sel = json.loads(selection.read_text())
        targets.append((sel["chosen"], sel["path"]))
    else:
        ckpts = list_checkpoints(train_dir)
        if not ckpts:
            raise FileNotFoundError(f"{train_dir}/checkpoints.json lists no checkpoints: run the train stage first")
        for c in ckpts if g.checkpoints == "all" else ckpts[-1:]:
            targets.append((c["name"], c["path"]))
    return targets


def generate_rows(cfg: Config, examples: list[dict], targets: list[tuple[str, str | None]], prompts_path: Path,
                  out_file: Path) -> list[dict]:
    """Sample responses to `examples` with each (label, checkpoint path) target (None = the base model); the
    rows are rewritten to `out_file` after each model, so the file is never half a model."""
    g = cfg.generate
    backend = resolve_backend(g)
    if backend == "vllm":
        from .vllm_backend import sample_with_vllm, warn_penalty_scope

        warn_penalty_scope(g)
    rows: list[dict] = []
    for label, path in targets:
        if backend == "vllm":
            tokenizer, prompt_ids, results = sample_with_vllm(cfg, examples, path, prompts_path, out_file.parent)
        else:
            if path is None:
                model, tokenizer, eot_id = models.load_base(cfg.model, dtype=_dtype(g.precision))
            else:
                model, tokenizer = models.load_checkpoint(path, dtype=_dtype(g.precision))
                eot_id = _checkpoint_eot_id(tokenizer, path, cfg.model.eot_token)
            model = models.to_inference_device(model)
            prompt_ids = _prompt_ids(examples, tokenizer, cfg.model.eot_token, model, g, prompts_path)
            seed_everything(g.seed)
            results = sample(model, tokenizer, eot_id, prompt_ids, g, desc=f"generate {label}")
            del model
        for r in results:
            ex = examples[r["prompt_index"]]
            rows.append({
                "checkpoint": label, "checkpoint_path": path, "prompt_id": ex["id"], "source": ex["source"],
                "tags": ex["tags"], "sample": r["sample"], "messages": data.prompt_messages(ex),
                "response": tokenizer.decode(r["ids"], skip_special_tokens=True).strip(),
                "prompt_tokens": len(prompt_ids[r["prompt_index"]]), "response_tokens": len(r["ids"]),
                "stopped_at_eot": r["stopped_at_eot"],
            })
        write_jsonl(out_file, rows)
    return rows


def run_generate(cfg: Config) -> Path:
    """Generate responses to the test prompts with the chosen checkpoints (and optionally the base model)."""
    g = cfg.generate
    prompts_path = Path(g.prompts_file) if g.prompts_file else Path(cfg.run_dir) / "curate" / "test.jsonl"
    examples = data.read_examples(prompts_path, ends_with="user")[: g.max_prompts]
    targets = _targets(cfg)
    with Stage(cfg, "generate", inputs=[prompts_path]) as st:
        rows = generate_rows(cfg, examples, targets, prompts_path, st.out / "generations.jsonl")
        st.extra["generation"] = {"rows": len(rows), "prompts": len(examples), "targets": [lbl for lbl, _ in targets],
                                  **sampling_record(g)}
    return st.out


class Chat:
    """Multi-turn chat with a checkpoint, sampled as in LIMA. In a notebook:

    >>> chat = Chat("runs/.../train/checkpoints/epoch-3")
    >>> chat("How do I keep basil alive indoors?")
    >>> chat("And in winter?")        # the history is kept; chat.reset() starts over
    """

    def __init__(self, checkpoint: str | Path, **generate_overrides):
        self.model, self.tokenizer = models.load_checkpoint(checkpoint)
        self.model = models.to_inference_device(self.model)
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
