"""ACER: the agent face (learn, predict, evaluate, save/load, CLI), replay schedule, autoreset
final observations in sequence replay, time-limit bootstrapping, bad input."""

import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeLimit

import critic
from critic.config import ConfigError
from critic.envs.fake import ConstantRewardEnv, TruncationAsTermination
from critic.envs.make import EnvError


def small(env="CartPole-v1", **kw):
    return critic.ACER(env, **{"num_envs": 2, "n_steps": 5, "hidden_sizes": (16,), "replay_start": 40,
                               "buffer_size": 200, **kw})


def test_learn_predict_evaluate_save_load(tmp_path):
    agent = small()
    agent.learn(100, progress_bar=False)
    # 10 iterations of 5 x 2 steps: one on-policy update each, 4 replayed ones from the 4th on
    assert agent.env_steps == 100 and agent.updates == 10 + 4 * 7
    assert len(agent.replay) == 100
    a = agent.predict(np.zeros(4, np.float32), deterministic=True)[0]
    assert a.shape == () and a in (0, 1)
    assert agent.predict(np.zeros((3, 4), np.float32))[0].shape == (3,)
    assert len(agent.evaluate(2)["returns"]) == 2
    loaded = critic.load(agent.save(tmp_path / "acer"), for_training=True)
    assert type(loaded) is critic.ACER and loaded.updates == agent.updates
    for p, q in zip(agent.nets.parameters(), loaded.nets.parameters()):
        assert torch.equal(p, q)
    s1, s2 = agent.replay.get(3), loaded.replay.get(3)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_poisson_replay_ratio_draws_a_count_per_iteration():
    agent = small(replay_ratio=1.5, replay_poisson=True, replay_start=0)
    agent.learn(200, progress_bar=False)
    replayed = agent.updates - 20
    assert 0 < replayed and replayed != 20 * 1  # a random count, mean 1.5 per iteration
    assert 10 <= replayed <= 60


def test_truncated_steps_keep_their_true_final_observation():
    """A time limit of 3 steps on an env whose observation counts the steps: replay keeps the
    final observation (count 3) of every truncation while obs[t+1] is the reset one."""
    import gymnasium as gym

    class Counter(gym.Env):
        observation_space = gym.spaces.Box(0, 100, (1,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.n = 0
            return np.zeros(1, np.float32), {}

        def step(self, a):
            self.n += 1
            return np.array([self.n], np.float32), 1.0, False, False, {}

    agent = small(lambda: TimeLimit(Counter(), 3), n_steps=7, replay_start=10_000)
    agent.learn(14, progress_bar=False)
    seg = agent.replay.get(0)
    assert seg["truncated"][:, 0].tolist() == [False, False, True, False, False, True, False]
    assert seg["final_idx"].tolist() == [[2, 0], [2, 1], [5, 0], [5, 1]]
    assert (seg["final_obs"] == 3.0).all()
    assert seg["obs"][3, 0].item() == 0.0 and seg["obs"][7, 0].item() == 1.0  # reset obs, then s_T


@pytest.mark.parametrize("as_termination", [False, True])
def test_time_limit_value_is_bootstrapped(as_termination):
    """Reward 1 forever with a time limit of 2: bootstrapping at truncations lets Q reach
    1 / (1 - gamma) = 10; the classic bug (the limit reported as a termination, the negative
    control) gives 1 + gamma = 1.9 at the first step and 1 at the second."""
    def make():
        env = TimeLimit(ConstantRewardEnv(), 2)
        return TruncationAsTermination(env) if as_termination else env

    agent = critic.ACER(make, gamma=0.9, num_envs=2, n_steps=4, hidden_sizes=(8,), replay_start=0,
                        learning_rate=1e-2, optimizer="adam", ent_coef=0.0, seed=0)
    agent.learn(4000, progress_bar=False)
    with torch.no_grad():
        _, q = agent.nets.online(torch.zeros(1, 1))
    if as_termination:
        assert q.max().item() < 2.5, q
    else:
        assert q.min().item() > 9.0, q


@pytest.mark.parametrize("kw, message", [
    ({"replay_ratio": 2.5}, "replay_ratio"),
    ({"truncation_c": 0}, "truncation_c"),
    ({"avg_decay": 1.0}, "avg_decay"),
    ({"buffer_size": 5}, "buffer_size"),
    ({"trust_region_delta": -1}, "trust_region_delta"),
])
def test_bad_hyperparameters_name_the_field(kw, message):
    with pytest.raises(ConfigError, match=message):
        small(**kw)


def test_continuous_actions_are_refused():
    with pytest.raises(EnvError, match="Discrete"):
        critic.ACER("Pendulum-v1")


def test_cli_trains_acer(tmp_path):
    from critic.cli import main
    out = tmp_path / "run"
    assert main(["train", "acer", "CartPole-v1", "--steps", "400", "--out", str(out), "--no-progress",
                 "--set", "replay_start=100", "--set", "num_envs=2"]) == 0
    assert (out / "model" / "agent.safetensors").exists() and (out / "summary.json").exists()
