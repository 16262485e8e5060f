"""On-policy rollout storage ``[T, N, ...]``.

Collection writes into preallocated NumPy arrays on the host (an element store costs about a
microsecond there, against several for an indexed torch copy); :meth:`view` hands the filled
part to the learner as torch tensors on the agent's device in one transfer per rollout.

``next_values`` is filled by :meth:`finish`: V(s_{t+1}) from the next stored value, the last
observation's value at the rollout end, and the value of the true final observation where a
sub-env was truncated (so time limits bootstrap instead of counting as terminal).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

FIELDS = ("obs", "actions", "logp", "values", "rewards", "terminated", "truncated", "next_values")


def _np(x) -> np.ndarray:
    return x.numpy() if isinstance(x, Tensor) else np.asarray(x)


class RolloutBuffer:
    def __init__(self, T: int, N: int, obs_space: gym.Space, act_space: gym.Space,
                 device: torch.device | str = "cpu"):
        self.N, self.device = N, torch.device(device)
        self.obs_shape = obs_space.shape
        self.obs_dtype = np.uint8 if obs_space.dtype == np.uint8 else np.float32
        if isinstance(act_space, gym.spaces.Discrete):
            self.act_shape, self.act_dtype = (), np.int64
        elif isinstance(act_space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
            self.act_shape, self.act_dtype = act_space.shape, np.int64
        else:
            self.act_shape, self.act_dtype = act_space.shape, np.float32
        self._alloc(T)

    def _alloc(self, T: int) -> None:
        N = self.N
        self.obs = np.zeros((T, N, *self.obs_shape), self.obs_dtype)
        self.actions = np.zeros((T, N, *self.act_shape), self.act_dtype)
        self.logp, self.values, self.rewards = (np.zeros((T, N), np.float32) for _ in range(3))
        self.terminated, self.truncated = np.zeros((T, N), bool), np.zeros((T, N), bool)
        self.trunc_values = np.zeros((T, N), np.float32)
        self.next_values = np.zeros((T, N), np.float32)
        self.T, self.t = T, 0

    def grow(self) -> None:
        """Double the capacity keeping contents (episodic rollouts of unknown length)."""
        keep = ("obs", "actions", "logp", "values", "rewards", "terminated", "truncated", "trunc_values")
        old = {k: getattr(self, k) for k in keep}
        t = self.t
        self._alloc(self.T * 2)
        for k, v in old.items():
            getattr(self, k)[:t] = v[:t]
        self.t = t

    @property
    def full(self) -> bool:
        return self.t >= self.T

    def add(self, obs, action, logp, value, reward, terminated, truncated) -> None:
        """Store one vector step (arrays or CPU tensors of leading size N)."""
        t = self.t
        self.obs[t] = _np(obs)
        self.actions[t] = _np(action)
        self.logp[t] = _np(logp)
        self.values[t] = _np(value)
        self.rewards[t] = reward
        self.terminated[t] = terminated
        self.truncated[t] = truncated
        self.trunc_values[t] = 0.0
        self.t = t + 1

    def set_truncation_values(self, env_idx: np.ndarray, values) -> None:
        """V(true final observation) of sub-envs truncated at the step just added."""
        self.trunc_values[self.t - 1, env_idx] = _np(values)

    def finish(self, last_values_N) -> None:
        t = self.t
        nv = self.next_values[:t]
        nv[:-1] = self.values[1:t]
        nv[-1] = _np(last_values_N)
        np.copyto(nv, self.trunc_values[:t], where=self.truncated[:t])

    def view(self) -> dict[str, Tensor]:
        """The filled part of the rollout, ``[t, N, ...]``, as tensors on the agent's device."""
        t = self.t
        return {k: torch.from_numpy(getattr(self, k)[:t]).to(self.device) for k in FIELDS}

    def load_parts(self, parts: list[dict[str, np.ndarray]]) -> None:
        """Fill the buffer with finished rollouts ``[T, n_i, ...]`` of several samplers, side by
        side along the env axis (their ``next_values`` already computed by their ``finish``)."""
        T = parts[0]["rewards"].shape[0]
        if any(p["rewards"].shape[0] != T for p in parts) or sum(p["rewards"].shape[1] for p in parts) != self.N:
            raise ValueError(f"sampler rollouts {[p['rewards'].shape for p in parts]} do not fill [T, {self.N}]")
        if T > self.T:
            self._alloc(T)
        for k in FIELDS:
            np.concatenate([p[k] for p in parts], axis=1, out=getattr(self, k)[:T])
        self.t = T

    def reset(self) -> None:
        self.t = 0
