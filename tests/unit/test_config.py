"""Typed configs: validation messages, coercion of --set strings, safe YAML, round trips, docs."""

from __future__ import annotations

import dataclasses
import json

import pytest

import critic
from critic.config import ConfigError, Config, dump_yaml, field_docs, load_yaml, parse_set


def test_gamma_above_one_names_field_value_and_allowed():
    with pytest.raises(ConfigError) as e:
        critic.A2CConfig(gamma=1.5)
    msg = str(e.value)
    assert "'gamma'" in msg and "1.5" in msg and "allowed: a number in [0, 1]" in msg


def test_n_steps_zero_names_field_value_and_allowed():
    with pytest.raises(ConfigError) as e:
        critic.PPOConfig(n_steps=0, batch_size=1)
    msg = str(e.value)
    assert "'n_steps'" in msg and ": 0 " in msg and "allowed: an integer >= 1" in msg


def test_batch_larger_than_rollout():
    with pytest.raises(ConfigError) as e:
        critic.PPOConfig(batch_size=512, n_steps=128, num_envs=2)
    msg = str(e.value)
    assert "'batch_size'" in msg and "512" in msg and "256" in msg and "allowed" in msg
    critic.PPOConfig(batch_size=256, n_steps=128, num_envs=2)  # exactly the rollout is fine


@pytest.mark.parametrize("cls,kwargs,field", [
    (critic.A2CConfig, {"gamma": -0.1}, "gamma"),
    (critic.A2CConfig, {"learning_rate": 0.0}, "learning_rate"),
    (critic.A2CConfig, {"gae_lambda": 1.5}, "gae_lambda"),
    (critic.A2CConfig, {"optimizer": "sgd"}, "optimizer"),
    (critic.A2CConfig, {"episodic": True, "num_envs": 2}, "num_envs"),
    (critic.PPOConfig, {"clip_eps": 1.0}, "clip_eps"),
    (critic.PPOConfig, {"num_envs": 0}, "num_envs"),
])
def test_other_invalid_values_name_their_field(cls, kwargs, field):
    with pytest.raises(ConfigError, match=f"invalid value for '{field}'"):
        cls(**kwargs)


def test_unknown_field_suggests_close_name():
    with pytest.raises(ConfigError) as e:
        critic.PPOConfig.from_dict({"learning_rat": 1e-3})
    msg = str(e.value)
    assert "unknown field 'learning_rat'" in msg and "PPOConfig" in msg and "did you mean learning_rate" in msg
    with pytest.raises(ConfigError, match="did you mean clip_eps"):
        critic.PPOConfig.from_dict({"clip_epss": 0.1})


def test_set_strings_are_coerced_to_field_types():
    raw = parse_set(["gamma=0.9", "n_steps = 1_000", "hidden_sizes=32,16", "normalize_obs=true",
                     "max_grad_norm=none", "clip_vf=0.2", "learning_rate=1e-3", "batch_size=64",
                     "optimizer=rmsprop", "n_epochs=4.0"])
    assert raw["n_steps"] == "1_000" and raw["gamma"] == "0.9"
    cfg = critic.PPOConfig.from_dict(raw)
    assert cfg.gamma == 0.9 and type(cfg.gamma) is float
    assert cfg.n_steps == 1000 and type(cfg.n_steps) is int
    assert cfg.hidden_sizes == (32, 16)
    assert cfg.normalize_obs is True
    assert cfg.max_grad_norm is None
    assert cfg.clip_vf == 0.2
    assert cfg.learning_rate == 1e-3
    assert cfg.optimizer == "rmsprop"
    assert cfg.n_epochs == 4 and type(cfg.n_epochs) is int


def test_parse_set_keeps_equals_in_values_and_rejects_malformed():
    assert parse_set(["device=cuda:0", "x=a=b"]) == {"device": "cuda:0", "x": "a=b"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["gamma"])
    with pytest.raises(ConfigError, match="non-empty key"):
        parse_set(["=3"])


