"""reward_scale (every algorithm: what is learned from is scaled, what is logged is not) and the
shared observation statistics of A3C's workers."""

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import critic
from critic.config import ConfigError
from critic.normalize import RunningMeanStd, SharedRunningMeanStd


def _returns(agent, steps):
    got = []
    agent.learn(steps, lambda a, i: got.extend(i["episode_returns"]), progress_bar=False)
    return got


def test_rollout_rewards_are_scaled_and_logged_returns_are_not():
    agent = critic.A2C("CartPole-v1", n_steps=8, reward_scale=0.005, seed=0)
    returns = _returns(agent, 400)
    assert torch.allclose(agent.buffer.view()["rewards"], torch.full((8, 1), 0.005))
    assert returns and all(r == int(r) and r >= 8 for r in returns)  # CartPole's own 1-per-step returns


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_replay_rewards_are_scaled(algo):
    cls = {"sac": critic.SAC, "td3": critic.TD3, "ddpg": critic.DDPG}[algo]
    raw = cls("Pendulum-v1", seed=1, hidden_sizes=(8,), learning_starts=50)
    scaled = cls("Pendulum-v1", seed=1, hidden_sizes=(8,), learning_starts=50, reward_scale=0.1)
    for a in (raw, scaled):
        a.learn(40, progress_bar=False)  # warm-up only: same random actions, same env
    n = raw.replay.pos
    torch.testing.assert_close(scaled.replay.rewards[:n], raw.replay.rewards[:n] * 0.1)
    assert raw.replay.rewards[:n].abs().sum() > 0


def test_acer_segments_are_scaled():
    agent = critic.ACER("CartPole-v1", n_steps=5, reward_scale=0.005, replay_start=10_000, seed=0)
    agent.learn(50, progress_bar=False)
    stored = agent.replay.rewards[: agent.replay.pos]  # segments [S, T, N]
    assert stored.numel() >= 50
    assert torch.allclose(stored, torch.full_like(stored, 0.005))


def test_reward_scale_changes_learning_and_is_saved(tmp_path):
    a = critic.PPO("CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0)
    b = critic.PPO("CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, seed=0, reward_scale=0.01)
    for x in (a, b):
        x.learn(128, progress_bar=False)
    assert not torch.equal(a.nets.vf_head.weight, b.nets.vf_head.weight)
    b.save(tmp_path / "m")
    assert critic.load(tmp_path / "m").cfg.reward_scale == 0.01


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
def test_reward_scale_is_validated(value):
    with pytest.raises(ConfigError, match="reward_scale"):
        critic.PPO.config_cls(reward_scale=value)


def test_shared_statistics_match_the_running_mean_std():
    rng = np.random.default_rng(0)
    plain, shared = RunningMeanStd((3,)), SharedRunningMeanStd((3,))
    for _ in range(5):
        x = rng.normal(2.0, 3.0, size=(7, 3))
        plain.update(x)
        shared.update(x)
    np.testing.assert_allclose(shared.mean, plain.mean)
    np.testing.assert_allclose(shared.var, plain.var)
    assert shared.count == pytest.approx(plain.count)
    sd = shared.state_dict("obs_norm")
    other = SharedRunningMeanStd((3,))
    other.load_state_dict(sd, "obs_norm")
    assert torch.equal(other.buffer, shared.buffer)


def _child_update(buffer):
    SharedRunningMeanStd((2,), buffer).update(np.full((10, 2), 4.0))


def test_shared_statistics_see_another_process_update():
    stats = SharedRunningMeanStd((2,))
    p = mp.get_context("spawn").Process(target=_child_update, args=(stats.buffer,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert stats.count == pytest.approx(10 + 1e-4) and np.allclose(stats.mean, 4.0, atol=1e-3)


def test_a3c_workers_and_learner_share_observation_statistics(tmp_path):
    agent = critic.A3C("CartPole-v1", workers=2, num_envs=2, n_steps=5, normalize_obs=True, seed=0)
    assert agent.obs_norm.rms.count < 1
    agent.learn(2000, progress_bar=False)
    seen = agent.obs_norm.rms.count
    # both workers wrote into the learner's statistics (a few updates may race and be lost)
    assert 0.8 * 2000 <= seen <= 2000 + 100
    assert agent.obs_norm.rms.var[0] > 1e-3 and np.all(np.isfinite(agent.obs_norm.rms.mean))
    agent.save(tmp_path / "m")
    agent.close()
    loaded = critic.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.obs_norm.rms.mean, agent.obs_norm.rms.mean)
    loaded.close()


def test_a3c_refuses_shared_statistics_on_ray_and_running_reward_normalisation():
    with pytest.raises(ConfigError, match="normalize_obs.*backend='local'"):
        critic.A3C.config_cls(normalize_obs=True, backend="ray")
    with pytest.raises(ConfigError, match="normalize_reward.*reward_scale"):
        critic.A3C.config_cls(normalize_reward=True)
