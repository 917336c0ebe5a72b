"""Hand-offs to the researcher's other tools: AlpacaEval's and MT-Bench's prompt files in, AlpacaEval
model_outputs out (validated against AlpacaEval's documented fields), a run directory's config as the CLI's
default, notebook parameters as papermill passes them, and lm-evaluation-harness on a checkpoint (skipped when
lm_eval is not installed)."""

import json
import sys
import types

import pandas as pd
import pytest
from helpers import PROMPTS, generation_rows, tiny_overrides

from lima_repro import models
from lima_repro.cli import main
from lima_repro.config import ConfigError, ModelConfig, load_config, to_dict
from lima_repro.data import DataError, read_examples
from lima_repro.export import ALPACA_EVAL_FIELDS, check_alpaca_eval, choose_checkpoint, export_alpaca_eval
from lima_repro.files import read_jsonl_plain, write_json, write_jsonl
from lima_repro.generate import run_generate
from lima_repro.judging.items import alpaca_eval_records, check_generator, generator_name
from lima_repro.judging.items import export_alpaca_eval as export_judge_alpaca_eval
from lima_repro.notebook import parse_overrides, refuse_secret_parameters
from lima_repro.readers import FIX_GENERATIONS
from lima_repro.runs import RunDir

# rows as AlpacaEval's evaluation set has them: with a reference model's `output` and `generator`, or without
ALPACA_EVAL_SET = [
    {
        "instruction": "What are the names of some famous actors?",
        "dataset": "helpful_base",
        "output": "Tom Hanks, ...",
        "generator": "gpt4_turbo",
    },
    {"instruction": "How do I wrap a present neatly?", "dataset": "oasst"},
    {"instruction": "Write a haiku about rain.", "dataset": "vicuna"},
]
MT_BENCH = [
    {"question_id": 81, "category": "writing", "turns": ["Write a travel blog post.", "Rewrite it."]},
    {"question_id": 101, "category": "reasoning", "turns": ["Who is second in the race?", "And if..."]},
]


def lima_checkpoint(folder, model_dir):
    """A base model with LIMA's EOT and chat template saved as a checkpoint folder (untrained: format only)."""
    model, tok, _ = models.load_base(ModelConfig(name=str(model_dir)))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_prompt_files_from_alpaca_eval_and_mt_bench(tmp_path):
    (tmp_path / "eval.json").write_text(json.dumps(ALPACA_EVAL_SET))
    (tmp_path / "question.jsonl").write_text("".join(json.dumps(q) + "\n" for q in MT_BENCH))
    alpaca = read_examples(tmp_path / "eval.json", ends_with="user")
    assert [(e["source"], e["messages"]) for e in alpaca] == [
        (r["dataset"], [{"role": "user", "content": r["instruction"]}]) for r in ALPACA_EVAL_SET
    ]
    mt = read_examples(tmp_path / "question.jsonl", ends_with="user")
    assert [(e["id"], e["source"], e["messages"]) for e in mt] == [
        ("81", "mt_bench", [{"role": "user", "content": "Write a travel blog post."}]),
        ("101", "mt_bench", [{"role": "user", "content": "Who is second in the race?"}]),
    ]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question_id": 1, "turns": []}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: MT-Bench 'turns' must be a non-empty list"):
        read_examples(tmp_path / "bad.jsonl", ends_with="user")


