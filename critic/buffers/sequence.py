"""Sequence replay for ACER: whole on-policy segments of ``T`` steps from ``N`` envs.

Slot ``s`` of the ring holds one segment exactly as it was collected:

* ``obs [T+1, N, ...]``: the observations acted on, plus the one after the last step (the
  segment's bootstrap observation); uint8 images stay uint8;
* ``actions``, ``rewards``, ``terminated``, ``truncated`` ``[T, N]`` and the behaviour policy's
  full action probabilities ``mu [T, N, A]``;
* the true final observation of every step that was truncated (a time limit): after such a
  step ``obs[t+1]`` is already the next episode's reset observation, so the final one is kept
  in a small side store (``final_slot [T, N]`` indexes it; freed when the slot is overwritten,
  grown when needed). A terminated step needs no final observation (its value is cut).

Sampling draws one stored segment uniformly (``T * N`` transitions, as the reference
implementation replays a whole batch of env segments). Capacity is given in transitions and
rounded down to whole segments (at least one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from critic.buffers.memory import check_fits, nbytes

FIELDS = ("obs", "actions", "rewards", "mu", "terminated", "truncated", "final_slot")


class SequenceReplay:
    def __init__(self, capacity: int, T: int, N: int, obs_shape: tuple[int, ...], obs_dtype: torch.dtype,
                 n_actions: int, device: torch.device | str = "cpu"):
        self.T, self.N, self.A = T, N, n_actions
        self.S = max(1, capacity // (T * N))
        self.device = torch.device(device)
        dev = self.device
        per_segment = nbytes([((T + 1, N, *obs_shape), obs_dtype), ((T, N), torch.long), ((T, N), torch.float32),
                              ((T, N, n_actions), torch.float32), ((T, N), torch.bool), ((T, N), torch.bool),
                              ((T, N), torch.int32)])
        check_fits("buffer_size", capacity, per_segment * self.S, dev, per_segment / (T * N))
        self.obs = torch.zeros((self.S, T + 1, N, *obs_shape), dtype=obs_dtype, device=dev)
        self.actions = torch.zeros((self.S, T, N), dtype=torch.long, device=dev)
        self.rewards = torch.zeros((self.S, T, N), dtype=torch.float32, device=dev)
        self.mu = torch.zeros((self.S, T, N, n_actions), dtype=torch.float32, device=dev)
        self.terminated = torch.zeros((self.S, T, N), dtype=torch.bool, device=dev)
        self.truncated = torch.zeros((self.S, T, N), dtype=torch.bool, device=dev)
        self.final_slot = torch.full((self.S, T, N), -1, dtype=torch.int32, device=dev)
        self.final_obs = torch.zeros((max(N, 8), *obs_shape), dtype=obs_dtype, device=dev)
        self._free: list[int] = list(range(self.final_obs.shape[0]))[::-1]
        self.pos, self.full = 0, False

    def __len__(self) -> int:
        """Stored transitions."""
        return (self.S if self.full else self.pos) * self.T * self.N

    @property
    def segments(self) -> int:
        return self.S if self.full else self.pos

    def add(self, seg: dict[str, Tensor]) -> None:
        """Store one segment (the dict :meth:`sample` returns: ``final_idx [K, 2]`` (t, env)
        and ``final_obs [K, ...]`` for the truncated steps)."""
        s = self.pos
        used = self.final_slot[s]
        for i in used[used >= 0].tolist():  # the overwritten segment's final observations
            self._free.append(int(i))
        self.final_slot[s] = -1
        for k in ("obs", "actions", "rewards", "mu", "terminated", "truncated"):
            getattr(self, k)[s] = seg[k].to(self.device)
        for (t, e), o in zip(seg["final_idx"].tolist(), seg["final_obs"]):
            if not self._free:
                self._grow()
            i = self._free.pop()
            self.final_obs[i] = o.to(self.device)
            self.final_slot[s, t, e] = i
        self.pos = (s + 1) % self.S
        self.full = self.full or self.pos == 0

    def _grow(self) -> None:
        old = self.final_obs
        self.final_obs = torch.cat([old, torch.zeros_like(old)])
        self._free.extend(range(self.final_obs.shape[0] - 1, old.shape[0] - 1, -1))

    def get(self, s: int) -> dict[str, Tensor]:
        """Segment ``s`` in the layout the ACER update takes."""
        idx = (self.final_slot[s] >= 0).nonzero()
        return {"obs": self.obs[s], "actions": self.actions[s], "rewards": self.rewards[s], "mu": self.mu[s],
                "terminated": self.terminated[s], "truncated": self.truncated[s], "final_idx": idx,
                "final_obs": self.final_obs[self.final_slot[s][idx[:, 0], idx[:, 1]].long()]}

    def sample(self, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One stored segment, uniformly."""
        n = self.segments
        if n == 0:
            raise RuntimeError("cannot sample from an empty sequence replay")
        s = int(torch.randint(n, (1,), generator=generator, device=self.device).item())
        return self.get(s)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self, prefix: str = "replay") -> tuple[dict[str, Tensor], dict[str, Any]]:
        rows = self.segments
        tensors = {f"{prefix}/{f}": getattr(self, f)[:rows] for f in FIELDS}
        tensors[f"{prefix}/final_store"] = self.final_obs
        tensors[f"{prefix}/free"] = torch.tensor(self._free, dtype=torch.int64)
        meta = {"pos": self.pos, "full": self.full, "S": self.S, "T": self.T, "N": self.N, "A": self.A}
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, Tensor], meta: dict[str, Any], prefix: str = "replay") -> None:
        saved = tuple(int(meta[k]) for k in ("S", "T", "N", "A"))
        if saved != (self.S, self.T, self.N, self.A):
            raise ValueError(f"sequence replay shape mismatch: saved (S, T, N, A) = {saved}, "
                             f"this buffer {(self.S, self.T, self.N, self.A)}")
        for f in FIELDS:
            src = tensors[f"{prefix}/{f}"]
            getattr(self, f)[: src.shape[0]] = src.to(self.device)
        self.final_obs = tensors[f"{prefix}/final_store"].to(self.device).clone()
        self._free = [int(i) for i in np.asarray(tensors[f"{prefix}/free"].cpu())]
        self.pos, self.full = int(meta["pos"]), bool(meta["full"])
