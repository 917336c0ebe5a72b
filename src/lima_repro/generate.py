"""The generate stage: `run_generate(config) -> <run_dir>/generate`, and a `Chat` helper for notebooks.

Samples responses to the test prompts with LIMA's settings (`sampling.py`, docs/paper.md sec. 3) from the chosen
checkpoints (`generate.checkpoints`: the last, all, the one the select stage chose on the dev set, or names) and
optionally the untuned base model. `generations.jsonl` has one row per (checkpoint, prompt, sample). With
`generate.backend: vllm` (or `auto` on a GPU with vLLM installed) the sampling runs in vLLM instead and the rows
are the same; `vllm_backend` says how, and what differs.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from . import data, models
from .chat_format import ChatFormat, encode_prompt
from .config import Config, GenerateConfig
from .files import write_jsonl
from .provenance import seed_everything
from .runs import RunDir
from .sampling import prompt_ids, resolve_backend, sample, sampling_record
from .stage import Stage
from .vllm_backend import sample_with_vllm, warn_penalty_scope


def targets(cfg: Config) -> list[tuple[str, str | None]]:
    """(label, checkpoint path) pairs to generate with; path None = the base model."""
    g, run, out = cfg.generate, RunDir.of(cfg), []
    if g.include_base:
        out.append(("base", None))
    if isinstance(g.checkpoints, list):
        known = {c["name"]: c["path"] for c in run.list_checkpoints()} if run.checkpoint_index.is_file() else {}
        for c in g.checkpoints:
            if c in known:
                out.append((c, known[c]))
            elif Path(c).is_dir():
                out.append((Path(c).name, str(Path(c))))
            else:
                raise FileNotFoundError(
                    f"generate.checkpoints: {c!r} is neither a checkpoint of {run.checkpoints} nor a folder"
                )
    elif g.checkpoints == "selected":  # LIMA sec. 3: the checkpoint the select stage chose on the dev set
        sel = run.read_selection()
        out.append((sel["chosen"], sel["path"]))
    else:
        ckpts = run.list_checkpoints()
        if not ckpts:
            raise FileNotFoundError(f"{run.checkpoint_index} lists no checkpoints: run the train stage first")
        out += [(c["name"], c["path"]) for c in (ckpts if g.checkpoints == "all" else ckpts[-1:])]
    return out


def generate_rows(
    cfg: Config, examples: list[dict], targets: list[tuple[str, str | None]], prompts_path: Path, out_file: Path
) -> list[dict]:
    """Sample responses to `examples` with each (label, checkpoint path) target (None = the base model); the
    rows are rewritten to `out_file` after each model, so the file is never half a model."""
    g, fmt = cfg.generate, ChatFormat.of(cfg.model)
    backend = resolve_backend(g)
    if backend == "vllm":
        warn_penalty_scope(g)
    rows: list[dict] = []
    for label, path in targets:
        if backend == "vllm":
            tokenizer, ids, results = sample_with_vllm(cfg, examples, path, prompts_path, out_file.parent)
        else:
            if path is None:
                model, tokenizer, eot_id = models.load_base(cfg.model, dtype=models.torch_dtype(g.precision))
            else:  # several GPUs: the checkpoint's layers spread over them as it loads
                model, tokenizer = models.load_checkpoint(
                    path, dtype=models.torch_dtype(g.precision), device_map=models.inference_device_map()
                )
                eot_id = models.checkpoint_eot_id(tokenizer, path, fmt)
            model = models.to_inference_device(model)
            ids = prompt_ids(examples, tokenizer, fmt, model.config, g, prompts_path)
            seed_everything(g.seed)
            results = sample(model, tokenizer, eot_id, ids, g, desc=f"generate {label}")
            del model
        for r in results:
            ex = examples[r["prompt_index"]]
            rows.append(
                {
                    "checkpoint": label,
                    "checkpoint_path": path,
                    "prompt_id": ex["id"],
                    "source": ex["source"],
                    "tags": ex["tags"],
                    "sample": r["sample"],
                    "messages": data.prompt_messages(ex),
                    "response": tokenizer.decode(r["ids"], skip_special_tokens=True).strip(),
                    "prompt_tokens": len(ids[r["prompt_index"]]),
                    "response_tokens": len(r["ids"]),
                    "max_new_tokens": r["max_new_tokens"],  # the row's cap: the config's, or the context left
                    "stopped_at_eot": r["stopped_at_eot"],
                    "stop": r["stop"],
                    "reference": data.reference_answer(ex),
                }
            )
        write_jsonl(out_file, rows)
    return rows


def run_generate(cfg: Config) -> Path:
    """Generate responses to the test prompts with the chosen checkpoints (and optionally the base model)."""
    g, run = cfg.generate, RunDir.of(cfg)
    prompts_path = run.prompts_file(cfg)
    examples = data.read_examples(prompts_path, ends_with="user")[: g.max_prompts]
    chosen = targets(cfg)
    dev_path = run.eval_file(cfg)
    dev = data.read_examples(dev_path, ends_with="assistant") if g.dev_responses and dev_path.is_file() else []
    with Stage(cfg, "generate", inputs=[prompts_path, *([dev_path] if dev else [])]) as st:
        rows = generate_rows(cfg, examples, chosen, prompts_path, run.generations)
        if dev:  # held-out prompts with references: the judge's reference-based check
            generate_rows(cfg, dev, chosen, dev_path, run.reference_generations)
        st.extra["generation"] = {
            "rows": len(rows),
            "prompts": len(examples),
            "dev_prompts": len(dev),
            "targets": [lbl for lbl, _ in chosen],
            **sampling_record(g),
        }
        st.extra["stops"] = stop_shares(rows)  # does each model answer and stop at the format's end of turn?
    return st.out


def stop_shares(rows: list[dict]) -> dict[str, dict]:
    """Per checkpoint: responses, the share (%) that stopped at the end of turn (`eot`: LIMA's EOT, or EOS under
    vicuna), at another EOS and at max_new_tokens, median length."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["checkpoint"], []).append(r)
    return {
        label: {
            "n": len(rs),
            **{
                f"{s}_pct": 100.0 * sum(r.get("stop") == s for r in rs) / len(rs)
                for s in ("eot", "eos", "max_new_tokens")
            },
            "median_tokens": statistics.median(r["response_tokens"] for r in rs),
        }
        for label, rs in by.items()
    }


