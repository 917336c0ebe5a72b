import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_overrides
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from lima_repro.chat_format import IGNORE
from lima_repro.config import load_config
from lima_repro.curate import run_curate
from lima_repro.files import read_jsonl_plain
from lima_repro.runs import RunDir
from lima_repro.train import lr_at, run_train

# First losses of the tiny fixed-seed Llama on the demo data (recorded when the recipe was written; a change
# here means the data order, masking, loss normalisation, dropout or optimizer changed).
PINNED_LOSSES = {
    "mean": [5.575106, 5.521551, 5.472245, 5.414733],  # EOT starting as the mean row (until 2026-12)
    "eos": [5.576208, 5.522726, 5.472696, 5.415496],
}  # EOT starting as a copy of EOS's row (the default since)


def curated(tmp_path, model_dir, **extra):
    cfg = load_config("paper", overrides=tiny_overrides(model_dir, tmp_path / "run", **extra))
    run_curate(cfg)
    return cfg


def test_lr_schedule_linear_decay_without_warmup():
    lrs = [lr_at(s, 10, 1e-5, 1e-6, 0) for s in range(10)]
    assert lrs[0] == 1e-5 and lrs[-1] == pytest.approx(1e-6)
    assert lrs[5] == pytest.approx(1e-5 - 5 * 1e-6)
    assert lr_at(0, 10, 1.0, 0.0, 2) == 0.5 and lr_at(1, 10, 1.0, 0.0, 2) == 1.0


@pytest.mark.parametrize("eot_init", ["mean", "eos"])
def test_pinned_losses_and_run_directory(tmp_path, tiny_llama, eot_init):
    cfg = curated(tmp_path, tiny_llama, **{"model.eot_init": eot_init})
    out = run_train(cfg)
    rows = read_jsonl_plain(out / "metrics.jsonl")
    train = [r for r in rows if r["type"] == "train"]
    evals = [r for r in rows if r["type"] == "eval"]
    assert [r["loss"] for r in train[:4]] == pytest.approx(PINNED_LOSSES[eot_init], rel=1e-4)
    assert len(train) == 12 and [r["step"] for r in train] == list(range(1, 13))  # 48 examples / 8, 2 epochs
    assert train[-1]["loss"] < train[0]["loss"]
    assert {"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(train[0])
    assert train[0]["lr"] == 1e-3 and train[-1]["lr"] == pytest.approx(1e-4)
    assert [e["epoch"] for e in evals] == [0, 1, 2] and all(e["perplexity"] > 1 for e in evals)  # 0: the base
    assert [c["name"] for c in RunDir(out.parent).list_checkpoints()] == ["epoch-1", "epoch-2"]
    info = json.loads((out / "train_info.json").read_text())
    assert info["dropout_per_layer"] == pytest.approx([0.0, 0.1, 0.2])
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "manifest.json", "metrics.jsonl", "checkpoints.json"} <= names
    assert not {"state", "state.partial"} & names  # a finished run keeps no optimizer state (only a killed one does)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["inputs"] and manifest["wall_time_s"] > 0


def test_checkpoint_is_plain_transformers_and_chats_with_eot(tmp_path, tiny_llama):
    cfg = curated(tmp_path, tiny_llama, **{"train.epochs": 1})
    ckpt = RunDir(run_train(cfg).parent).list_checkpoints()[-1]["path"]
    tok = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    eot_id = tok.convert_tokens_to_ids("<|eot|>")
    assert eot_id == len(tok) - 1 and model.get_input_embeddings().weight.shape[0] == len(tok)
    assert eot_id in model.generation_config.eos_token_id
    msgs = [{"role": "user", "content": "Hi"}]
    assert tok.apply_chat_template(msgs, tokenize=False) == "<s>Hi<|eot|>"
    gen = pipeline("text-generation", model=model, tokenizer=tok)
    out = gen(msgs, max_new_tokens=5, do_sample=False)
    assert out[0]["generated_text"][-1]["role"] == "assistant"


