"""Twin Delayed DDPG (Fujimoto et al. 2018, arXiv:1802.09477), continuous actions.

Critic target with target policy smoothing and clipped double-Q:
    a' = clip(mu'(s') + clip(N(0, target_noise), -c, c), -1, 1)
    y  = r + discount * min_e Q'_e(s', a')
    L_Q = 1/2 sum_e E[(Q_e(s, a) - y)^2]
Every ``policy_delay`` critic steps: the actor maximises Q_1(s, mu(s)) and both targets
(actor and critics) move by Polyak averaging with rate ``tau``.
The actor is a tanh MLP in [-1, 1] (rescaled to the Box), last layer initialised in +-3e-3.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from critic.agent import Agent
from critic.algos.common import adam
from critic.config import OffPolicyConfig, check, check_choice
from critic.modules.actions import GaussianNoise, OUNoise
from critic.modules.critics import QEnsemble
from critic.modules.target import freeze, polyak_update
from critic.nn import encoder_for, flat_dim, init_uniform, is_image_space, mlp
from critic.optim import backward_step, flatten_


@dataclass(kw_only=True)
class DeterministicConfig(OffPolicyConfig):
    """Shared by the deterministic-actor algorithms (DDPG, TD3)."""

    learning_rate: float = 1e-3
    """Optimizer learning rate (actor and critics)."""
    action_noise: float = 0.1
    """Std of the exploration noise (in the policy's [-1, 1] range)."""
    noise_type: str = "gaussian"
    """Exploration noise: 'gaussian' or 'ou' (Ornstein-Uhlenbeck, reset per episode)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.action_noise >= 0, "action_noise", self.action_noise, "a number >= 0")
        check_choice("noise_type", self.noise_type, ("gaussian", "ou"))


@dataclass(kw_only=True)
class TD3Config(DeterministicConfig):
    policy_delay: int = 2
    """Critic steps per actor (and target) update."""
    target_noise: float = 0.2
    """Std of the target policy smoothing noise (in the policy's [-1, 1] range)."""
    target_noise_clip: float = 0.5
    """Clip of the target policy smoothing noise."""
    n_critics: int = 2
    """Critics in the ensemble (the target takes their minimum)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.policy_delay >= 1, "policy_delay", self.policy_delay, "an integer >= 1")
        check(self.target_noise >= 0, "target_noise", self.target_noise, "a number >= 0")
        check(self.target_noise_clip >= 0, "target_noise_clip", self.target_noise_clip, "a number >= 0")
        check(self.n_critics >= 1, "n_critics", self.n_critics, "an integer >= 1")


class TD3Nets(nn.Module):
    """Deterministic tanh actor and a Q ensemble, each with its target copy (TD3 and DDPG)."""

    def __init__(self, obs_space: gym.Space, act_dim: int, cfg: DeterministicConfig, n_critics: int):
        super().__init__()
        self._image = is_image_space(obs_space)
        enc = encoder_for(obs_space) if self._image else None  # images: a Nature-CNN in front of the MLP
        obs_dim = enc.out_dim if enc is not None else flat_dim(obs_space)
        self.actor = mlp(obs_dim, cfg.hidden_sizes, act_dim, cfg.activation, ortho_init=False)
        init_uniform(self.actor[-1], 3e-3)  # tanh starts unsaturated (the DDPG paper, Lillicrap et al. 2015)
        if enc is not None:
            self.actor = nn.Sequential(enc, self.actor)
        self.actor_target = freeze(copy.deepcopy(self.actor))
        self.critic = QEnsemble(obs_dim, act_dim, cfg.hidden_sizes, n_critics, cfg.activation,
                                encoder=encoder_for(obs_space) if self._image else None)
        self.critic_target = freeze(copy.deepcopy(self.critic))

    def mu(self, obs: Tensor, target: bool = False) -> Tensor:
        net = self.actor_target if target else self.actor
        x = obs if self._image else obs.reshape(obs.shape[0], -1)
        return torch.tanh(net(x).float())  # float32 under autocast


def update(nets: TD3Nets, opts: dict[str, torch.optim.Optimizer], batch: dict[str, Tensor], cfg: TD3Config,
           step: int) -> dict[str, Tensor]:
    """One critic step; the actor and targets every ``policy_delay`` steps (``step`` counts updates)."""
    obs, act, rew, next_obs, disc = (batch[k] for k in ("obs", "actions", "rewards", "next_obs", "discount"))
    with torch.no_grad():
        a2 = nets.mu(next_obs, target=True)
        if cfg.target_noise > 0:
            noise = (torch.randn_like(a2) * cfg.target_noise).clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
            a2 = (a2 + noise).clamp(-1.0, 1.0)
        y = rew + disc * nets.critic_target(next_obs, a2).min(0).values
    critic_loss = 0.5 * (nets.critic(obs, act) - y).square().mean(1).sum()
    backward_step(opts["critic"], critic_loss, None)
    metrics = {"loss/critic": critic_loss.detach()}
    if step % cfg.policy_delay == 0:
        nets.critic.requires_grad_(False)  # no critic weight gradients in the actor step
        actor_loss = -nets.critic.member(0, obs, nets.mu(obs)).mean()
        backward_step(opts["actor"], actor_loss, None)
        nets.critic.requires_grad_(True)
        polyak_update(nets.critic, nets.critic_target, cfg.tau)
        polyak_update(nets.actor, nets.actor_target, cfg.tau)
        metrics["loss/actor"] = actor_loss.detach()
    return metrics


class TD3(Agent):
    """``critic.TD3(env, **hparams)``: TD3 for Box action spaces."""

    algo = "td3"
    config_cls = TD3Config
    storage = "replay"
    allowed_actions = (gym.spaces.Box,)

    def _build(self) -> None:
        cfg = self.cfg
        act_dim = flat_dim(self.act_space)
        self.nets = TD3Nets(self.obs_space, act_dim, cfg, self._n_critics()).to(self.device)
        self.optims = {
            "actor": adam([flatten_(self.nets.actor.parameters())], cfg.lr_of("actor"), cfg, cfg.optim_eps),
            "critic": adam([flatten_(self.nets.critic.parameters())], cfg.lr_of("critic"), cfg, cfg.optim_eps),
        }
        for target in (self.nets.actor_target, self.nets.critic_target):  # Polyak in one operation each
            flatten_(target.parameters(), grads=False)
        shape = (cfg.num_envs, act_dim)
        self.noise = (OUNoise(shape, cfg.action_noise, self.np_rng) if cfg.noise_type == "ou"
                      else GaussianNoise(shape, cfg.action_noise, self.np_rng))

    def _n_critics(self) -> int:
        return self.cfg.n_critics

    def _update(self) -> dict[str, Tensor]:
        return update(self.nets, self.optims, self._sample(), self.cfg, self.updates + 1)

    def _explore(self, obs: Tensor) -> Tensor:
        a = self.nets.mu(obs)
        return (a + torch.from_numpy(self.noise()).to(a.device)).clamp(-1.0, 1.0)

    def _policy(self, obs: Tensor, deterministic: bool) -> Tensor:
        a = self.nets.mu(obs)
        if deterministic:
            return a
        noise = torch.from_numpy(GaussianNoise(tuple(a.shape), self.cfg.action_noise, self.np_rng)())
        return (a + noise.to(a.device)).clamp(-1.0, 1.0)

    def _on_episode_end(self, done: np.ndarray) -> None:
        if done.any():
            self.noise.reset(done)

    def _extra_state(self):
        if isinstance(self.noise, OUNoise):
            return {"ou_state": torch.from_numpy(self.noise.x.copy())}, {}
        return {}, {}

    def _load_extra_state(self, tensors, meta) -> None:
        if "ou_state" in tensors and isinstance(self.noise, OUNoise):
            self.noise.x = tensors["ou_state"].numpy().copy()