def test_alpaca_eval_round_trip_through_generate_and_the_cli(tmp_path, tiny_llama, capsys):
    """AlpacaEval's instructions in as prompts, every one answered, out again as model_outputs.json with
    AlpacaEval's fields: the same instructions (AlpacaEval pairs outputs by instruction) and datasets."""
    (tmp_path / "eval.json").write_text(json.dumps(ALPACA_EVAL_SET))
    ckpt = lima_checkpoint(tmp_path / "ckpt", tiny_llama)
    cfg = load_config(
        "paper",
        overrides=tiny_overrides(
            tiny_llama,
            tmp_path / "run",
            **{
                "generate.prompts_file": str(tmp_path / "eval.json"),
                "generate.checkpoints": [str(ckpt)],
                "generate.include_base": False,
                "generate.max_new_tokens": 4,
                "generate.max_prompts": None,
            },
        ),
    )
    run_generate(cfg)
    out = tmp_path / "outputs" / "model_outputs.json"
    assert main(["alpaca-eval", cfg.run_dir, "--generator", "lima-tiny", "--out", str(out)]) == 0
    assert f"alpaca_eval --model_outputs {out}" in capsys.readouterr().out
    records = json.loads(out.read_text())
    assert (
        [tuple(r) for r in records]
        == [ALPACA_EVAL_FIELDS] * 3
        == [("dataset", "instruction", "output", "generator")] * 3
    )
    assert [(r["instruction"], r["dataset"], r["generator"]) for r in records] == [
        (r["instruction"], r["dataset"], "lima-tiny") for r in ALPACA_EVAL_SET
    ]
    rows = [json.loads(x) for x in RunDir(cfg.run_dir).generations.read_text().splitlines()]
    assert [r["output"] for r in records] == [r["response"] for r in rows]


def test_alpaca_eval_export_picks_one_system_and_refuses_what_alpaca_eval_cannot_read(tmp_path):
    rows = generation_rows("epoch-2")
    assert choose_checkpoint(rows, None, "g") == "epoch-2"  # the one system besides base
    records, left_out = alpaca_eval_records(rows, "epoch-2", "lima")  # first sample of each prompt
    assert [r["output"] for r in records] == [r["response"] for r in rows if r["checkpoint"] == "epoch-2"]
    assert left_out == [] and len(alpaca_eval_records(rows, "base", "base-model")[0]) == 4
    with pytest.raises(DataError, match="no rows of checkpoint 'epoch-9'.*one of base, epoch-2"):
        choose_checkpoint(rows, "epoch-9", "g")
    two = rows + [dict(r, checkpoint="epoch-3") for r in rows if r["checkpoint"] == "epoch-2"]
    with pytest.raises(DataError, match="holds 2 systems besides base.*--checkpoint"):
        choose_checkpoint(two, None, "g")
    with pytest.raises(DataError, match="record 1: fields"):
        check_alpaca_eval([dict(records[0]), {"instruction": "x", "output": "y"}])
    with pytest.raises(DataError, match="record 1: empty or repeated instruction"):
        check_alpaca_eval([records[0], dict(records[0], output="other")])
    with pytest.raises(DataError, match="model name 'a/b' is empty or not a plain file name"):
        check_generator("a/b", "--generator")
    assert generator_name("google/gemma-3-270m", "epoch-2") == "lima-gemma-3-270m-epoch-2"


def test_alpaca_eval_export_names_each_bad_input_in_one_line(tmp_path):
    """A missing file, a row without a field the export reads, a run config without the model's name: each one
    line naming the file (and line or key) and the fix, never a KeyError's text."""
    gone = tmp_path / "gone.jsonl"
    with pytest.raises(DataError) as err:
        export_alpaca_eval(gone, "m")
    assert str(err.value) == (
        f"{gone}: not found. Fix: give a generations JSONL file or a run directory whose generate stage finished"
    )
    rows = generation_rows("epoch-2")
    write_jsonl(tmp_path / "g.jsonl", [rows[0], {k: v for k, v in rows[1].items() if k != "checkpoint"}])
    with pytest.raises(DataError) as err:
        export_alpaca_eval(tmp_path / "g.jsonl", "m")
    assert (
        str(err.value)
        == f"{tmp_path / 'g.jsonl'}:2: `checkpoint` is missing, expected a string. Fix: {FIX_GENERATIONS}"
    )
    run = RunDir(tmp_path / "run")
    write_jsonl(run.generations, rows)
    write_json(run.config, {"model": {"path": "x"}})
    with pytest.raises(DataError) as err:
        export_alpaca_eval(run.root)
    assert str(err.value) == (
        f"{run.config}:model: `name` is missing, expected a string. Fix: give --generator NAME, or rerun the run's "
        "stages"
    )


