"""Reading and validating conversation data.

Canonical example (one JSON object per JSONL line)::

    {"id": str, "source": str, "messages": [{"role": "user"|"assistant"|"system", "content": str}, ...],
     "tags": [str, ...]}            # tags optional, e.g. "sensitive", "multi_turn"

Readers also accept GAIR/lima rows (``{"conversations": [str, ...], "source": str}``, turns alternate
user/assistant), ShareGPT rows (``{"conversations": [{"from": "human"|"gpt"|"system", "value": str}]}``)
and Alpaca rows (``instruction`` / ``input`` / ``output``), as JSONL or as one JSON array. As prompts (no answer):
AlpacaEval's evaluation set (``instruction``, its ``dataset`` kept as the source; ``output`` with ``generator``
is a reference model's answer, left out) and MT-Bench questions
(``question_id``, ``category``, ``turns``: the first turn). A bad row raises
DataError naming the file, the line and the fix; so does an example longer than MAX_EXAMPLE_CHARS, before any
tokenizer sees it (tokenizing with offsets takes ~300 bytes per character: 3 GB for a 10 MB line).
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import hf_hub_download

from .files import MAX_JSON_BYTES, DataError, iter_jsonl, loads_checked  # DataError: every reader imports it from here

PACKAGED = {"demo:": "lima_repro.demo_data", "demo_raw:": "lima_repro.demo_raw"}  # prefixes of shipped inputs
HUB_PREFIX = "hf:"
ROLES = ("system", "user", "assistant")
# ours: ~125k tokens, 60x the 2,048 tokens LIMA trims every example to (sec. 3); costs ~150 MB to tokenize
MAX_EXAMPLE_CHARS = 500_000
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bing": "assistant",
    "bard": "assistant",
    "system": "system",
}


def is_hub(spec: str | Path) -> bool:
    return str(spec).startswith(HUB_PREFIX)


def resolve_path(spec: str | Path) -> Path:
    """Where an input named in the config lives. The one resolver of every input prefix:

    - `demo:train.jsonl`: the shipped hand-written demo data (`lima_repro/demo_data`);
    - `demo_raw:stackexchange/...`: the shipped raw-dump samples (`lima_repro/demo_raw`);
    - `hf:OWNER/NAME/FILE`: a dataset file on the Hugging Face hub, downloaded once into its cache, e.g.
      `hf:GAIR/lima/train.jsonl` (gated: accept its terms and set HF_TOKEN or `huggingface-cli login`);
    - anything else: a filesystem path.

    Any of them may end in a selection by the rows' `source` (`split_selection`), which the path ignores.
    """
    spec = split_selection(spec)[0]
    for prefix, package in PACKAGED.items():
        if spec.startswith(prefix):
            return Path(str(resources.files(package).joinpath(spec[len(prefix) :])))
    if is_hub(spec):
        return _download(spec)
    return Path(spec).expanduser()


def split_selection(spec: str | Path) -> tuple[str, tuple[str, frozenset[str]] | None]:
    """`FILE#without=multi_turn` or `FILE#only=stackexchange,wikihow`: (FILE, (mode, sources)); no `#`: (FILE,
    None). Picks GAIR/lima's rows by source: `hf:GAIR/lima/train.jsonl#without=multi_turn` is the paper's 1,000
    examples, the file itself the dialogue model's 1,030 (LIMA sec. 1 and 5; docs/paper.md sec. 1)."""
    spec = str(spec)
    if "#" not in spec:
        return spec, None
    base, _, sel = spec.rpartition("#")
    mode, _, names = sel.partition("=")
    sources = frozenset(n.strip() for n in names.split(",") if n.strip())
    if mode not in ("without", "only") or not sources:
        raise DataError(
            spec,
            None,
            f"unknown row selection {sel!r}",
            "end the path with #without=SOURCE[,SOURCE] or #only=SOURCE[,SOURCE]",
        )
    return base, (mode, sources)


def _download(spec: str) -> Path:
    parts = spec[len(HUB_PREFIX) :].split("/")
    if len(parts) < 3:
        raise DataError(spec, None, "hub specs look like hf:OWNER/NAME/FILE", "e.g. hf:GAIR/lima/train.jsonl")
    repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, repo_type="dataset"))
    except Exception as e:  # gated repo, no token, offline: all end here with the same advice
        raise DataError(
            spec,
            None,
            f"cannot download from the hub ({type(e).__name__}: {e})",
            "accept the dataset's terms on its hub page and set HF_TOKEN (or `huggingface-cli login`), "
            "or download the file and give its local path",
        ) from e


