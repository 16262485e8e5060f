"""Replay stepping for the off-policy actor-critics (DDPG, TD3, SAC).

Per vector step: uniform random env actions for the first ``learning_starts`` steps (stored in
the policy's own [-1, 1] range, so replay holds one range), then ``explore(obs)``, rescaled to
the env's Box; the transition goes to replay with its true next observation. Every
``train_freq`` vector steps past the warm-up, ``gradient_steps`` batches are drawn from replay
with this collector's own (checkpointed) generator; with ``precision='bf16'`` the updates run
under a bfloat16 autocast context.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, ContextManager, Iterator

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from critic.buffers.replay import ReplayBuffer
from critic.collect.base import Batch, Collector, load_storage_state, storage_state
from critic.collect.stream import EnvStream
from critic.config import OffPolicyConfig
from critic.modules.actions import BoxScaler
from critic.nn import cpu_has_native_bf16


class ReplayCollector(Collector):
    def __init__(self, replay: ReplayBuffer, cfg: OffPolicyConfig, act_space: gym.Space, device: torch.device,
                 explore: Callable[[Tensor], Tensor],
                 on_episode_end: Callable[[np.ndarray], None] | None = None):
        self.replay, self.device, self.explore, self.on_episode_end = replay, device, explore, on_episode_end
        self.learning_starts, self.train_freq = cfg.learning_starts, cfg.train_freq
        self.gradient_steps, self.batch_size, self.save_replay = cfg.gradient_steps, cfg.batch_size, cfg.save_replay
        self.generator = torch.Generator(device=device).manual_seed(cfg.seed)
        self.scaler = BoxScaler(act_space) if isinstance(act_space, gym.spaces.Box) else None
        self.first_update_after = 0  # env steps; a resume without its replay refills before updating
        self._refill = False
        self.bf16 = cfg.precision == "bf16"
        if self.bf16 and device.type == "cpu" and cpu_has_native_bf16() is False:
            warnings.warn("precision='bf16' on a CPU without AVX-512 BF16 or AMX: bfloat16 products are "
                          "emulated there and usually slower than float32", RuntimeWarning, stacklevel=5)

    def to_env(self, a: np.ndarray) -> np.ndarray:
        """Policy action ([-1, 1] on Box spaces) -> the env's action."""
        return self.scaler.scale(a) if self.scaler is not None else a

    def from_env(self, a_env: np.ndarray) -> np.ndarray:
        """An env action in the policy's own space (warm-up actions go to replay so)."""
        return self.scaler.unscale(a_env) if self.scaler is not None else a_env

    def collect(self, stream: EnvStream | None, env_steps: int, actions: np.ndarray | None = None
                ) -> tuple[int, list[float]]:
        """One vector env step into replay (``env_steps``: the agent's count before it).
        ``actions``: the exploring policy's actions for this step, computed elsewhere (a batch
        acting for all its members at once); used past the warm-up only."""
        assert stream is not None and stream.obs is not None
        if self._refill:
            self.first_update_after, self._refill = env_steps + self.learning_starts, False
        obs = stream.obs
        if env_steps < self.learning_starts:
            a_env = stream.sample_actions()
            a_pol = self.from_env(a_env)
        else:
            if actions is None:
                with torch.inference_mode():
                    actions = self.explore(torch.as_tensor(obs, device=self.device)).cpu().numpy()
            a_pol = actions
            a_env = self.to_env(a_pol)
        step, reward = stream.step(a_env)
        self.replay.add(obs, a_pol, reward, stream.normalize(step.next_obs), step.terminated, step.truncated)
        if self.on_episode_end is not None:
            self.on_episode_end(step.done)
        stream.advance(step)
        return stream.num_envs, step.episode_returns

    def updates_due(self, env_steps: int, num_envs: int) -> int:
        if (env_steps > max(self.learning_starts, self.first_update_after)
                and (env_steps // num_envs) % self.train_freq == 0):
            return self.gradient_steps
        return 0

    def batches(self, env_steps: int) -> Iterator[Batch]:
        for _ in range(self.updates_due(env_steps, self.replay.N)):
            yield self.sample()

    def sample(self) -> Batch:
        return self.replay.sample(self.batch_size, self.generator)

    def precision(self) -> ContextManager[Any]:
        """bfloat16 matrix products with ``precision='bf16'`` (weights, optimizer states and
        network outputs stay float32)."""
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, meta = storage_state(self.generator, self.replay, self.save_replay)
        meta["first_update_after"] = None if self._refill else self.first_update_after
        return tensors, meta

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        if load_storage_state(self.generator, self.replay, tensors, meta) and \
                meta.get("first_update_after", 0) is not None:
            self.first_update_after = int(meta.get("first_update_after", 0))
        else:  # saved without its replay: collect learning_starts steps before updating
            self._refill = True
