"""Conversation formats: how a conversation becomes text, which characters carry loss, the Jinja chat template
saved with checkpoints, and the token that ends a turn. `ChatFormat` (chosen by `model.chat_template`) is the one
place that dispatches on the format's name; train, generate, select, the token-shift test, MT-Bench and `Chat` all
encode through it.

`lima` (the default): LIMA sec. 3 (docs/paper.md sec. 2): a NEW special token (EOT) after every utterance, distinct
from EOS, so the pretrained meaning of EOS is left alone. No role markers: turns alternate user/assistant. A system
message, if any, is prepended to the first user turn with a blank line.

`vicuna`: FastChat's vicuna_v1.1, which the published LIMA-1k runs on Llama-2-7B used (docs/paper.md sec. 6), so a
calibration run can match them. No token is added: each assistant turn ends with the tokenizer's own EOS (Llama's
`</s>`), which is then the format's end of turn ("eot" in generation rows' `stop`).

Each format exists twice, as a Jinja chat template (so plain transformers formats conversations like training does)
and as a `render_*` function here; tests check they agree. Only assistant utterances and the end-of-turn token after
each carry loss; prompts (user and system text, role markers) do not.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE = -100  # label value that carries no loss (PyTorch cross_entropy ignore_index)


def chat_template(eot: str) -> str:
    """Jinja of `render` (LIMA's format), installed on the tokenizer of a `lima` run."""
    return (
        "{% if bos_token %}{{ bos_token }}{% endif %}"
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
        "{% else %}{{ message['content'] + '" + eot + "' }}{% endif %}"
        "{% endfor %}"
    )


def render(messages: list[dict], bos: str | None, eot: str) -> tuple[str, list[tuple[int, int]]]:
    """Render a conversation to text; also return the character spans that carry loss
    (each assistant utterance together with its EOT)."""
    parts, spans, pos = [bos or ""], [], len(bos or "")
    for m in messages:
        text = m["content"] + ("\n\n" if m["role"] == "system" else eot)
        if m["role"] == "assistant":
            spans.append((pos, pos + len(text)))
        parts.append(text)
        pos += len(text)
    return "".join(parts), spans


# FastChat's conversation.py, template vicuna_v1.1 (SeparatorStyle.ADD_COLON_TWO, sep " ", sep2 "</s>")
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def render_vicuna(
    messages: list[dict], bos: str | None, eos: str, generation_prompt: bool = False
) -> tuple[str, list[tuple[int, int]]]:
    """FastChat's vicuna_v1.1 text: the system line (its own when the conversation has none), then `USER: ...`
    and `ASSISTANT: ...` joined by a space, each assistant utterance ended by `eos` (Llama's `</s>`); with
    `generation_prompt` a trailing `ASSISTANT:` for the model to continue. Loss spans: each utterance and its `eos`."""
    system = next((m["content"] for m in messages if m["role"] == "system"), VICUNA_SYSTEM)
    text, spans = (bos or "") + system + " ", []
    for m in messages:
        if m["role"] == "user":
            text += f"USER: {m['content']} "
        elif m["role"] == "assistant":
            text += "ASSISTANT: "
            spans.append((len(text), len(text) + len(m["content"] + eos)))
            text += m["content"] + eos
    return text + ("ASSISTANT:" if generation_prompt else ""), spans


def vicuna_chat_template() -> str:
    """Jinja of `render_vicuna`, installed on the tokenizer of a `vicuna` run (`add_generation_prompt` adds the
    trailing `ASSISTANT:`)."""
    assert '"' not in VICUNA_SYSTEM  # it sits in a double-quoted Jinja string
    return (
        "{% if bos_token %}{{ bos_token }}{% endif %}"
        "{{ messages | selectattr('role', 'equalto', 'system') | map(attribute='content') | first"
        ' | default("' + VICUNA_SYSTEM + '") }} '
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}{{ 'USER: ' + message['content'] + ' ' }}"
        "{% elif message['role'] == 'assistant' %}{{ 'ASSISTANT: ' + message['content'] + eos_token }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
    )


@dataclass(frozen=True)
class ChatFormat:
    """The conversation format of `model.chat_template` (`lima` or `vicuna`) with LIMA's EOT token's name."""

    name: str = "lima"
    eot: str = "<|eot|>"
    """LIMA's end-of-turn token (`model.eot_token`); `vicuna` adds no token and ends turns with EOS."""

    @classmethod
    def of(cls, model_config) -> ChatFormat:
        """The format a `ModelConfig` names."""
        return cls(model_config.chat_template, model_config.eot_token)

    @property
    def new_token(self) -> str | None:
        """The special token this format adds to the vocabulary (LIMA's EOT), or None (`vicuna`)."""
        return self.eot if self.name == "lima" else None

    def end_token(self, tokenizer) -> str:
        """The token that ends every assistant turn: LIMA's EOT, or the tokenizer's EOS for `vicuna`."""
        return self.new_token or tokenizer.eos_token

    def jinja(self) -> str:
        """The chat template saved with checkpoints; `apply_chat_template` gives `render`'s text."""
        return chat_template(self.eot) if self.new_token else vicuna_chat_template()

    def render(self, messages: list[dict], tokenizer, generation_prompt: bool = False):
        """(text, loss spans) of a conversation; `generation_prompt`: end with what the assistant's turn starts
        with (nothing in LIMA's format, `ASSISTANT:` in vicuna's)."""
        if self.new_token:
            return render(messages, tokenizer.bos_token, self.eot)
        return render_vicuna(messages, tokenizer.bos_token, tokenizer.eos_token, generation_prompt)


def encode(tokenizer, messages: list[dict], fmt: ChatFormat, max_length: int | None = None) -> dict:
    """Token ids and labels for one conversation in format `fmt`.

    Tokenizes the whole rendered text once (exactly what `apply_chat_template` gives) and marks a token as a
    label when it overlaps an assistant span (a token that also holds the separator before the answer, as Llama's
    `▁Yes` after `ASSISTANT:`, carries loss, as in FastChat's training). Texts over `max_length` tokens are
    trimmed at the end (LIMA sec. 3: sequences over 2,048 tokens trimmed).
    """
    if not getattr(tokenizer, "is_fast", True):
        raise TypeError("lima_repro needs a fast (Rust) tokenizer for offset mapping; load with use_fast=True")
    text, spans = fmt.render(messages, tokenizer)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, labels, k = enc["input_ids"], [], 0
    for tok_id, (start, end) in zip(ids, enc["offset_mapping"]):
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        in_span = k < len(spans) and end > max(start, spans[k][0])  # start < the span's end (the loop above)
        labels.append(tok_id if in_span else IGNORE)
    if max_length is not None and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": list(ids), "labels": labels}


def encode_prompt(tokenizer, messages: list[dict], fmt: ChatFormat) -> list[int]:
    """Token ids of a conversation that ends with a user turn, as the model continues it with the assistant turn."""
    text, _ = fmt.render(messages, tokenizer, generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
