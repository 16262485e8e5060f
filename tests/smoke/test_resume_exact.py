"""Bit-identical resume (docs/reliability.md, "Checkpoints and resume"): training 2N steps straight and
training N, saving, loading in a NEW process and training N more give identical parameters and
optimizer states, for every algorithm (A3C excepted: asynchronous by design, see
docs/reliability.md). The negative control drops the envs' saved state after loading (fresh
episodes, as before checkpoints carried it): the same comparison must then fail, so the test
can catch an incomplete checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

import critic
from critic import checkpoint as ckpt

SMALL = {"hidden_sizes": [16, 16], "log_every": 10**9}
OFF = {**SMALL, "learning_starts": 64, "batch_size": 32, "buffer_size": 10_000}

CASES = {
    # name: (algo, env, hparams, N)
    "a2c": ("a2c", "CartPole-v1", {**SMALL, "num_envs": 2, "n_steps": 8, "lr_schedule": "linear",
                                   "normalize_obs": True, "normalize_reward": True}, 160),
    "a2c_perstep": ("a2c", "CartPole-v1", {**SMALL, "num_envs": 1, "n_steps": 1, "optimizer": "adam"}, 150),
    "a2c_episodic": ("a2c", "CartPole-v1", {**SMALL, "num_envs": 1, "episodic": True}, 150),
    "ppo": ("ppo", "Pendulum-v1", {**SMALL, "num_envs": 2, "n_steps": 16, "batch_size": 16, "n_epochs": 2,
                                   "lr_schedule": "linear", "normalize_obs": True}, 192),
    "ddpg_ou": ("ddpg", "Pendulum-v1", {**OFF, "noise_type": "ou"}, 150),
    "td3": ("td3", "Pendulum-v1", {**OFF, "num_envs": 2}, 150),
    "sac": ("sac", "Pendulum-v1", OFF, 150),
    "sac_discrete": ("sac", "CartPole-v1", OFF, 150),
    "acer": ("acer", "CartPole-v1", {**SMALL, "num_envs": 2, "n_steps": 8, "replay_start": 32,
                                     "buffer_size": 2_000}, 160),
}

_SECOND_HALF = textwrap.dedent("""
    import sys, warnings, torch, critic
    ckpt_path, out, n, drop_env_state = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the envs' state must restore without a warning
        agent = critic.load(ckpt_path, for_training=True)
    if drop_env_state:
        agent.stream.obs = None
    agent.learn(n, progress_bar=False)
    agent.save(out)
""")


def _state(path) -> dict[str, torch.Tensor]:
    tensors, _ = ckpt.read(path)
    # everything learned and everything that decides what comes next
    return {k: v for k, v in tensors.items() if k.startswith(("nets/", "optim/", "obs_norm", "rew_norm", "rng/"))}


def _second_half(tmp_path, ck, n: int, drop_env_state: bool):
    out = tmp_path / ("resumed_drop" if drop_env_state else "resumed") / ckpt.FILENAME
    proc = subprocess.run([sys.executable, "-c", _SECOND_HALF, str(ck), str(out), str(n), str(int(drop_env_state))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _cls(algo):
    from critic.algos.registry import get_algo
    return get_algo(algo)


@pytest.mark.parametrize("name", list(CASES))
def test_resume_in_a_new_process_is_bit_identical(name, tmp_path):
    algo, env, hp, n = CASES[name]
    straight = _cls(algo)(env, seed=3, **hp)
    straight.learn(2 * n, progress_bar=False)
    p_straight = straight.save(tmp_path / "straight")
    straight.close()

    first = _cls(algo)(env, seed=3, **hp)  # the same 2N run, stopped after N (a crash, a Ctrl-C)
    first.learn(2 * n, progress_bar=False, callback=lambda agent, info: agent.env_steps < n)
    assert first.env_steps == n
    ck = first.save(tmp_path / "half")
    first.close()

    resumed = _second_half(tmp_path, ck, n, drop_env_state=False)
    a, b = _state(p_straight), _state(resumed)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{name}: resumed run differs from the straight run in {differ[:5]}"
    _, meta_a = ckpt.read(p_straight)
    _, meta_b = ckpt.read(resumed)
    assert meta_a["counters"] == meta_b["counters"]
    assert json.dumps(meta_a["env"], sort_keys=True) == json.dumps(meta_b["env"], sort_keys=True)

    # negative control: without the envs' state the runs part ways
    control = _state(_second_half(tmp_path, ck, n, drop_env_state=True))
    assert any(not torch.equal(a[k], control[k]) for k in a if k.startswith("nets/"))


def test_lr_schedule_continues_across_resume(tmp_path):
    """A loaded checkpoint of an unfinished learn() call continues that call's linear decay
    (it used to restart it from the full learning rate)."""
    hp = {**SMALL, "num_envs": 2, "n_steps": 8, "lr_schedule": "linear", "learning_rate": 1e-3}
    agent = critic.A2C("CartPole-v1", seed=0, **hp)
    agent.learn(160, progress_bar=False, callback=lambda a, i: a.env_steps < 80)  # stopped half-way
    ck = agent.save(tmp_path / "half")
    lr_before = agent.optims["main"].param_groups[0]["lr"]
    loaded = critic.load(ck, for_training=True)
    loaded.learn(160 - loaded.env_steps, progress_bar=False, callback=lambda a, i: False)  # one update
    # that update (at step 96) of the (0, 160) decay runs at lr * (1 - 96/160); a decay
    # restarted over (80, 160) would run it at lr * (1 - 16/80)
    assert loaded.env_steps == 96
    assert loaded.optims["main"].param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 96 / 160))
    assert lr_before > loaded.optims["main"].param_groups[0]["lr"]
    # a learn() call of another length starts its own decay
    loaded.learn(80, progress_bar=False, callback=lambda a, i: False)
    assert loaded.optims["main"].param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 16 / 80))
