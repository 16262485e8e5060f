"""NaN guard (docs/reliability.md): a non-finite parameter or loss stops training with the env step and
the source, the run's last good checkpoint stays loadable and finite, and no checkpoint with
non-finite weights is ever written."""

from __future__ import annotations

import math

import pytest
import torch

import critic
from critic import checkpoint as ckpt
from critic.agent import NonFiniteError
from critic.algos.registry import get_algo

SMALL = {"hidden_sizes": (8,), "num_envs": 2}
CASES = {
    "a2c": ("CartPole-v1", {**SMALL, "n_steps": 8}),
    "ppo": ("CartPole-v1", {**SMALL, "n_steps": 8, "batch_size": 16, "n_epochs": 1}),
    "acer": ("CartPole-v1", {**SMALL, "n_steps": 8, "replay_start": 16, "buffer_size": 500}),
    "ddpg": ("Pendulum-v1", {**SMALL, "learning_starts": 16, "batch_size": 8, "buffer_size": 500}),
    "td3": ("Pendulum-v1", {**SMALL, "learning_starts": 16, "batch_size": 8, "buffer_size": 500}),
    "sac": ("Pendulum-v1", {**SMALL, "learning_starts": 16, "batch_size": 8, "buffer_size": 500}),
}


def _poison(agent) -> str:
    name, p = next((k, v) for k, v in agent.nets.named_parameters())
    with torch.no_grad():
        p.view(-1)[0] = math.nan
    return name


@pytest.mark.parametrize("algo", list(CASES))
def test_non_finite_parameter_stops_training_and_keeps_last_good_checkpoint(algo, tmp_path):
    env, hp = CASES[algo]
    agent = get_algo(algo)(env, log_every=10**9, **hp)  # only the checkpoint guard can catch it here
    poisoned = {}

    def diverge(a, info):
        if a.env_steps >= 96 and not poisoned:
            poisoned["name"], poisoned["step"] = _poison(a), a.env_steps

    run = tmp_path / "run"
    with pytest.raises(NonFiniteError) as e:
        agent.learn(400, run_dir=run, checkpoint_every=32, callback=diverge, progress_bar=False)
    assert poisoned["name"] in str(e.value) and "env step" in str(e.value)
    last = critic.load(run / "checkpoints")
    assert 0 < last.env_steps <= poisoned["step"]
    assert all(torch.isfinite(v).all() for v in last.nets.state_dict().values() if v.is_floating_point())
    assert not (run / "model").exists()  # no final model from a diverged run
    agent.close()
    last.close()


def test_log_time_check_names_the_loss_or_parameter(tmp_path):
    agent = critic.A2C("CartPole-v1", log_every=16, **{**SMALL, "n_steps": 8})
    agent.learn(32, progress_bar=False)
    name = _poison(agent)
    with pytest.raises(NonFiniteError, match=r"(loss/|parameter ).*env step"):
        agent.learn(64, progress_bar=False)
    # whichever was reported first, the poisoned parameter is the cause
    with pytest.raises(NonFiniteError, match=name):
        agent.check_finite("check")


def test_save_refuses_non_finite_weights_and_keeps_the_previous_file(tmp_path):
    agent = critic.SAC("Pendulum-v1", learning_starts=8, batch_size=8, hidden_sizes=(8,), buffer_size=100)
    agent.learn(16, progress_bar=False)
    path = agent.save(tmp_path / "m")
    before = path.read_bytes()
    name = _poison(agent)
    with pytest.raises(NonFiniteError, match=f"{name}.*nothing was written"):
        agent.save(tmp_path / "m")
    assert path.read_bytes() == before
    ckpt.read(path)  # still a valid checkpoint
