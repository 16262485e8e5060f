"""Learning tests (slow): each preset must reach its bar on CartPole-v1 within 100k steps.

Evaluation: 10 deterministic episodes every 10k environment steps; the test passes at the
first evaluation reaching the bar and reports the step it got there (``-s`` shows it).
"""

import pytest

from critic.cli import find_preset, read_preset

pytestmark = pytest.mark.slow


def reach(algo: str, preset: str, bar: float, budget: int = 100_000, every: int = 10_000, seed: int = 0):
    data = read_preset(find_preset(preset, algo))
    agent = _cls(algo)("CartPole-v1", **{**data["hparams"], "seed": seed})
    evals = agent._run["evals"]

    def stop_when_reached(agent, info):
        return not (evals and evals[-1]["mean"] >= bar)

    # one learn() call, so schedules (linear learning rate) span the whole budget as in the CLI
    agent.learn(budget, stop_when_reached, eval_every=every, eval_episodes=10, progress_bar=False)
    history = [(e["env_steps"], e["mean"]) for e in evals]
    print(f"\n{algo}/{preset}: {history}")
    return history


def _cls(algo):
    from critic.algos.registry import get_algo
    return get_algo(algo)


def test_ppo_reaches_475():
    steps, mean = reach("ppo", "cartpole", 475)[-1]
    assert mean >= 475, f"PPO reached only {mean} within {steps} steps"


def test_a2c_nstep_reaches_475():
    steps, mean = reach("a2c", "cartpole", 475)[-1]
    assert mean >= 475, f"n-step A2C reached only {mean} within {steps} steps"


def test_a2c_per_step_reaches_195():
    steps, mean = reach("a2c", "cartpole_perstep", 195)[-1]
    assert mean >= 195, f"per-step A2C reached only {mean} within {steps} steps"


def test_a2c_episodic_reaches_195():
    steps, mean = reach("a2c", "cartpole_episodic", 195)[-1]
    assert mean >= 195, f"episodic A2C reached only {mean} within {steps} steps"
