"""Per-turn dialogue judging (LIMA sec. 4, Fig. 7): every assistant turn of a live conversation graded
Fail / Pass / Excellent, not only the last one.

Transcripts are JSONL rows in the canonical format `{"id", "source", "messages", "tags"}` plus `"system"` (which
model produced the assistant turns), e.g. a `lima_repro.generate.Chat(...).history` saved with `save_transcript`.
Scripted conversations (the dialogue ablation) come from `read_script` + `hold_conversations`: an opening user
turn per row of a prompt list, then the same follow-ups in every conversation (or the row's own).
Assistant turn k is judged in its context: the conversation before it (`{{conversation}}`) and the turn itself
(`{{response}}`), with the same `dialogue` template, cache and runner as every other judgment.
"""

from __future__ import annotations

from pathlib import Path

from ..data import DataError, resolve_path
from ..files import append_jsonl, iter_jsonl, read_jsonl_plain
from ..provenance import seed_everything
from . import protocols
from .base import Request, cache_key

KIND = "dialogue_turn"
"""`kind` of a per-turn judgment row (kept apart from the generation-based protocols in the analysis)."""


def transcript_row(
    history: list[dict], conv_id: str, system: str, source: str = "live", tags: list[str] | None = None
) -> dict:
    """A conversation (a list of {role, content}, e.g. `Chat.history`) as one canonical transcript row."""
    msgs = [{"role": m["role"], "content": m["content"]} for m in history]
    _check_messages(msgs, f"conversation {conv_id!r}")
    return {
        "id": str(conv_id),
        "source": source,
        "messages": msgs,
        "tags": list(dict.fromkeys((tags or []) + ["multi_turn"])),
        "system": system,
    }


def save_transcript(
    chat_or_history, path: str | Path, conv_id: str, system: str, source: str = "live", tags: list[str] | None = None
) -> dict:
    """Append a `Chat` (anything with `.history`) or a message list to the transcripts JSONL `path` (flushed,
    fsynced). `system` names the model, e.g. "1,030 ex."; returns the row written."""
    history = getattr(chat_or_history, "history", chat_or_history)
    row = transcript_row(history, conv_id, system, source, tags)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    append_jsonl(path, row)
    return row


def _check_messages(msgs: list[dict], where: str, path=None) -> None:
    def bad(what: str) -> None:
        if path is None:
            raise ValueError(f"{where}: {what}")
        raise DataError(path, where, what, "rows need messages [{role, content}] with user/assistant turns")

    if not isinstance(msgs, list) or not msgs:
        bad("`messages` must be a non-empty list")
    for m in msgs:
        if (
            not isinstance(m, dict)
            or m.get("role") not in ("system", "user", "assistant")
            or not isinstance(m.get("content"), str)
        ):
            bad(f"bad message {m!r}")
    if not any(m["role"] == "assistant" for m in msgs):
        bad("no assistant turn to judge")


def read_script(spec: str | Path, n: int | None = None) -> list[dict]:
    """The first `n` (None = all) conversation openings of a prompt list: JSONL rows {"id", "prompt"} with an
    optional "follow_ups" list of the row's own later user turns (`demo:dialogue_prompts.jsonl` ships 10)."""
    path = resolve_path(spec)
    fix = 'write rows like {"id": "conv-01", "prompt": "...", "follow_ups": ["...", ...]} (follow_ups optional)'
    out: list[dict] = []
    for lineno, r in iter_jsonl(path, fix):
        ups = r.get("follow_ups", [])
        if not isinstance(r.get("prompt"), str) or not r["prompt"].strip():
            raise DataError(path, f"line {lineno}", "no non-empty `prompt` string", fix)
        if not isinstance(ups, list) or not all(isinstance(u, str) and u.strip() for u in ups):
            raise DataError(path, f"line {lineno}", "`follow_ups` must be a list of non-empty strings", fix)
        conv_id = str(r.get("id", lineno))
        if any(c["id"] == conv_id for c in out):
            raise DataError(path, f"line {lineno}", f"duplicate id {conv_id!r}", "give every row its own id")
        out.append({"id": conv_id, "prompt": r["prompt"], "follow_ups": ups})
    if not out:
        raise DataError(path, None, "the prompt list is empty", fix)
    return out[:n]


def hold_conversations(
    chat, script: list[dict], follow_ups: list[str], system: str, path: str | Path, seed: int
) -> list[dict]:
    """Hold every scripted conversation with `chat` (a `generate.Chat`, or anything called with a user turn that
    keeps `.history` and has `.reset()`): the opening, then the row's own follow-ups, else `follow_ups`. Each
    conversation starts from the same seed (reproducible whatever the order) and is appended to the transcripts
    JSONL `path` as soon as it ends; returns the rows written."""
    out = []
    for row in script:
        chat.reset()
        seed_everything(seed)
        for turn in [row["prompt"], *(row["follow_ups"] or follow_ups)]:
            chat(turn)
        out.append(save_transcript(chat, path, row["id"], system, source="scripted"))
    return out


def read_transcripts(path: str | Path, system: str | None = None) -> list[dict]:
    """Transcript rows from JSONL; `system` (e.g. the config's name for the file) overrides the rows' own."""
    rows = read_jsonl_plain(path)
    out = []
    for i, r in enumerate(rows):
        _check_messages(r.get("messages"), f"row {i + 1}", path)
        name = system or r.get("system")
        if not name:
            raise DataError(path, f"row {i + 1}", "no `system` naming the model", 'add "system" to each row')
        out.append({**r, "id": str(r.get("id", i)), "system": name})
    return out


def turn_requests(transcripts: list[dict], identity: dict, templates_dir: str | None = None) -> list[Request]:
    """One `dialogue` request per assistant turn of every transcript. Meta: system, dialogue_id, turn (1-based
    assistant turn), n_turns, item_id `<id>|turn<k>|<system>`, kind `dialogue_turn`."""
    proto = protocols.get("dialogue")
    template = protocols.template_text("dialogue", templates_dir)
    thash = protocols.template_hash(template)
    reqs = []
    for t in transcripts:
        msgs = t["messages"]
        n_turns = sum(m["role"] == "assistant" for m in msgs)
        k = 0
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            k += 1
            prompt = protocols.render(
                template, proto, {"conversation": protocols.conversation_text(msgs[:i]), "response": m["content"]}
            )
            reqs.append(
                Request(
                    key=cache_key(identity, "dialogue", thash, prompt),
                    protocol="dialogue",
                    prompt=prompt,
                    labels=proto.labels,
                    answer_prefix=proto.answer_prefix,
                    meta={
                        "kind": KIND,
                        "protocol": "dialogue",
                        "template_hash": thash,
                        "system": t["system"],
                        "dialogue_id": t["id"],
                        "prompt_id": t["id"],
                        "turn": k,
                        "n_turns": n_turns,
                        "item_id": f"{t['id']}|turn{k}|{t['system']}",
                    },
                )
            )
    return reqs
