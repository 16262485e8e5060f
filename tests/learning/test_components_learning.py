"""Learning tests (slow) of the components face, through the examples users read.

Each example trains with its own loop; a callback evaluates the greedy policy (10 episodes,
``examples/common.py``) every ``every`` env steps and stops at the first evaluation that
reaches the bar: per-step ActorCritic >= 195 on CartPole-v1 (50k steps), the ppo example
>= 475 on CartPole-v1 within 100k steps, SoftActorCritic >= -300 on Pendulum-v1 within 30k.
The frozen-lake port of keras-gym's script: its greedy policy reaches the goal within 500
episodes and still does at the end.
"""

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture()
def examples(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield
    for name in ("actor_critic_per_step", "actor_critic_ppo", "soft_actor_critic_pendulum", "frozen_lake_actor_critic",
                 "common"):
        sys.modules.pop(name, None)


def train_until(main, env_id, bar, every, budget, greedy, **kw):
    from common import evaluate
    evals = []
    next_eval = [every]

    def callback(agent, t):
        if t < next_eval[0]:
            return None
        next_eval[0] = t + every
        evals.append((t, round(evaluate(lambda s: greedy(agent, s), env_id), 1)))
        return evals[-1][1] < bar

    main(steps=budget, seed=0, log=False, callback=callback, **kw)
    print(f"\n{main.__module__}: {evals}")
    assert evals, "no evaluation ran"
    return evals[-1]


def test_per_step_actor_critic_reaches_195_on_cartpole(examples):
    import actor_critic_per_step as ex
    t, mean = train_until(ex.main, "CartPole-v1", 195, 5_000, 50_000, lambda ac, s: ac.greedy(s)[0])
    assert mean >= 195, f"per-step ActorCritic reached only {mean} within {t} steps"


def test_ppo_actor_critic_reaches_475_on_cartpole_within_100k(examples):
    import actor_critic_ppo as ex
    t, mean = train_until(ex.main, "CartPole-v1", 475, 10_000, 100_000, lambda ac, s: ac.greedy(s)[0])
    assert mean >= 475, f"the ppo ActorCritic example reached only {mean} within {t} steps"


def test_soft_actor_critic_reaches_minus_300_on_pendulum_within_30k(examples):
    import soft_actor_critic_pendulum as ex
    t, mean = train_until(ex.main, "Pendulum-v1", -300, 2_000, 30_000, lambda sac, s: sac.greedy(s)[0])
    assert mean >= -300, f"SoftActorCritic reached only {mean} within {t} steps"


def test_frozen_lake_actor_critic_reaches_the_goal(examples):
    import frozen_lake_actor_critic as ex
    first = []

    def callback(ac, env):
        if not first and ex.greedy_return(ac) == 1.0:
            first.append((env.ep, env.T))

    ac, env = ex.main(episodes=500, seed=0, log=False, callback=callback)
    print(f"\nfrozen_lake_actor_critic: greedy policy first reached the goal after (episodes, steps) {first}, "
          f"avg_G at the end {env.avg_G:.3f}")
    assert first, "the greedy policy never reached the goal in 500 episodes"
    assert ex.greedy_return(ac) == 1.0, f"the greedy policy reached the goal at {first} but not at the end"
