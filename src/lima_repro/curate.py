"""Curation stage: `run_curate(config) -> <run_dir>/curate` with train/dev/test JSONL and a data card.

The data card is the paper's Table 1 (PAPER.md sec. 1): per source, the number of examples and the average
input (prompt) and output (response) length in tokens of the chosen tokenizer and in characters, plus the
SHA-256 of each file written, which the training stage checks.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from . import data, models
from .config import Config
from .rundir import Stage, sha256_file, write_json, write_jsonl


def length_table(examples: list[dict], tokenizer=None) -> list[dict]:
    """Per-source rows of Table 1: n, mean input/output tokens and characters (all sources last as 'total')."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for ex in examples:
        groups[ex["source"]].append(ex)
    groups_sorted = sorted(groups.items()) + ([("total", examples)] if len(groups) > 1 else [])
    rows = []
    for source, exs in groups_sorted:
        row = {"source": source, "n": len(exs)}
        for side, roles in (("input", ("user", "system")), ("output", ("assistant",))):
            texts = [[m["content"] for m in ex["messages"] if m["role"] in roles] for ex in exs]
            row[f"avg_{side}_chars"] = round(sum(len(t) for ts in texts for t in ts) / len(exs), 1)
            if tokenizer is not None:
                n_tok = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for ts in texts for t in ts)
                row[f"avg_{side}_tokens"] = round(n_tok / len(exs), 1)
        row["multi_turn"] = sum(1 for ex in exs if sum(m["role"] == "user" for m in ex["messages"]) > 1)
        rows.append(row)
    return rows


def run_curate(cfg: Config) -> Path:
    """Read and validate the configured train/dev/test files, write them in canonical form with a data card."""
    c = cfg.curate
    splits = {
        "train": data.read_many(c.train_files, ends_with="assistant"),
        "dev": data.read_many(c.dev_files, ends_with="assistant") if c.dev_files else [],
        "test": data.read_many(c.test_files, ends_with="user") if c.test_files else [],
    }
    inputs = [data.resolve_path(s) for s in (*c.train_files, *c.dev_files, *c.test_files)]
    with Stage(cfg, "curate", inputs=inputs) as st:
        tok_name = c.tokenizer or cfg.model.name
        tokenizer = models.load_tokenizer(tok_name, cfg.model.revision, cfg.model.trust_remote_code)
        card = {"tokenizer": tok_name, "splits": {}, "files": {}}
        for split, examples in splits.items():
            path = write_jsonl(st.out / f"{split}.jsonl", examples)
            card["files"][path.name] = {"sha256": sha256_file(path), "rows": len(examples)}
            card["splits"][split] = length_table(examples, tokenizer) if examples else []
        write_json(st.out / "datacard.json", card)
        st.extra["counts"] = {k: len(v) for k, v in splits.items()}
    return st.out