@pytest.mark.parametrize("init, token", [("mean", None), ("eos", "</s>"), ("a", "a"), ("</s>", "</s>")])
def test_eot_rows_start_from_the_chosen_token(tiny_llama, init, token):
    """model.eot_init: the new EOT rows (input embedding and the untied output head) copy EOS's row, a named
    token's row, or start at the mean of all rows."""
    from lima_repro import models
    from lima_repro.config import ModelConfig

    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    model, tok, eot_id = models.load_base(ModelConfig(name=str(tiny_llama), eot_init=init))
    row = None if token is None else tok.convert_tokens_to_ids(token)
    assert row is None or 0 <= row < eot_id
    for new, old in (
        (model.get_input_embeddings().weight, base.get_input_embeddings().weight),
        (model.lm_head.weight, base.lm_head.weight),
    ):
        torch.testing.assert_close(new[eot_id], old.mean(0) if row is None else old[row])
        torch.testing.assert_close(new[:eot_id], old)  # the existing rows are untouched


def test_unknown_eot_init_token_is_a_clear_error(tiny_llama):
    from lima_repro import models
    from lima_repro.config import ModelConfig

    with pytest.raises(ValueError, match="eot_init='<nope>'.*not a token"):
        models.load_base(ModelConfig(name=str(tiny_llama), eot_init="<nope>"))


def test_resume_after_a_kill_matches_an_uninterrupted_run(tmp_path, tiny_llama):
    full = run_train(curated(tmp_path / "a", tiny_llama))
    reference = [r["loss"] for r in read_jsonl_plain(full / "metrics.jsonl") if r["type"] == "train"]

    cfg = curated(tmp_path / "b", tiny_llama)

    def kill(row):
        if row["step"] == 8:  # two steps into epoch 2: the last saved state is the end of epoch 1
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_train(cfg, on_step=kill)
    out = run_train(cfg)
    resumed = [r for r in read_jsonl_plain(out / "metrics.jsonl") if r["type"] == "train"]
    assert [r["step"] for r in resumed] == list(range(1, 13))
    assert [r["loss"] for r in resumed] == pytest.approx(reference, rel=1e-6)
    assert json.loads((out / "manifest.json").read_text())["resumed_from_step"] == 6


def test_training_again_with_fewer_epochs_leaves_no_checkpoint_of_the_earlier_run(tmp_path, tiny_llama):
    """A finished 2-epoch run trained again in its folder with 1 epoch starts over: its checkpoints.json and
    checkpoints/ hold epoch-1 only, so `generate` with `last` can never sample the earlier run's epoch-2."""
    cfg = curated(tmp_path, tiny_llama, **{"train.save_state": False})
    run_train(cfg)
    run = RunDir(cfg.run_dir)
    assert [c["name"] for c in run.list_checkpoints()] == ["epoch-1", "epoch-2"]
    cfg.train.epochs = 1
    run_train(cfg)
    assert [c["name"] for c in run.list_checkpoints()] == ["epoch-1"]
    assert sorted(d.name for d in run.checkpoints.iterdir()) == ["epoch-1"]
    assert max(r["step"] for r in run.read_metrics()) == 6


def test_a_full_disk_while_saving_keeps_the_last_good_checkpoint_and_state(tmp_path, tiny_llama, monkeypatch):
    """safetensors meets a full disk writing epoch-2 (its own error type, not an OSError): one PathFaultError naming
    the folder, no half-written folder left, epoch-1 and the epoch-1 state intact, and the rerun continues from them."""
    from safetensors import SafetensorError
    from transformers import PreTrainedModel

    from lima_repro.files import PathFaultError

    cfg = curated(tmp_path, tiny_llama)
    real_save = PreTrainedModel.save_pretrained

    def save(self, folder, *a, **kw):
        if str(folder).endswith("epoch-2.partial"):
            (Path(folder) / "model.safetensors").parent.mkdir(parents=True, exist_ok=True)
            (Path(folder) / "model.safetensors").write_bytes(b"torn")
            raise SafetensorError(
                'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
            )
        return real_save(self, folder, *a, **kw)

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", save)
    with pytest.raises(
        PathFaultError, match=r"epoch-2\.partial: no space left on the device .* rerun the same command"
    ):
        run_train(cfg)
    run = RunDir(cfg.run_dir)
    assert sorted(d.name for d in run.checkpoints.iterdir()) == ["epoch-1"]
    assert json.loads((run.state / "progress.json").read_text())["step"] == 6
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", real_save)  # space freed
    out = run_train(cfg)
    assert json.loads((out / "manifest.json").read_text())["resumed_from_step"] == 6
    assert [c["name"] for c in run.list_checkpoints()] == ["epoch-1", "epoch-2"]


