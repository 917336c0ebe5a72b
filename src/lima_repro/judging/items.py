"""Turn generation rows into judge requests, import other systems' outputs, export ours for AlpacaEval.

Pairwise items are one (prompt, sample) answered by our system and a baseline; `pairs` is the one place that
pairs them and names the item (`<prompt_id>#<sample>|<system>|<baseline>`), for the judge, the annotator and the
length analysis alike.

`sample_requests` keeps each protocol's requests on its share of the prompts (`judge.sample_sizes`), for the judge
stage and `plan` alike.

Baselines (docs/paper.md sec. 4 compares with Alpaca 65B, DaVinci003, Bard, Claude, GPT-4) come as AlpacaEval
`model_outputs.json` (a JSON array of {instruction, output, generator, dataset}; matched to our prompts by the
text of the last user turn) or JSONL rows {prompt_id, output}. Either becomes generation-like rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from pathlib import Path

from ..config import ConfigError
from ..data import DataError
from ..files import write_json
from ..runs import checkpoint_epoch
from . import protocols
from .base import Request, cache_key


def resolve_system(rows: list[dict], system: str) -> str:
    """The generations label judged as "ours": `last` = the highest `epoch-N` (else the last non-base label)."""
    labels = list(dict.fromkeys(r["checkpoint"] for r in rows))
    if system != "last":
        if system not in labels:
            raise ConfigError(f"judge.system={system!r} is not in the generations (have {labels})")
        return system
    epochs = [lab for lab in labels if checkpoint_epoch(lab) is not None]
    if epochs:
        return max(epochs, key=checkpoint_epoch)
    others = [lab for lab in labels if lab != "base"]
    if not others:
        raise ConfigError("judge.system='last' found no fine-tuned checkpoint in the generations")
    return others[-1]


def row_index(rows: list[dict]) -> dict[tuple[str, str, int], dict]:
    return {(r["checkpoint"], r["prompt_id"], r.get("sample", 0)): r for r in rows}


def partner(index: dict, baseline: str, ours: dict) -> dict | None:
    """The baseline's response to the same prompt and sample (or its only sample, for one-sample baselines)."""
    key = (ours["prompt_id"], ours.get("sample", 0))
    return index.get((baseline, *key)) or index.get((baseline, key[0], 0))


def pair_item_id(ours: dict, system: str, baseline: str) -> str:
    return f"{ours['prompt_id']}#{ours.get('sample', 0)}|{system}|{baseline}"


def pairs(rows: list[dict], system: str, baseline: str) -> list[tuple[str, dict, dict]]:
    """(item id, our row, the baseline's row) for every (prompt, sample) of `system` that `baseline` answered."""
    index = row_index(rows)
    out = []
    for r in rows:
        if r["checkpoint"] == system and (other := partner(index, baseline, r)) is not None:
            out.append((pair_item_id(r, system, baseline), r, other))
    return out


