"""Replay buffer: a preallocated torch ring of ``[C, N]`` rows (C rows of N parallel envs).

Each row holds one vector step: ``obs``, ``actions``, ``rewards``, the true ``next_obs``
(the final observation where an episode ended, as ``envs/step.py`` reports it), and the
``terminated`` / ``truncated`` flags. Sampling is uniform over stored transitions, without
Python loops over the batch. A sample carries a per-sample ``discount``
``gamma^m * (1 - terminated)`` so losses never branch on episode ends:

    target = rewards + discount * V(next_obs)

With ``bootstrap_n = n > 1`` the reward is the n-step partial return
``R = sum_{k<m} gamma^k r_{t+k}`` over the ``m <= n`` steps that exist in the same episode
and were written before the ring's write position, and ``next_obs`` is ``s_{t+m}``. Images
(uint8 observations) stay uint8. Memory is the raw bytes of the stored fields.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated", "truncated")


def _t(x: Any, device: torch.device) -> Tensor:
    return (x if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))).to(device)


class ReplayBuffer:
    def __init__(self, capacity: int, num_envs: int, obs_space: gym.Space, act_space: gym.Space,
                 gamma: float = 0.99, bootstrap_n: int = 1, device: torch.device | str = "cpu"):
        if capacity < num_envs:
            raise ValueError(f"replay capacity {capacity} is smaller than num_envs={num_envs}")
        if bootstrap_n < 1:
            raise ValueError(f"bootstrap_n must be >= 1, got {bootstrap_n}")
        self.C, self.N = capacity // num_envs, num_envs
        self.gamma, self.n = float(gamma), int(bootstrap_n)
        self.device = torch.device(device)
        obs_dtype = torch.uint8 if obs_space.dtype == np.uint8 else torch.float32
        if isinstance(act_space, gym.spaces.Discrete):
            act_shape, act_dtype = (), torch.long
        elif isinstance(act_space, gym.spaces.MultiDiscrete):
            act_shape, act_dtype = tuple(act_space.shape), torch.long
        else:
            act_shape, act_dtype = tuple(act_space.shape), torch.float32
        z = lambda shape, dt: torch.zeros((self.C, self.N, *shape), dtype=dt, device=self.device)  # noqa: E731
        self.obs = z(obs_space.shape, obs_dtype)
        self.next_obs = z(obs_space.shape, obs_dtype)
        self.actions = z(act_shape, act_dtype)
        self.rewards = z((), torch.float32)
        self.terminated = z((), torch.bool)
        self.truncated = z((), torch.bool)
        self.pos, self.full = 0, False

    # ------------------------------------------------------------------ writing
    def add(self, obs, actions, rewards, next_obs, terminated, truncated) -> None:
        """One vector step; ``next_obs`` must be the true next observation (final where done)."""
        p, dev = self.pos, self.device
        self.obs[p] = _t(obs, dev)
        self.next_obs[p] = _t(next_obs, dev)
        self.actions[p] = _t(actions, dev)
        self.rewards[p] = _t(rewards, dev)
        self.terminated[p] = _t(terminated, dev)
        self.truncated[p] = _t(truncated, dev)
        self.pos = (p + 1) % self.C
        self.full = self.full or self.pos == 0

    def __len__(self) -> int:
        """Stored transitions (all envs)."""
        return (self.C if self.full else self.pos) * self.N

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f).numel() * getattr(self, f).element_size() for f in FIELDS)

    # ------------------------------------------------------------------ sampling
    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        rows_stored = self.C if self.full else self.pos
        if rows_stored == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        dev = self.device
        r = torch.randint(0, rows_stored, (batch_size,), device=dev, generator=generator)
        e = torch.randint(0, self.N, (batch_size,), device=dev, generator=generator)
        return self.gather(r, e)

    def gather(self, r: Tensor, e: Tensor) -> dict[str, Tensor]:
        """Transitions starting at rows ``r`` of env columns ``e`` (``[B]`` each)."""
        dev, batch_size = self.device, r.shape[0]
        out = {"obs": self.obs[r, e], "actions": self.actions[r, e]}
        if self.n == 1:
            term = self.terminated[r, e]
            out.update(rewards=self.rewards[r, e], next_obs=self.next_obs[r, e],
                       discount=self.gamma * (~term).float())
            return out
        # Steps available after row r in the same env column before reaching the write pointer:
        # newest row is pos-1, so ahead = (pos - 1 - r) mod C (or pos - 1 - r when not full).
        ahead = (self.pos - 1 - r) % self.C if self.full else (self.pos - 1 - r)
        ret = torch.zeros(batch_size, device=dev)
        disc = torch.ones(batch_size, device=dev)
        alive = torch.ones(batch_size, dtype=torch.bool, device=dev)
        last = r.clone()
        ended_term = torch.zeros(batch_size, dtype=torch.bool, device=dev)
        for k in range(self.n):
            rk = (r + k) % self.C
            use = alive & (ahead >= k)
            ret = ret + torch.where(use, disc * self.rewards[rk, e], torch.zeros_like(ret))
            disc = torch.where(use, disc * self.gamma, disc)
            last = torch.where(use, rk, last)
            term_k, trunc_k = self.terminated[rk, e], self.truncated[rk, e]
            ended_term = ended_term | (use & term_k)
            alive = use & ~(term_k | trunc_k)
        out.update(rewards=ret, next_obs=self.next_obs[last, e],
                   discount=disc * (~ended_term).float())
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, prefix: str = "replay") -> tuple[dict[str, Tensor], dict[str, Any]]:
        rows = self.C if self.full else self.pos
        tensors = {f"{prefix}/{f}": getattr(self, f)[:rows] for f in FIELDS}
        return tensors, {"pos": self.pos, "full": self.full, "C": self.C, "N": self.N}

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any], prefix: str = "replay") -> None:
        if (meta["C"], meta["N"]) != (self.C, self.N):
            raise ValueError(f"replay shape mismatch: saved {meta['C']}x{meta['N']}, this buffer {self.C}x{self.N}")
        for f in FIELDS:
            src = tensors[f"{prefix}/{f}"]
            getattr(self, f)[: src.shape[0]] = src.to(self.device)
        self.pos, self.full = int(meta["pos"]), bool(meta["full"])