def test_packing_trains_on_the_same_tokens(tmp_path, tiny_llama):
    cfg = curated(tmp_path, tiny_llama, **{"train.packing": True, "train.epochs": 1, "train.residual_dropout": 0.0})
    packed = read_jsonl_plain(run_train(cfg) / "metrics.jsonl")
    cfg2 = curated(tmp_path / "u", tiny_llama, **{"train.epochs": 1, "train.residual_dropout": 0.0})
    padded = read_jsonl_plain(run_train(cfg2) / "metrics.jsonl")
    first = lambda rows: next(r for r in rows if r["type"] == "train")  # noqa: E731
    assert first(packed)["loss_tokens"] == first(padded)["loss_tokens"]
    assert first(packed)["loss"] == pytest.approx(first(padded)["loss"], rel=1e-4)


@pytest.mark.slow
def test_compiled_decoder_trains_like_eager(tmp_path, tiny_llama):
    """train.compile takes a torch.compile backend; aot_eager traces the decoder (dropout hooks, packed rows'
    masks) through dynamo and AOTAutograd like inductor does, without inductor's minutes of C++ codegen on CPU."""
    losses = {}
    for backend in (False, "aot_eager"):
        cfg = curated(
            tmp_path / str(backend),
            tiny_llama,
            **{
                "train.compile": backend,
                "train.max_steps": 3,
                "train.packing": True,
                "train.residual_dropout": 0.0,
                "train.save_state": False,
            },
        )
        out = run_train(cfg)
        losses[backend] = [r["loss"] for r in read_jsonl_plain(out / "metrics.jsonl") if r["type"] == "train"]
        assert json.loads((out / "train_info.json").read_text())["compiled"] == (backend or None)
    assert len(losses["aot_eager"]) == 3
    assert losses["aot_eager"] == pytest.approx(losses[False], rel=1e-5)


def test_bf16_autocast_trains_close_to_fp32(tmp_path, tiny_llama):
    """precision bf16 (the GPU default) runs the same step under autocast: losses within bf16 rounding of fp32."""
    from accelerate.state import AcceleratorState

    losses = {}
    for precision in ("fp32", "bf16"):
        cfg = curated(
            tmp_path / precision,
            tiny_llama,
            **{"train.precision": precision, "train.max_steps": 3, "train.packing": True, "train.save_state": False},
        )
        AcceleratorState._reset_state()  # accelerate fixes the precision once per process; a test process has many
        try:
            out = run_train(cfg)
        finally:
            AcceleratorState._reset_state()
        losses[precision] = [r["loss"] for r in read_jsonl_plain(out / "metrics.jsonl") if r["type"] == "train"]
        assert json.loads((out / "train_info.json").read_text())["precision"] == precision
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)
    assert losses["bf16"] != losses["fp32"]  # autocast really ran in bf16


@pytest.mark.parametrize(
    "flags, expected",
    [({"avx2", "fma"}, "fp32"), ({"avx2", "avx512_bf16"}, "bf16"), ({"amx_bf16", "amx_tile"}, "bf16"), (set(), "fp32")],
)
def test_auto_precision_follows_the_cpus_bf16_units(monkeypatch, flags, expected):
    """On CPUs without bf16 units bf16 matmuls are emulated (far slower), so `auto` asks the CPU, not the device type."""
    from lima_repro import models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(models, "cpu_flags", lambda: flags)
    assert models.resolve_precision("auto") == expected
    assert models.resolve_precision("fp32") == "fp32" and models.resolve_precision("bf16") == "bf16"