_FIX_ROWS = "write one object per line"


def _raw_rows(path: Path) -> Iterable[tuple[int | str, Any]]:
    """Yield (line number or 'item N', parsed object) from a JSONL file (streamed, `files.iter_jsonl`) or a JSON
    array file (read whole, up to files.MAX_JSON_BYTES)."""
    if not path.is_file():
        raise DataError(
            path,
            None,
            "is a folder, not a file" if path.is_dir() else "file not found",
            "check the path in the config (curate.*_files)",
        )
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(b"["):
        if path.stat().st_size > MAX_JSON_BYTES:
            raise DataError(
                path, None, f"a JSON array larger than {MAX_JSON_BYTES >> 20} MiB", "write it as JSONL, one row a line"
            )
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data[: e.start].count(b"\n") + 1
            raise DataError(
                path, line, f"not valid UTF-8 ({e.reason} at byte {e.start})", "re-save the file as UTF-8"
            ) from None
        items = loads_checked(text, path, None, "fix the JSON array")
        for i, obj in enumerate(items):
            yield f"item {i}", obj
        return
    empty = True
    for lineno, obj in iter_jsonl(path, _FIX_ROWS):
        empty = False
        yield lineno, obj
    if empty:
        raise DataError(path, None, "file is empty", "point the config at a file with at least one example")


def _messages_of(obj: dict, path: Path, where: Any) -> tuple[list[dict], str]:
    """Convert one row of any supported format to (messages, format name)."""
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise DataError(
                path,
                where,
                "'messages' must be a list of {role, content} objects",
                'write e.g. "messages": [{"role": "user", "content": "..."}]',
            )
        for i, m in enumerate(msgs):
            if "role" not in m or "content" not in m:
                raise DataError(path, where, f"message {i} lacks 'role' or 'content'", "give every message both keys")
        return [{"role": m["role"], "content": m["content"]} for m in msgs], "messages"
    if "conversations" in obj:
        conv = obj["conversations"]
        if isinstance(conv, list) and all(isinstance(t, str) for t in conv):
            return [{"role": ("user", "assistant")[i % 2], "content": t} for i, t in enumerate(conv)], "lima"
        if isinstance(conv, list) and all(isinstance(t, dict) for t in conv):
            out = []
            for i, t in enumerate(conv):
                who = str(t.get("from", t.get("role", ""))).lower()
                if who not in SHAREGPT_ROLES or "value" not in t and "content" not in t:
                    raise DataError(
                        path,
                        where,
                        f"ShareGPT turn {i} has unknown speaker {who!r} or no 'value'",
                        f"use 'from' in {sorted(SHAREGPT_ROLES)} and a 'value' string",
                    )
                out.append({"role": SHAREGPT_ROLES[who], "content": t.get("value", t.get("content"))})
            return out, "sharegpt"
        raise DataError(
            path,
            where,
            "'conversations' must be a list of strings (GAIR/lima) or of {from, value} objects (ShareGPT)",
            "fix the row's 'conversations' field",
        )
    if "instruction" in obj:
        prompt = obj["instruction"] if not obj.get("input") else f"{obj['instruction']}\n\n{obj['input']}"
        # AlpacaEval's evaluation set: instructions to answer (an `output` beside a `generator` is that model's)
        if "output" not in obj or "generator" in obj:
            return [{"role": "user", "content": prompt}], "alpaca_eval"
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": obj["output"]}], "alpaca"
    if "turns" in obj and "question_id" in obj:  # an MT-Bench question: its first turn (the second needs an answer)
        if not isinstance(obj["turns"], list) or not obj["turns"]:
            raise DataError(path, where, "MT-Bench 'turns' must be a non-empty list of strings", "fix the row")
        return [{"role": "user", "content": obj["turns"][0]}], "mt_bench"
    raise DataError(
        path,
        where,
        f"unrecognised row with keys {sorted(obj)[:8]}",
        "give each row 'messages' (canonical), 'conversations' (GAIR/lima or ShareGPT) "
        "or 'instruction'/'output' (Alpaca)",
    )


