"""Learning tests (slow) of the off-policy agents, with their presets.

SAC, TD3 and DDPG reach a mean of >= -200 over 10 deterministic episodes on Pendulum-v1
within 20k steps (evaluated every 1k); discrete SAC reaches >= 400 on CartPole-v1 within
100k steps (evaluated every 5k). Each test stops at the first evaluation reaching its bar.
"""

import pytest

from reaching import reach

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("algo", ["sac", "td3", "ddpg"])
def test_pendulum_reaches_minus_200(algo):
    steps, mean = reach(algo, "pendulum", -200, budget=20_000, every=1_000, env_id="Pendulum-v1")[-1]
    assert mean >= -200, f"{algo} reached only {mean} within {steps} steps on Pendulum-v1"


def test_discrete_sac_reaches_400_on_cartpole():
    steps, mean = reach("sac", "cartpole", 400, budget=100_000, every=5_000)[-1]
    assert mean >= 400, f"discrete SAC reached only {mean} within {steps} steps on CartPole-v1"
