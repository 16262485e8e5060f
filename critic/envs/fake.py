"""Tiny analytic environments with known answers, for tests and quick checks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class ConstantRewardEnv(gym.Env):
    """One state, reward 1 every step, never terminates: with a time limit and discount gamma
    the true value is 1 / (1 - gamma), which only time-limit bootstrapping recovers."""

    def __init__(self, n_actions: int = 2, continuous: bool = False):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = (gym.spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous
                             else gym.spaces.Discrete(n_actions))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, False, False, {}


class TruncationAsTermination(gym.Wrapper):
    """The classic bug, as a wrapper: reports a time-limit truncation as a termination."""

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        return obs, r, term or trunc, False, info


class IdentityEnv(gym.Env):
    """Observe a one-hot target, reward 1 for naming it (Discrete) or -|a - x|^2 for matching
    the observed vector (Box). Episodes last ``length`` steps; the optimum is known."""

    def __init__(self, n: int = 4, continuous: bool = False, length: int = 10):
        self.n, self.continuous, self.length = n, continuous, length
        if continuous:
            self.observation_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
            self.action_space = gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
        else:
            self.observation_space = gym.spaces.Box(0.0, 1.0, (n,), np.float32)
            self.action_space = gym.spaces.Discrete(n)

    def _obs(self):
        if self.continuous:
            self.target = self.np_random.uniform(-1, 1, self.n).astype(np.float32)
            return self.target.copy()
        self.target = int(self.np_random.integers(self.n))
        o = np.zeros(self.n, np.float32)
        o[self.target] = 1.0
        return o

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        if self.continuous:
            r = -float(np.sum((np.asarray(action) - self.target) ** 2))
        else:
            r = float(int(action) == self.target)
        self.t += 1
        return self._obs(), r, False, self.t >= self.length, {}


class BanditEnv(gym.Env):
    """One-step episodes (terminated after every action): r(a) is fixed and known."""

    def __init__(self, rewards=(0.0, 1.0, 0.5)):
        self.rewards = np.asarray(rewards, np.float32)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(len(rewards))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), float(self.rewards[int(action)]), True, False, {}


class ContinuousBanditEnv(gym.Env):
    """One-step episodes with a Box action in ``[low, high]``: r(a) = 1 - (a - best)^2.

    The bounds are deliberately not [-1, 1], so agents must rescale their actions."""

    def __init__(self, low: float = -2.0, high: float = 2.0, best: float = 1.0):
        self.best = float(best)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(low, high, (1,), np.float32)

    def reward(self, a) -> float:
        return 1.0 - (float(np.asarray(a).reshape(-1)[0]) - self.best) ** 2

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), self.reward(action), True, False, {}


class MatchBitsEnv(gym.Env):
    """Observe ``n`` random bits, answer with a MultiBinary action: reward = the share of bits
    matched (1 for all, the optimum; a uniformly random policy scores 0.5). Episodes last
    ``length`` steps, each with fresh bits."""

    def __init__(self, n: int = 4, length: int = 10):
        self.n, self.length = n, length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n,), np.float32)
        self.action_space = gym.spaces.MultiBinary(n)

    def _obs(self):
        self.bits = self.np_random.integers(0, 2, self.n).astype(np.int8)
        return self.bits.astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid MultiBinary action {action!r}")
        r = float(np.mean(np.asarray(action) == self.bits))
        self.t += 1
        return self._obs(), r, False, self.t >= self.length, {}


class PointGoalEnv(gym.Env):
    """A goal-conditioned point in the plane (Gymnasium-Robotics' Dict convention): observe
    ``{"observation": position, "achieved_goal": position, "desired_goal": goal}``, move by
    ``0.1 * action`` (Box [-1, 1]^2), reward = -distance to the goal after the move. Episodes
    last ``length`` steps with a fresh goal each; no termination. Heading straight for the goal
    scores about -2.5 on average over 25 steps; standing still, about -10."""

    def __init__(self, length: int = 25):
        self.length = length
        vec = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Dict({"observation": vec, "achieved_goal": vec, "desired_goal": vec})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _obs(self):
        p = self.pos.astype(np.float32)
        return {"observation": p.copy(), "achieved_goal": p.copy(), "desired_goal": self.goal.astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = np.zeros(2)
        self.goal = self.np_random.uniform(-0.7, 0.7, 2)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.1 * np.clip(np.asarray(action, np.float64), -1, 1), -1, 1)
        self.t += 1
        return self._obs(), -float(np.linalg.norm(self.pos - self.goal)), False, self.t >= self.length, {}


class MixedDictEnv(gym.Env):
    """A Dict of every kind of key critic packs: a 36x36 uint8 image (channels last), a Discrete
    cue, a vector and a nested Tuple. Reward 1 for naming the cue (Discrete(3) actions), one step
    at a time, ``length`` steps an episode."""

    def __init__(self, length: int = 8):
        self.length = length
        self.observation_space = gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (36, 36, 3), np.uint8),
            "cue": gym.spaces.Discrete(3),
            "vec": gym.spaces.Box(-1.0, 1.0, (4,), np.float32),
            "more": gym.spaces.Tuple((gym.spaces.Box(-1.0, 1.0, (2,), np.float64), gym.spaces.MultiBinary(3))),
        })
        self.action_space = gym.spaces.Discrete(3)

    def _obs(self):
        self.cue = int(self.np_random.integers(3))
        img = np.zeros((36, 36, 3), np.uint8)
        img[:, :, self.cue] = 200
        return {"image": img, "cue": self.cue, "vec": self.np_random.uniform(-1, 1, 4).astype(np.float32),
                "more": (self.np_random.uniform(-1, 1, 2), self.np_random.integers(0, 2, 3).astype(np.int8))}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        r = float(int(action) == self.cue)
        self.t += 1
        return self._obs(), r, False, self.t >= self.length, {}


class MaskedChoiceEnv(gym.Env):
    """Pick among the actions valid this step: ``n`` actions, a random subset of at least two valid
    each step, reward 1 for the highest-numbered valid action, 0.2 for another valid one and -10
    for an invalid one. The observation is a constant: nothing but the mask tells which actions
    are valid, so an agent blind to it cannot avoid the -10s, while a masked agent only has to
    learn to prefer higher numbers. ``source`` says how the mask is given: ``"info"``
    (``info["action_mask"]``), ``"key"`` (a Dict observation with an ``action_mask`` key) or
    ``"none"`` (not at all); :class:`MaskedChoiceMethodEnv` gives it by ``action_masks()``.
    ``all_valid``: every action valid every step (to check that all-valid masks change nothing).
    ``invalid`` counts the invalid actions taken."""

    def __init__(self, n: int = 6, length: int = 20, source: str = "info", all_valid: bool = False):
        self.n, self.length, self.source, self.all_valid = n, length, source, all_valid
        self.action_space = gym.spaces.Discrete(n)
        box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = (gym.spaces.Dict({"obs": box, "action_mask": gym.spaces.MultiBinary(n)})
                                  if source == "key" else box)
        self.invalid = 0

    def _draw(self):
        if self.all_valid:
            self.mask = np.ones(self.n, np.int8)
        else:
            k = int(self.np_random.integers(2, self.n))
            self.mask = np.zeros(self.n, np.int8)
            self.mask[self.np_random.choice(self.n, k, replace=False)] = 1

    def _out(self):
        obs = np.zeros(2, np.float32)
        if self.source == "key":
            return {"obs": obs, "action_mask": self.mask.copy()}, {}
        return obs, ({"action_mask": self.mask.copy()} if self.source == "info" else {})

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self._draw()
        return self._out()

    def step(self, action):
        a = int(action)
        if not self.mask[a]:
            self.invalid += 1
            r = -10.0
        else:
            r = 1.0 if a == int(np.flatnonzero(self.mask).max()) else 0.2
        self.t += 1
        self._draw()
        obs, info = self._out()
        return obs, r, False, self.t >= self.length, info


class MaskedChoiceMethodEnv(MaskedChoiceEnv):
    """:class:`MaskedChoiceEnv` with its mask from ``action_masks()`` (sb3-contrib's convention)."""

    def __init__(self, n: int = 6, length: int = 20, all_valid: bool = False):
        super().__init__(n, length, source="method", all_valid=all_valid)

    def action_masks(self) -> np.ndarray:
        return self.mask.copy()


class TinyImageEnv(gym.Env):
    """uint8 images (a bright square in a corner chosen by the hidden state), channels first
    (``hwc=False``) or last. Discrete: reward 1 for naming the corner. ``continuous``: a Box
    action in [-1, 1]^2 and reward -|a - c|^2 with c = (+-0.5, +-0.5) the corner's position
    (random actions score about -1.17 a step, the optimum 0). For the CNN path, quickly."""

    def __init__(self, size: int = 36, length: int = 5, continuous: bool = False, hwc: bool = False):
        self.size, self.length, self.continuous, self.hwc = size, length, continuous, hwc
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 1) if hwc else (1, size, size), np.uint8)
        self.action_space = (gym.spaces.Box(-1.0, 1.0, (2,), np.float32) if continuous
                             else gym.spaces.Discrete(4))

    def _obs(self):
        self.target = int(self.np_random.integers(4))
        img = np.zeros((1, self.size, self.size), np.uint8)
        r, c = divmod(self.target, 2)
        img[0, r * (self.size - 4):r * (self.size - 4) + 4, c * (self.size - 4):c * (self.size - 4) + 4] = 255
        return img.transpose(1, 2, 0).copy() if self.hwc else img

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        if self.continuous:
            r_, c_ = divmod(self.target, 2)
            corner = np.array([c_ - 0.5, r_ - 0.5], np.float32)
            r = -float(np.sum((np.asarray(action, np.float32) - corner) ** 2))
        else:
            r = float(int(action) == self.target)
        self.t += 1
        return self._obs(), r, False, self.t >= self.length, {}


