import dataclasses
import importlib.util
import json
import math
import re
import typing
from pathlib import Path

import pytest

from lima_repro import cli
from lima_repro.config import Config, ConfigError, list_profiles, load_config, load_resolved, parse_set, to_dict
from lima_repro.config.ablations import check_condition
from lima_repro.config.run import NOTEBOOKS


@pytest.mark.parametrize("profile", list_profiles())
def test_every_profile_loads_and_validates(profile):
    cfg = load_config(profile)
    cfg.check()  # every section's rules, as `python -m lima_repro config` applies them
    assert cfg.profile == profile
    assert cfg.train.batch_size % cfg.train.micro_batch_size == 0


def test_paper_profile_is_the_paper_recipe():
    cfg = load_config("paper")
    t, g = cfg.train, cfg.generate
    assert (t.epochs, t.lr, t.lr_end, t.warmup_steps) == (15, 1e-5, 1e-6, 0)
    assert (t.beta1, t.beta2, t.weight_decay) == (0.9, 0.95, 0.1)
    assert (t.batch_size, t.max_length, t.residual_dropout) == (32, 2048, 0.3)
    assert (g.top_p, g.temperature, g.repetition_penalty, g.max_new_tokens) == (0.9, 0.7, 1.2, 2048)
    assert cfg.model.name == "huggyllama/llama-65b"


def test_profiles_include_demo_and_paper():
    assert {"demo", "paper"} <= set(list_profiles())


def test_unknown_key_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="train.lerning_rate"):
        load_config("demo", overrides={"train.lerning_rate": 1})
    f = tmp_path / "user.yaml"
    f.write_text("generate:\n  topp: 0.5\n")
    with pytest.raises(ConfigError, match="generate.topp"):
        load_config("demo", files=[f])


def test_wrong_type_and_invalid_values(tmp_path):
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config("demo", overrides={"train.epochs": "three"})
    with pytest.raises(ConfigError, match="multiple"):
        load_config("demo", overrides={"train.batch_size": 6, "train.micro_batch_size": 4})
    with pytest.raises(ConfigError, match="train.compile"):
        load_config("demo", overrides={"train.compile": "sometimes"})
    with pytest.raises(ConfigError, match="generate.backend"):
        load_config("demo", overrides={"generate.backend": "tgi"})
    assert load_config("demo", overrides={"train.compile": True}).train.compile is True


def test_user_yaml_and_set_override_in_order(tmp_path):
    f = tmp_path / "user.yaml"
    f.write_text("train:\n  epochs: 7\n  lr: 3e-5\n")
    cfg = load_config("demo", files=[f], overrides=parse_set(["train.epochs=2", "generate.checkpoints=[epoch-1]"]))
    assert cfg.train.epochs == 2 and cfg.train.lr == 3e-5 and cfg.generate.checkpoints == ["epoch-1"]


