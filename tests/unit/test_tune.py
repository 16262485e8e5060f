"""critic.tune: Optuna studies end to end (tiny budgets), resuming, pruning, failure paths,
the search spaces' validity, the preset they write and the missing-Optuna message."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

optuna = pytest.importorskip("optuna")

from critic import cli  # noqa: E402
from critic.algos.registry import get_algo  # noqa: E402
from critic.checkpoint import NonFiniteError  # noqa: E402
from critic.config import ConfigError  # noqa: E402
from critic.presets import read_preset  # noqa: E402
from critic import tune as T  # noqa: E402

S = optuna.trial.TrialState
FAST = dict(steps=2000, eval_every=500, eval_episodes=2, fixed_hparams={"torch_threads": 1}, progress=False)


def _states(study) -> list:
    return [t.state for t in study.trials]


def test_study_end_to_end_writes_a_preset_that_train_accepts_and_resumes(tmp_path):
    db = f"sqlite:///{tmp_path / 'tune.db'}"
    out = tmp_path / "best.yaml"
    study = T.tune("a2c", "CartPole-v1", 3, study=db, out=out, **FAST)
    assert study.study_name == "a2c-CartPole-v1"
    assert len(study.trials) == 3 and all(s in (S.COMPLETE, S.PRUNED) for s in _states(study))
    best = T.best_trial(study)
    assert best is not None and best.value == max(t.value for t in study.trials if t.state == S.COMPLETE)
    for t in study.trials:  # each trial reported its evaluations at the 500-step grid
        assert t.intermediate_values and all(step % 500 == 0 for step in t.intermediate_values)
        assert t.user_attrs["hparams"]["torch_threads"] == 1

    # the preset: the shipped presets' keys, the best trial's configuration, a comment saying where from
    preset = read_preset(out)
    assert preset["algo"] == "a2c" and preset["env_id"] == "CartPole-v1"
    assert (preset["steps"], preset["eval_every"], preset["eval_episodes"]) == (2000, 500, 2)
    assert preset["hparams"] == {k: v for k, v in best.user_attrs["hparams"].items() if k != "seed"}
    get_algo("a2c").config_cls.from_dict(preset["hparams"])
    assert f"trial {best.number}" in out.read_text().splitlines()[1]
    # ... and `critic train` runs it
    rc = cli.main(["train", "a2c", "CartPole-v1", "--preset", str(out), "--steps", "500", "--out",
                   str(tmp_path / "run"), "--no-progress"])
    assert rc == 0 and (tmp_path / "run" / "summary.json").is_file()

    # resuming: --trials is the total; the continued study draws new start-up configurations
    again = T.tune("a2c", "CartPole-v1", 4, study=db, **FAST)
    assert len(again.trials) == 4
    assert again.trials[3].params != again.trials[0].params
    same = T.tune("a2c", "CartPole-v1", 4, study=db, **FAST)  # already complete: nothing to run
    assert len(same.trials) == 4

    # a study made for another algorithm is refused, not mixed
    with pytest.raises(ConfigError, match="made for a2c on CartPole-v1"):
        T.tune("ppo", "CartPole-v1", 1, study=db, study_name="a2c-CartPole-v1", **FAST)


def test_pruned_trials_stop_early_and_are_recorded_pruned(tmp_path, caplog):
    out = tmp_path / "never.yaml"
    study = T.tune("a2c", "CartPole-v1", 2, out=out, pruner=optuna.pruners.ThresholdPruner(lower=1e9), **FAST)
    assert _states(study) == [S.PRUNED, S.PRUNED]
    for t in study.trials:
        assert list(t.intermediate_values) == [500]  # stopped at the first evaluation
        assert t.user_attrs["env_steps"] < 2000
        assert "stopped by the pruner at step" in t.user_attrs["pruned_reason"]
    assert not out.exists() and "no trial" in caplog.text  # nothing completed: no preset
    assert "0 complete, 2 pruned" in T.summary(study)


def test_invalid_or_diverging_configurations_prune_the_trial_not_the_study(monkeypatch, caplog):
    bad = T.tune("a2c", "CartPole-v1", 2, space=lambda trial: {"gamma": trial.suggest_float("gamma", 2.0, 3.0)},
                 **FAST)
    assert _states(bad) == [S.PRUNED, S.PRUNED]
    assert all("invalid configuration" in t.user_attrs["pruned_reason"] and "gamma" in t.user_attrs["pruned_reason"]
               for t in bad.trials)
    assert "trial 0 pruned: invalid configuration" in caplog.text

    A2C = get_algo("a2c")

    def diverge(self, *args, **kwargs):
        raise NonFiniteError("parameter pi.weight became non-finite at env step 0")

    monkeypatch.setattr(A2C, "learn", diverge)
    nan = T.tune("a2c", "CartPole-v1", 1, **FAST)
    assert _states(nan) == [S.PRUNED] and nan.trials[0].user_attrs["pruned_reason"].startswith("diverged")


def test_errors_that_are_not_the_sample_stop_before_any_trial():
    with pytest.raises(ConfigError, match="unknown field"):  # a fixed field the algorithm lacks
        T.tune("a2c", "CartPole-v1", 1, **{**FAST, "fixed_hparams": {"buffer_size": 10}})
    from critic.envs.make import EnvError
    with pytest.raises((EnvError, ConfigError)):  # DDPG needs Box actions: not each trial's problem
        T.tune("ddpg", "CartPole-v1", 1, **FAST)


@pytest.mark.parametrize("algo", sorted(T.SPACES))
def test_every_search_space_samples_valid_configs(algo):
    cls = get_algo(algo)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    names = set(cls.config_cls.field_names())
    for _ in range(30):
        trial = study.ask()
        hp = T.SPACES[algo](trial)
        assert set(hp) <= names, set(hp) - names
        cls.config_cls.from_dict(hp)
        for fixed in ({"num_envs": 3}, {"num_envs": 16, "torch_threads": 1}):  # with the fixed fields of --set
            cls.config_cls.from_dict(T.fit(hp, fixed))
        study.tell(trial, 0.0)


def test_fit_repairs_sampled_sizes_and_keeps_fixed_ones():
    assert T.fit({"n_steps": 64, "batch_size": 64}, {"n_steps": 8})["batch_size"] == 8  # PPO: the rollout
    assert T.fit({"n_steps": 64, "batch_size": 64}, {"n_steps": 8, "num_envs": 4})["batch_size"] == 32
    assert T.fit({"n_steps": 8, "batch_size": 8}, {"batch_size": 64})["batch_size"] == 64  # fixed: kept
    assert T.fit({"batch_size": 256, "buffer_size": 10_000}, {"batch_size": 20_000})["buffer_size"] == 20_000
    assert T.fit({"n_steps": 40, "buffer_size": 5000}, {"num_envs": 200})["buffer_size"] == 8000  # ACER: a segment


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="critic")
    T.add_tune_parser(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_tune_prints_the_best_trials_and_the_preset(tmp_path, capsys):
    out = tmp_path / "p.yaml"
    args = _parser().parse_args(["tune", "a2c", "CartPole-v1", "--trials", "2", "--steps", "1000", "--eval-every",
                                 "500", "--eval-episodes", "2", "--set", "torch_threads=1", "n_steps=8", "-o", str(out),
                                 "--study", f"sqlite:///{tmp_path / 's.db'}", "--study-name", "x", "--no-progress"])
    assert args.func is T.cmd_tune and args.trials == 2
    assert T.cmd_tune(args) == 0
    text = capsys.readouterr().out
    assert "study 'x': " in text and "trial" in text and "value" in text and f"preset: {out}" in text
    assert read_preset(out)["hparams"]["n_steps"] == 8
    defaults = _parser().parse_args(["tune", "ppo", "ALE/Pong-v5"])
    assert (defaults.trials, defaults.steps, defaults.study, defaults.output) == (20, 50_000, None, None)


def test_missing_optuna_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    with pytest.raises(ImportError, match=r'pip install "critic\[tune\]"'):
        T.tune("a2c", "CartPole-v1", 1, **FAST)
    args = _parser().parse_args(["tune", "a2c", "CartPole-v1", "-o", str(tmp_path / "x.yaml")])
    assert T.cmd_tune(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("critic: error:") and 'pip install "critic[tune]"' in err


def test_importing_critic_and_its_tune_module_does_not_import_optuna():
    code = "import sys, critic, critic.tune, critic.cli; assert 'optuna' not in sys.modules, 'optuna imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
