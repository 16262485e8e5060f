"""A3C learning test (slow): 2 workers on the local runner reach 475 on CartPole-v1 within 300k
total environment steps (the issue's bar), with the ``a3c_cartpole`` preset."""

import pytest

from reaching import reach

pytestmark = pytest.mark.slow


def test_a3c_local_two_workers_reaches_475():
    steps, mean = reach("a3c", "cartpole", 475, budget=300_000)[-1]
    assert mean >= 475, f"A3C (2 workers, local) reached only {mean} within {steps} steps"


def test_a3c_ray_two_workers_reaches_475():
    import ray

    from critic.runners.ray import init_ray

    started = init_ray(None, num_cpus=2)  # local Ray, loopback only
    try:
        steps, mean = reach("a3c", "cartpole", 475, budget=300_000, backend="ray")[-1]
    finally:
        if started:
            ray.shutdown()
    assert mean >= 475, f"A3C (2 workers, Ray) reached only {mean} within {steps} steps"