def _run_with_a_dialogue(tmp_path, tiny_llama) -> RunDir:
    """A run whose generations hold one multi-turn prompt (p1) among four, as the demo's test set does."""
    cfg = load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path / "run"))
    run = RunDir(cfg.run_dir)
    write_json(run.config, to_dict(cfg))
    rows = generation_rows("epoch-2")
    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    rows = [dict(r, messages=turns) if r["prompt_id"] == "p1" else r for r in rows]
    write_jsonl(run.generations, rows)
    return run


def test_alpaca_eval_leaves_multi_turn_prompts_out_and_counts_them_in_both_exports(tmp_path, tiny_llama, capsys):
    run = _run_with_a_dialogue(tmp_path, tiny_llama)
    assert main(["alpaca-eval", str(run.root)]) == 0
    out = capsys.readouterr().out
    assert "left out 1 multi-turn prompts (AlpacaEval judges single instructions): ['p1']" in out
    name = f"lima-{tiny_llama.name}-epoch-2"  # the one generator name rule: lima-<base model>-<checkpoint>
    files = run.alpaca_eval_export(name)
    records = json.loads(files["outputs"].read_text())
    assert [r["instruction"] for r in records] == [PROMPTS[p] for p in ("p2", "p3", "p4")]
    assert {r["generator"] for r in records} == {name}
    assert json.loads(files["export"].read_text())["left_out_multi_turn"] == ["p1"]
    # the judge stage's export follows the same rule, under the same name
    rows = read_jsonl_plain(run.generations)
    done = export_judge_alpaca_eval(
        rows, "epoch-2", tmp_path / "judge.json", generator_name(str(tiny_llama), "epoch-2")
    )
    assert json.loads((tmp_path / "judge.json").read_text()) == records and done["left_out_multi_turn"] == ["p1"]
    # AlpacaEval's own loader reads it back, where installed
    loader = pytest.importorskip("alpaca_eval.utils", reason="alpaca_eval not installed (the alpaca-eval extra)")
    read_back = loader.load_or_convert_to_dataframe(str(files["outputs"]))
    assert list(read_back["instruction"]) == [r["instruction"] for r in records]


