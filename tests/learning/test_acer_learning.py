"""Learning test (slow) of ACER with its CartPole preset, trust region on."""

import pytest

from reaching import reach

pytestmark = pytest.mark.slow


def test_acer_reaches_475_on_cartpole_within_300k_steps():
    steps, mean = reach("acer", "cartpole", 475, budget=300_000, every=10_000)[-1]
    assert mean >= 475, f"ACER reached only {mean} within {steps} steps on CartPole-v1"
