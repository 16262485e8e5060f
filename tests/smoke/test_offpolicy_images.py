"""Image observations for the off-policy family: SAC (Box and Discrete), TD3 and DDPG run
uint8 images (channels last, as most image envs give them) through Nature-CNN encoders (one for
the actor, one shared by the critics), keep them uint8 in replay, and learn a tiny image task
(a bright square in one of four corners: point at it, or name it)."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic
from critic.envs.fake import TinyImageEnv
from critic.nn import NatureCNN

# the deterministic actors' CNN learns slower than their critics' (as in DrQ / SAC-AE practice)
SETTINGS = {"sac": {}, "td3": {"actor_learning_rate": 1e-4, "critic_learning_rate": 1e-3},
            "ddpg": {"actor_learning_rate": 1e-4, "critic_learning_rate": 1e-3}}


def _agent(algo, continuous=True, **kw):
    cls = {"sac": critic.SAC, "td3": critic.TD3, "ddpg": critic.DDPG}[algo]
    return cls(lambda: TinyImageEnv(continuous=continuous, hwc=True), seed=0, learning_starts=200, batch_size=32,
               hidden_sizes=(64,), buffer_size=5000, log_every=500, torch_threads=1, **kw)


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_continuous_image_task_is_learned(algo):
    agent = _agent(algo, **SETTINGS[algo])
    cnns = [m for m in agent.nets.modules() if isinstance(m, NatureCNN)]
    assert len(cnns) >= 3  # actor, critic, the critic's target (and TD3/DDPG's actor target)
    assert agent.replay.obs.dtype == torch.uint8
    before = agent.evaluate(20)["mean"]
    agent.learn(3000, progress_bar=False)
    after = agent.evaluate(20)["mean"]
    agent.close()
    # 5-step episodes, reward -|a - corner|^2: an untrained actor scores about -2.5, random
    # actions -5.8, pointing at the corner 0
    assert before < -2.0 and after > -1.0, f"{algo}: {before:.2f} -> {after:.2f}"


def test_discrete_sac_learns_the_image_task():
    agent = _agent("sac", continuous=False)
    agent.learn(2000, progress_bar=False)
    res = agent.evaluate(20)
    agent.close()
    assert res["mean"] >= 4.5, res  # 5 = always naming the corner; chance 1.25


def test_image_replay_with_optimize_memory_and_a_checkpoint_round_trip(tmp_path):
    agent = _agent("sac", optimize_memory=True)
    agent.learn(300, progress_bar=False)
    assert not hasattr(agent.replay, "next_obs") and agent.replay.obs.dtype == torch.uint8
    agent.save(tmp_path / "m")
    loaded = critic.load(tmp_path / "m", env=lambda: TinyImageEnv(continuous=True, hwc=True))
    obs = np.stack([TinyImageEnv(continuous=True, hwc=True).reset(seed=s)[0] for s in range(4)])
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    for a in (agent, loaded):
        a.close()
