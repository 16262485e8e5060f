"""Vector env construction and the one step helper: autoreset, final observations, bad envs."""

from __future__ import annotations

import itertools
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import TimeLimit

import critic
from critic.envs import EnvError, EnvStepper, make_env, make_vec_env
from critic.envs.make import check_spaces


class CounterEnv(gym.Env):
    """Deterministic: obs = [sub-env index, episode number, step counter]; reward = 1.

    Terminates after ``term_at`` steps (None: never; wrap in TimeLimit to truncate). ``nan_at``
    makes step ``nan_at`` of the first episode return a NaN reward / observation / final obs.
    """

    metadata = {"render_modes": []}

    def __init__(self, index: int, term_at: int | None, nan_reward_at=None, nan_obs_at=None):
        self.index, self.term_at = index, term_at
        self.nan_reward_at, self.nan_obs_at = nan_reward_at, nan_obs_at
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.episode = -1
        self.t = 0

    def _obs(self):
        return np.array([self.index, self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        obs = self._obs()
        reward = 1.0
        if self.episode == 0 and self.t == self.nan_reward_at:
            reward = float("nan")
        if self.episode == 0 and self.t == self.nan_obs_at:
            obs[2] = np.nan
        terminated = self.term_at is not None and self.t >= self.term_at
        return obs, reward, terminated, False, {}


def counter_factory(specs):
    """A callable for make_vec_env; sub-env i gets specs[i] = (term_at, time_limit, kwargs)."""
    counter = itertools.count()

    def make():
        i = next(counter)
        term_at, limit, kw = specs[i]
        env = CounterEnv(i, term_at, **kw)
        return TimeLimit(env, max_episode_steps=limit) if limit else env

    return make


# Sub-env 0 terminates every 3 steps, sub-env 1 is truncated by TimeLimit every 5 steps,
# sub-env 2 terminates every 4 steps: episodes end on different steps.
SPECS = [(3, None, {}), (None, 5, {}), (4, None, {})]
EP_LEN = [3, 5, 4]


def test_autoreset_final_obs_and_no_cross_episode_transition():
    venv = make_vec_env(counter_factory(SPECS), num_envs=3, seed=0)
    stepper = EnvStepper(venv)
    obs = stepper.reset(seed=0)
    assert obs[:, 2].tolist() == [0, 0, 0] and obs[:, 0].tolist() == [0, 1, 2]
    n_done = [0, 0, 0]
    ends_seen = []
    for t in range(1, 16):
        step = stepper.step(np.zeros(3, dtype=np.int64))
        for i in range(3):
            s, s_next = obs[i], step.next_obs[i]
            # a stored transition never joins two episodes: s' is s one step later
            assert s_next[0] == i and s_next[1] == s[1] and s_next[2] == s[2] + 1, (t, i, s, s_next)
            ended = t % EP_LEN[i] == 0
            assert bool(step.terminated[i]) == (ended and i != 1)
            assert bool(step.truncated[i]) == (ended and i == 1)
            if ended:
                n_done[i] += 1
                assert s_next[2] == EP_LEN[i]                            # true final observation
                assert step.obs[i][2] == 0 and step.obs[i][1] == n_done[i]  # reset observation
                ends_seen.append((t, i))
            else:
                assert np.array_equal(step.obs[i], s_next)
        # episode bookkeeping: every finished episode has length EP_LEN and return EP_LEN
        finished = [i for i in range(3) if t % EP_LEN[i] == 0]
        assert step.episode_lengths == [EP_LEN[i] for i in finished]
        assert step.episode_returns == [float(EP_LEN[i]) for i in finished]
        obs = step.obs
    assert stepper.env_steps == 45
    # ends on different steps, and at least one step where only some sub-envs end
    assert (3, 0) in ends_seen and (5, 1) in ends_seen and (4, 2) in ends_seen
    stepper.close()


def test_autoreset_negative_control_raw_obs_joins_episodes():
    # Using the observation the vector env returns (the reset one) as s' would join a terminal
    # state to the next episode's start: the transition check above fails on it.
    venv = make_vec_env(counter_factory(SPECS), num_envs=3, seed=0)
    stepper = EnvStepper(venv)
    obs = stepper.reset(seed=0)
    violations = 0
    for _ in range(5):
        step = stepper.step(np.zeros(3, dtype=np.int64))
        for i in range(3):
            s, wrong = obs[i], step.obs[i]
            if not (wrong[1] == s[1] and wrong[2] == s[2] + 1):
                violations += 1
        obs = step.obs
    assert violations == 3  # sub-env 0 at step 3, sub-env 2 at step 4, sub-env 1 at step 5
    stepper.close()


def test_next_step_autoreset_vector_env_is_refused():
    venv = gym.vector.SyncVectorEnv([lambda: CounterEnv(0, 3)])
    with pytest.raises(EnvError, match="SAME_STEP"):
        make_vec_env(venv, num_envs=1)
    venv.close()


@pytest.mark.parametrize("what", ["reward", "obs", "final_obs"])
def test_non_finite_values_raise_env_error_naming_sub_env_and_step(what):
    kw = {"reward": {"nan_reward_at": 2}, "obs": {"nan_obs_at": 2}, "final_obs": {"nan_obs_at": 3}}[what]
    # sub-env 1 goes bad on its 2nd step (or on its final, 3rd, observation)
    specs = [(None, None, {}), (3, None, kw)]
    stepper = EnvStepper(make_vec_env(counter_factory(specs), num_envs=2))
    stepper.reset(seed=0)
    bad_step = 3 if what == "final_obs" else 2
    for _ in range(bad_step - 1):
        stepper.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(EnvError) as e:
        stepper.step(np.zeros(2, dtype=np.int64))
    msg = str(e.value)
    assert "sub-env 1" in msg
    assert f"env step {2 * bad_step}" in msg  # 2 sub-envs per vector step
    assert ("reward" in msg) if what == "reward" else ("observation" in msg)
    stepper.close()


def test_unknown_env_id_suggests_close_one():
    with pytest.raises(EnvError) as e:
        make_vec_env("CartPole-v2")
    msg = str(e.value)
    assert "CartPole-v2" in msg and "did you mean" in msg and "CartPole-v1" in msg
    with pytest.raises(EnvError, match="CartPole-v1"):
        make_env("CartPole-v2")


def test_module_colon_ids_are_refused_and_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported.txt"
    (tmp_path / "critic_evil_mod.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nimport gymnasium\nclass Env(gymnasium.Env):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for fn in (make_vec_env, make_env):
        with pytest.raises(EnvError) as e:
            fn("critic_evil_mod:Env-v0")
        assert "critic_evil_mod" in str(e.value) and "refused" in str(e.value)
    assert not marker.exists()
    assert "critic_evil_mod" not in sys.modules


@pytest.mark.parametrize("obj", [42, "not an env".encode(), [1, 2]])
def test_non_env_object_raises_env_error(obj):
    with pytest.raises(EnvError, match="expected a Gymnasium env"):
        make_vec_env(obj)


def test_callable_returning_non_env_raises_env_error():
    with pytest.raises(EnvError, match="builtins.dict"):
        make_vec_env(lambda: {"not": "an env"})


class _SpaceEnv(gym.Env):
    def __init__(self, obs_space, act_space):
        self.observation_space, self.action_space = obs_space, act_space

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


BOX = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
DICT_OBS = gym.spaces.Dict({"pos": gym.spaces.Box(-1.0, 1.0, (2,), np.float32), "id": gym.spaces.Discrete(3)})
TUPLE_ACT = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3)))


