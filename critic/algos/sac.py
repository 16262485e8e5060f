"""Soft Actor-Critic (Haarnoja et al. 2018, arXiv:1801.01290; automatic entropy tuning from
arXiv:1812.05905), continuous actions.

Critic targets (twin critics, clipped double-Q, per-sample discount from replay):
    y = r + discount * (min_e Q'_e(s', a') - alpha * log pi(a'|s')),   a' ~ pi(.|s')
    L_Q = 1/2 sum_e E[(Q_e(s, a) - y)^2]
Actor (one reparameterised sample, reused for the temperature):
    L_pi = E[alpha * log pi(a|s) - min_e Q_e(s, a)],   a = tanh(mu + sigma * eps)
Temperature (target entropy -|A|):
    L_alpha = -E[log_alpha * (log pi(a|s) + target_entropy)]
Targets follow the critics by Polyak averaging with rate ``tau``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import Tensor, nn

from critic.agent import Agent
from critic.config import OffPolicyConfig, check
from critic.distributions import TanhGaussian
from critic.modules.critics import QEnsemble
from critic.modules.target import freeze, polyak_update
from critic.nn import flat_dim, mlp
from critic.optim import backward_step, flatten_

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


@dataclass(kw_only=True)
class SACConfig(OffPolicyConfig):
    learning_rate: float = 3e-4
    """Optimizer learning rate (actor, critics and entropy coefficient)."""
    ent_coef: float | None = None
    """Fixed entropy coefficient alpha; none tunes it automatically towards target_entropy."""
    ent_coef_init: float = 1.0
    """Initial alpha when it is tuned automatically."""
    target_entropy: float | None = None
    """Entropy target of the automatic tuning; none means -|A| (the number of action dimensions)."""
    n_critics: int = 2
    """Critics in the ensemble (the target takes their minimum)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.ent_coef is None or self.ent_coef >= 0, "ent_coef", self.ent_coef, "a number >= 0 or none")
        check(self.ent_coef_init > 0, "ent_coef_init", self.ent_coef_init, "a number > 0")
        check(self.n_critics >= 1, "n_critics", self.n_critics, "an integer >= 1")


class SACNets(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig):
        super().__init__()
        self.actor_body = mlp(obs_dim, cfg.hidden_sizes, None, cfg.activation, ortho_init=False)
        self.actor_head = nn.Linear(cfg.hidden_sizes[-1], 2 * act_dim)  # mean and log-std
        self.critic = QEnsemble(obs_dim, act_dim, cfg.hidden_sizes, cfg.n_critics, cfg.activation)
        self.critic_target = freeze(copy.deepcopy(self.critic))
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.ent_coef_init)))

    def dist(self, obs: Tensor) -> TanhGaussian:
        mean, log_std = self.actor_head(self.actor_body(obs.reshape(obs.shape[0], -1))).chunk(2, -1)
        return TanhGaussian(mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX))


def update(nets: SACNets, opts: dict[str, torch.optim.Optimizer], batch: dict[str, Tensor], cfg: SACConfig,
           target_entropy: float) -> dict[str, Tensor]:
    obs, act, rew, next_obs, disc = (batch[k] for k in ("obs", "actions", "rewards", "next_obs", "discount"))
    alpha = nets.log_alpha.exp().detach() if cfg.ent_coef is None else torch.tensor(cfg.ent_coef)
    with torch.no_grad():
        a2, logp2 = nets.dist(next_obs).rsample_with_log_prob()
        q_next = nets.critic_target(next_obs, a2).min(0).values - alpha * logp2
        y = rew + disc * q_next
    q = nets.critic(obs, act)
    critic_loss = 0.5 * (q - y).square().mean(1).sum()
    backward_step(opts["critic"], critic_loss, None)

    # Actor step: the critic's weights get no gradient (they are not needed and cost a pass).
    nets.critic.requires_grad_(False)
    a_pi, logp = nets.dist(obs).rsample_with_log_prob()
    actor_loss = (alpha * logp - nets.critic(obs, a_pi).min(0).values).mean()
    backward_step(opts["actor"], actor_loss, None)
    nets.critic.requires_grad_(True)

    metrics = {"loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach(), "train/alpha": alpha}
    if cfg.ent_coef is None:
        alpha_loss = -(nets.log_alpha * (logp.detach() + target_entropy)).mean()
        backward_step(opts["alpha"], alpha_loss, None)
        metrics["loss/alpha"] = alpha_loss.detach()
    polyak_update(nets.critic, nets.critic_target, cfg.tau)
    return metrics


class SAC(Agent):
    """``critic.SAC(env, **hparams)``: Soft Actor-Critic for Box action spaces."""

    algo = "sac"
    config_cls = SACConfig
    storage = "replay"
    allowed_actions = (gym.spaces.Box,)

    def _build(self) -> None:
        cfg = self.cfg
        obs_dim, act_dim = flat_dim(self.obs_space), flat_dim(self.act_space)
        self.target_entropy = float(cfg.target_entropy if cfg.target_entropy is not None else -act_dim)
        self.nets = SACNets(obs_dim, act_dim, cfg).to(self.device)
        lr = cfg.learning_rate
        self.optims = {
            "actor": torch.optim.Adam([flatten_([*self.nets.actor_body.parameters(),
                                                 *self.nets.actor_head.parameters()])], lr=lr, fused=True),
            "critic": torch.optim.Adam([flatten_(self.nets.critic.parameters())], lr=lr, fused=True),
            "alpha": torch.optim.Adam([self.nets.log_alpha], lr=lr),
        }

    def _update(self) -> dict[str, Tensor]:
        return update(self.nets, self.optims, self._sample(), self.cfg, self.target_entropy)

    def _explore(self, obs: Tensor) -> Tensor:
        return self.nets.dist(obs).sample()

    def _policy(self, obs: Tensor, deterministic: bool) -> Tensor:
        d = self.nets.dist(obs)
        return d.mode() if deterministic else d.sample()