class FailingEnv(gym.Wrapper):
    """Raises (``mode='raise'``), hangs (``'hang'``) or kills its process (``'exit'``) at its
    ``after``-th step: for tests of how distributed workers survive a broken environment.

    With ``marker`` (a file path) it fails only once across processes: the first instance to
    reach the step creates the file, later instances (a restarted worker) run normally.
    """

    def __init__(self, env: gym.Env, after: int = 100, mode: str = "raise", marker: str | None = None):
        super().__init__(env)
        if mode not in ("raise", "hang", "exit"):
            raise ValueError(f"mode must be 'raise', 'hang' or 'exit', got {mode!r}")
        self.after, self.mode, self.marker, self.t = after, mode, marker, 0

    def step(self, action):
        self.t += 1
        if self.t == self.after and self._claim():
            if self.mode == "raise":
                raise RuntimeError(f"environment exploded at step {self.t}")
            if self.mode == "exit":
                import os
                os._exit(3)
            import time
            while True:
                time.sleep(1)
        return self.env.step(action)

    def _claim(self) -> bool:
        if self.marker is None:
            return True
        import os
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False


def failing_env(env_id: str = "CartPole-v1", after: int = 100, mode: str = "raise",
                marker: str | None = None) -> gym.Env:
    """``FailingEnv(gym.make(env_id), ...)``; module-level, so ``functools.partial`` of it pickles."""
    return FailingEnv(gym.make(env_id), after, mode, marker)