def test_cpu_flags_parses_cpuinfo(monkeypatch, tmp_path):
    """The flags line of /proc/cpuinfo becomes a set; an unreadable file gives no flags (so `auto` keeps fp32)."""
    from lima_repro import models

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n\n")
    real_read_text = Path.read_text
    monkeypatch.setattr(
        Path,
        "read_text",
        lambda self, *a, **k: real_read_text(cpuinfo if str(self) == "/proc/cpuinfo" else self, *a, **k),
    )
    assert models.cpu_flags() == {"fpu", "sse2", "avx2", "amx_bf16", "amx_tile"}
    cpuinfo.unlink()
    assert models.cpu_flags() == set()


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="no /proc/cpuinfo (not Linux)")
def test_cpu_flags_reads_this_machine():
    from lima_repro import models

    flags = models.cpu_flags()
    assert flags and any(f.startswith(("sse", "avx", "neon", "fp", "asimd")) for f in flags)


def test_freeze_embeddings_changes_only_the_eot_rows(tmp_path, tiny_model_dirs):
    """train.freeze_embeddings on a tied (Gemma 3) model: the saved checkpoint's embedding equals the base's
    except the EOT row, which trained; the run records the setting."""
    from lima_repro import models
    from lima_repro.config import ModelConfig

    cfg = curated(tmp_path, tiny_model_dirs["gemma3"], **{"train.freeze_embeddings": True, "train.epochs": 1})
    out = run_train(cfg)
    base, tok, eot_id = models.load_base(ModelConfig(name=str(tiny_model_dirs["gemma3"])))
    tuned = AutoModelForCausalLM.from_pretrained(RunDir(out.parent).list_checkpoints()[-1]["path"])
    old, new = base.get_input_embeddings().weight, tuned.get_input_embeddings().weight
    torch.testing.assert_close(new[:eot_id], old[:eot_id], rtol=0, atol=0)
    assert not torch.allclose(new[eot_id], old[eot_id])
    assert json.loads((out / "config.json").read_text())["train"]["freeze_embeddings"] is True


def test_checkpoint_generation_config_leaves_length_and_sampling_to_the_caller(tmp_path, tiny_llama):
    """generation_config.json holds the stop tokens only: a caller's max_length / max_new_tokens is honoured
    (lm-eval passes its max_gen_toks as max_length) and decoding is greedy unless the caller samples."""
    cfg = curated(tmp_path, tiny_llama, **{"train.epochs": 1})
    ckpt = RunDir(run_train(cfg).parent).list_checkpoints()[-1]["path"]
    saved = json.loads((Path(ckpt) / "generation_config.json").read_text())
    tok = AutoTokenizer.from_pretrained(ckpt)
    assert saved["eos_token_id"] == [tok.convert_tokens_to_ids("<|eot|>"), tok.eos_token_id]
    assert not {"max_new_tokens", "max_length", "do_sample", "temperature", "top_p"} & set(saved)
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], return_tensors="pt", return_dict=True)
    n = ids["input_ids"].shape[1]
    none_stop = {"eos_token_id": None}  # so that only the length can end these generations
    assert model.generate(**ids, max_length=n + 9, **none_stop).shape[1] == n + 9
    assert model.generate(**ids, max_new_tokens=7, **none_stop).shape[1] == n + 7
    greedy = [model.generate(**ids, max_new_tokens=6, **none_stop)[0].tolist() for _ in range(2)]
    assert greedy[0] == greedy[1]  # no sampling forced by the checkpoint


