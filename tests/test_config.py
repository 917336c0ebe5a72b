import json

import pytest

from lima_repro import cli
from lima_repro.config import ConfigError, list_profiles, load_config, parse_set


@pytest.mark.parametrize("profile", list_profiles())
def test_every_profile_loads_and_validates(profile):
    cfg = load_config(profile)
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
