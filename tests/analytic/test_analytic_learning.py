"""Fast learning on analytic environments with known answers (docs/reliability.md), seconds each,
for the on-policy family: A2C, PPO, ACER and A3C (worker processes: its env factories are
module-level functions and ``functools.partial``, which pickle).

Each correctness test carries a negative control: the deliberately wrong setting must fail
the same assertion, so the test provably catches the bug it is about.
"""

import functools

import gymnasium as gym
import pytest
import torch

import critic
from critic.envs.fake import BanditEnv, ConstantRewardEnv, IdentityEnv, TruncationAsTermination

GAMMA = 0.9
TRUE_V = 1.0 / (1.0 - GAMMA)  # 10: reward 1 forever, discounted

ON_POLICY = {
    "a2c": lambda env, **kw: critic.A2C(env, **{"n_steps": 8, "num_envs": 4, "optimizer": "adam",
                                               "learning_rate": 3e-3, "seed": 0, **kw}),
    "ppo": lambda env, **kw: critic.PPO(env, **{"n_steps": 32, "num_envs": 4, "batch_size": 64, "n_epochs": 4,
                                               "gae_lambda": 0.95, "learning_rate": 3e-3, "seed": 0, **kw}),
    "acer": lambda env, **kw: critic.ACER(env, **{"n_steps": 8, "num_envs": 4, "hidden_sizes": (32,),
                                                 "replay_start": 64, "optimizer": "adam", "learning_rate": 3e-3,
                                                 "seed": 0, **kw}),
    "a3c": lambda env, **kw: critic.A3C(env, **{"workers": 2, "n_steps": 8, "hidden_sizes": (32,),
                                               "optimizer": "adam", "learning_rate": 3e-3, "seed": 0, **kw}),
}
# ACER's Q head starts near 0 and Adam moves it about lr per update: 3e-2 reaches 10 in 6000 steps
HORIZON_KW = {"acer": {"learning_rate": 3e-2, "ent_coef": 0.0}}


def horizon_env(as_termination: bool = False) -> gym.Env:
    env = gym.wrappers.TimeLimit(ConstantRewardEnv(), 8)
    return TruncationAsTermination(env) if as_termination else env


def policy_and_value(agent) -> tuple[torch.Tensor, float]:
    """pi(.|s=0) and the learned V(s=0) (for ACER, the expectation of its Q head under pi)."""
    with torch.no_grad():
        obs = torch.zeros(1, 1)
        if isinstance(agent, critic.ACER):
            logits, q = agent.nets.online(obs)
            probs = torch.softmax(logits, -1)[0]
            return probs, float(probs @ q[0])
        params, v = agent.nets(obs)
        return agent.nets.dist(params).probs[0], float(v)


def learn(algo, env_fn, steps, **kw):
    agent = ON_POLICY[algo](env_fn, **kw)
    try:
        agent.learn(steps, progress_bar=False)
    except BaseException:
        agent.close()
        raise
    return agent


@pytest.mark.parametrize("algo", sorted(ON_POLICY))
def test_infinite_horizon_bootstraps_at_time_limit(algo):
    kw = {"gamma": GAMMA, **HORIZON_KW.get(algo, {})}
    with learn(algo, functools.partial(horizon_env, False), 6000, **kw) as good:
        v_good = policy_and_value(good)[1]
    assert abs(v_good - TRUE_V) < 1.0, v_good
    # negative control: the same run with the time limit reported as a termination
    with learn(algo, functools.partial(horizon_env, True), 6000, **kw) as bad:
        v_bad = policy_and_value(bad)[1]
    assert abs(v_bad - TRUE_V) > 2.0, v_bad


@pytest.mark.parametrize("algo", sorted(ON_POLICY))
def test_identity_discrete(algo):
    random_return = 10 / 4
    with learn(algo, functools.partial(IdentityEnv, 4, length=10), 5000, gamma=GAMMA) as agent:
        score = (agent.evaluate(10)["mean"] - random_return) / (10 - random_return)
    assert score >= 0.9, score


@pytest.mark.parametrize("algo", ["a2c", "a3c", "ppo"])  # ACER is discrete-only
def test_identity_continuous(algo):
    kw = {"gamma": 0.0, "log_std_init": -0.5}
    if algo == "ppo":
        kw.update(n_steps=64, batch_size=64, n_epochs=10, gae_lambda=0.0)
    with learn(algo, functools.partial(IdentityEnv, 2, continuous=True, length=10), 10_000, **kw) as agent:
        mean = agent.evaluate(10)["mean"]
    # random actions uniform in [-1, 1]^2 against uniform targets: E|a - x|^2 = 2 * 2/3 per step
    random_return = -10 * 2 * (2 / 3)
    score = (mean - random_return) / (0.0 - random_return)
    assert score >= 0.9, score


@pytest.mark.parametrize("algo", sorted(ON_POLICY))
def test_one_step_bandit_critic_and_policy(algo):
    rewards = torch.tensor((0.0, 1.0, 0.5))
    with learn(algo, functools.partial(BanditEnv, tuple(rewards.tolist())), 4000, gamma=GAMMA) as agent:
        probs, v = policy_and_value(agent)
        if algo == "acer":
            with torch.no_grad():
                q = agent.nets.online(torch.zeros(1, 1))[1][0]
            # one-step episodes: Q(s, a) = r(a) for every action, tried or not often
            assert (q - rewards).abs().max() < 0.05, q
    assert int(probs.argmax()) == 1
    # gamma is irrelevant with one-step episodes: V(s) -> E_pi[r] -> max r as pi concentrates
    assert abs(v - float(probs @ rewards)) < 0.05, (v, probs)
