"""End to end: `python -m lima_repro run` executes every notebook with papermill on the packaged Gemma 3 270M
(the demo profile, shrunk further; `slow`), then the test asserts on what the notebooks recorded. The other tests
run three notebooks on a tiny model: what the terminal and the saved notebooks show, and re-running them."""

import importlib.util
import json
from pathlib import Path

import papermill as pm
import pytest
from helpers import tiny_overrides

from lima_repro.config import load_config
from lima_repro.files import read_jsonl_plain
from lima_repro.pipeline import notebook_order, notebooks_dir, run_pipeline
from lima_repro.runs import RunDir


def recorded(notebook: Path, key: str) -> dict:
    """The one-line JSON summary a notebook's last cell printed."""
    nb = json.loads(notebook.read_text())
    for cell in reversed(nb["cells"]):
        for out in cell.get("outputs", []):
            for line in "".join(out.get("text", "")).splitlines():
                if line.startswith("{") and key in line:
                    return json.loads(line)[key]
    raise AssertionError(f"{notebook.name} recorded no {key}")


@pytest.mark.slow
@pytest.mark.notebooks
def test_demo_pipeline_end_to_end(tmp_path):
    cfg = load_config(
        "demo",
        overrides={
            "output_root": str(tmp_path),
            "train.epochs": 1,
            "train.max_steps": 2,
            "train.batch_size": 4,
            "train.micro_batch_size": 4,
            "train.max_length": 256,
            "train.max_eval_examples": 2,
            "generate.max_new_tokens": 12,
            "generate.max_prompts": 2,
            "judge.max_prompts": 2,
            "generate.checkpoints": "selected",  # the pipeline runs 02b_select before 03_generate
            "ablations.only": ["se_filtered"],
            "figures.copy_to": None,  # never write into the repository's figures/
        },
    )
    run_dir = run_pipeline(cfg)
    run = RunDir(run_dir)

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok" and list(manifest["stages"]) == notebook_order(cfg)
    assert notebook_order(cfg) == [
        "01_curate",
        "02_train",
        "02b_select",
        "03_generate",
        "04_judge",
        "05_ablations",
        "06_figures",
    ]
    assert manifest["git_commit"] and manifest["packages"]["torch"].startswith("2.13.0")
    nbs = run_dir / "notebooks"

    curate = recorded(nbs / "01_curate.ipynb", "curate_summary")
    card = json.loads((run_dir / "curate" / "datacard.json").read_text())
    assert curate["train"] == card["files"]["train.jsonl"]["rows"] == cfg.curate.select_n == 24

    train = recorded(nbs / "02_train.ipynb", "train_summary")
    metrics = read_jsonl_plain(run_dir / "train" / "metrics.jsonl")
    assert train["steps"] == 2 and train["checkpoints"] == ["step-2"]
    first = next(r for r in metrics if r["type"] == "train")  # metrics[0] is the base model's evaluation
    assert train["first_loss"] == pytest.approx(first["loss"]) and 0.5 < train["first_loss"] < 8
    assert [r["step"] for r in metrics if r["type"] == "eval"] == [0, 2] and all(
        r.get("perplexity", 2) > 1 for r in metrics
    )
    if importlib.util.find_spec("tensorboard"):  # make demo installs it: train.report_to auto logs to TensorBoard
        assert list(run.tracker_logs.rglob("events.out.tfevents.*"))
    assert not run.state.exists()  # a finished run keeps no optimizer state

    select = recorded(nbs / "02b_select.ipynb", "select_summary")
    assert select["chosen"] == "step-2" == run.read_selection()["chosen"]  # the only checkpoint

    gen = recorded(nbs / "03_generate.ipynb", "generate_summary")
    assert set(gen) == {"base", "step-2"} and all(v["n"] == 2 for v in gen.values())
    for shares in gen.values():  # every response stops at EOT, at EOS or at max_new_tokens, and is counted once
        assert shares["eot_pct"] + shares["eos_pct"] + shares["max_new_tokens_pct"] == pytest.approx(100.0)
    assert json.loads((run_dir / "generate" / "manifest.json").read_text())["stops"] == gen
    rows = read_jsonl_plain(run_dir / "generate" / "generations.jsonl")
    assert len(rows) == 4 and all(r["response_tokens"] <= 12 for r in rows)

    judge = recorded(nbs / "04_judge.ipynb", "judge_summary")
    results = json.loads((run_dir / "judge" / "results.json").read_text())
    assert judge["system"] == "step-2" and set(judge["pairwise"]) == {"base"}
    assert judge["pairwise"]["base"]["n"] == results["pairwise"]["base"]["n"] == 2
    assert judge["calibration"]["base"]["method"] == "balanced"  # the local judge's label probabilities
    assert 0.0 <= judge["order_consistency"]["base"] <= 1.0 and results["pairwise_calibration"]["base"]["verdict"]
    ref = judge["reference"]  # the reference-based check: perplexity before/after, similarity of dev answers
    assert ref["perplexity"]["base"] > 1 and ref["perplexity"]["step-2"] > 1
    assert set(ref["similarity"]) == {"base", "step-2"} and all(
        -1 <= s["mean"] <= 1 for s in ref["similarity"].values()
    )
    ts = results["token_shift"]  # run on the tuned answers that ended at EOT (12 new tokens: maybe none here)
    assert run.token_shift.is_file() and run.token_shift_table.is_file() and ts["responses"] == 2
    assert ts["answers_analysed"] == sum(r["stop"] == "eot" for r in rows if r["checkpoint"] == "step-2")

    ablations = json.loads((run_dir / "ablations" / "summary.json").read_text())
    assert [c["condition"] for c in ablations["conditions"]] == ["se_filtered"]
    assert ablations["conditions"][0]["status"] == "ok", ablations["conditions"][0]
    figures = recorded(nbs / "06_figures.ipynb", "figures_summary")  # figure -> "drawn" or "skipped: <why>"
    drawn = {name for name, status in figures.items() if status == "drawn"}
    assert {
        "fig2_llm_preference",
        "fig3_absolute",
        "fig5_ablations",
        "fig9_perplexity_vs_score",
        "table1_datacard",
    } <= drawn
    assert {"fig6_quantity", "fig7_dialogue", "safety"} <= set(figures)  # drawn or skipped, never silently missing
    # nobody annotated: the paper's Fig. 1 alone
    assert figures["fig1_human_preference"].startswith("drawn (paper only: no pairwise human labels yet")
    tables = {"table1_datacard", "published_comparison"}  # Markdown + CSV, no image
    for name in drawn - tables:  # the image and the CSV of exactly what it draws
        assert (run_dir / "figures" / f"{name}.png").is_file() and (run_dir / "figures" / f"{name}.csv").is_file()
    for name in drawn & tables:
        assert (run_dir / "figures" / f"{name}.md").is_file() and (run_dir / "figures" / f"{name}.csv").is_file()
    assert (run_dir / "figures" / "table1_datacard.md").exists()