def test_cli_config_prints_resolved_json(capsys):
    assert cli.main(["config", "--profile", "paper", "--set", "train.epochs=3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["train"]["epochs"] == 3 and out["train"]["lr"] == 1e-5 and out["profile"] == "paper"
    assert cli.main(["config", "--profile", "nope"]) == 2


# ---- range checks: every numeric field of these sections rejects a value no stage could use -------------------
NEGATIVE_OK = {"curate.stackexchange.min_answer_score", "curate.se_dialogue.min_answer_score"}  # scores go below 0


def _numeric_fields(section, prefix: str):
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            yield from _numeric_fields(value, f"{prefix}{f.name}.")
            continue
        arms = set(typing.get_args(hints[f.name])) or {hints[f.name]}
        if arms & {int, float} and bool not in arms:
            yield f"{prefix}{f.name}", float in arms


def _fields_of_owned_sections():
    cfg = Config()
    out = [("seed", False)]
    for name in ("model", "curate", "train", "generate", "judge"):
        out += list(_numeric_fields(getattr(cfg, name), f"{name}."))
    return out


@pytest.mark.parametrize("key,is_float", _fields_of_owned_sections(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_numeric_field_is_range_checked(key, is_float):
    if is_float:
        for bad in (math.nan, math.inf, -math.inf):
            with pytest.raises(ConfigError, match=re.escape(key)):
                load_config("demo", overrides={key: bad})
    if key not in NEGATIVE_OK:
        with pytest.raises(ConfigError, match=re.escape(key)):
            load_config("demo", overrides={key: -1})


def test_check_ranges_rules_and_messages():
    from lima_repro.config.base import check_ranges

    class S:
        a, b, c, d = 0, None, 0.5, True

    check_ranges(S, "s", {"a": ">=0", "b": ">=1?", "c": "(0,1)"})
    with pytest.raises(ConfigError, match=r"^s.a must be >= 1, got 0$"):
        check_ranges(S, "s", {"a": ">=1"})
    with pytest.raises(ConfigError, match=r"^s.b: expected a number, got None$"):
        check_ranges(S, "s", {"b": ">=1"})
    with pytest.raises(ConfigError, match=r"^s.d: expected a number"):  # a bool is not a count
        check_ranges(S, "s", {"d": ">=0"})


def test_errors_name_the_layer_that_set_the_value(tmp_path):
    f = tmp_path / "user.yaml"
    f.write_text("train:\n  epochs: 0\n")
    with pytest.raises(
        ConfigError, match=rf"train.epochs must be >= 1, got 0 \(set by --config {re.escape(str(f))}\)$"
    ):
        load_config("demo", files=[f])
    with pytest.raises(ConfigError, match=r"train.batch_size \(6\).*\(set by --set\)$"):
        load_config("demo", overrides={"train.batch_size": 6})
    with pytest.raises(ConfigError, match=r"^--set 'train.epochs=\[1': the value is not valid YAML \(line 1, column 3"):
        parse_set(["train.epochs=[1"])


def test_run_config_is_checked_once_after_set_which_can_correct_it(tmp_path, capsys):
    """A run's config.json with a value today's checks reject: `--set` on the same command corrects it (the file
    and --set are layered, then checked once); without it the error names the file that set the value."""
    run = tmp_path / "run"
    run.mkdir()
    data = to_dict(load_config("demo"))
    data["train"]["epochs"] = 0
    (run / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=rf"train.epochs must be >= 1, got 0 \(set by {re.escape(str(run))}/config"):
        load_resolved(run / "config.json")
    assert load_resolved(run / "config.json", parse_set(["train.epochs=2"])).train.epochs == 2
    assert cli.main(["config", "--run-dir", str(run), "--set", "train.epochs=3"]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["epochs"] == 3
    assert cli.main(["config", "--run-dir", str(run)]) == 2  # a one-line config error, not a traceback
    assert "train.epochs must be >= 1" in capsys.readouterr().err


# ---- upper bounds: every count of the sections owned here has one, far above any real run ------------------------
BOUNDED_SECTIONS = ("model", "curate", "train", "generate", "judge", "ablations", "figures")


def _counts():
    """(key, bound, default) for every int field, and every float field with a bound, of BOUNDED_SECTIONS and
    the sections nested in them (curate's sources): a new field is covered as soon as it exists."""
    cfg = Config()
    for name in BOUNDED_SECTIONS:
        for field, is_float in _numeric_fields(getattr(cfg, name), ""):
            *path, leaf = f"{name}.{field}".split(".")
            owner = cfg
            for part in path:
                owner = getattr(owner, part)
            limits = getattr(type(owner), "LIMITS", {})
            if leaf != "seed" and (not is_float or leaf in limits):  # a seed has its own range, [0, 2**32)
                yield f"{name}.{field}", limits.get(leaf), getattr(owner, leaf)


@pytest.mark.parametrize("key,bound,default", list(_counts()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_count_has_an_upper_bound(key, bound, default):
    assert bound is not None, f"{key} has no upper bound: add one to its section's LIMITS (with why in a comment)"
    if isinstance(default, list):  # a list of counts, e.g. an epoch range
        over, message = [default[0], bound + 1], rf"^{re.escape(key)} must be .*{bound:,}"
    else:
        over = bound * 2 if isinstance(bound, float) else bound + 1
        message = rf"^{re.escape(key)} must be at most {bound:,} .*, got {over:,}; set a"
    with pytest.raises(ConfigError, match=message) as e:
        load_config("demo", overrides={key: over})
    assert "\n" not in str(e.value)
    plausible = default if default is not None else 1
    if key == "train.lora_r" and importlib.util.find_spec("peft") is None:
        return  # LoRA needs the optional peft; the bound is checked before it
    value = load_config("demo", overrides={key: plausible})
    for part in key.split("."):
        value = getattr(value, part)
    assert value == plausible


def test_an_ablation_condition_size_is_bounded():
    check_condition("c", {"groups": ["quantity"], "x": 2000})
    with pytest.raises(ConfigError, match=r"^ablations.conditions.c.x: .* in \[1, 10,000,000\], got 100000000$"):
        check_condition("c", {"groups": ["quantity"], "x": 10**8})


def test_notebooks_are_the_shipped_ones_and_profile_a_plain_name():
    shipped = {p.stem for p in (Path(__file__).parents[1] / "notebooks").glob("*.ipynb")} - {"annotate"}
    assert set(NOTEBOOKS) == shipped
    for bad in (["../../x"], ["01_curate", "notebooks/02_train"], [""]):
        with pytest.raises(ConfigError, match=r"^notebooks: .* is not a notebook of the package"):
            load_config("demo", overrides={"notebooks": bad})
    for bad in ("../../X", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(ConfigError, match=r"^profile must be a plain name"):
            load_config("demo", overrides={"profile": bad})
    assert load_config("demo", overrides={"profile": "my-run_2"}).profile == "my-run_2"
