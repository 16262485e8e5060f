"""ACER's segments: ``n_steps`` vector steps with the current policy, keeping mu(.|s).

Each collection stores one segment ``[T, N]`` (observations with the bootstrap row s_T,
actions, behaviour probabilities mu, rewards, terminated, truncated, and the true final
observations of truncated steps) in sequence replay. Its batches are that segment (the
on-policy update), then, once ``replay_start`` transitions are stored, ``replay_ratio``
segments drawn from replay (a Poisson number with ``replay_poisson``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from critic.buffers.sequence import SequenceReplay
from critic.collect.base import Batch, Collector, load_storage_state, storage_state
from critic.collect.stream import EnvStream


class SequenceCollector(Collector):
    def __init__(self, replay: SequenceReplay, probs: Callable[[Tensor], Tensor], n_actions: int,
                 device: torch.device, *, seed: int, replay_ratio: float, replay_start: int, replay_poisson: bool,
                 save_replay: bool, np_rng: np.random.Generator):
        self.replay, self.probs, self.n_actions, self.device = replay, probs, n_actions, device
        self.T = replay.T
        self.replay_ratio, self.replay_start, self.replay_poisson = replay_ratio, replay_start, replay_poisson
        self.save_replay, self.np_rng = save_replay, np_rng
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.segment: Batch | None = None

    def collect(self, stream: EnvStream | None, env_steps: int = 0) -> tuple[int, list[float]]:
        assert stream is not None and stream.obs is not None
        T, N, A, dev = self.T, stream.num_envs, self.n_actions, self.device
        obs_buf = np.zeros((T + 1, *stream.obs.shape), stream.obs.dtype)
        actions = np.zeros((T, N), np.int64)
        mu = np.zeros((T, N, A), np.float32)
        rewards = np.zeros((T, N), np.float32)
        term, trunc = np.zeros((T, N), bool), np.zeros((T, N), bool)
        finals: list[tuple[int, int, np.ndarray]] = []
        returns: list[float] = []
        for t in range(T):
            obs = stream.obs
            obs_buf[t] = obs
            with torch.inference_mode():
                p = self.probs(torch.as_tensor(obs, device=dev))
                a = torch.multinomial(p, 1).squeeze(1)
            a, mu[t] = a.cpu().numpy(), p.cpu().numpy()
            actions[t] = a
            step, rewards[t] = stream.step(a)
            term[t], trunc[t] = step.terminated, step.truncated
            for i in np.flatnonzero(step.truncated & ~step.terminated):
                finals.append((t, int(i), stream.normalize(step.next_obs[i:i + 1])[0]))
            returns.extend(step.episode_returns)
            stream.advance(step)
        obs_buf[T] = stream.obs
        to = lambda x: torch.from_numpy(x).to(dev)  # noqa: E731
        self.segment = {
            "obs": to(obs_buf), "actions": to(actions), "rewards": to(rewards), "mu": to(mu),
            "terminated": to(term), "truncated": to(trunc),
            "final_idx": torch.tensor([[t, i] for t, i, _ in finals], dtype=torch.long, device=dev).reshape(-1, 2),
            "final_obs": to(np.stack([o for _, _, o in finals]) if finals
                            else np.zeros((0, *obs_buf.shape[2:]), obs_buf.dtype))}
        self.replay.add(self.segment)
        return T * N, returns

    def batches(self, env_steps: int) -> Iterator[Batch]:
        assert self.segment is not None
        yield self.segment
        # (a resume without its saved replay refills replay_start transitions first)
        if len(self.replay) >= self.replay_start and self.replay_ratio > 0:
            n = int(self.np_rng.poisson(self.replay_ratio)) if self.replay_poisson else int(self.replay_ratio)
            for _ in range(n):
                yield self.sample()

    def sample(self) -> Batch:
        return self.replay.sample(self.generator)

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return storage_state(self.generator, self.replay, self.save_replay)

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        load_storage_state(self.generator, self.replay, tensors, meta)