@pytest.mark.parametrize("key,value,allowed", [
    ("n_steps", "abc", "an integer"),
    ("n_steps", "1.5", "an integer"),
    ("gamma", "high", "a number"),
    ("normalize_obs", "maybe", "true or false"),
    ("hidden_sizes", "64,x", "an integer"),
])
def test_bad_set_strings_name_field_and_value(key, value, allowed):
    with pytest.raises(ConfigError) as e:
        critic.A2CConfig.from_dict(parse_set([f"{key}={value}"]))
    msg = str(e.value)
    assert f"'{key}'" in msg and allowed in msg


def test_yaml_python_payload_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    cfg_file = tmp_path / "evil.yaml"
    cfg_file.write_text(f"gamma: 0.9\nseed: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError) as e:
        load_yaml(cfg_file)
    assert str(cfg_file) in str(e.value)
    assert not marker.exists()
    # a safe file with the same content minus the payload loads
    ok = tmp_path / "ok.yaml"
    ok.write_text("gamma: 0.9\nseed: 3\nhidden_sizes: [32, 32]\n")
    assert critic.A2CConfig.from_dict(load_yaml(ok)).hidden_sizes == (32, 32)


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_yaml(tmp_path / "missing.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_yaml(lst)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_yaml(empty) == {}
    with pytest.raises(ConfigError, match="must be a mapping"):
        critic.A2CConfig.from_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [critic.A2CConfig, critic.PPOConfig])
def test_to_dict_from_dict_round_trip(cls, tmp_path):
    cfg = cls(seed=7, gamma=0.95, hidden_sizes=(16, 8), normalize_obs=True, max_grad_norm=None,
              n_steps=128, learning_rate=1e-3)
    d = cfg.to_dict()
    assert cls.from_dict(d) == cfg
    assert cls.from_dict(json.loads(json.dumps(d))) == cfg
    f = tmp_path / "cfg.yaml"
    f.write_text(dump_yaml(d))
    assert cls.from_dict(load_yaml(f)) == cfg
    assert cfg.replace(gamma=0.5).gamma == 0.5 and cfg.replace(gamma=0.5).seed == 7
    # the default differs, so an identity round trip is not vacuous
    assert cls() != cfg


@pytest.mark.parametrize("cls", [Config, critic.A2CConfig, critic.PPOConfig])
def test_every_field_has_a_docstring(cls):
    docs = field_docs(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if not docs.get(n, "").strip()]
    assert not missing, f"fields without a docstring: {missing}"
    assert {row[0] for row in cls.describe()} == set(names)
    # subclass overrides win: the A2C episodic doc mentions huber
    if cls is critic.A2CConfig:
        assert "huber" in docs["value_loss"] and "episode" in docs["episodic"]


def test_per_step_a2c_flavour_defaults_fill_only_what_is_left_out():
    from critic.algos.a2c import A2CConfig
    from critic.algos.a3c import A3CConfig
    c = A2CConfig.from_dict({"n_steps": 1})
    assert (c.optimizer, c.learning_rate, c.max_grad_norm) == ("adam", 1e-3, None)
    c = A2CConfig.from_dict({"n_steps": "1", "learning_rate": 5e-4, "max_grad_norm": 0.5})  # CLI strings too
    assert (c.optimizer, c.learning_rate, c.max_grad_norm) == ("adam", 5e-4, 0.5)
    for given in ({"n_steps": 5}, {"n_steps": 1, "num_envs": 4}, {"n_steps": 1, "episodic": True}, {}):
        c = A2CConfig.from_dict(given)
        assert (c.optimizer, c.learning_rate, c.max_grad_norm) == ("rmsprop", 7e-4, 0.5), given
    c = A3CConfig.from_dict({"n_steps": 1})  # asynchronous workers keep their own defaults
    assert c.optimizer == "rmsprop"
    # a resolved config round-trips unchanged (what checkpoints and run directories store)
    c = A2CConfig.from_dict({"n_steps": 1})
    assert A2CConfig.from_dict(c.to_dict()) == c
