"""On-policy rollouts ``[T, N]`` (A2C, PPO; unchanged inside A3C's workers and Ray samplers).

Each vector step stores (s, a, log pi(a|s), V(s), r, terminated, truncated). A truncated
sub-env's true final observation is valued at once (V(s_final), the time-limit bootstrap), and
the rollout ends with V of the observation to act on next. ``n_steps`` steps per rollout, or
with ``episodic`` (one env) until the episode ends, the storage doubling as it needs.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from critic.buffers.rollout import RolloutBuffer
from critic.collect.base import Batch, Collector
from critic.collect.stream import EnvStream

ActFn = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]
"""obs ``[N, ...]`` -> (actions, log-probs, values), in the policy's own space."""


class RolloutCollector(Collector):
    def __init__(self, buffer: RolloutBuffer, act: ActFn, value: Callable[[Tensor], Tensor],
                 to_env: Callable[[np.ndarray], np.ndarray], device: torch.device, episodic: bool = False):
        self.buffer, self.act, self.value, self.to_env = buffer, act, value, to_env
        self.device, self.episodic = device, episodic

    def collect(self, stream: EnvStream | None, env_steps: int = 0) -> tuple[int, list[float]]:
        assert stream is not None and stream.obs is not None
        self.begin()
        while not self.step(stream, *self.act_on(stream.obs)):
            pass
        return self.end(stream)

    # The rollout one vector step at a time: a batch of members steps all its members' rollouts
    # side by side, with one stacked forward acting for all of them (``SeedBatch``).
    def begin(self) -> None:
        """Start a rollout (empty storage, counters at zero)."""
        self.buffer.reset()
        self._steps, self._returns = 0, []

    def act_on(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The policy's (actions, log-probs, values) for ``obs``, with this collector's network."""
        with torch.inference_mode():
            a, logp, v = self.act(torch.as_tensor(obs, device=self.device))
        return a.cpu().numpy(), logp.cpu().numpy(), v.cpu().numpy()

    def step(self, stream: EnvStream, a: np.ndarray, logp: np.ndarray, v: np.ndarray) -> bool:
        """One vector step with the given policy outputs; True when the rollout is complete."""
        buf, obs = self.buffer, stream.obs
        step, reward = stream.step(self.to_env(a))
        self._steps += stream.num_envs
        if buf.full:
            buf.grow()
        buf.add(obs, a, logp, v, reward, step.terminated, step.truncated)
        if step.truncated.any():
            idx = np.flatnonzero(step.truncated)
            final = torch.as_tensor(stream.normalize(step.next_obs[idx]), device=self.device)
            with torch.inference_mode():
                buf.set_truncation_values(idx, self.value(final).cpu())
        self._returns.extend(step.episode_returns)
        stream.advance(step)
        return bool(step.done[0]) if self.episodic else buf.full

    def end(self, stream: EnvStream) -> tuple[int, list[float]]:
        """Close the rollout with V of the observation to act on next; (env steps, finished returns)."""
        with torch.inference_mode():
            self.buffer.finish(self.value(torch.as_tensor(stream.obs, device=self.device)).cpu())
        return self._steps, self._returns

    def batches(self, env_steps: int) -> Iterator[Batch]:
        yield self.buffer.view()  # one update per rollout (PPO's epochs happen inside it)

    def sample(self) -> Batch:
        return self.buffer.view()
