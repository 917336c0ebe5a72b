"""The published LIMA-1k numbers (docs/paper.md sec. 6) beside a run's own MT-Bench and AlpacaEval numbers, only
where the setups match (`paper_values.setup_differences`); otherwise each row says which settings differ."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import paper_values as pv
from .config.generate import decoding
from .figures_kit import Drawn, markdown, save
from .files import read_json
from .runs import RunDir

ALPACA_METRICS = {"lc_win": "length_controlled_winrate", "win": "win_rate"}  # alpaca_eval's leaderboard columns


def run_benchmarks(run_dir) -> dict[tuple[str, str], float]:
    """{(benchmark, metric): value} of a run: MT-Bench's score (the mean of its turn scores) from
    `<run>/mt_bench/results.json` and AlpacaEval 2's win rates from the leaderboard row `alpaca-eval --evaluate`
    stored (`length_controlled_winrate`, `win_rate`; the first generator that has them)."""
    run, out = RunDir(run_dir), {}
    mt = run.read_mt_bench_results() if run.root.is_dir() else None
    if mt and (mt.get("score") or {}).get("mean") is not None:
        out[("mt_bench", "score")] = float(mt["score"]["mean"])
    for row in (run.read_alpaca_eval_leaderboards() if run.root.is_dir() else {}).values():
        for metric, col in ALPACA_METRICS.items():
            if row.get(col) is not None:
                out.setdefault(("alpaca_eval_2", metric), float(row[col]))
    return out


def trained_template(run: RunDir, configured: str) -> str:
    """The conversation format the run's checkpoints were trained in. Each checkpoint records it (`chat_template`
    in checkpoints.json); one trained before train applied `model.chat_template` has no such field and was trained
    in LIMA's format whatever the configuration named. No checkpoint index (no train stage here): the configured."""
    rows = read_json(run.checkpoint_index) if run.checkpoint_index.is_file() else []
    trained = {r.get("chat_template", "lima") for r in rows} or {configured}
    if trained == {configured}:
        return configured
    return f"{'/'.join(sorted(trained))} ({configured} configured, not applied)"


def run_setup(run_dir) -> dict:
    """The settings `paper_values.setup_differences` compares, from the run's config.json (and its checkpoints'
    format, `trained_template`)."""
    run = RunDir(run_dir)
    c = read_json(run.config) if run.config.is_file() else {}
    m, t, g = c.get("model", {}), c.get("train", {}), c.get("generate", {})
    return {
        "model": m.get("name"),
        "chat_template": trained_template(run, m.get("chat_template", "lima")),
        "decoding": decoding(g.get("temperature"), g.get("top_p")),
        **{k: t.get(k) for k in ("epochs", "lr", "batch_size", "residual_dropout")},
        "checkpoints": g.get("checkpoints"),
    }


def published_comparison(runs: list[Path], out: Path, name: str = "published_comparison") -> Drawn:
    """The published LIMA-1k numbers (`paper_values.LIMA_1K_PUBLISHED`) with the run's beside each only when the
    setups match (base model, recipe, template, benchmark version, metric); otherwise the row says what differs.
    CSV and Markdown; a benchmark the run did not run reads "not run"."""
    src = next((r for r in runs if RunDir(r).config.is_file()), None)
    if src is None:
        return Drawn(name, "skipped", "no config.json in the given runs")
    setup, have = run_setup(src), run_benchmarks(src)
    recs = []
    for p in pv.LIMA_1K_PUBLISHED:
        metric = p.metric if p.metric != "unresolved" else "lc_win"
        value = have.get((p.benchmark, metric))
        if value is None and p.benchmark.startswith("alpaca_eval"):  # AlpacaEval 1 is not run: compare with 2's
            metric = next((m for b, m in have if b == "alpaca_eval_2"), metric)
            value = have.get(("alpaca_eval_2", metric))
        bench = "alpaca_eval_2" if p.benchmark.startswith("alpaca_eval") else p.benchmark
        diffs = pv.setup_differences(p, {**setup, "benchmark": bench, "metric": metric})
        recs.append(
            {
                "published": pv.published_label(p),
                "benchmark": p.benchmark,
                "metric": p.metric,
                "judge": p.judge,
                "decoding": p.decoding,
                "source": p.source,
                "confirmed": p.confirmed,
                "published_value": p.value,
                "this_run": "not run" if value is None else (f"{value:g}" if not diffs else "not comparable"),
                "differs": "; ".join(diffs),
            }
        )
    df = pd.DataFrame(recs)
    d = save(Drawn(name, "drawn", source=str(src), data=df), out, (), 0)
    md = out / f"{name}.md"
    md.write_text(
        f"## Published LIMA-1k numbers beside this run ({setup['model']})\n\n"
        + markdown(df.drop(columns=["judge", "decoding", "source"]))
        + "\n\nA run number is shown only where the setup matches; `differs` says which settings do not.\n",
        encoding="utf-8",
    )
    d.files.append(str(md))
    return d
