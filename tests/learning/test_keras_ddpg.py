"""The Keras DDPG example as a preset (``ddpg_pendulum_keras``) does what the example shows:
the average training return over the last 40 episodes reaches -200 on Pendulum-v1 within its
100 episodes (counted only once 40 episodes exist; stops at the first episode that does)."""

import numpy as np
import pytest

import critic
from critic.presets import find_preset, read_preset

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keras_ddpg_preset_reaches_minus_200_average_by_episode_100(seed):
    data = read_preset(find_preset("pendulum_keras", "ddpg"))
    assert data["steps"] == 100 * 200  # 100 episodes of Pendulum's 200 steps
    agent = critic.DDPG("Pendulum-v1", **{**data["hparams"], "seed": seed})
    returns: list[float] = []

    def until_average_reached(agent, info):
        returns.extend(info["episode_returns"])
        return not (len(returns) >= 40 and np.mean(returns[-40:]) >= -200)

    agent.learn(data["steps"], until_average_reached, progress_bar=False)
    agent.close()
    avg = float(np.mean(returns[-40:]))
    print(f"\nseed {seed}: average of the last 40 episodes {avg:.1f} at episode {len(returns)}")
    assert len(returns) <= 100 and avg >= -200, f"average {avg:.1f} after {len(returns)} episodes"
