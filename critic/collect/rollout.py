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
        buf, dev = self.buffer, self.device
        buf.reset()
        steps, returns = 0, []
        while True:
            obs = stream.obs
            with torch.inference_mode():
                a, logp, v = self.act(torch.as_tensor(obs, device=dev))
            a, logp, v = a.cpu().numpy(), logp.cpu().numpy(), v.cpu().numpy()
            step, reward = stream.step(self.to_env(a))
            steps += stream.num_envs
            if buf.full:
                buf.grow()
            buf.add(obs, a, logp, v, reward, step.terminated, step.truncated)
            if step.truncated.any():
                idx = np.flatnonzero(step.truncated)
                final = torch.as_tensor(stream.normalize(step.next_obs[idx]), device=dev)
                with torch.inference_mode():
                    buf.set_truncation_values(idx, self.value(final).cpu())
            returns.extend(step.episode_returns)
            stream.advance(step)
            if (self.episodic and step.done[0]) or (not self.episodic and buf.full):
                break
        with torch.inference_mode():
            buf.finish(self.value(torch.as_tensor(stream.obs, device=dev)).cpu())
        return steps, returns

    def batches(self, env_steps: int) -> Iterator[Batch]:
        yield self.buffer.view()  # one update per rollout (PPO's epochs happen inside it)

    def sample(self) -> Batch:
        return self.buffer.view()
