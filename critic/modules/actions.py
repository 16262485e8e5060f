"""Action rescaling between a policy's own range [-1, 1] and an env's Box bounds, and
exploration noise (Gaussian, Ornstein-Uhlenbeck) for deterministic actors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class BoxScaler:
    """a_env = low + (a + 1) / 2 * (high - low); the inverse maps env actions back.

    Policies (tanh actors) act in [-1, 1]; replay stores that range, so warm-up actions
    sampled from the env's Box are stored through :meth:`unscale`.
    """

    def __init__(self, space: gym.spaces.Box):
        self.low = space.low.astype(np.float64)
        self.high = space.high.astype(np.float64)
        self.dtype = space.dtype

    def scale(self, a: np.ndarray) -> np.ndarray:
        a = np.clip(a, -1.0, 1.0)
        return (self.low + (a + 1.0) * 0.5 * (self.high - self.low)).astype(self.dtype)

    def unscale(self, a_env: np.ndarray) -> np.ndarray:
        return (2.0 * (np.asarray(a_env, np.float64) - self.low) / (self.high - self.low) - 1.0).astype(np.float32)


def box_clipper(space: gym.Space):
    """Policy action -> env action for on-policy policies: Gaussian actions clipped to a Box's
    bounds, MultiBinary bits in the space's dtype (other spaces pass through)."""
    if isinstance(space, gym.spaces.Box):
        low, high = space.low, space.high
        return lambda a: np.clip(a, low, high)
    if isinstance(space, gym.spaces.MultiBinary):
        dtype = space.dtype
        return lambda a: np.asarray(a).astype(dtype, copy=False)
    return lambda a: a


class GaussianNoise:
    def __init__(self, shape: tuple[int, ...], sigma: float, rng: np.random.Generator):
        self.shape, self.sigma, self.rng = shape, sigma, rng

    def __call__(self) -> np.ndarray:
        return self.rng.normal(0.0, self.sigma, self.shape).astype(np.float32)

    def reset(self, mask: np.ndarray | None = None) -> None:
        pass


class OUNoise:
    """Ornstein-Uhlenbeck: x += theta (mu - x) dt + sigma sqrt(dt) N(0, 1); reset per episode."""

    def __init__(self, shape: tuple[int, ...], sigma: float, rng: np.random.Generator, theta: float = 0.15,
                 dt: float = 1e-2):
        self.shape, self.sigma, self.theta, self.dt, self.rng = shape, sigma, theta, dt, rng
        self.x = np.zeros(shape, np.float64)

    def __call__(self) -> np.ndarray:
        self.x += self.theta * -self.x * self.dt + self.sigma * np.sqrt(self.dt) * self.rng.normal(size=self.shape)
        return self.x.astype(np.float32)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Zero the state (of the envs in ``mask`` when given: rows of a [N, A] state)."""
        if mask is None:
            self.x[:] = 0.0
        else:
            self.x[mask] = 0.0
