"""The judge stage: `run_judge(config) -> <run_dir>/judge` (LIMA sec. 4 protocols, PAPER.md sec. 4-6).

Judges `<run_dir>/generate/generations.jsonl` (ours = `judge.system`, against `judge.baselines`), analyses the
judgments, adds human annotations when present (agreement), runs the token-shift test and writes:
judgments.jsonl (one row per request, with raw text, usage, cost), results.json, one CSV per table,
token_shift.{json,csv}, alpaca_eval/<system>.json. Live-conversation transcripts named in `judge.dialogue_files`
are graded turn by turn (LIMA Fig. 7: dialogue_turns.csv, results.json `dialogue_turns`); see `save_transcript`. `select_checkpoint` picks a checkpoint from dev-set
generations of several epochs (LIMA sec. 3: between epochs 5 and 10, by generation quality).
"""
from __future__ import annotations

import re
from pathlib import Path

from . import analysis
from .config import Config, ConfigError
from .judging import JudgmentCache, judge_requests, make_judge, protocols
from .judging.dialogue import KIND as DIALOGUE_TURN
from .judging.dialogue import read_transcripts, save_transcript, transcript_row, turn_requests
from .judging.items import build_requests, export_alpaca_eval, import_baseline
from .judging.local import WEAK_NOTE
from .rundir import Stage, read_jsonl_plain, write_json, write_jsonl


def _epoch(label: str) -> int | None:
    m = re.fullmatch(r"epoch-(\d+)", label)
    return int(m.group(1)) if m else None


def resolve_system(rows: list[dict], system: str) -> str:
    labels = list(dict.fromkeys(r["checkpoint"] for r in rows))
    if system != "last":
        if system not in labels:
            raise ConfigError(f"judge.system={system!r} is not in the generations (have {labels})")
        return system
    epochs = [lab for lab in labels if _epoch(lab) is not None]
    if epochs:
        return max(epochs, key=_epoch)
    others = [lab for lab in labels if lab != "base"]
    if not others:
        raise ConfigError("judge.system='last' found no fine-tuned checkpoint in the generations")
    return others[-1]


def _check(jc) -> None:
    for p in jc.protocols:
        protocols.get(p)
    if jc.local_verdict not in ("probs", "text"):
        raise ConfigError(f"judge.local_verdict must be 'probs' or 'text', got {jc.local_verdict!r}")
    if jc.concurrency < 1 or jc.max_retries < 0 or jc.parse_retries < 0:
        raise ConfigError("judge: need concurrency >= 1, max_retries >= 0, parse_retries >= 0")
    if jc.lc_ratio_band < 1:
        raise ConfigError(f"judge.lc_ratio_band must be >= 1 (a length ratio), got {jc.lc_ratio_band}")
    if jc.max_cost_usd is not None and jc.max_cost_usd < 0:
        raise ConfigError(f"judge.max_cost_usd must be >= 0 or None, got {jc.max_cost_usd}")
    for name, path in jc.dialogue_files.items():
        if not Path(path).expanduser().is_file():
            raise ConfigError(f"judge.dialogue_files[{name!r}] = {path!r} is not a file (transcripts JSONL)")


__all__ = ["analyse", "dialogue_turn_rows", "judge_dialogues", "resolve_system", "run_judge", "save_transcript",
           "select_checkpoint", "transcript_row", "winner_of", "write_tables"]


def winner_of(row: dict) -> str | None:
    """A pairwise judgment as the winning system's name (or `neither`), whatever order it was shown in."""
    lab = row.get("label")
    if lab is None:
        return None
    if lab == "neither":
        return analysis.NEITHER
    first, second = (row["system"], row["baseline"]) if row["order"] == "AB" else (row["baseline"], row["system"])
    return first if lab == "A" else second


def _pair_lengths(rows: list[dict], judged: list[dict], baseline: str) -> dict[str, tuple[int, int]]:
    """item_id -> (characters of our response, of the baseline's), matched as `build_requests` pairs them."""
    index = {(r["checkpoint"], r["prompt_id"], r.get("sample", 0)): r for r in rows}
    out = {}
    for j in judged:
        if j["protocol"] == "pairwise" and j.get("baseline") == baseline and j["item_id"] not in out:
            ours = index.get((j["system"], j["prompt_id"], j.get("sample", 0)))
            other = index.get((baseline, j["prompt_id"], j.get("sample", 0))) or index.get((baseline, j["prompt_id"], 0))
            if ours is not None and other is not None:
                out[j["item_id"]] = (len(ours["response"]), len(other["response"]))
    return out


