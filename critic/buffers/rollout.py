"""On-policy rollout storage ``[T, N, ...]`` preallocated as torch tensors.

``next_values`` is filled by :meth:`finish`: V(s_{t+1}) from the next stored value, the last
observation's value at the rollout end, and the value of the true final observation where a
sub-env was truncated (so time limits bootstrap instead of counting as terminal).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.uint8 if dtype == np.uint8 else torch.float32


class RolloutBuffer:
    def __init__(self, T: int, N: int, obs_space: gym.Space, act_space: gym.Space,
                 device: torch.device | str = "cpu"):
        self.T, self.N, self.device = T, N, torch.device(device)
        self.obs_shape = obs_space.shape
        self.obs_dtype = _torch_dtype(obs_space.dtype)
        if isinstance(act_space, gym.spaces.Discrete):
            self.act_shape, self.act_dtype = (), torch.long
        elif isinstance(act_space, gym.spaces.MultiDiscrete):
            self.act_shape, self.act_dtype = act_space.shape, torch.long
        else:
            self.act_shape, self.act_dtype = act_space.shape, torch.float32
        self._alloc(T)

    def _alloc(self, T: int) -> None:
        z = lambda *s, dt=torch.float32: torch.zeros(*s, dtype=dt, device=self.device)  # noqa: E731
        N = self.N
        self.obs = z(T, N, *self.obs_shape, dt=self.obs_dtype)
        self.actions = z(T, N, *self.act_shape, dt=self.act_dtype)
        self.logp, self.values, self.rewards = z(T, N), z(T, N), z(T, N)
        self.terminated, self.truncated = z(T, N, dt=torch.bool), z(T, N, dt=torch.bool)
        self.trunc_values = z(T, N)
        self.next_values = z(T, N)
        self.T, self.t = T, 0

    def grow(self) -> None:
        """Double the capacity keeping contents (episodic rollouts of unknown length)."""
        old = {k: getattr(self, k) for k in ("obs", "actions", "logp", "values", "rewards", "terminated",
                                              "truncated", "trunc_values")}
        t = self.t
        self._alloc(self.T * 2)
        for k, v in old.items():
            getattr(self, k)[:t] = v[:t]
        self.t = t

    @property
    def full(self) -> bool:
        return self.t >= self.T

    def add(self, obs: Tensor, action: Tensor, logp: Tensor, value: Tensor, reward: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray) -> None:
        t = self.t
        self.obs[t] = obs
        self.actions[t] = action
        self.logp[t] = logp
        self.values[t] = value
        self.rewards[t] = torch.from_numpy(reward)
        self.terminated[t] = torch.from_numpy(terminated)
        self.truncated[t] = torch.from_numpy(truncated)
        self.trunc_values[t] = 0.0
        self.t = t + 1

    def set_truncation_values(self, env_idx: np.ndarray, values: Tensor) -> None:
        """V(true final observation) of sub-envs truncated at the step just added."""
        self.trunc_values[self.t - 1, torch.from_numpy(env_idx)] = values

    def finish(self, last_values_N: Tensor) -> None:
        t = self.t
        nv = self.next_values[:t]
        nv[:-1] = self.values[1:t]
        nv[-1] = last_values_N
        torch.where(self.truncated[:t], self.trunc_values[:t], nv, out=nv)

    def view(self) -> dict[str, Tensor]:
        """The filled part of the rollout, ``[t, N, ...]``."""
        t = self.t
        return {k: getattr(self, k)[:t] for k in ("obs", "actions", "logp", "values", "rewards",
                                                  "terminated", "truncated", "next_values")}

    def reset(self) -> None:
        self.t = 0
