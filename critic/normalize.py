"""Running mean/std observation and reward normalisation (statistics saved with the model)."""

from __future__ import annotations

import numpy as np
import torch


class RunningMeanStd:
    """Parallel (Chan et al.) running mean and variance in float64."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        b_mean, b_var, b_count = x.mean(0), x.var(0), x.shape[0]
        delta = b_mean - self.mean
        tot = self.count + b_count
        self.mean = self.mean + delta * b_count / tot
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / tot
        self.var = m2 / tot
        self.count = tot

    def state_dict(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}/mean": torch.from_numpy(np.array(self.mean)),
                f"{prefix}/var": torch.from_numpy(np.array(self.var)),
                f"{prefix}/count": torch.tensor([self.count], dtype=torch.float64)}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], prefix: str) -> None:
        self.mean = tensors[f"{prefix}/mean"].numpy().copy()
        self.var = tensors[f"{prefix}/var"].numpy().copy()
        self.count = float(tensors[f"{prefix}/count"][0])


class SharedRunningMeanStd(RunningMeanStd):
    """A :class:`RunningMeanStd` whose mean, variance and count live in one float64 tensor in
    shared memory, so that A3C's worker processes and its learner normalise with the same
    statistics, each worker adding what it observes (Coach's shared running statistics).

    An update reads a snapshot of the buffer and writes the merged statistics back in one copy,
    without a lock (a lock cannot travel with the picklable worker factory). Two workers
    updating at the same instant can lose one batch's contribution; the statistics stay a
    valid mean and variance of most of what was observed.
    """

    def __init__(self, shape: tuple[int, ...] = (), buffer: torch.Tensor | None = None):
        self.shape, self.n = tuple(shape), int(np.prod(shape)) if shape else 1
        if buffer is None:
            buffer = torch.zeros(2 * self.n + 1, dtype=torch.float64)
            buffer[self.n:2 * self.n] = 1.0
            buffer[-1] = 1e-4
            buffer.share_memory_()
        if buffer.shape != (2 * self.n + 1,) or buffer.dtype != torch.float64:
            raise ValueError(f"a shared statistics buffer for shape {shape} has {2 * self.n + 1} float64 values")
        self.buffer = buffer

    @property
    def mean(self) -> np.ndarray:
        return self.buffer[:self.n].numpy().reshape(self.shape)

    @mean.setter
    def mean(self, value) -> None:
        self.buffer[:self.n] = torch.as_tensor(np.asarray(value, np.float64).reshape(-1))

    @property
    def var(self) -> np.ndarray:
        return self.buffer[self.n:2 * self.n].numpy().reshape(self.shape)

    @var.setter
    def var(self, value) -> None:
        self.buffer[self.n:2 * self.n] = torch.as_tensor(np.asarray(value, np.float64).reshape(-1))

    @property
    def count(self) -> float:
        return float(self.buffer[-1])

    @count.setter
    def count(self, value: float) -> None:
        self.buffer[-1] = float(value)

    def update(self, x: np.ndarray) -> None:
        snap = RunningMeanStd(self.shape)
        snap.mean, snap.var, snap.count = self.mean.copy(), self.var.copy(), self.count
        snap.update(x)
        merged = np.concatenate([snap.mean.reshape(-1), snap.var.reshape(-1), [snap.count]])
        self.buffer.copy_(torch.from_numpy(merged))


class ObsNormalizer:
    """(obs - mean) / sqrt(var + eps), clipped to +-clip; ``update`` only while training."""

    def __init__(self, shape: tuple[int, ...], clip: float = 10.0, eps: float = 1e-8):
        self.rms = RunningMeanStd(shape)
        self.clip, self.eps = clip, eps

    def __call__(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if update:
            self.rms.update(obs)
        out = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.eps)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)


class RewardNormalizer:
    """Divide rewards by the running std of the discounted return (no mean shift)."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0, eps: float = 1e-8):
        self.rms = RunningMeanStd(())
        self.ret = np.zeros(num_envs, np.float64)
        self.gamma, self.clip, self.eps = gamma, clip, eps

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + reward
        self.rms.update(self.ret)
        self.ret[done] = 0.0
        return np.clip(reward / np.sqrt(self.rms.var + self.eps), -self.clip, self.clip).astype(np.float32)