class Chat:
    """Multi-turn chat with a checkpoint, sampled as in LIMA, in the conversation format it was trained in. In a
    notebook:

    >>> chat = Chat("runs/.../train/checkpoints/epoch-2")
    >>> chat("How do I keep basil alive indoors?")
    >>> chat("And in winter?")        # the history is kept; chat.reset() starts over
    """

    def __init__(self, checkpoint: str | Path, **generate_overrides):
        """`generate_overrides`: GenerateConfig fields (top_p, temperature, max_new_tokens, precision, ...)."""
        self.settings = GenerateConfig(max_new_tokens=512, num_samples=1, batch_size=1)
        for k, v in generate_overrides.items():
            setattr(self.settings, k, v)
        self.model, self.tokenizer = models.load_checkpoint(
            checkpoint, dtype=models.torch_dtype(self.settings.precision)
        )
        self.model = models.to_inference_device(self.model)
        info = models.read_checkpoint_info(checkpoint)
        # a checkpoint saved before the format was recorded was trained in LIMA's
        self.format = ChatFormat(info.get("chat_template", "lima"), info["eot_token"]) if info else ChatFormat()
        self.eot_id = self.tokenizer.convert_tokens_to_ids(self.format.end_token(self.tokenizer))
        self.history: list[dict] = []

    def __call__(self, text: str) -> str:
        self.history.append({"role": "user", "content": text})
        ids = encode_prompt(self.tokenizer, self.history, self.format)
        (out,) = sample(self.model, self.tokenizer, self.eot_id, [ids], self.settings, progress=False)
        reply = self.tokenizer.decode(out["ids"], skip_special_tokens=True).strip()
        self.history.append({"role": "assistant", "content": reply})
        return reply

    def reset(self) -> None:
        self.history = []