def test_a_dict_observation_space_too_deep_is_refused_naming_the_key():
    check_spaces(DICT_OBS, gym.spaces.Discrete(2))  # one level: taken (packed, envs/packing.py)
    deep = gym.spaces.Dict({"a": gym.spaces.Dict({"b": DICT_OBS})})
    with pytest.raises(EnvError, match="'a.b' is nested two levels deep"):
        check_spaces(deep, gym.spaces.Discrete(2))
    with pytest.raises(EnvError, match="'a.b' is nested two levels deep"):
        critic.A2C(lambda: _SpaceEnv(deep, gym.spaces.Discrete(2)))


def test_tuple_action_space_is_refused_naming_the_space():
    with pytest.raises(EnvError) as e:
        check_spaces(BOX, TUPLE_ACT)
    assert "Tuple" in str(e.value) and "action" in str(e.value)
    with pytest.raises(EnvError, match="unsupported action space Tuple"):
        critic.A2C(lambda: _SpaceEnv(BOX, TUPLE_ACT))


@pytest.mark.parametrize("act_space,reason", [
    (gym.spaces.Box(-np.inf, np.inf, (2,), np.float32), "unbounded"),
    (gym.spaces.Box(np.array([0.0, 1.0], np.float32), np.array([1.0, 1.0], np.float32)), "low >= high"),
    (gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32), "1-D"),
])
def test_bad_box_action_spaces_are_refused(act_space, reason):
    with pytest.raises(EnvError, match=reason):
        check_spaces(BOX, act_space)


@pytest.mark.parametrize("act_space", [gym.spaces.Discrete(3, start=-1),
                                       gym.spaces.MultiDiscrete([3, 2], start=[1, 0])])
def test_discrete_spaces_with_nonzero_start_are_refused(act_space):
    # Categorical policies emit 0..n-1; without the refusal a Discrete(3, start=-1) env would
    # silently receive the out-of-space action 2.
    with pytest.raises(EnvError, match="non-zero start"):
        check_spaces(BOX, act_space)


def test_supported_spaces_pass():
    check_spaces(BOX, gym.spaces.Discrete(2))
    check_spaces(BOX, gym.spaces.MultiDiscrete([2, 3]))
    check_spaces(BOX, gym.spaces.Box(-1.0, 1.0, (2,), np.float32))


def test_env_instance_backs_only_one_sub_env():
    env = CounterEnv(0, 3)
    with pytest.raises(EnvError, match="num_envs=1"):
        make_vec_env(env, num_envs=2)
    venv = make_vec_env(env, num_envs=1)
    assert venv.num_envs == 1
    venv.close()