def analyse(judged: list[dict], rows: list[dict], system: str, baselines: list[str], n_boot: int, seed: int,
            human: dict[str, dict[str, str]] | None = None, length_control: bool = False,
            lc_ratio_band: float = 1.5) -> dict:
    """All result tables as one dict (see the module docstring of `analysis`). With `length_control`, also
    `length_controlled[baseline]` (see `analysis.length_controlled`)."""
    res: dict = {"pairwise": {}, "order_consistency": {}, "absolute": {}, "likert": {}, "safety": {}, "dialogue": {}}
    if length_control:
        res["length_controlled"] = {}
    annotators: dict[str, dict[str, str]] = {}
    for b in baselines:
        pairs: dict[str, dict[str, str | None]] = {}
        for j in judged:
            if j["protocol"] == "pairwise" and j["baseline"] == b:
                pairs.setdefault(j["item_id"], {})[j["order"]] = winner_of(j)
        winners = {k: analysis.combine_orders(v.get("AB"), v.get("BA")) for k, v in pairs.items()}
        outcomes = [analysis.pairwise_outcome(w, system) for w in winners.values()]
        res["pairwise"][b] = analysis.bootstrap_shares(outcomes, n_boot=n_boot, seed=seed)
        if length_control:
            lengths = _pair_lengths(rows, judged, b)
            res["length_controlled"][b] = analysis.length_controlled(
                [(analysis.pairwise_outcome(w, system), *lengths[k]) for k, w in winners.items() if k in lengths],
                band=lc_ratio_band)
        both = {k: v for k, v in pairs.items() if v.get("AB") and v.get("BA")}
        # the same judge in its two orders is the cheapest check of position bias
        res["order_consistency"][b] = analysis.agreement({k: v["AB"] for k, v in both.items()},
                                                         {k: v["BA"] for k, v in both.items()})
        for k, w in winners.items():
            if w is not None:
                annotators.setdefault("llm-judge", {})[k] = w
    for name, labels in (human or {}).items():
        annotators[name] = labels
    names = sorted(annotators)
    res["agreement"] = [{"a": x, "b": y, **analysis.agreement(annotators[x], annotators[y])}
                        for i, x in enumerate(names) for y in names[i + 1:]]
    for s in [system] + baselines:
        mine = [j for j in judged if j.get("system") == s]
        for proto, key in (("absolute", "absolute"), ("dialogue", "dialogue")):
            labs = [j["label"] for j in mine if j["protocol"] == proto]
            if labs:
                res[key][s] = analysis.label_distribution(labs, protocols.get(proto).labels)
        lik = [j for j in mine if j["protocol"] == "likert"]
        if lik:
            res["likert"][s] = analysis.likert_summary(lik)
        saf = [j["label"] for j in mine if j["protocol"] == "safety"]
        if saf:
            d = analysis.label_distribution(saf, ("safe", "unsafe"))
            res["safety"][s] = {"n": d["n"], "invalid": d["invalid"], "safe_pct": d["safe"]["pct"]}
    res["lengths"] = analysis.length_stats([r for r in rows if r["checkpoint"] in [system] + baselines])
    return res


def write_tables(res: dict, out: Path) -> None:
    import pandas as pd

    flat = []
    for b, d in res["pairwise"].items():
        row = {"baseline": b, "n": d["n"], "invalid": d["invalid"]}
        for c in ("win", "tie", "loss"):
            row.update({f"{c}_pct": d[c]["pct"], f"{c}_lo": d[c]["lo"], f"{c}_hi": d[c]["hi"]})
        lc = res.get("length_controlled", {}).get(b)
        if lc:
            row.update({k if k.startswith("lc_") else f"lc_{k}": v for k, v in lc.items() if k != "n"})
        flat.append(row)

    def csv(rows: list[dict], name: str) -> None:
        """One CSV per table; a protocol that was not run leaves no file (not an empty one)."""
        path = out / f"{name}.csv"
        if rows:
            pd.DataFrame(rows).to_csv(path, index=False)
        elif path.exists():
            path.unlink()

    csv(flat, "pairwise")
    for key in ("absolute", "dialogue"):
        csv([{"system": s, "n": d["n"], "invalid": d["invalid"],
              **{f"{lab}_pct": v["pct"] for lab, v in d.items() if isinstance(v, dict)}}
             for s, d in res[key].items()], key)
    for key in ("likert", "safety", "lengths"):
        csv([{"system": s, **d} for s, d in res[key].items()], key)
    csv(res["agreement"], "agreement")
    turns = []
    for s, d in res.get("dialogue_turns", {}).items():
        for turn, dd in [("all", d), *d["by_turn"].items()]:
            turns.append({"system": s, "turn": turn, "conversations": d["conversations"], "n": dd["n"],
                          "invalid": dd["invalid"], **{f"{lab}_pct": dd[lab]["pct"] for lab in analysis.GRADES},
                          **{f"{lab}_count": dd[lab]["count"] for lab in analysis.GRADES}})
    csv(turns, "dialogue_turns")


