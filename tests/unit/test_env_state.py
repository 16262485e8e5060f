"""Env state capture (critic/envs/state.py): a captured env, put into a freshly built env of the
same construction, continues bit-identically (observations, rewards, ends, and the action
space's samples); envs holding state we cannot capture are reported, never half-restored
silently. Negative control: the fresh env without the state does not continue the same way."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest

import critic
from critic import checkpoint as ckpt
from critic.envs.make import make_vec_env
from critic.envs.state import NotRestorable, capture, restore_env


def _run(venv, n):
    out = []
    for _ in range(n):
        o, r, te, tr, _ = venv.step(venv.action_space.sample())
        out.append((o.copy(), r.copy(), te.copy(), tr.copy()))
    return out


def _same(a, b) -> bool:
    return all(all(np.array_equal(x, y) for x, y in zip(s, t)) for s, t in zip(a, b))


@pytest.mark.parametrize("env_id, steps", [
    ("CartPole-v1", 300), ("Acrobot-v1", 300), ("Pendulum-v1", 300), ("MountainCarContinuous-v0", 300),
    ("HalfCheetah-v5", 200), ("Hopper-v5", 300), ("Ant-v5", 200), ("ALE/Pong-v5", 150),
])
def test_captured_env_continues_bit_identically(env_id, steps):
    venv = make_vec_env(env_id, 2, seed=0)
    venv.reset(seed=[1, 2])
    _run(venv, 37)
    state, why = capture(venv)
    assert why is None and state is not None
    state = json.loads(json.dumps(state))  # what a checkpoint stores
    expected = _run(venv, steps)
    fresh = make_vec_env(env_id, 2, seed=5)
    fresh.reset(seed=[9, 9])
    assert not _same(expected, _run(fresh, steps))  # negative control
    restored = make_vec_env(env_id, 2, seed=5)
    restored.reset(seed=[9, 9])
    restore_env(restored, state)
    assert _same(expected, _run(restored, steps))
    for v in (venv, fresh, restored):
        v.close()


class HoldsAHandle(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.sim = object()  # a simulator handle: nothing to serialise

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 1.0, False, False, {}


class WithStateAPI(HoldsAHandle):
    """An env that cannot be walked but says how to save itself."""

    def __init__(self):
        super().__init__()
        self.t = 0

    def step(self, action):
        self.t += 1
        return np.full(2, self.t / 100, np.float32), 1.0, False, False, {}

    def get_state(self):
        return {"t": self.t}

    def set_state(self, state):
        self.t = state["t"]


def test_unknown_attribute_is_reported_with_its_name():
    state, why = capture(HoldsAHandle())
    assert state is None and "HoldsAHandle.sim" in why and "object" in why


def test_env_state_api_is_used():
    env = WithStateAPI()
    env.reset(seed=0)
    for _ in range(5):
        env.step(0)
    state, why = capture(env)
    assert why is None
    other = WithStateAPI()
    restore_env(other, json.loads(json.dumps(state)))
    assert other.t == 5 and other.step(0)[0][0] == np.float32(0.06)


def test_other_wrapper_structure_is_refused():
    state, _ = capture(gym.make("CartPole-v1"))
    with pytest.raises(NotRestorable, match="wrapper layers"):
        restore_env(gym.make("CartPole-v1", max_episode_steps=None).unwrapped, state)


def test_hostile_state_values_are_refused():
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    state, _ = capture(env)
    bad = json.loads(json.dumps(state))
    bad["layers"][-1]["attrs"]["state"] = {"t": "nd", "dtype": "|O", "shape": [1], "hex": "00" * 8}
    with pytest.raises(NotRestorable, match="dtype"):
        restore_env(gym.make("CartPole-v1"), bad)
    bad = json.loads(json.dumps(state))
    bad["layers"][-1]["attrs"]["__class__"] = None
    with pytest.raises(NotRestorable, match="not a data attribute"):
        restore_env(gym.make("CartPole-v1"), bad)


def test_agent_on_an_unrestorable_env_resumes_from_fresh_episodes_with_a_warning(tmp_path):
    agent = critic.PPO(HoldsAHandle, n_steps=8, batch_size=8, hidden_sizes=(8,))
    agent.learn(16, progress_bar=False)
    path = agent.save(tmp_path / "m")
    _, meta = ckpt.read(path)
    assert meta["env"]["venv"] is None and "HoldsAHandle.sim" in meta["env"]["why"]
    with pytest.warns(RuntimeWarning, match="freshly reset episodes"):
        loaded = critic.load(path, env=HoldsAHandle)
    loaded.learn(16, progress_bar=False)
    assert loaded.env_steps == 32


def test_agent_restores_envs_without_a_warning(tmp_path):
    agent = critic.SAC("Pendulum-v1", learning_starts=10, batch_size=8, hidden_sizes=(8,), buffer_size=100)
    agent.learn(30, progress_bar=False)
    path = agent.save(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = critic.load(path, for_training=True)
    np.testing.assert_array_equal(loaded.stream.obs, agent.stream.obs)
    np.testing.assert_array_equal(loaded.stepper.ep_ret, agent.stepper.ep_ret)
    assert loaded.venv.envs[0].unwrapped.state.tolist() == agent.venv.envs[0].unwrapped.state.tolist()