def last_user(messages: list[dict]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")


def prompt_text(messages: list[dict]) -> str:
    """What the judge sees as the request: the user turn, or the whole conversation for multi-turn prompts."""
    if sum(m["role"] == "user" for m in messages) == 1:
        system = [m["content"] for m in messages if m["role"] == "system"]
        return "\n\n".join(system + [last_user(messages)])
    return protocols.conversation_text(messages)


def is_dialogue(row: dict) -> bool:
    return "multi_turn" in row.get("tags", []) or sum(m["role"] == "user" for m in row["messages"]) > 1


_FIX_BASELINE = (
    "give judge.baseline_files an AlpacaEval model_outputs.json (a JSON array) or JSONL rows {prompt_id, output}"
)


def _loads(text: str, path: Path, line: int | None):
    """JSON of a whole file (line None) or of one JSONL line; bad JSON raises DataError with its line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            path, f"line {line or e.lineno}", f"invalid JSON ({e.msg}, column {e.colno})", _FIX_BASELINE
        ) from e
    except RecursionError as e:
        raise DataError(path, f"line {line}" if line else None, "JSON nested too deeply to read", _FIX_BASELINE) from e


def _baseline_objects(path: Path) -> list[tuple[str, dict]]:
    """(position, row object) of a baseline file; unreadable bytes, bad JSON or a row that is not an object raise
    DataError naming the position."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, f"byte {e.start}", "not valid UTF-8", "re-save the file as UTF-8") from e
    if text.lstrip().startswith("["):
        items = [(f"item {i}", obj) for i, obj in enumerate(_loads(text, path, None))]
    else:
        items = [(f"line {n}", _loads(line, path, n)) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    for where, obj in items:
        if not isinstance(obj, dict):
            raise DataError(path, where, f"expected a JSON object, got {type(obj).__name__}", _FIX_BASELINE)
    return items


def import_baseline(path: str | Path, name: str, prompts: dict[str, dict]) -> list[dict]:
    """Rows like generations.jsonl's for system `name`, from AlpacaEval JSON or {prompt_id, output} JSONL.
    `prompts`: prompt_id -> a generation row of ours (for messages/tags). Unmatched outputs are errors."""
    path = Path(path)
    by_text = {last_user(r["messages"]).strip(): pid for pid, r in prompts.items()}
    rows = []
    for where, obj in _baseline_objects(path):
        key = "prompt_id" if "prompt_id" in obj else "instruction" if "instruction" in obj else None
        if key is None:
            raise DataError(
                path, where, "needs `prompt_id` or `instruction`", "use AlpacaEval or {prompt_id, output} rows"
            )
        if not isinstance(obj[key], str):
            raise DataError(path, where, f"`{key}` must be a string, got {json.dumps(obj[key])[:40]}", _FIX_BASELINE)
        pid = obj["prompt_id"] if key == "prompt_id" else by_text.get(obj["instruction"].strip())
        if pid is None or pid not in prompts:
            continue  # baseline files cover a whole benchmark; only our prompts are compared
        if not isinstance(obj.get("output"), str):
            raise DataError(path, where, "`output` must be a string", "give each row its response as `output`")
        ours = prompts[pid]
        rows.append(
            {
                "checkpoint": name,
                "checkpoint_path": None,
                "prompt_id": pid,
                "source": ours["source"],
                "tags": ours.get("tags", []),
                "sample": 0,
                "messages": ours["messages"],
                "response": obj["output"],
                "prompt_tokens": None,
                "response_tokens": None,
                "stopped_at_eot": None,
                "imported_from": str(path),
            }
        )
    if not rows:
        raise DataError(
            path, None, f"no output matches any of our {len(prompts)} prompts", "check prompt ids / instructions"
        )
    return rows


def generator_name(model: str, system: str) -> str:
    """The one default name of our answers in other tools' files (AlpacaEval's `generator`, MT-Bench's
    `model_id`): `lima-<base model's last path part>-<system>`, e.g. lima-gemma-3-270m-epoch-2."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"lima-{Path(model).name}-{system}")


def check_generator(name: str, where: str | Path) -> str:
    """`name` when it can name a model in AlpacaEval's leaderboard and a FastChat answer file (it becomes a folder
    or file name), else DataError."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name in (".", ".."):
        raise DataError(
            where,
            None,
            f"model name {name!r} is empty or not a plain file name",
            "give letters, digits, '.', '_' or '-', e.g. lima-gemma-3-270m-epoch-2",
        )
    return name


def alpaca_eval_records(rows: list[dict], system: str, generator: str) -> tuple[list[dict], list[str]]:
    """AlpacaEval `model_outputs.json` records of `system`'s answers (first sample per prompt, in file order) and the
    ids of the multi-turn prompts left out: AlpacaEval judges single instructions, and a conversation flattened
    into one would be judged as something it is not. The one rule of the judge stage's export and the CLI's."""
    records, left_out = [], []
    for r in rows:
        if r["checkpoint"] != system or r.get("sample", 0) != 0:
            continue
        if sum(m["role"] == "user" for m in r["messages"]) != 1:
            left_out.append(r["prompt_id"])
            continue
        records.append(
            {
                "dataset": r.get("source") or "lima_repro",
                "instruction": prompt_text(r["messages"]),
                "output": r["response"],
                "generator": generator,
            }
        )
    return records, left_out


def export_alpaca_eval(rows: list[dict], system: str, path: str | Path, generator: str) -> dict:
    """Write `system`'s answers as AlpacaEval `model_outputs.json` at `path` (`alpaca_eval_records`); returns what
    was written: {path, generator, records, left_out_multi_turn}."""
    records, left_out = alpaca_eval_records(rows, system, generator)
    write_json(path, records)
    return {"path": str(path), "generator": generator, "records": len(records), "left_out_multi_turn": left_out}


def build_requests(
    rows: list[dict],
    system: str,
    baselines: list[str],
    protocol_names: list[str],
    identity: dict,
    templates_dir: str | None = None,
) -> list[Request]:
    """One request per (protocol, item[, order]). Pairwise pairs are judged in both orders (`AB`: system shown
    first). Absolute and Likert cover every system; safety only prompts tagged `sensitive`; dialogue only
    multi-turn prompts (the model's final turn in its context)."""
    templates = {p: protocols.template_text(p, templates_dir) for p in protocol_names}
    hashes = {p: protocols.template_hash(t) for p, t in templates.items()}
    reqs: list[Request] = []

    def add(proto_name: str, values: dict, meta: dict) -> None:
        proto = protocols.get(proto_name)
        prompt = protocols.render(templates[proto_name], proto, values)
        key = cache_key(identity, proto_name, hashes[proto_name], prompt)
        reqs.append(
            Request(
                key=key,
                protocol=proto_name,
                prompt=prompt,
                labels=proto.labels,
                answer_prefix=proto.answer_prefix,
                meta={"protocol": proto_name, "template_hash": hashes[proto_name], **meta},
            )
        )

    index = row_index(rows)
    systems = [system] + [b for b in baselines if b != system]
    for r in rows:
        if r["checkpoint"] not in systems:
            continue
        base_meta = {"system": r["checkpoint"], "prompt_id": r["prompt_id"], "sample": r.get("sample", 0)}
        item = f"{r['prompt_id']}#{r.get('sample', 0)}|{r['checkpoint']}"
        ptext = prompt_text(r["messages"])
        if "absolute" in protocol_names:
            add("absolute", {"prompt": ptext, "response": r["response"]}, {**base_meta, "item_id": item})
        if "likert" in protocol_names:
            add("likert", {"prompt": ptext, "response": r["response"]}, {**base_meta, "item_id": item})
        if "safety" in protocol_names and "sensitive" in r.get("tags", []):
            add("safety", {"prompt": ptext, "response": r["response"]}, {**base_meta, "item_id": item})
        if "dialogue" in protocol_names and is_dialogue(r):
            add(
                "dialogue",
                {"conversation": protocols.conversation_text(r["messages"]), "response": r["response"]},
                {**base_meta, "item_id": item, "turn": sum(m["role"] == "assistant" for m in r["messages"]) + 1},
            )
        if "pairwise" in protocol_names and r["checkpoint"] == system:
            for b in baselines:
                other = partner(index, b, r)
                if other is None or b == system:
                    continue
                pair = {**base_meta, "baseline": b, "item_id": pair_item_id(r, system, b)}
                add(
                    "pairwise",
                    {"prompt": ptext, "response_a": r["response"], "response_b": other["response"]},
                    {**pair, "order": "AB"},
                )
                add(
                    "pairwise",
                    {"prompt": ptext, "response_a": other["response"], "response_b": r["response"]},
                    {**pair, "order": "BA"},
                )
    return reqs


def draw_prompts(ids, n: int | None, seed: int) -> list[str]:
    """`n` of the prompt ids (all when `n` is None or not smaller), sorted: those ranking first by a hash of the seed
    and the id, so the draw depends on the seed and the ids alone (not their order), and a smaller `n` keeps a
    subset of a larger one's prompts."""
    ids = sorted(set(ids))
    if n is None or n >= len(ids):
        return ids
    return sorted(sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())[:n])


