"""Learning test (slow) on a PyBullet task: TD3 balances InvertedPendulumBulletEnv-v0.

The tutorial preset (``td3_bullet``) with 64-64 networks and 1k warm-up steps, so that it fits
CI (about 5-10 s a seed on one core). It must reach a mean of >= 80 over 10 deterministic
episodes within 10k steps (evaluated every 1k). The untrained actor scores 27-32 and the first
saturated one 8-10. Measured (first evaluation >= 80, seeds 0-7): 3k, 3k, 4k, 4k, 6k, 3k, 4k,
6k steps. The slowest seed (4) peaked at 111 by 10k steps; the others at 199-515.

The bar is low on purpose. TD3 does not reliably reach the env's 950 here: seeds that balance
for 150-300 steps stay there for 20k+ steps. The tanh actor saturates to full force
(bang-bang), and the cart drifts into the end of its rail. Seeds 0 and 2 of the 256-256 variant
reached 1000, but other seeds did not.
"""

import pytest

from reaching import reach

pytestmark = pytest.mark.slow

ENV = "InvertedPendulumBulletEnv-v0"


@pytest.mark.parametrize("seed", [0, 1])
def test_td3_balances_the_bullet_pendulum(seed):
    steps, mean = reach("td3", "bullet", 80, budget=10_000, every=1_000, seed=seed, env_id=ENV,
                        hidden_sizes=(64, 64), learning_starts=1000, buffer_size=50_000)[-1]
    assert mean >= 80, f"TD3 reached only {mean} within {steps} steps on {ENV} (seed {seed})"
