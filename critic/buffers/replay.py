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

``optimize_memory=True`` stores each observation once: the next observation of row ``p`` is
the observation of row ``p + 1`` in the same env column. Where that is not the true next
observation it is kept apart: the newest row's next observation (one per env), and the final
observation of every truncated episode in a small side store (one per episode, freed when its
row is overwritten; it grows if episodes are very short). At a termination the next
observation is never used (its discount is 0). For images this halves the memory.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from critic.buffers.memory import check_fits, nbytes

FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated", "truncated")


def _t(x: Any, device: torch.device) -> Tensor:
    return (x if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))).to(device)


class ReplayBuffer:
    def __init__(self, capacity: int, num_envs: int, obs_space: gym.Space, act_space: gym.Space,
                 gamma: float = 0.99, bootstrap_n: int = 1, device: torch.device | str = "cpu",
                 optimize_memory: bool = False):
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
        self.optimize_memory = bool(optimize_memory)
        per_row = [(obs_space.shape, obs_dtype), (act_shape, act_dtype), ((), torch.float32), ((), torch.bool),
                   ((), torch.bool)] + ([((), torch.int32)] if optimize_memory else [(obs_space.shape, obs_dtype)])
        per_transition = nbytes(per_row)
        check_fits("buffer_size", capacity, per_transition * self.C * self.N, self.device, per_transition,
                   "" if optimize_memory else "optimize_memory=true stores each observation once")
        self.obs = z(obs_space.shape, obs_dtype)
        if self.optimize_memory:
            self.fields = tuple(f for f in FIELDS if f != "next_obs")
            self.last_next_obs = torch.zeros((self.N, *obs_space.shape), dtype=obs_dtype, device=self.device)
            self.final_slot = torch.full((self.C, self.N), -1, dtype=torch.int32, device=self.device)
            self.final_obs = torch.zeros((max(self.N, 16), *obs_space.shape), dtype=obs_dtype, device=self.device)
            self._free: list[int] = list(range(self.final_obs.shape[0]))[::-1]
        else:
            self.fields = FIELDS
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
        if self.optimize_memory:
            self._store_final_obs(p, _t(next_obs, dev), np.asarray(truncated) & ~np.asarray(terminated))
        else:
            self.next_obs[p] = _t(next_obs, dev)
        self.actions[p] = _t(actions, dev)
        self.rewards[p] = _t(rewards, dev)
        self.terminated[p] = _t(terminated, dev)
        self.truncated[p] = _t(truncated, dev)
        self.pos = (p + 1) % self.C
        self.full = self.full or self.pos == 0

    def _store_final_obs(self, p: int, next_obs: Tensor, trunc: np.ndarray) -> None:
        old = self.final_slot[p]
        if bool((old >= 0).any()):  # the row being overwritten frees its final observations
            self._free.extend(old[old >= 0].tolist())
            self.final_slot[p] = -1
        for i in np.flatnonzero(trunc):
            if not self._free:  # more truncated episodes stored than slots: grow the side store
                k = self.final_obs.shape[0]
                self.final_obs = torch.cat([self.final_obs, torch.zeros_like(self.final_obs)])
                self._free.extend(range(2 * k - 1, k - 1, -1))
            slot = self._free.pop()
            self.final_obs[slot] = next_obs[i]
            self.final_slot[p, i] = slot
        self.last_next_obs.copy_(next_obs)

    def _next_obs(self, r: Tensor, e: Tensor) -> Tensor:
        """True next observations of rows ``r`` in env columns ``e``."""
        if not self.optimize_memory:
            return self.next_obs[r, e]
        nxt = self.obs[(r + 1) % self.C, e]
        extra = (1,) * (nxt.dim() - 1)
        newest = (r == (self.pos - 1) % self.C).view(-1, *extra)
        nxt = torch.where(newest, self.last_next_obs[e], nxt)
        slot = self.final_slot[r, e].long()
        return torch.where((slot >= 0).view(-1, *extra), self.final_obs[slot.clamp(min=0)], nxt)

    def __len__(self) -> int:
        """Stored transitions (all envs)."""
        return (self.C if self.full else self.pos) * self.N

    @property
    def nbytes(self) -> int:
        size = lambda t: t.numel() * t.element_size()  # noqa: E731
        total = sum(size(getattr(self, f)) for f in self.fields)
        if self.optimize_memory:
            total += size(self.last_next_obs) + size(self.final_slot) + size(self.final_obs)
        return total

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
            out.update(rewards=self.rewards[r, e], next_obs=self._next_obs(r, e),
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
        out.update(rewards=ret, next_obs=self._next_obs(last, e),
                   discount=disc * (~ended_term).float())
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, prefix: str = "replay") -> tuple[dict[str, Tensor], dict[str, Any]]:
        rows = self.C if self.full else self.pos
        tensors = {f"{prefix}/{f}": getattr(self, f)[:rows] for f in self.fields}
        meta = {"pos": self.pos, "full": self.full, "C": self.C, "N": self.N, "optimize_memory": self.optimize_memory}
        if self.optimize_memory:
            tensors.update({f"{prefix}/final_slot": self.final_slot[:rows], f"{prefix}/final_obs": self.final_obs,
                            f"{prefix}/last_next_obs": self.last_next_obs,
                            f"{prefix}/free": torch.tensor(self._free, dtype=torch.int64)})
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any], prefix: str = "replay") -> None:
        if (meta["C"], meta["N"]) != (self.C, self.N):
            raise ValueError(f"replay shape mismatch: saved {meta['C']}x{meta['N']}, this buffer {self.C}x{self.N}")
        if bool(meta.get("optimize_memory", False)) != self.optimize_memory:
            raise ValueError(f"replay layout mismatch: saved with optimize_memory={meta.get('optimize_memory', False)}, "
                             f"this buffer has optimize_memory={self.optimize_memory}")
        for f in self.fields:
            src = tensors[f"{prefix}/{f}"]
            getattr(self, f)[: src.shape[0]] = src.to(self.device)
        if self.optimize_memory:
            src = tensors[f"{prefix}/final_slot"]
            self.final_slot[: src.shape[0]] = src.to(self.device)
            self.final_obs = tensors[f"{prefix}/final_obs"].to(self.device).clone()
            self.last_next_obs.copy_(tensors[f"{prefix}/last_next_obs"])
            self._free = tensors[f"{prefix}/free"].tolist()
        self.pos, self.full = int(meta["pos"]), bool(meta["full"])
