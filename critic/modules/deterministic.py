"""The networks and exploration of the deterministic-actor algorithms (DDPG, TD3).

The actor is a tanh MLP acting in [-1, 1] (the collector rescales to the env's Box), its last
layer initialised in +-3e-3 so tanh starts unsaturated (the DDPG paper, Lillicrap et al. 2015);
the critics are one stacked Q ensemble (DDPG: E = 1, TD3: E = 2). Each has a frozen target copy.
Exploration adds Gaussian or Ornstein-Uhlenbeck noise to mu(s).
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from critic.modules.actions import GaussianNoise, OUNoise
from critic.modules.critics import QEnsemble
from critic.modules.members import stackable, stacked_sequential
from critic.modules.target import freeze
from critic.nn import encoder_for, flat_dim, init_uniform, mlp, needs_encoder


class DeterministicNets(nn.Module):
    """Deterministic tanh actor and a Q ensemble of ``n_critics``, each with its target copy."""

    def __init__(self, obs_space: gym.Space, act_dim: int, hidden_sizes: tuple[int, ...], activation: str,
                 n_critics: int, critic_sizes: tuple[int, ...] | None = None, layer_norm: bool = False,
                 make_encoder=None):
        super().__init__()
        # images: a Nature-CNN in front of each MLP; a user encoder (``make_encoder()``, a fresh
        # one per call) takes the same places
        if make_encoder is None and needs_encoder(obs_space):
            make_encoder = lambda: encoder_for(obs_space)  # noqa: E731
        self._image = make_encoder is not None  # (an encoder in front: the actor is nn.Sequential(enc, mlp))
        enc = make_encoder() if make_encoder is not None else None
        obs_dim = enc.out_dim if enc is not None else flat_dim(obs_space)
        self.actor = mlp(obs_dim, hidden_sizes, act_dim, activation, ortho_init=False, layer_norm=layer_norm)
        init_uniform(self.actor[-1], 3e-3)
        if enc is not None:
            self.actor = nn.Sequential(enc, self.actor)
        self.actor_target = freeze(copy.deepcopy(self.actor))
        self.critic = QEnsemble(obs_dim, act_dim, critic_sizes or hidden_sizes, n_critics, activation,
                                encoder=make_encoder() if make_encoder is not None else None, layer_norm=layer_norm)
        self.critic_target = freeze(copy.deepcopy(self.critic))

    def mu(self, obs: Tensor, target: bool = False) -> Tensor:
        net = self.actor_target if target else self.actor
        x = obs if self._image else obs.reshape(obs.shape[0], -1)
        return torch.tanh(net(x).float())  # float32 under autocast


class StackedDeterministic:
    """M members' :class:`DeterministicNets` at once, from their weights stacked ``[M, ...]``
    (``SeedBatch.members().params``), with the interface TD3's and DDPG's losses call
    (``mu``, ``critic``, ``critic_target``, each critic's ``member``) on inputs ``[M, B, ...]``."""

    def __init__(self, nets: DeterministicNets, params: dict[str, Tensor]):
        self.nets, self.params = nets, params
        self.critic = _StackedQ(nets.critic, params, "critic")
        self.critic_target = _StackedQ(nets.critic_target, params, "critic_target")

    def mu(self, obs: Tensor, target: bool = False) -> Tensor:
        name = "actor_target" if target else "actor"
        x = obs.reshape(*obs.shape[:2], -1)
        return torch.tanh(stacked_sequential(getattr(self.nets, name), self.params, name, x).float())


class _StackedQ:
    def __init__(self, q: nn.Module, params: dict[str, Tensor], prefix: str):
        self.q, self.params, self.prefix = q, params, prefix

    def __call__(self, obs: Tensor, act: Tensor | None = None) -> Tensor:
        return self.q.stacked(self.params, self.prefix, obs, act)

    def member(self, e: int, obs: Tensor, act: Tensor | None = None) -> Tensor:
        return self.q.stacked(self.params, self.prefix, obs, act, e=e)


def stackable_deterministic(nets: DeterministicNets) -> bool:
    """Whether :class:`StackedDeterministic` runs these networks (vector observations)."""
    return not nets._image and stackable(nets.actor)


class DeterministicExploration:
    """Acting with mu(s): exploration adds the configured noise (Gaussian, or Ornstein-Uhlenbeck
    reset per episode) and clips to [-1, 1]; a stochastic ``predict`` adds fresh Gaussian noise.
    Its checkpoint part is the OU state (Gaussian noise has none beyond the NumPy generator)."""

    def __init__(self, nets: DeterministicNets, noise_type: str, action_noise: float, num_envs: int, act_dim: int,
                 np_rng: np.random.Generator):
        self.nets, self.action_noise, self.np_rng = nets, action_noise, np_rng
        shape = (num_envs, act_dim)
        self.noise = (OUNoise(shape, action_noise, np_rng) if noise_type == "ou"
                      else GaussianNoise(shape, action_noise, np_rng))

    def explore(self, obs: Tensor) -> Tensor:
        return self.perturb(self.nets.mu(obs))

    def perturb(self, a: Tensor) -> Tensor:
        """mu(s) plus this step's exploration noise, clipped to [-1, 1]."""
        return (a + torch.from_numpy(self.noise()).to(a.device)).clamp(-1.0, 1.0)

    def act(self, obs: Tensor, deterministic: bool) -> Tensor:
        a = self.nets.mu(obs)
        if deterministic:
            return a
        noise = torch.from_numpy(GaussianNoise(tuple(a.shape), self.action_noise, self.np_rng)())
        return (a + noise.to(a.device)).clamp(-1.0, 1.0)

    def episode_end(self, done: np.ndarray) -> None:
        if done.any():
            self.noise.reset(done)

    def state(self) -> tuple[dict[str, Tensor], dict]:
        if isinstance(self.noise, OUNoise):
            return {"ou_state": torch.from_numpy(self.noise.x.copy())}, {}
        return {}, {}

    def load_state(self, tensors: dict[str, Tensor], meta: dict) -> None:
        if "ou_state" in tensors and isinstance(self.noise, OUNoise):
            self.noise.x = tensors["ou_state"].numpy().copy()
