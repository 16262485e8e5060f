"""Determinism (docs/reliability.md, "Fast learning on analytic environments"): for every algorithm,
the same seed twice gives bit-identical parameters, optimizer states and traces (the training
episodes' returns, the evaluation returns, the last logged metrics) on CPU; another seed gives
different parameters, so the comparison can fail.

A3C runs with one worker here: with several workers the order in which their gradients reach
the shared parameters depends on the OS scheduler (asynchronous by design, docs/reliability.md),
but a single worker process must be as reproducible as any other agent.
"""

from __future__ import annotations

import math

import pytest
import torch

from critic.algos.registry import get_algo

SMALL = {"hidden_sizes": [16, 16], "log_every": 10**9}
OFF = {**SMALL, "learning_starts": 64, "batch_size": 32, "buffer_size": 10_000}

CASES = {
    # name: (algo, env, hparams, steps)
    "a2c": ("a2c", "CartPole-v1", {**SMALL, "num_envs": 2, "n_steps": 8, "normalize_obs": True,
                                   "normalize_reward": True}, 400),
    "a2c_perstep": ("a2c", "CartPole-v1", {**SMALL, "num_envs": 1, "n_steps": 1, "optimizer": "adam"}, 300),
    "a2c_episodic": ("a2c", "CartPole-v1", {**SMALL, "num_envs": 1, "episodic": True}, 300),
    "a2c_continuous": ("a2c", "Pendulum-v1", {**SMALL, "num_envs": 2, "n_steps": 8}, 400),
    "ppo": ("ppo", "CartPole-v1", {**SMALL, "num_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 2}, 512),
    "ppo_continuous": ("ppo", "Pendulum-v1", {**SMALL, "num_envs": 2, "n_steps": 16, "batch_size": 16,
                                              "n_epochs": 2, "normalize_obs": True}, 448),
    "ddpg": ("ddpg", "Pendulum-v1", OFF, 250),
    "ddpg_ou": ("ddpg", "Pendulum-v1", {**OFF, "noise_type": "ou"}, 250),
    "td3": ("td3", "Pendulum-v1", {**OFF, "num_envs": 2}, 450),
    "sac": ("sac", "Pendulum-v1", OFF, 250),
    "sac_discrete": ("sac", "CartPole-v1", OFF, 250),
    "acer": ("acer", "CartPole-v1", {**SMALL, "num_envs": 2, "n_steps": 8, "replay_start": 32,
                                     "buffer_size": 2_000}, 320),
    "a3c_one_worker": ("a3c", "CartPole-v1", {**SMALL, "workers": 1, "n_steps": 5}, 600),
}


def _run(name: str, seed: int):
    algo, env, hp, steps = CASES[name]
    agent = get_algo(algo)(env, **hp, seed=seed)
    try:
        agent.learn(steps, progress_bar=False)
        params = torch.cat([p.detach().flatten() for p in agent.nets.parameters()])
        moments = [v.clone() for opt in agent.optims.values() for st in opt.state.values()
                   for v in st.values() if torch.is_tensor(v)]
        trace = {"train_returns": list(agent.recent_returns), "episodes": agent.episodes,
                 "env_steps": agent.env_steps, "updates": agent.updates,
                 "eval_returns": agent.evaluate(3)["returns"]}
    finally:
        agent.close()
    return params, moments, trace


@pytest.mark.parametrize("name", list(CASES))
def test_same_seed_bit_identical_other_seed_differs(name):
    p0, m0, t0 = _run(name, seed=0)
    p1, m1, t1 = _run(name, seed=0)
    assert torch.equal(p0, p1), f"{name}: same seed, parameters differ by {float((p0 - p1).abs().max())}"
    assert len(m0) == len(m1) > 0 and all(torch.equal(a, b) for a, b in zip(m0, m1)), f"{name}: optimizer states"
    assert t0 == t1, (t0, t1)
    assert t0["updates"] > 0 and t0["episodes"] > 0 and all(math.isfinite(r) for r in t0["train_returns"])
    p2, _, _ = _run(name, seed=1)
    assert not torch.equal(p0, p2), f"{name}: another seed gave the same parameters"
