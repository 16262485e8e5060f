"""Fast learning on analytic environments with known answers (RELIABILITY.md), seconds each.

Each correctness test carries a negative control: the deliberately wrong setting must fail
the same assertion, so the test provably catches the bug it is about.
"""

import gymnasium as gym
import pytest
import torch

import critic
from critic.envs.fake import BanditEnv, ConstantRewardEnv, IdentityEnv, TruncationAsTermination

GAMMA = 0.9
TRUE_V = 1.0 / (1.0 - GAMMA)  # 10: reward 1 forever, discounted

ON_POLICY = {
    "a2c": lambda env: critic.A2C(env, n_steps=8, num_envs=4, gamma=GAMMA, optimizer="adam",
                                  learning_rate=3e-3, seed=0),
    "ppo": lambda env: critic.PPO(env, n_steps=32, num_envs=4, batch_size=64, n_epochs=4, gamma=GAMMA,
                                  gae_lambda=0.95, learning_rate=3e-3, seed=0),
}


def learned_v0(agent):
    with torch.no_grad():
        return float(agent.nets.value(torch.zeros(1, 1)))


@pytest.mark.parametrize("algo", sorted(ON_POLICY))
def test_infinite_horizon_bootstraps_at_time_limit(algo):
    good = ON_POLICY[algo](lambda: gym.wrappers.TimeLimit(ConstantRewardEnv(), 8))
    good.learn(6000, progress_bar=False)
    assert abs(learned_v0(good) - TRUE_V) < 1.0, learned_v0(good)
    # negative control: the same run with the time limit reported as a termination
    bad = ON_POLICY[algo](lambda: TruncationAsTermination(gym.wrappers.TimeLimit(ConstantRewardEnv(), 8)))
    bad.learn(6000, progress_bar=False)
    assert abs(learned_v0(bad) - TRUE_V) > 2.0, learned_v0(bad)


@pytest.mark.parametrize("algo", sorted(ON_POLICY))
def test_identity_discrete(algo):
    agent = ON_POLICY[algo](lambda: IdentityEnv(4, length=10))
    random_return = 10 / 4
    agent.learn(5000, progress_bar=False)
    score = (agent.evaluate(10)["mean"] - random_return) / (10 - random_return)
    assert score >= 0.9, score


def test_identity_continuous_ppo():
    agent = critic.PPO(lambda: IdentityEnv(2, continuous=True, length=10), n_steps=64, num_envs=4,
                       batch_size=64, n_epochs=10, gamma=0.0, gae_lambda=0.0, learning_rate=3e-3,
                       log_std_init=-0.5, seed=0)
    agent.learn(10_000, progress_bar=False)
    # random actions uniform in [-1, 1]^2 against uniform targets: E|a - x|^2 = 2 * 2/3 per step
    random_return = -10 * 2 * (2 / 3)
    score = (agent.evaluate(10)["mean"] - random_return) / (0.0 - random_return)
    assert score >= 0.9, score


@pytest.mark.parametrize("algo", sorted(ON_POLICY))
def test_one_step_bandit_critic_and_policy(algo):
    rewards = (0.0, 1.0, 0.5)
    agent = ON_POLICY[algo](lambda: BanditEnv(rewards))
    agent.learn(4000, progress_bar=False)
    # gamma is irrelevant with one-step episodes: V(s) -> E_pi[r] -> max r as pi concentrates
    with torch.no_grad():
        params, v = agent.nets(torch.zeros(1, 1))
        probs = agent.nets.dist(params).probs[0]
    assert int(probs.argmax()) == 1
    assert abs(float(v) - float(probs @ torch.tensor(rewards))) < 0.05
