"""The LIMA conversation format: each utterance followed by a new end-of-turn token (EOT).

LIMA sec. 3 (docs/paper.md sec. 2): a NEW special token after every utterance, distinct from EOS, so the
pretrained meaning of EOS is left alone. No role markers: turns alternate user/assistant. A system message,
if any, is prepended to the first user turn with a blank line. The same rule exists twice, as a Jinja chat
template (so plain transformers formats conversations like training does) and as `render` here; a test
checks they agree.

Only assistant utterances and the EOT after each carry loss; prompts (user and system text) do not.

`render_vicuna` is the other named format (`model.chat_template: vicuna`): FastChat's vicuna_v1.1, which the
published LIMA-1k runs on Llama-2-7B used (docs/paper.md sec. 6), so a calibration run can match them.
"""

from __future__ import annotations

IGNORE = -100  # label value that carries no loss (PyTorch cross_entropy ignore_index)


def chat_template(eot: str) -> str:
    """Jinja template installed on every tokenizer this package saves."""
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


def encode(tokenizer, messages: list[dict], eot: str, max_length: int | None = None) -> dict:
    """Token ids and labels for one conversation.

    Tokenizes the whole rendered text once (exactly what `apply_chat_template` gives) and marks a token as a
    label when it starts inside an assistant span. Texts over `max_length` tokens are trimmed at the end
    (LIMA sec. 3: sequences over 2,048 tokens trimmed).
    """
    if not getattr(tokenizer, "is_fast", True):
        raise TypeError("lima_repro needs a fast (Rust) tokenizer for offset mapping; load with use_fast=True")
    text, spans = render(messages, tokenizer.bos_token, eot)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, labels, k = enc["input_ids"], [], 0
    for tok_id, (start, end) in zip(ids, enc["offset_mapping"]):
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        in_span = k < len(spans) and spans[k][0] <= start < spans[k][1] and end > start
        labels.append(tok_id if in_span else IGNORE)
    if max_length is not None and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": list(ids), "labels": labels}


def encode_prompt(tokenizer, messages: list[dict], eot: str) -> list[int]:
    """Token ids of a conversation that ends with a user turn: the model continues with the assistant turn."""
    text, _ = render(messages, tokenizer.bos_token, eot)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