def test_alpaca_eval_evaluate_stores_the_leaderboard_row_or_says_what_to_install(
    tmp_path, tiny_llama, capsys, monkeypatch
):
    run = _run_with_a_dialogue(tmp_path, tiny_llama)
    monkeypatch.setitem(sys.modules, "alpaca_eval", None)  # not installed
    assert main(["alpaca-eval", str(run.root), "--generator", "lima-x", "--evaluate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: alpaca_eval is not installed: pip install -e ".[alpaca-eval]", then rerun with --evaluate']

    calls = []

    def evaluate(**kwargs):  # alpaca_eval.evaluate's return with is_return_instead_of_print
        calls.append(kwargs)
        row = {"win_rate": 12.5, "standard_error": 1.5, "n_total": 3, "avg_length": 40, "mode": "community"}
        board = pd.DataFrame.from_dict({"lima-x": {**row, "length_controlled_winrate": 10.25}}, orient="index")
        return board, None

    fake = types.ModuleType("alpaca_eval")
    fake.evaluate, fake.__version__ = evaluate, "0.6.6"
    fake.constants = types.SimpleNamespace(DEFAULT_ANNOTATOR_CONFIG="weighted_alpaca_eval_gpt4_turbo")
    monkeypatch.setitem(sys.modules, "alpaca_eval", fake)
    assert main(["alpaca-eval", str(run.root), "--generator", "lima-x", "--evaluate"]) == 0
    files = run.alpaca_eval_export("lima-x")
    assert calls == [
        {
            "model_outputs": str(files["outputs"]),
            "name": "lima-x",
            "output_path": str(files["outputs"].parent),
            "is_return_instead_of_print": True,
            "is_cache_leaderboard": False,
        }
    ]
    assert run.read_alpaca_eval_leaderboards() == {
        "lima-x": {
            "generator": "lima-x",
            "length_controlled_winrate": 10.25,
            "win_rate": 12.5,
            "standard_error": 1.5,
            "avg_length": 40,
            "n_total": 3,
            "annotator": "weighted_alpaca_eval_gpt4_turbo",
            "alpaca_eval_version": "0.6.6",
        }
    }


def test_run_dir_config_is_the_cli_default(tmp_path, tiny_llama, capsys):
    """`train --run-dir runs/X` trains with runs/X/config.json, not the demo profile; --set applies on top."""
    cfg = load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path / "run", **{"train.epochs": 1}))
    write_json(RunDir(cfg.run_dir).config, to_dict(cfg))
    assert main(["config", "--run-dir", cfg.run_dir, "--set", "train.lr=0.002"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["model"]["name"] == str(tiny_llama) and shown["train"]["epochs"] == 1 and shown["train"]["lr"] == 0.002
    assert main(["config", "--run-dir", cfg.run_dir, "--profile", "demo"]) == 0  # a profile still wins when named
    assert json.loads(capsys.readouterr().out)["model"]["name"] == "gemma-3-270m"
    assert main(["curate", "--run-dir", cfg.run_dir]) == 0 and main(["train", "--run-dir", cfg.run_dir]) == 0
    err = capsys.readouterr().err
    assert f"config: {RunDir(cfg.run_dir).config} (the run's own" in err
    assert [c["name"] for c in RunDir(cfg.run_dir).list_checkpoints()] == ["epoch-1"]  # 1 epoch, the tiny model
    assert json.loads((RunDir(cfg.run_dir).stage("train") / "config.json").read_text())["model"]["name"] == str(
        tiny_llama
    )


def test_notebook_overrides_as_papermill_passes_them_and_secrets_refused():
    assert parse_overrides('{"train.epochs": 1}') == {"train.epochs": 1}  # papermill -p passes text
    assert parse_overrides("") == {} and parse_overrides(None) == {} and parse_overrides({"a": 1}) == {"a": 1}
    with pytest.raises(ConfigError, match=r"not JSON.*-y 'overrides: \{train.epochs: 1\}'"):
        parse_overrides("{train.epochs: 1}")
    with pytest.raises(ConfigError, match="must map dotted keys"):
        parse_overrides('["train.epochs", 1]')
    refuse_secret_parameters({"config_path": "", "run_dir": "runs/x", "tokenizer": "gpt2", "_": "x"})  # fine
    with pytest.raises(ConfigError, match="api_key looks like a secret.*judge.api_key_env"):
        refuse_secret_parameters({"run_dir": "", "api_key": "sk-123"})


@pytest.mark.lmeval
def test_lm_eval_runs_a_checkpoint_with_the_chat_template(tmp_path, tiny_llama):
    """The lm-eval command of docs/evaluation.md, in Python, on a tiny local generation task: the checkpoint's length limit
    is the task's (generation_config sets none), and the chat template frames each prompt as a user turn."""
    pytest.importorskip("lm_eval")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    ckpt = lima_checkpoint(tmp_path / "ckpt", tiny_llama)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"q": q, "a": "rice"}) + "\n" for q in ("how", "why")))
    (tmp_path / "tiny_gen.yaml").write_text(
        "task: tiny_gen\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'data.jsonl'}\ntest_split: test\noutput_type: generate_until\n"
        'doc_to_text: "{{q}}"\ndoc_to_target: "{{a}}"\n'
        "generation_kwargs:\n  until: []\n  max_gen_toks: 5\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n"
    )
    out = simple_evaluate(
        model="hf",
        model_args=f"pretrained={ckpt},dtype=float32",
        tasks=["tiny_gen"],
        task_manager=TaskManager(include_path=str(tmp_path)),
        apply_chat_template=True,
        log_samples=True,
        device="cpu",
        batch_size=1,
    )
    samples = out["samples"]["tiny_gen"]
    assert len(samples) == 2 and "exact_match,none" in out["results"]["tiny_gen"]
    assert all(s["arguments"][0][0] == f"<s>{s['doc']['q']}<|eot|>" for s in samples)  # LIMA's chat template
    # max_gen_toks honoured (a saved max_new_tokens would override it): at most 5 byte tokens, at most 5 characters
    assert all(0 < len(s["resps"][0][0]) <= 5 for s in samples)
