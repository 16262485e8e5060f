"""Action masks, carried in the observation.

An env says which actions are valid in one of three ways: ``info["action_mask"]`` from
``reset`` and ``step``, an ``action_masks()`` method (sb3-contrib's convention), or a Dict
observation key ``action_mask`` (PettingZoo's). critic turns the first two into the third:
:class:`MaskInObservation` returns ``{"obs": obs, "action_mask": mask}``, and the Dict is packed
like any other (``envs/packing.py``), the mask in its own field of the row. So the mask of every
observation is stored with it (rollouts, replay, ACER's segments, a true final observation),
needs nothing from the vector env, and reaches every place a policy is evaluated with the
observation it belongs to: the networks read it from the row (``DictEncoder.action_mask``) and
give invalid actions a logit of -1e9 (never sampled, probability 0 in losses, entropies, KLs
and expectations, with no NaN).

Masks apply to Discrete actions (one flag per action) and MultiDiscrete actions (the flags of
every sub-action side by side, sb3-contrib's layout).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from critic.envs.make import EnvError, EnvSpec, make_env

MASK_KEY = "action_mask"
MASKABLE = (gym.spaces.Discrete, gym.spaces.MultiDiscrete)


def mask_size(space: gym.Space) -> int:
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    raise EnvError(f"action masks apply to Discrete and MultiDiscrete action spaces, not {space!r}")


def has_method(env: gym.Env) -> bool:
    try:
        return callable(env.get_wrapper_attr("action_masks"))
    except AttributeError:
        return False


def detect(spec: EnvSpec, allow_import: tuple[str, ...] = (), seed: int | None = None) -> str | None:
    """Where the envs of ``spec`` take their action masks from (see :func:`find_mask_source`),
    probing one env; None for vector envs, Atari ids and action spaces masks cannot apply to."""
    from critic.envs.atari import is_atari_id

    if spec is None or isinstance(spec, gym.vector.VectorEnv) or (isinstance(spec, str) and is_atari_id(spec)):
        return None
    env = make_env(spec, allow_import=allow_import)
    try:
        if not isinstance(env.action_space, MASKABLE):
            return None
        return find_mask_source(env, seed)
    finally:
        if env is not spec:
            env.close()


def find_mask_source(env: gym.Env, seed: int | None = None) -> str | None:
    """Where ``env``'s action masks come from: 'key' (a Dict observation key), 'method'
    (``action_masks()``), 'info' (``info["action_mask"]`` at reset; this resets ``env``) or None."""
    space = env.observation_space
    inner = getattr(space, "layout", None)
    if inner is not None and inner.mask is not None:
        return "key"
    if isinstance(space, gym.spaces.Dict) and MASK_KEY in space.spaces:
        return "key"
    if has_method(env):
        return "method"
    _, info = env.reset(seed=seed)
    return "info" if isinstance(info, dict) and MASK_KEY in info else None


class MaskInObservation(gym.Wrapper):
    """``obs`` -> ``{"obs": obs, "action_mask": mask}``, the mask from ``info["action_mask"]``
    (``source='info'``) or ``env.action_masks()`` (``source='method'``), checked: one 0/1 flag
    per action, at least one valid."""

    def __init__(self, env: gym.Env, source: str):
        super().__init__(env)
        if source not in ("info", "method"):
            raise ValueError(f"source must be 'info' or 'method', got {source!r}")
        self.source, self.n = source, mask_size(env.action_space)
        self.observation_space = gym.spaces.Dict({"obs": env.observation_space,
                                                  MASK_KEY: gym.spaces.MultiBinary(self.n)})
        self._t = 0

    def _mask(self, info: dict[str, Any], where: str) -> np.ndarray:
        if self.source == "method":
            m = self.env.get_wrapper_attr("action_masks")()
        else:
            if not isinstance(info, dict) or MASK_KEY not in info:
                raise EnvError(f"the env gave info['action_mask'] at reset but none at {where}: give it with every "
                               "reset and step (or define action_masks())")
            m = info[MASK_KEY]
        m = np.asarray(m).reshape(-1)
        if m.shape != (self.n,):
            raise EnvError(f"action mask of shape {np.asarray(m).shape} at {where}; the action space "
                           f"{self.env.action_space} needs {self.n} flags (one per action, sub-actions side by side)")
        m = m.astype(bool)
        if not m.any():
            raise EnvError(f"the action mask at {where} allows no action")
        return m

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._t = 0
        return {"obs": obs, MASK_KEY: self._mask(info, "reset")}, info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        self._t += 1
        return {"obs": obs, MASK_KEY: self._mask(info, f"step {self._t} after reset")}, r, term, trunc, info


class MaskedEnv:
    """An env spec (id, callable or instance) whose envs carry their action mask in the
    observation: what an agent builds its training and evaluation envs from when the env has
    masks. Picklable (A3C's workers build their envs from it)."""

    def __init__(self, spec: EnvSpec, source: str, allow_import: tuple[str, ...] = ()):
        self.spec, self.source, self.allow_import = spec, source, tuple(allow_import)

    takes_render_mode = True  # (make_env passes render_mode on to it)

    def __call__(self, render_mode: str | None = None) -> gym.Env:
        env = make_env(self.spec, render_mode=render_mode, allow_import=self.allow_import, pack=False)
        return MaskInObservation(env, self.source)

    def __repr__(self) -> str:
        return f"MaskedEnv({self.spec!r}, {self.source!r})"