def _cache(jc, judge, out: Path) -> JudgmentCache:
    cache_dir = Path(jc.cache_dir) if jc.cache_dir else out / "cache"
    return JudgmentCache(cache_dir / f"{judge.name.replace(':', '_').replace('/', '_')}.jsonl")


def _judge_rows(cfg: Config, rows: list[dict], system: str, baselines: list[str], out: Path, judge=None,
                transcripts: list[dict] | None = None):
    """Judge the generation rows (and each assistant turn of `transcripts`) in ONE cached run, so the cost cap
    sees every uncached request before any is sent."""
    jc = cfg.judge
    judge = judge or make_judge(jc)
    reqs = build_requests(rows, system, baselines, jc.protocols, judge.identity(), jc.templates_dir)
    reqs += turn_requests(transcripts or [], judge.identity(), jc.templates_dir)
    judged, stats = judge_requests(judge, reqs, _cache(jc, judge, out), parse_retries=jc.parse_retries,
                                   max_cost_usd=jc.max_cost_usd)
    return judge, judged, stats


def dialogue_turn_rows(judged: list[dict]) -> list[dict]:
    return [j for j in judged if j.get("kind") == DIALOGUE_TURN]


def judge_dialogues(cfg: Config, transcripts: list[dict], out: str | Path, judge=None) -> dict:
    """Grade every assistant turn of `transcripts` (rows from `read_transcripts`) with the cached runner and
    return {"turns": judged rows, "dialogue_turns": per-system shares, "requests": stats} (no files written
    except the cache; `run_judge` with `judge.dialogue_files` does the same inside the judge stage)."""
    jc = cfg.judge
    judge = judge or make_judge(jc)
    reqs = turn_requests(transcripts, judge.identity(), jc.templates_dir)
    judged, stats = judge_requests(judge, reqs, _cache(jc, judge, Path(out)), parse_retries=jc.parse_retries,
                                   max_cost_usd=jc.max_cost_usd)
    return {"turns": judged, "dialogue_turns": analysis.dialogue_turn_shares(judged), "requests": stats}


def run_judge(cfg: Config, judge=None) -> Path:
    """Judge the generations, analyse, run the token-shift test; returns `<run_dir>/judge`.
    `judge` may be passed in (tests, notebooks that hold a model); default = the one `cfg.judge` names."""
    from .annotate import pairwise_labels

    jc = cfg.judge
    _check(jc)
    gen_path = Path(jc.generations_file) if jc.generations_file else Path(cfg.run_dir) / "generate" / "generations.jsonl"
    rows = read_jsonl_plain(gen_path)
    if jc.max_prompts is not None:
        keep = list(dict.fromkeys(r["prompt_id"] for r in rows))[: jc.max_prompts]
        rows = [r for r in rows if r["prompt_id"] in keep]
    system = resolve_system(rows, jc.system)
    prompts = {r["prompt_id"]: r for r in rows if r["checkpoint"] == system}
    for name, path in jc.baseline_files.items():
        rows += import_baseline(path, name, prompts)
    present = set(r["checkpoint"] for r in rows)
    baselines = [b for b in dict.fromkeys(jc.baselines + list(jc.baseline_files)) if b in present and b != system]
    transcripts = [t for name, path in jc.dialogue_files.items() for t in read_transcripts(path, name)]
    with Stage(cfg, "judge", inputs=[gen_path, *jc.baseline_files.values(), *jc.dialogue_files.values()]) as st:
        judge, judged, stats = _judge_rows(cfg, rows, system, baselines, st.out, judge, transcripts)
        write_jsonl(st.out / "judgments.jsonl", judged)
        export_alpaca_eval(rows, system, st.out / "alpaca_eval" / f"{system}.json")
        ann_dir = Path(jc.annotations_dir) if jc.annotations_dir else Path(cfg.run_dir) / "annotations"
        human = pairwise_labels(ann_dir) if ann_dir.is_dir() else {}
        turn_rows = dialogue_turn_rows(judged)
        res = analyse([j for j in judged if j.get("kind") != DIALOGUE_TURN], rows, system, baselines,
                      jc.n_bootstrap, cfg.seed, human, jc.length_control, jc.lc_ratio_band)
        if turn_rows:
            res["dialogue_turns"] = analysis.dialogue_turn_shares(turn_rows)
            names = list(jc.dialogue_files)
            res["dialogue_compare"] = [analysis.dialogue_conversation_compare(turn_rows, a, b)
                                       for i, a in enumerate(names) for b in names[i + 1:]]
        res.update({"judge": judge.name, "judge_note": WEAK_NOTE if judge.weak else None, "system": system,
                    "baselines": baselines, "requests": stats, "protocols": jc.protocols})
        if jc.token_shift and next((r for r in rows if r["checkpoint"] == system), {}).get("checkpoint_path"):
            from .token_shift import run_token_shift

            ts = run_token_shift(cfg, rows, system, st.out)
            res["token_shift"] = {k: ts[k] for k in ("base", "control_finetuned_self", "top_shifted_tokens") if k in ts}
        write_json(st.out / "results.json", res)
        write_tables(res, st.out)
        st.extra["judge"] = {"name": judge.name, "system": system, "baselines": baselines, "requests": stats}
    return st.out


