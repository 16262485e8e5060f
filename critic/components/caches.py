"""Caches that turn a stream of single transitions into keras-gym batches ``(S, A, Rn, In, S_next)``.

For each cached step t (the keras-gym documentation's notation)::

    Rn = r_t + gamma r_{t+1} + ... + gamma^{m-1} r_{t+m-1}       (m <= n steps, inside the episode)
    In = gamma^m, or 0 when the episode terminated inside the window
    S_next = s_{t+m}: the state to bootstrap from, target = Rn + In * v(S_next)

At a time-limit truncation the window stops but the value is still bootstrapped: ``In`` stays
``gamma^m`` and ``S_next`` is the episode's true final observation, which ``add`` therefore
needs (``s_next=``). The arithmetic is :func:`critic.returns.nstep_targets`, the same code the
agents use.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from critic.returns import nstep_targets


class NStepCache:
    """``NStepCache(env, n, gamma)``: ``add(s, a, r, done)`` each step, then ``pop()`` while the
    cache is truthy. A transition is ready once its n-step window is complete or its episode
    ended."""

    def __init__(self, env: gym.Env | None, n: int, gamma: float):
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"invalid value for 'n': {n!r} (allowed: an integer >= 1)")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"invalid value for 'gamma': {gamma!r} (allowed: a number in [0, 1])")
        self.env, self.n, self.gamma = env, int(n), float(gamma)
        self.reset()

    def reset(self) -> None:
        self._s: list[Any] = []
        self._a: list[Any] = []
        self._r: list[float] = []
        self._term: list[bool] = []
        self._trunc: list[bool] = []
        self._final: Any = None  # true final observation of an ended episode
        self._ended = False

    def add(self, s, a, r: float, done: bool, truncated: bool = False, s_next=None) -> None:
        """One step: ``done`` is Gymnasium's ``terminated``; pass ``truncated=True`` with the
        final observation ``s_next`` at a time limit, so the value is bootstrapped from it."""
        if self._ended:
            raise RuntimeError("the cache still holds the end of the previous episode: pop() it first")
        if truncated and not done and s_next is None:
            raise ValueError("a truncated step needs s_next, the episode's final observation, to bootstrap from")
        self._s.append(np.asarray(s))
        self._a.append(np.asarray(a))
        self._r.append(float(r))
        self._term.append(bool(done))
        self._trunc.append(bool(truncated) and not done)
        if done or truncated:
            self._ended = True
            self._final = np.asarray(s_next) if s_next is not None else np.asarray(s)

    def get_state(self) -> dict[str, Any]:
        """The pending transitions, for a checkpoint: observations and actions (arrays), rewards,
        termination and truncation flags, whether the episode ended, and its final observation
        (None while it runs)."""
        return {"s": list(self._s), "a": list(self._a), "r": list(self._r), "term": list(self._term),
                "trunc": list(self._trunc), "ended": self._ended, "final": self._final}

    def set_state(self, state: dict[str, Any]) -> None:
        """Replace the pending transitions with ``state`` (:meth:`get_state`'s form)."""
        self.reset()
        self._s, self._a = list(state["s"]), list(state["a"])
        self._r, self._term, self._trunc = list(state["r"]), list(state["term"]), list(state["trunc"])
        self._ended, self._final = state["ended"], state["final"]

    def _ready(self) -> int:
        return len(self._r) if self._ended else max(0, len(self._r) - self.n)

    def __len__(self) -> int:
        return self._ready()

    def __bool__(self) -> bool:
        return self._ready() > 0

    def pop(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All ready transitions as arrays ``S [B, ...], A [B, ...], Rn [B], In [B], S_next [B, ...]``."""
        k = self._ready()
        if k == 0:
            raise RuntimeError("nothing to pop: no transition has a complete window yet")
        T = len(self._r)
        Rn, In, boot = nstep_targets(torch.tensor(self._r, dtype=torch.float32)[:, None],
                                     torch.tensor(self._term)[:, None], torch.tensor(self._trunc)[:, None],
                                     self.gamma, self.n)
        Rn, In, boot = Rn[:k, 0].numpy(), In[:k, 0].numpy(), boot[:k, 0].tolist()
        s_next = [self._s[b + 1] if b + 1 < T else self._final for b in boot]
        out = (np.stack(self._s[:k]), np.stack(self._a[:k]), Rn.astype(np.float32), In.astype(np.float32),
               np.stack(s_next))
        del self._s[:k], self._a[:k], self._r[:k], self._term[:k], self._trunc[:k]
        if self._ended and not self._r:
            self.reset()
        return out


class MonteCarloCache(NStepCache):
    """``MonteCarloCache(env, gamma)``: transitions become ready when their episode ends; ``Rn``
    is then the full discounted return to the end (``In`` = 0 at a termination, ``gamma^m``
    with the final observation at a truncation)."""

    def __init__(self, env: gym.Env | None, gamma: float):
        super().__init__(env, 1, gamma)

    def _ready(self) -> int:
        return len(self._r) if self._ended else 0

    def pop(self):
        self.n = max(1, len(self._r))  # the window reaches the episode's end
        try:
            return super().pop()
        finally:
            self.n = 1