def test_kill_between_removing_state_and_renaming_the_new_one_resumes(tmp_path, tiny_llama):
    """The swap of a saved state: if a kill leaves only state.partial (complete: its progress.json is written last),
    the next start resumes from it and keeps metrics.jsonl's rows up to it."""
    full = run_train(curated(tmp_path / "a", tiny_llama))
    reference = [r["loss"] for r in read_jsonl_plain(full / "metrics.jsonl") if r["type"] == "train"]
    cfg = curated(tmp_path / "b", tiny_llama)
    run = RunDir(cfg.run_dir)

    def kill(row):
        if row["step"] == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_train(cfg, on_step=kill)
    run.state.rename(run.state_partial)  # as if killed after removing state/ and before the rename
    assert len(read_jsonl_plain(run.metrics)) > 6
    out = run_train(cfg)
    resumed = [r for r in read_jsonl_plain(out / "metrics.jsonl") if r["type"] == "train"]
    assert json.loads((out / "manifest.json").read_text())["resumed_from_step"] == 6
    assert [r["step"] for r in resumed] == list(range(1, 13))
    assert [r["loss"] for r in resumed] == pytest.approx(reference, rel=1e-6)
    assert not run.state.exists() and not run.state_partial.exists()  # finished: nothing left to resume


def test_tensorboard_receives_every_metrics_row(tmp_path, tiny_llama):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = curated(tmp_path, tiny_llama, **{"train.epochs": 1})  # train.report_to: auto = TensorBoard when installed
    rows = read_jsonl_plain(run_train(cfg) / "metrics.jsonl")
    logs = RunDir(cfg.run_dir).tracker_logs
    (events,) = {
        f.parent for f in logs.rglob("events.out.tfevents.*") if EventAccumulator(str(f)).Reload().Tags()["scalars"]
    }
    acc = EventAccumulator(str(events)).Reload()
    train = [r for r in rows if r["type"] == "train"]
    logged = acc.Scalars("train/loss")
    assert [e.step for e in logged] == [r["step"] for r in train] == list(range(1, 7))
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in train], rel=1e-6)
    assert [e.step for e in acc.Scalars("eval/perplexity")] == [0, 6]


def test_report_to_a_tracker_that_is_not_installed_is_a_clear_error():
    from lima_repro.config import ConfigError
    from lima_repro.tracking import tracker_names

    assert tracker_names("none") == []
    with pytest.raises(ConfigError, match="train.report_to names no_such_tracker, not installed"):
        tracker_names("no_such_tracker")


def test_training_runs_without_tensorboard(monkeypatch, tmp_path, tiny_llama):
    """`train.report_to: auto` with no tracker installed trains and logs to metrics.jsonl only (make demo without
    tensorboard): every step's row is there and no tracker folder is written."""
    from lima_repro import tracking

    monkeypatch.setattr(tracking, "get_available_trackers", lambda: [])
    assert tracking.tracker_names("auto") == []
    cfg = curated(tmp_path, tiny_llama, **{"train.epochs": 1, "train.save_state": False})
    rows = read_jsonl_plain(run_train(cfg) / "metrics.jsonl")
    assert [r["step"] for r in rows if r["type"] == "train"] == list(range(1, 7))
    assert not any(RunDir(cfg.run_dir).tracker_logs.rglob("events.out.tfevents.*"))


def test_saving_the_state_of_a_tied_model_says_nothing_about_shared_tensors(tmp_path, tiny_model_dirs, caplog):
    """Gemma ties its output head to the embedding: accelerate's "Removed shared tensor" warning at every state
    save is expected and harmless, so it is not shown; the state still resumes (the tie is restored on load)."""
    cfg = curated(tmp_path, tiny_model_dirs["gemma3"], **{"train.epochs": 1, "train.save_state_every_steps": 2})
    run = RunDir(cfg.run_dir)

    def kill(row):
        if row["step"] == 3:
            raise KeyboardInterrupt

    with caplog.at_level("WARNING"), pytest.raises(KeyboardInterrupt):
        run_train(cfg, on_step=kill)
    assert json.loads((run.state / "progress.json").read_text())["step"] == 2
    assert "Removed shared tensor" not in caplog.text
    out = run_train(cfg)
    assert json.loads((out / "manifest.json").read_text())["resumed_from_step"] == 2


