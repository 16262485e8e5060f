"""learn() as Stable-Baselines3 users call it, and progress that a log file can hold."""

import pytest

import critic
from critic.config import ConfigError


def test_learn_takes_total_timesteps_and_integral_floats():
    agent = critic.A2C("CartPole-v1", n_steps=5)
    agent.learn(1e2, progress_bar=False)
    assert agent.env_steps == 100
    agent.learn(total_timesteps=50, progress_bar=False)
    assert agent.env_steps == 150
    batch = critic.A2C("CartPole-v1", seeds=[0, 1], n_steps=5)
    batch.learn(total_timesteps=2e1, progress_bar=False)
    assert [m.env_steps for m in batch.agents] == [20, 20]


@pytest.mark.parametrize("args, kwargs, message", [
    ((1.5,), {}, "'total_steps': 1.5 .*integral value"),
    ((-1,), {}, "'total_steps': -1"),
    ((True,), {}, "'total_steps': True"),
    ((10,), {"total_timesteps": 10}, "not both"),
    ((), {}, "needs the number of env steps"),
])
def test_bad_step_counts_are_refused_by_name(args, kwargs, message):
    agent = critic.A2C("CartPole-v1", n_steps=5)
    with pytest.raises(ConfigError, match=message):
        agent.learn(*args, progress_bar=False, **kwargs)
    assert agent.env_steps == 0


def test_progress_to_a_file_is_plain_lines_not_a_bar(capsys):
    agent = critic.A2C("CartPole-v1", n_steps=5, log_every=100)
    agent.learn(1_000, progress_bar=True)  # pytest's captured stderr is not a terminal
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "steps" in line]
    assert "\r" not in err
    assert 5 <= len(lines) <= 12, err
    assert lines[-1].startswith("a2c CartPole-v1: 1,000/1,000 steps (100%)") and "steps/s" in lines[-1]