# ----------------------------------------------------------------------------- broken envs

class _UnsampleableDiscrete(gym.spaces.Discrete):
    def sample(self, mask=None, probability=None):
        raise RuntimeError("this space cannot be sampled")


class BrokenEnv(gym.Env):
    """A small env with one deliberate defect, for tests of critic's environment checks
    (``critic/envs/check.py``); ``defect="none"`` is healthy. ``BrokenEnv.DEFECTS`` lists them.

    Observations are Box(-1, 1, (3,), float32), actions Discrete(2) (Box(-1, 1, (2,)) for the
    action-space defects); episodes are truncated after ``length`` steps. Value defects appear
    from the ``at``-th step on (at reset too for the observation ones when ``at=0``).
    """

    SPACE_DEFECTS = ("dict_obs", "tuple_obs", "nested_obs", "discrete_obs", "dict_action", "tuple_action",
                     "unbounded_action", "inverted_action", "flat_action", "unsampleable_action")
    API_DEFECTS = ("old_step", "old_reset", "reset_info_list")
    VALUE_DEFECTS = ("obs_shape", "obs_dtype", "obs_list", "obs_bounds", "obs_nan", "reward_nan", "reward_inf",
                     "reward_array", "reward_str", "reward_none", "terminated_int", "terminated_array",
                     "truncated_none", "info_none", "step_raises")
    DEFECTS = ("none",) + SPACE_DEFECTS + API_DEFECTS + VALUE_DEFECTS

    def __init__(self, defect: str = "none", length: int = 20, at: int = 3):
        if defect not in self.DEFECTS:
            raise ValueError(f"unknown defect {defect!r}; one of {', '.join(self.DEFECTS)}")
        self.defect, self.length, self.at = defect, length, at
        box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.observation_space = {
            # Dict/Tuple observations critic cannot take (it takes them nested one level, of Box,
            # Discrete, MultiBinary and MultiDiscrete)
            "dict_obs": gym.spaces.Dict({"x": box, "y": gym.spaces.Text(5)}),
            "tuple_obs": gym.spaces.Tuple((box, gym.spaces.Sequence(box))),
            "nested_obs": gym.spaces.Dict({"inner": gym.spaces.Tuple((box, gym.spaces.Dict({"deep": box})))}),
            "discrete_obs": gym.spaces.Discrete(5),
        }.get(defect, box)
        act = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        if defect == "unbounded_action":
            act = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        elif defect == "inverted_action":
            act.low = np.array([-1.0, 2.0], np.float32)  # Box() itself refuses low > high
        elif defect == "flat_action":
            act = gym.spaces.Box(np.array([-1.0, 0.5], np.float32), np.array([1.0, 0.5], np.float32))
        elif defect == "dict_action":
            act = gym.spaces.Dict({"a": gym.spaces.Discrete(2)})
        elif defect == "tuple_action":
            act = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2)))
        elif defect == "unsampleable_action":
            act = _UnsampleableDiscrete(2)
        elif defect not in self.SPACE_DEFECTS:
            act = gym.spaces.Discrete(2)
        self.action_space = act

    def _obs(self):
        if not isinstance(self.observation_space, gym.spaces.Box):
            return self.observation_space.sample()
        o = self.np_random.uniform(-0.5, 0.5, 3).astype(np.float32)
        if self.t >= self.at:
            d = self.defect
            if d == "obs_shape":
                return o[:2]
            if d == "obs_dtype":
                return o.astype(np.float64)
            if d == "obs_list":
                return o.tolist()
            if d == "obs_bounds":
                o[1] = 5.0
            if d == "obs_nan":
                o[2] = np.nan
        return o

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.observation_space.seed(seed)
        self.t = 0
        obs = self._obs()
        if self.defect == "old_reset":
            return obs
        return obs, ([] if self.defect == "reset_info_list" else {})

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}")
        if self.defect == "step_raises":
            raise RuntimeError("step is broken")
        self.t += 1
        obs, reward = self._obs(), 0.5
        terminated, truncated, info = False, self.t >= self.length, {}
        if self.t >= self.at:
            d = self.defect
            reward = {"reward_nan": float("nan"), "reward_inf": float("inf"), "reward_str": "0.5",
                      "reward_none": None, "reward_array": np.array([0.5])}.get(d, reward)
            if d == "terminated_int":
                terminated = 0
            elif d == "terminated_array":
                terminated = np.array([False])
            elif d == "truncated_none":
                truncated = None
            elif d == "info_none":
                info = None
        if self.defect == "old_step":
            return obs, reward, terminated or truncated, info
        return obs, reward, terminated, truncated, info


class OldGymEnv(gym.Env):
    """An env written for the old Gym API: ``reset(self)`` returns only the observation and
    ``step`` the 4-tuple ``(obs, reward, done, info)``."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self):  # noqa: D102 - deliberately the old signature
        self.t = 0
        return np.zeros(2, np.float32)

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 1.0, self.t >= 10, {}


def _register() -> None:
    """Ids for ``module:EnvId`` tests: ``critic.envs.fake:critic/Identity-v0`` (healthy) and
    ``critic.envs.fake:critic/OldStepAPI-v0`` (the old 4-tuple step behind Gymnasium's wrappers).
    Gymnasium's ``module:EnvId`` form imports the module, then looks EnvId up in the registry."""
    for env_id, entry, kwargs in (("critic/Identity-v0", IdentityEnv, {}),
                                  ("critic/OldStepAPI-v0", BrokenEnv, {"defect": "old_step"}),
                                  ("critic/MatchBits-v0", MatchBitsEnv, {}),
                                  ("critic/PointGoal-v0", PointGoalEnv, {})):
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry, kwargs=kwargs, max_episode_steps=50)


_register()