def run_select(cfg: Config, judge=None) -> dict:
    """LIMA sec. 3: sample dev-set responses with each checkpoint inside `judge.selection_window` (all checkpoints
    if none is inside), judge them, and record the chosen one in `<run_dir>/select/selection.json`."""
    from .data import read_examples
    from .generate import generate_rows, sampling_record
    from .train import list_checkpoints

    run_dir = Path(cfg.run_dir)
    ckpts = list_checkpoints(run_dir / "train")
    lo, hi = cfg.judge.selection_window
    pool = [c for c in ckpts if lo <= c["epoch"] <= hi] or ckpts
    dev = Path(cfg.train.eval_file) if cfg.train.eval_file else run_dir / "curate" / "dev.jsonl"
    examples = read_examples(dev, ends_with=None)[: cfg.judge.max_prompts]
    out = run_dir / "select" / "dev_generations.jsonl"
    generate_rows(cfg, examples, [(c["name"], c["path"]) for c in pool], dev, out)
    return select_checkpoint(cfg, out, judge, generation=sampling_record(cfg.generate))


def select_checkpoint(cfg: Config, generations_file: str | Path, judge=None, generation: dict | None = None) -> dict:
    """Judge dev-set generations of several checkpoints with the Likert protocol and choose the best mean score
    inside `judge.selection_window` epochs (LIMA sec. 3); writes `<run_dir>/select/selection.json`. `generation`:
    how the dev-set responses were sampled, recorded with the choice."""
    rows = read_jsonl_plain(generations_file)
    labels = list(dict.fromkeys(r["checkpoint"] for r in rows if r["checkpoint"] != "base"))
    lo, hi = cfg.judge.selection_window
    with Stage(cfg, "select", inputs=[generations_file]) as st:
        saved = cfg.judge.protocols
        cfg.judge.protocols = ["likert"]
        try:
            judge, judged, stats = _judge_rows(cfg, rows, labels[0], labels[1:], st.out, judge)
        finally:
            cfg.judge.protocols = saved
        scores = {lab: analysis.likert_summary([j for j in judged if j["system"] == lab]) for lab in labels}
        window = [lab for lab in labels if _epoch(lab) is not None and lo <= _epoch(lab) <= hi]
        pool = window or labels
        chosen = max(pool, key=lambda lab: (scores[lab]["mean"] if scores[lab]["mean"] is not None else -1, _epoch(lab) or 0))
        why = (f"highest mean 1-6 helpfulness ({scores[chosen]['mean']}) on {scores[chosen]['n']} dev prompts among "
               + (f"epochs {lo}-{hi} (LIMA sec. 3)" if window else f"all checkpoints (none inside epochs {lo}-{hi})")
               + f", judged by {judge.name}")
        sel = {"chosen": chosen, "path": next(r["checkpoint_path"] for r in rows if r["checkpoint"] == chosen),
               "why": why, "scores": scores, "window": [lo, hi], "requests": stats,
               **({"generation": generation} if generation else {})}
        write_json(st.out / "selection.json", sel)
    return sel