@pytest.mark.notebooks
def test_tiny_pipeline_terminal_saved_progress_and_rerun_from_the_notebooks_folder(
    tmp_path, tiny_llama, capfd, monkeypatch
):
    """What the terminal shows (the run directory first, then each stage's text progress; no kernel warnings), text
    progress saved in the executed notebooks, and an executed notebook re-run where it is saved, with the kernel in
    its folder as JupyterLab starts it (`prompts.jsonl` is relative to where the pipeline ran)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prompts.jsonl").write_text(
        "".join(
            json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": q}]}) + "\n"
            for i, q in enumerate(("How do I boil rice?", "Why is the sky blue?"))
        )
    )
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_llama,
            tmp_path / "run",
            **{
                "notebooks": ["01_curate", "02_train", "03_generate"],
                "train.epochs": 1,
                "generate.prompts_file": "prompts.jsonl",
            },
        ),
    )
    run_dir = run_pipeline(cfg)
    err = capfd.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("[lima_repro]")]
    assert ours[0] == f"[lima_repro] run directory: {run_dir}"
    assert "train: 100%" in err and "generate epoch-1: 100%" in err  # each stage's progress, as it runs
    for noise in ("without encryption", "past_key_values", "Removed shared tensor", "FutureWarning"):
        assert noise not in err
    outputs = [
        o
        for c in json.loads((run_dir / "notebooks" / "02_train.ipynb").read_text())["cells"]
        for o in c.get("outputs", [])
    ]
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    saved = "".join("".join(o.get("text", "")) for o in outputs)
    assert "train: 100%" in saved and "Loading weights: 100%" in saved

    folder = run_dir / "notebooks"
    again = tmp_path / "again.ipynb"
    pm.execute_notebook(str(folder / "03_generate.ipynb"), str(again), cwd=str(folder), progress_bar=False)
    assert set(recorded(again, "generate_summary")) == {"base", "epoch-1"}
    assert f"working directory: {tmp_path}" in json.dumps(json.loads(again.read_text()))
    assert {r["prompt_id"] for r in read_jsonl_plain(run_dir / "generate" / "generations.jsonl")} == {"q0", "q1"}


@pytest.mark.notebooks
def test_notebooks_refuse_a_secret_parameter_and_say_to_set_run_dir(tmp_path):
    """`papermill -p api_key ...` stops at setup, saying where keys go; annotate.ipynb run unedited says which
    parameter to set."""
    src = notebooks_dir()
    with pytest.raises(pm.PapermillExecutionError, match="api_key looks like a secret.*judge.api_key_env"):
        pm.execute_notebook(
            str(src / "01_curate.ipynb"),
            str(tmp_path / "leak.ipynb"),
            parameters={"api_key": "sk-test", "overrides": json.dumps({"output_root": str(tmp_path)})},
            progress_bar=False,
        )
    assert {p.name for p in tmp_path.iterdir()} == {"leak.ipynb"}  # refused before a run directory was made
    with pytest.raises(pm.PapermillExecutionError, match="has no generate/generations.jsonl. Fix: set run_dir"):
        pm.execute_notebook(str(src / "annotate.ipynb"), str(tmp_path / "annotate.ipynb"), progress_bar=False)
