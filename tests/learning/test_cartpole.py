"""Learning tests (slow): each preset must reach its bar on CartPole-v1 within 100k steps.

Evaluation: 10 deterministic episodes every 10k environment steps; the test passes at the
first evaluation reaching the bar and reports the step it got there (``-s`` shows it).
"""

import pytest

from reaching import reach

pytestmark = pytest.mark.slow


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