def sample_requests(
    requests: list[Request], rows: list[dict], sizes: dict[str, int | None], seed: int
) -> tuple[list[Request], dict]:
    """`build_requests`' requests of each protocol on at most `sizes[protocol]` of the prompts it has requests for
    (`draw_prompts`; every system's requests on a drawn prompt stay, so systems are compared on the same prompts).
    Absolute also keeps the prompts tagged `ood` in `rows` drawn by `sizes["ood"]` (Fig. 3's 20, docs/paper.md
    sec. 5). Returns (the kept requests, in order; {seed, protocols: name -> {asked, available} prompt counts})."""
    available: dict[str, list[str]] = {}
    for r in requests:
        available.setdefault(r.protocol, []).append(r.meta["prompt_id"])
    if "absolute" in available:
        ood = {r["prompt_id"] for r in rows if "ood" in (r.get("tags") or ())}
        available["ood"] = [p for p in available["absolute"] if p in ood]
    chosen = {name: set(draw_prompts(ids, sizes.get(name), seed)) for name, ids in available.items()}
    record = {name: {"asked": len(chosen[name]), "available": len(set(ids))} for name, ids in available.items()}
    # Fig. 3's two tables are two draws (docs/paper.md sec. 5: 50 random prompts, 20 OOD ones): an absolute request
    # in one draw only is marked with it (`draw`), so each table counts its own draw (results.graded_tables)
    ood, own, tagged = chosen.get("ood", set()), chosen.get("absolute", set()), set(available.get("ood", ()))
    kept = []
    for r in requests:
        pid = r.meta["prompt_id"]
        if r.protocol != "absolute":
            kept += [r] if pid in chosen[r.protocol] else []
        elif pid in ood and pid not in own:  # drawn for the OOD table only
            kept.append(replace(r, meta={**r.meta, "draw": "ood"}))
        elif pid in own and pid in tagged and pid not in ood:  # tagged ood, drawn at random, not in the OOD draw
            kept.append(replace(r, meta={**r.meta, "draw": "absolute"}))
        elif pid in own:
            kept.append(r)
    return kept, {"seed": seed, "protocols": record}
