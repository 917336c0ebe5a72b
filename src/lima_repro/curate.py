"""Curation stage: `run_curate(config) -> <run_dir>/curate` with train/dev/test JSONL and a data card.

Inputs: hand-written JSONL files (`curate.*_files`; GAIR/lima rows too, or `hf:GAIR/lima/train.jsonl`) and
the raw dumps LIMA was built from (docs/paper.md sec. 1): Stack Exchange, wikiHow, r/WritingPrompts,
Super-Natural Instructions for training, r/AskReddit titles for test; optionally (`curate.se_dialogue`, off by
default) multi-turn candidates from Stack Exchange comment chains, unedited where the paper edited its 20 by
hand. Each raw source is streamed by its module in `sources/`, its rules applied as counted steps,
deduplicated and decontaminated against the dev/test prompts, then sampled to its exact target count with a
seeded generator.

The data card is the paper's Table 1: per source, the number of examples and the average input (prompt)
and output (response) length in tokens of the chosen tokenizer and in characters; plus every step's
kept/dropped counts, counted skips of dirty rows, and the SHA-256 of each file written, which the
training stage checks.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from . import data, models
from .config import Config
from .data import resolve_path
from .dedup import Deduper
from .files import sha256_file, write_json, write_jsonl
from .runs import RunDir
from .selectors import make_selector
from .sources import StepLog, natinst, reddit, require_file, se_dialogue, stackexchange, wikihow
from .sources.se_dump import site_name
from .sources.se_sites import OTHER_SITES, STEM_SITES, site_group
from .stage import Stage

HASH_RAW_UP_TO = 64 << 20  # raw inputs up to this size get a SHA-256 in the card; dumps of many GB only a size


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


def file_datacard(path: str | Path, tokenizer=None) -> dict:
    """The data card of one training file without a run, e.g. a local copy of GAIR/lima's train.jsonl (Table 1 of
    the real set: `figures.datacard(card=...)`); tokens counted when a tokenizer is given."""
    examples = data.read_examples(path)
    tok_name = (getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__) if tokenizer else None
    return {"file": str(path), "tokenizer": tok_name, "splits": {"train": length_table(examples, tokenizer)}}


def _rng(seed: int, source: str) -> random.Random:
    return random.Random(f"{seed}:{source}")  # one generator per source: adding a source changes no other


def _take(items: list[dict], n: int, key: str, strict: bool, log: StepLog, pool: int | None = None) -> list[dict]:
    """Exact target count, or a clear error naming the config key (strict_counts)."""
    if len(items) < n and strict:
        raise data.DataError(
            f"curate.{key}",
            None,
            f"only {len(items)} candidates survive the filters for a target of {n}",
            f"add more dumps, lower curate.{key}, or set curate.strict_counts=false to take what there is",
        )
    out = items[:n]
    log.add("sample.target_count", len(out), (len(items) if pool is None else pool) - len(out))
    return out


def _raw_specs(c) -> list[str]:
    specs = [
        *c.stackexchange.dumps,
        *c.wikihow.files,
        *c.writingprompts.submissions,
        *c.writingprompts.comments,
        *c.askreddit.submissions,
        *c.natinst.tasks,
        *c.se_dialogue.dumps,
    ]
    return list(dict.fromkeys(specs))  # a site folder may feed both Stack Exchange sources


def _resolved(specs: list[str]) -> list[str]:
    return [str(resolve_path(s)) for s in specs]


def _stackexchange(c, seed, dedup: Deduper, logs: dict) -> list[dict]:
    se = c.stackexchange
    stem, other = set(se.stem_sites or STEM_SITES), set(se.other_sites or OTHER_SITES)
    rng = _rng(seed, "stackexchange")
    pools: dict[str, dict[str, list]] = {"stem": {}, "other": {}}
    sizes: dict[str, int] = {}
    for g in pools:
        logs[f"stackexchange_{g}"] = StepLog()
    for spec in se.dumps:
        path = resolve_path(spec)
        # before a missing site is taken for an unlisted one
        require_file(path, "Stack Exchange dump", "stackexchange.dumps")
        name = site_name(path)
        group = site_group(name, stem, other)
        if group is None:
            logs.setdefault("stackexchange_skipped_sites", StepLog()).skip(
                "stackexchange: site not in the STEM or other list (meta, dropped or unknown)", path, name
            )
            continue
        log = logs[f"stackexchange_{group}"]
        site, n_q, cands = stackexchange.site_candidates(path, se, log, rng, name=name, group=group)
        sizes[site] = sizes.get(site, 0) + n_q
        pools[group].setdefault(site, []).extend(dedup.filter(cands, log))
    out = []
    for group, by_site in pools.items():
        log = logs[f"stackexchange_{group}"]
        ranked = {s: sorted(v, key=lambda e: -e["_meta"]["score"]) for s, v in by_site.items()}
        picked = stackexchange.tau_sample(ranked, sizes, se.n_per_group, se.tau, rng)
        out += _take(
            picked, se.n_per_group, "stackexchange.n_per_group", c.strict_counts, log, sum(map(len, ranked.values()))
        )
    return out


def _se_dialogue(c, seed, dedup: Deduper, logs: dict) -> list[dict]:
    """Unedited multi-turn candidates from Stack Exchange comment chains (the paper edited its 20 by hand)."""
    sd, log, rng = c.se_dialogue, logs.setdefault("multi_turn", StepLog()), _rng(seed, "se_dialogue")
    pools: dict[str, list] = {}
    sizes: dict[str, int] = {}
    for spec in sd.dumps:
        site, n_q, cands = se_dialogue.site_chains(resolve_path(spec), sd, log)
        sizes[site] = sizes.get(site, 0) + n_q
        pools.setdefault(site, []).extend(dedup.filter(cands, log))
    ranked = {s: sorted(v, key=lambda e: -e["_meta"]["score"]) for s, v in pools.items()}
    picked = stackexchange.tau_sample(ranked, sizes, sd.n, sd.tau, rng)
    return _take(picked, sd.n, "se_dialogue.n", c.strict_counts, log, sum(map(len, ranked.values())))


def _raw_train(c, seed, dedup: Deduper, logs: dict) -> list[dict]:
    """Candidates from every configured raw source, deduplicated, sampled to the exact targets."""
    out: list[dict] = []
    if c.stackexchange.dumps:
        out += _stackexchange(c, seed, dedup, logs)
    if c.wikihow.files:
        log, rng = logs.setdefault("wikihow", StepLog()), _rng(seed, "wikihow")
        pools: dict[str, list] = {}
        for spec in c.wikihow.files:
            for cat, items in wikihow.read_candidates(resolve_path(spec), c.wikihow, log, rng).items():
                pools.setdefault(cat, []).extend(dedup.filter(items, log))
        picked = wikihow.category_first_sample(pools, c.wikihow.n, rng)
        out += _take(picked, c.wikihow.n, "wikihow.n", c.strict_counts, log, sum(map(len, pools.values())))
    if c.writingprompts.submissions:
        log, wp = logs.setdefault("writingprompts", StepLog()), c.writingprompts
        wp_res = type(wp)(**{**vars(wp), "submissions": _resolved(wp.submissions), "comments": _resolved(wp.comments)})
        cands = dedup.filter(reddit.writingprompts(wp_res, log), log)
        out += _take(cands, wp.n, "writingprompts.n", c.strict_counts, log)
    if c.natinst.tasks:
        log, ni, rng = logs.setdefault("natural_instructions", StepLog()), c.natinst, _rng(seed, "natinst")
        ni_res = type(ni)(**{**vars(ni), "tasks": _resolved(ni.tasks)})
        cands = dedup.filter(natinst.candidates(ni_res, log, rng), log)
        picked = rng.sample(cands, min(ni.n_tasks, len(cands)))  # LIMA sec. 1: 50 tasks, one example each
        out += _take(
            sorted(picked, key=lambda e: e["id"]), ni.n_tasks, "natinst.n_tasks", c.strict_counts, log, len(cands)
        )
    if c.se_dialogue.dumps:
        out += _se_dialogue(c, seed, dedup, logs)
    return out


def _raw_test(c, dedup: Deduper, logs: dict) -> list[dict]:
    if not c.askreddit.submissions:
        return []
    log, ar = logs.setdefault("askreddit", StepLog()), c.askreddit
    ar_res = type(ar)(**{**vars(ar), "submissions": _resolved(ar.submissions)})
    cands = dedup.filter(reddit.askreddit_titles(ar_res, log), log)
    return _take(cands, ar.n, "askreddit.n", c.strict_counts, log)


def _raw_inputs(specs: list[str]) -> list[dict]:
    rows = []
    for spec in specs:
        p = resolve_path(spec)
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for f in files:
            size = f.stat().st_size
            rows.append({"path": str(f), "bytes": size, "sha256": sha256_file(f) if size <= HASH_RAW_UP_TO else None})
    return rows


def curate(cfg: Config) -> tuple[dict[str, list[dict]], dict]:
    """Build the train/dev/test splits in memory; returns (splits, per-source StepLog dicts)."""
    c, d = cfg.curate, cfg.curate.dedup
    train = data.read_many(c.train_files, ends_with="assistant")
    dev = data.read_many(c.dev_files, ends_with="assistant") if c.dev_files else []
    test = data.read_many(c.test_files, ends_with="user") if c.test_files else []
    logs: dict[str, StepLog] = {}
    dedup = Deduper(
        exact=d.exact, near=d.near, threshold=d.threshold, num_perm=d.num_perm, bands=d.bands, ngram=d.ngram
    )
    dedup.reference(dev + test, contaminating=d.decontaminate)
    test_raw = _raw_test(c, dedup, logs)
    test += test_raw
    # AskReddit prompts are test prompts too; hand-written training prompts are kept and only block repeats
    dedup.reference(train, contaminating=False)
    train += _raw_train(c, cfg.seed, dedup, logs)
    if c.selector and c.select_n is not None:
        log = logs.setdefault("selection", StepLog())
        # `quality` filters with the configured answer rules, the ones the Stack Exchange source applied
        picked = make_selector(c.selector, rules=c.stackexchange)(train, c.select_n, _rng(cfg.seed, "selector"))
        log.add(f"select.{c.selector}", len(picked), len(train) - len(picked))
        train = picked
    for ex in (*train, *test):
        ex.pop("_meta", None)
    return {"train": train, "dev": dev, "test": test}, {k: v.as_dict() for k, v in logs.items()}


def run_curate(cfg: Config) -> Path:
    """Read hand-written files and raw dumps, apply the paper's rules, write the splits with a data card."""
    c, run = cfg.curate, RunDir.of(cfg)
    inputs = [resolve_path(s) for s in (*c.train_files, *c.dev_files, *c.test_files) if not data.is_hub(s)]
    with Stage(cfg, "curate", inputs=inputs) as st:
        splits, sources = curate(cfg)
        tok_name = c.tokenizer or cfg.model.name
        tokenizer = (
            models.load_tokenizer(tok_name, cfg.model.revision, cfg.model.trust_remote_code) if c.count_tokens else None
        )
        card = {
            "tokenizer": tok_name if tokenizer is not None else None,
            "splits": {},
            "files": {},
            "sources": sources,
            "raw_inputs": _raw_inputs(_raw_specs(c)),
        }
        for split, examples in splits.items():
            path = write_jsonl(run.split(split), examples)
            card["files"][path.name] = {"sha256": sha256_file(path), "rows": len(examples)}
            card["splits"][split] = length_table(examples, tokenizer) if examples else []
        write_json(run.datacard, card)
        st.extra["counts"] = {k: len(v) for k, v in splits.items()}
    return st.out
