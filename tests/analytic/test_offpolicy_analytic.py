"""Off-policy agents (DDPG, TD3, SAC continuous and discrete) on analytic environments:
identity (act out the observation), a one-step bandit where the critic must recover r(a) and the actor pick the maximiser, and
an infinite-horizon task where only time-limit bootstrapping recovers the true value (with
the negative control that reports the time limit as a termination). Seconds each.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic
from critic.envs.fake import BanditEnv, ConstantRewardEnv, ContinuousBanditEnv, IdentityEnv, TruncationAsTermination

COMMON = dict(hidden_sizes=(32, 32), learning_starts=200, batch_size=64, learning_rate=3e-3, seed=0)
CONTINUOUS = {
    "ddpg": lambda env, **kw: critic.DDPG(env, **{**COMMON, **kw}),
    "td3": lambda env, **kw: critic.TD3(env, **{**COMMON, **kw}),
    "sac": lambda env, **kw: critic.SAC(env, **{**COMMON, **kw}),
}


def q_values(agent, a_policy: np.ndarray) -> np.ndarray:
    """Every critic member's Q(s=0, a) for policy-space actions ``a_policy`` ``[K]`` -> ``[E, K]``."""
    with torch.no_grad():
        obs = torch.zeros(len(a_policy), 1)
        return agent.nets.critic(obs, torch.as_tensor(a_policy, dtype=torch.float32)[:, None]).numpy()


@pytest.mark.parametrize("algo", sorted(CONTINUOUS))
def test_continuous_bandit_critic_recovers_reward_and_actor_picks_maximiser(algo):
    env_fn = lambda: ContinuousBanditEnv(low=-2.0, high=2.0, best=1.0)  # noqa: E731
    agent = CONTINUOUS[algo](env_fn, gamma=0.99)
    agent.learn(3000, progress_bar=False)
    # the critic, on actions around the maximiser (where the data concentrate), equals r(a)
    a_env = np.linspace(0.5, 1.5, 5, dtype=np.float32)
    a_pol = agent.scaler.unscale(a_env[:, None])[:, 0]
    expected = 1.0 - (a_env - 1.0) ** 2
    assert np.abs(q_values(agent, a_pol) - expected).max() < 0.05, (q_values(agent, a_pol), expected)
    # the deterministic action, in env units, is the maximiser 1.0 (not the [-1, 1] edge)
    best = float(agent.predict(np.zeros(1, np.float32), deterministic=True)[0][0])
    assert abs(best - 1.0) < 0.1, best


@pytest.mark.parametrize("algo", sorted(CONTINUOUS))
def test_identity_continuous(algo):
    agent = CONTINUOUS[algo](lambda: IdentityEnv(2, continuous=True, length=10), gamma=0.0)
    agent.learn(3000, progress_bar=False)
    # random actions uniform in [-1, 1]^2 against uniform targets: E|a - x|^2 = 2 * 2/3 per step
    random_return = -10 * 2 * (2 / 3)
    score = (agent.evaluate(10)["mean"] - random_return) / (0.0 - random_return)
    assert score >= 0.9, score


def test_identity_discrete_sac():
    agent = critic.SAC(lambda: IdentityEnv(4, length=10), **{**COMMON, "gamma": 0.0})
    agent.learn(2000, progress_bar=False)
    random_return = 10 / 4
    score = (agent.evaluate(10)["mean"] - random_return) / (10 - random_return)
    assert score >= 0.9, score


def test_discrete_sac_bandit():
    rewards = (0.0, 1.0, 0.5)
    agent = critic.SAC(lambda: BanditEnv(rewards), **COMMON)
    agent.learn(3000, progress_bar=False)
    with torch.no_grad():
        q = agent.nets.critic(torch.zeros(1, 1))[:, 0].numpy()  # [E, |A|]
    assert np.abs(q - np.asarray(rewards)).max() < 0.05, q
    assert int(agent.predict(np.zeros(1, np.float32), deterministic=True)[0]) == 1


GAMMA = 0.9
TRUE_Q = 1.0 / (1.0 - GAMMA)  # reward 1 forever, discounted: 10
# SAC with a fixed alpha of 0: its soft Q is then the plain Q. tau 0.05 lets the value
# propagate through the target network in a few hundred updates (0.005 needs thousands).
HORIZON = {
    "ddpg": lambda env: CONTINUOUS["ddpg"](env, gamma=GAMMA, tau=0.05),
    "td3": lambda env: CONTINUOUS["td3"](env, gamma=GAMMA, tau=0.05),
    "sac": lambda env: CONTINUOUS["sac"](env, gamma=GAMMA, ent_coef=0.0, tau=0.05),
    "sac-discrete": lambda env: critic.SAC(env, **{**COMMON, "gamma": GAMMA, "ent_coef": 0.0, "tau": 0.05}),
}


def learned_q(agent) -> float:
    with torch.no_grad():
        if agent.nets.critic.n_outputs > 1:
            return float(agent.nets.critic(torch.zeros(1, 1)).mean())
        return float(q_values(agent, np.zeros(1, np.float32)).mean())


@pytest.mark.parametrize("algo", sorted(HORIZON))
def test_infinite_horizon_bootstraps_at_time_limit(algo):
    continuous = algo != "sac-discrete"
    make = lambda: gym.wrappers.TimeLimit(ConstantRewardEnv(continuous=continuous), 8)  # noqa: E731
    good = HORIZON[algo](make)
    good.learn(3000, progress_bar=False)
    assert abs(learned_q(good) - TRUE_Q) < 1.0, learned_q(good)
    # negative control: the time limit reported as a termination makes Q the truncated sum
    bad = HORIZON[algo](lambda: TruncationAsTermination(make()))
    bad.learn(3000, progress_bar=False)
    assert abs(learned_q(bad) - TRUE_Q) > 2.0, learned_q(bad)


def test_replay_holds_true_final_observation_at_autoreset():
    """At a time-limit truncation the stored next_obs is the episode's final observation, not the
    first observation of the next episode that the vector env already reset to."""
    agent = critic.SAC(lambda: IdentityEnv(4, continuous=True, length=5), **{**COMMON, "learning_starts": 10**6},
                       num_envs=2)
    agent.learn(40, progress_bar=False)
    r = agent.replay
    trunc = r.truncated[: r.pos]
    assert trunc.sum() == 8  # 20 steps per env, episodes of 5
    rows, envs = torch.nonzero(trunc, as_tuple=True)
    for i, e in zip(rows.tolist(), envs.tolist()):
        # next_obs of the truncated step is the final obs; the following row starts a new episode
        assert not torch.equal(r.next_obs[i, e], r.obs[i + 1, e]) or i + 1 >= r.pos
    not_done = ~(r.terminated[: r.pos - 1] | r.truncated[: r.pos - 1])
    assert torch.equal(r.next_obs[: r.pos - 1][not_done], r.obs[1: r.pos][not_done])