def test_fixed_shapes_train_like_todays_packed_rows_and_record_their_choices(tmp_path, tiny_llama, monkeypatch):
    """train.fixed_shapes pads the packed rows to max_length, micro_batch_size of them per forward (issue 22): the
    same per-step losses as one variable-length row per forward. With no max_grad_norm no clip pass runs."""
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: pytest.fail("clipped without a limit"))
    losses = {}
    for fixed in (False, True):
        extra = {"train.packing": True, "train.fixed_shapes": fixed, "train.max_steps": 3, "train.save_state": False}
        cfg = curated(tmp_path / str(fixed), tiny_llama, **extra, **{"train.residual_dropout": 0.0})
        out = run_train(cfg)
        rows = [r for r in read_jsonl_plain(out / "metrics.jsonl") if r["type"] == "train"]
        losses[fixed] = [r["loss"] for r in rows]
        assert all(r["grad_norm"] > 0 for r in rows)  # logged without clipping
        info = json.loads((out / "train_info.json").read_text())
        assert {k: info[k] for k in ("fixed_shapes", "attn_implementation", "micro_batch_size", "loss_chunk_size")} == {
            "fixed_shapes": fixed,
            "attn_implementation": "sdpa",
            "micro_batch_size": 4,
            "loss_chunk_size": 256,
        }
        assert len(info["first_steps_s"]) == 2 and "compile_s" not in info
        assert json.loads((out / "manifest.json").read_text())["fixed_shapes"] == fixed
    assert losses[True] == pytest.approx(losses[False], rel=1e-6)


def test_step_micro_batches_have_one_shape_with_fixed_shapes(tiny_llama, tmp_path):
    from lima_repro.fixed_shapes import step_micro_batches

    cfg = load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path, **{"train.packing": True}))
    t = cfg.train
    examples = [{"input_ids": [5] * n, "labels": [IGNORE] + [5] * (n - 1)} for n in (150, 120, 90, 60, 30, 20)]
    today = step_micro_batches(t, "cpu", examples, 0)  # auto: off on CPU, one row of its own length per forward
    assert [tuple(mb["input_ids"].shape) for mb in today] == [(1, 180), (1, 180), (1, 110)]
    fixed = step_micro_batches(t, "cuda", examples, 0)  # auto: on for CUDA, 4 rows of max_length per forward
    assert [tuple(mb["input_ids"].shape) for mb in fixed] == [(4, 192)]
    assert fixed[0]["loss_targets"].numel() == sum(n - 1 for n in (150, 120, 90, 60, 30, 20))
    [idle] = step_micro_batches(t, "cuda", examples[:1], 0, no_loss=True)
    assert idle["loss_index"].numel() == 0 and (idle["labels"] == IGNORE).all()


def test_per_device_settings_resolve_and_bad_ones_name_the_fix(tiny_llama, tmp_path):
    from lima_repro.config import ConfigError

    def train(**extra):
        return load_config("paper", overrides=tiny_overrides(tiny_llama, tmp_path, **extra)).train

    t = train(**{"train.micro_batch_size": "auto", "train.loss_chunk_size": "auto", "train.packing": True})
    assert (t.micro_batch_for("cpu"), t.head_chunk_for("cpu"), t.fixed_shapes_for("cpu")) == (1, 256, False)
    assert (t.micro_batch_for("cuda"), t.head_chunk_for("cuda"), t.fixed_shapes_for("cuda")) == (42, 2048, True)
    assert train(**{"train.micro_batch_size": None}).micro_batch_for("cuda") == 8192 // 192
    with pytest.raises(ConfigError, match="set train.packing: true"):
        train(**{"train.fixed_shapes": True})
    with pytest.raises(ConfigError, match="train.attention: flex attends within packed examples"):
        train(**{"train.attention": "flex"})
    with pytest.raises(ConfigError, match="train.attention must be one of auto, sdpa, flex"):
        train(**{"train.attention": "paged"})
