"""``predict`` as Stable-Baselines3 users type it: ``action, state = agent.predict(obs)``."""

import numpy as np
import pytest

import critic


@pytest.fixture(scope="module")
def agent():
    a = critic.PPO("CartPole-v1", seed=0, num_envs=2, n_steps=8, batch_size=16, torch_threads=1)
    yield a
    a.close()


def test_returns_action_and_state(agent):
    obs = np.zeros(4, np.float32)
    action, state = agent.predict(obs, deterministic=True)
    assert state is None
    assert np.ndim(action) == 0 and int(action) in (0, 1)


def test_batch_of_two_is_a_batch_not_two_values(agent):
    """The SB3 habit ``action, _ = predict(batch)`` must give the batch's actions, not split them."""
    batch = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    action, state = agent.predict(batch, deterministic=True)
    assert state is None and action.shape == (2,)
    singles = [agent.predict(o, deterministic=True)[0] for o in batch]
    assert action.tolist() == [int(s) for s in singles]


def test_sb3_signature_positional_and_keywords(agent):
    obs = np.zeros((3, 4), np.float32)
    a1, _ = agent.predict(obs, None, None, True)  # (observation, state, episode_start, deterministic)
    a2, _ = agent.predict(obs, state=None, episode_start=np.ones(3, bool), deterministic=True)
    assert np.array_equal(a1, a2)


def test_a_state_or_old_positional_deterministic_is_refused(agent):
    obs = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="no recurrent state.*deterministic=True"):
        agent.predict(obs, True)  # the pre-0.2 predict(obs, deterministic) call
    with pytest.raises(ValueError, match="state must be None"):
        agent.predict(obs, state=(np.zeros(4),))


def test_wrong_shape_is_an_error(agent):
    with pytest.raises(ValueError, match="matches neither"):
        agent.predict(np.zeros(5, np.float32))


def test_box_actions_in_bounds():
    with critic.SAC("Pendulum-v1", seed=0, learning_starts=10, buffer_size=100, batch_size=32, torch_threads=1) as a:
        action, state = a.predict(np.zeros(3, np.float32))
        assert state is None and action.shape == (1,) and -2.0 <= float(action[0]) <= 2.0
        batch, _ = a.predict(np.zeros((5, 3), np.float32), deterministic=True)
        assert batch.shape == (5, 1)