def validate_messages(msgs: list[dict], path: Path | str, where: Any, *, ends_with: str | None) -> None:
    """Roles alternate user/assistant after an optional leading system turn; contents are non-empty strings."""
    if not msgs:
        raise DataError(path, where, "conversation has no messages", "add at least one user message")
    body = msgs[1:] if msgs[0]["role"] == "system" else msgs
    if not body:
        raise DataError(path, where, "conversation has only a system message", "add a user message")
    for i, m in enumerate(msgs):
        if m["role"] not in ROLES:
            raise DataError(path, where, f"message {i} has role {m['role']!r}", f"use one of {ROLES}")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise DataError(
                path,
                where,
                f"message {i} ({m['role']}) has empty or non-string content",
                "drop the row or fill in the text",
            )
    for i, m in enumerate(body):
        expected = ("user", "assistant")[i % 2]
        if m["role"] != expected:
            raise DataError(
                path,
                where,
                f"turn {i} is {m['role']!r} where {expected!r} was expected",
                "turns must alternate user/assistant, starting with the user (system only first)",
            )
    if ends_with and body[-1]["role"] != ends_with:
        what = "a response (assistant turn) to train on" if ends_with == "assistant" else "a final user prompt"
        raise DataError(
            path,
            where,
            f"conversation ends with {body[-1]['role']!r}, needs {what}",
            f"make the last message a {ends_with} turn, or move the row to the right split",
        )


def read_examples(spec: str | Path, *, ends_with: str | None = "assistant", source: str | None = None) -> list[dict]:
    """Read one file of conversations into canonical examples (validated, unique ids).

    ends_with: "assistant" for training/dev data, "user" for test prompts, None to accept both.
    A `#without=`/`#only=` ending keeps the rows by their source (`split_selection`); ids stay those of the file.
    """
    path, selection = resolve_path(spec), split_selection(spec)[1]
    examples, seen = [], {}
    for where, obj in _raw_rows(path):
        if not isinstance(obj, dict):
            raise DataError(
                path, where, f"expected a JSON object, got {type(obj).__name__}", "write one object per line"
            )
        msgs, fmt = _messages_of(obj, path, where)
        validate_messages(msgs, path, where, ends_with=ends_with)
        size = sum(len(m["content"]) for m in msgs)
        if size > MAX_EXAMPLE_CHARS:
            raise DataError(
                path,
                where,
                f"the conversation is {size:,} characters long, over the limit of {MAX_EXAMPLE_CHARS:,} per example",
                "shorten or split it (training trims every example "
                "to train.max_length tokens anyway; LIMA sec. 3: 2,048)",
            )
        ex_id = str(obj.get("id") or obj.get("question_id") or f"{path.stem}-{where}".replace(" ", ""))
        if ex_id in seen:
            raise DataError(path, where, f"duplicate id {ex_id!r} (first at {seen[ex_id]})", "make ids unique")
        seen[ex_id] = where
        tags = obj.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise DataError(path, where, "'tags' must be a list of strings", 'e.g. "tags": ["sensitive"]')
        examples.append(
            {
                "id": ex_id,
                "source": str(obj.get("source") or obj.get("dataset") or source or fmt),
                "messages": msgs,
                "tags": tags,
            }
        )
    if selection:
        mode, names = selection
        found = {ex["source"] for ex in examples}
        if mode == "only" and names - found:
            raise DataError(
                spec,
                None,
                f"no rows with source {sorted(names - found)}; the file has {sorted(found)}",
                "name sources the file has after #only=",
            )
        examples = [ex for ex in examples if (ex["source"] in names) == (mode == "only")]
    return examples


def read_many(specs: Iterable[str | Path], *, ends_with: str | None = "assistant") -> list[dict]:
    """Read several files; ids must be unique across them."""
    out: list[dict] = []
    seen: dict[str, str] = {}
    for spec in specs:
        for ex in read_examples(spec, ends_with=ends_with):
            if ex["id"] in seen:
                raise DataError(
                    resolve_path(spec),
                    None,
                    f"id {ex['id']!r} also appears in {seen[ex['id']]}",
                    "give the files distinct ids",
                )
            seen[ex["id"]] = str(spec)
            out.append(ex)
    return out


def reference_answer(example: dict) -> str | None:
    """The answer a dev example ends with (what its prompt should get), or None for a test prompt."""
    last = example["messages"][-1]
    return last["content"] if last["role"] == "assistant" else None


def prompt_messages(example: dict) -> list[dict]:
    """The conversation up to (and including) its last user turn: what a model is asked to continue."""
    msgs = example["messages"]
    last_user = max(i for i, m in enumerate(msgs) if m["role"] == "user")
    return msgs[: last_user + 1]
