"""Soft Actor-Critic (Haarnoja et al. 2018, arXiv:1801.01290; automatic entropy tuning from
arXiv:1812.05905) for continuous actions, and its discrete-action form (Christodoulou 2019,
arXiv:1910.07207) in the same class.

Critic targets (twin critics, clipped double-Q, per-sample discount from replay):
    y = r + discount * (min_e Q'_e(s', a') - alpha * log pi(a'|s')),   a' ~ pi(.|s')
    L_Q = 1/2 sum_e E[(Q_e(s, a) - y)^2]
Actor (one reparameterised sample, reused for the temperature):
    L_pi = E[alpha * log pi(a|s) - min_e Q_e(s, a)],   a = tanh(mu + sigma * eps)
Temperature (target entropy -|A|):
    L_alpha = -E[log_alpha * (log pi(a|s) + target_entropy)]
Targets follow the critics by Polyak averaging with rate ``tau``.

Discrete actions: the critics output one value per action (type II) and every expectation
over the policy is exact, a sum over actions weighted by pi(.|s):
    y    = r + discount * sum_a pi(a|s') (min_e Q'_e(s', a) - alpha * log pi(a|s'))
    L_pi = E_s sum_a pi(a|s) (alpha * log pi(a|s) - min_e Q_e(s, a))
    L_alpha = -E_s[log_alpha * (sum_a pi(a|s) log pi(a|s) + target_entropy)]
with target entropy ``target_entropy_ratio * log|A|`` (a fraction of the maximum entropy).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import Tensor, nn

from critic.agent import Agent
from critic.algos.common import adam
from critic.buffers.replay import ReplayBuffer
from critic.collect import ReplayCollector
from critic.config import ConfigError, OffPolicyConfig, check
from critic.distributions import LOG_STD_MAX, LOG_STD_MIN, Categorical, TanhGaussian
from critic.losses.actor import soft_actor_loss, soft_value, temperature_loss
from critic.losses.q import q_regression_loss, td_target
from critic.modules.critics import QEnsemble
from critic.modules.target import freeze, frozen, polyak_update
from critic.nn import encoder_for, flat_dim, is_image_space, mlp
from critic.optim import backward_step, flatten_, step_


@dataclass(kw_only=True)
class SACConfig(OffPolicyConfig):
    learning_rate: float = 3e-4
    """Optimizer learning rate (actor, critics and entropy coefficient)."""
    ent_coef: float | None = None
    """Fixed entropy coefficient alpha; none tunes it automatically towards target_entropy."""
    ent_coef_init: float = 1.0
    """Initial alpha when it is tuned automatically."""
    target_entropy: float | None = None
    """Entropy target of the automatic tuning; none means -dim(A) for Box actions and
    target_entropy_ratio * log(n) for n discrete actions."""
    target_entropy_ratio: float = 0.7
    """Discrete actions: default target entropy as a fraction of the maximum, log(n)."""
    n_critics: int = 2
    """Critics in the ensemble (the target takes their minimum)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.ent_coef is None or self.ent_coef >= 0, "ent_coef", self.ent_coef, "a number >= 0 or none")
        check(self.ent_coef_init > 0, "ent_coef_init", self.ent_coef_init, "a number > 0")
        check(0 < self.target_entropy_ratio < 1, "target_entropy_ratio", self.target_entropy_ratio,
              "a number in (0, 1)")
        check(self.n_critics >= 1, "n_critics", self.n_critics, "an integer >= 1")


class SACNets(nn.Module):
    """Actor, Q ensemble and its target, log alpha. ``n_actions`` > 0 selects the discrete form
    (softmax actor, critics with one output per action)."""

    def __init__(self, obs_space: gym.Space, act_dim: int, cfg: SACConfig, n_actions: int = 0):
        super().__init__()
        self.discrete = n_actions > 0
        # Images: a Nature-CNN for the actor and one shared by the critics (uint8 scaled inside).
        self.actor_encoder = encoder_for(obs_space) if is_image_space(obs_space) else None
        obs_dim = self.actor_encoder.out_dim if self.actor_encoder is not None else flat_dim(obs_space)
        self.actor_body = mlp(obs_dim, cfg.hidden_sizes, None, cfg.activation, ortho_init=False)
        # discrete: logits; continuous: mean and log-std
        self.actor_head = nn.Linear(cfg.hidden_sizes[-1], n_actions if self.discrete else 2 * act_dim)
        enc = encoder_for(obs_space) if self.actor_encoder is not None else None
        self.critic = QEnsemble(obs_dim, 0 if self.discrete else act_dim, cfg.hidden_sizes, cfg.n_critics,
                                cfg.activation, n_outputs=max(n_actions, 1), encoder=enc)
        self.critic_target = freeze(copy.deepcopy(self.critic))
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.ent_coef_init)))

    def actor_parameters(self) -> list[nn.Parameter]:
        enc = list(self.actor_encoder.parameters()) if self.actor_encoder is not None else []
        return [*enc, *self.actor_body.parameters(), *self.actor_head.parameters()]

    def dist(self, obs: Tensor) -> TanhGaussian | Categorical:
        x = self.actor_encoder(obs) if self.actor_encoder is not None else obs.reshape(obs.shape[0], -1)
        out = self.actor_head(self.actor_body(x)).float()  # float32 under autocast
        if self.discrete:
            return Categorical(out)
        mean, log_std = out.chunk(2, -1)
        return TanhGaussian(mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX))


def update(nets: SACNets, opts: dict[str, torch.optim.Optimizer], batch: dict[str, Tensor], cfg: SACConfig,
           target_entropy: float) -> dict[str, Tensor]:
    obs, act, rew, next_obs, disc = (batch[k] for k in ("obs", "actions", "rewards", "next_obs", "discount"))
    alpha = nets.log_alpha.exp().detach() if cfg.ent_coef is None else torch.tensor(cfg.ent_coef)
    if nets.discrete:
        return _update_discrete(nets, opts, obs, act, rew, next_obs, disc, alpha, cfg, target_entropy)
    with torch.no_grad():
        a2, logp2 = nets.dist(next_obs).rsample_with_log_prob()
        y = td_target(rew, disc, soft_value(alpha, logp2, nets.critic_target(next_obs, a2).min(0).values))
    critic_loss = q_regression_loss(nets.critic(obs, act), y)
    backward_step(opts["critic"], critic_loss, None)

    with frozen(nets.critic):  # the actor's gradient reaches the actions, not the critic's weights
        a_pi, logp = nets.dist(obs).rsample_with_log_prob()
        actor_loss = soft_actor_loss(alpha, logp, nets.critic(obs, a_pi).min(0).values)
        backward_step(opts["actor"], actor_loss, None)

    metrics = {"loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach(), "train/alpha": alpha}
    if cfg.ent_coef is None:
        metrics["loss/alpha"] = _alpha_step(nets, opts["alpha"], logp.detach().mean() + target_entropy)
    polyak_update(nets.critic, nets.critic_target, cfg.tau)
    return metrics


def _alpha_step(nets: SACNets, opt: torch.optim.Optimizer, gap: Tensor) -> Tensor:
    """One step on the temperature loss, its gradient set by hand (``losses.actor.temperature_loss``)."""
    loss, nets.log_alpha.grad = temperature_loss(nets.log_alpha, gap)
    step_(opt)
    return loss


def _update_discrete(nets: SACNets, opts: dict[str, torch.optim.Optimizer], obs: Tensor, act: Tensor, rew: Tensor,
                     next_obs: Tensor, disc: Tensor, alpha: Tensor, cfg: SACConfig,
                     target_entropy: float) -> dict[str, Tensor]:
    with torch.no_grad():
        d2 = nets.dist(next_obs)
        y = td_target(rew, disc, soft_value(alpha, d2.logits, nets.critic_target(next_obs).min(0).values, d2.probs))
    q_all = nets.critic(obs)  # [E, B, |A|]: one critic pass serves both losses
    q = q_all.gather(-1, act.long().view(1, -1, 1).expand(q_all.shape[0], -1, 1)).squeeze(-1)
    critic_loss = q_regression_loss(q, y)
    backward_step(opts["critic"], critic_loss, None)

    # The actor loss needs Q's values only (no gradient through Q): the values of the same
    # pass, before this step's critic update, as in the simultaneous updates of the original.
    q_pi = q_all.detach().min(0).values
    d = nets.dist(obs)
    probs, logp = d.probs, d.logits
    actor_loss = soft_actor_loss(alpha, logp, q_pi, probs)
    backward_step(opts["actor"], actor_loss, None)

    metrics = {"loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach(), "train/alpha": alpha}
    neg_entropy = (probs * logp).sum(-1).detach()
    metrics["train/entropy"] = -neg_entropy.mean()
    if cfg.ent_coef is None:
        metrics["loss/alpha"] = _alpha_step(nets, opts["alpha"], neg_entropy.mean() + target_entropy)
    polyak_update(nets.critic, nets.critic_target, cfg.tau)
    return metrics


class SAC(Agent):
    """``critic.SAC(env, **hparams)``: Soft Actor-Critic for Box and Discrete action spaces."""

    algo = "sac"
    config_cls = SACConfig
    allowed_actions = (gym.spaces.Box, gym.spaces.Discrete)

    def _build(self) -> None:
        cfg = self.cfg
        if isinstance(self.act_space, gym.spaces.Discrete):
            n = int(self.act_space.n)
            if n < 2:
                raise ConfigError(f"SAC needs at least 2 discrete actions, the action space has {n}")
            act_dim, default_target = 0, cfg.target_entropy_ratio * math.log(n)
        else:
            n, act_dim = 0, flat_dim(self.act_space)
            default_target = -act_dim
        self.target_entropy = float(cfg.target_entropy if cfg.target_entropy is not None else default_target)
        self.nets = SACNets(self.obs_space, act_dim, cfg, n_actions=n).to(self.device)
        self.optims = {
            "actor": adam([flatten_(self.nets.actor_parameters())], cfg.lr_of("actor"), cfg, cfg.optim_eps),
            "critic": adam([flatten_(self.nets.critic.parameters())], cfg.lr_of("critic"), cfg, cfg.optim_eps),
            "alpha": adam([self.nets.log_alpha], cfg.learning_rate, cfg, cfg.optim_eps),
        }
        flatten_(self.nets.critic_target.parameters(), grads=False)  # Polyak in one operation
        replay = ReplayBuffer(cfg.buffer_size, cfg.num_envs, self.obs_space, self.act_space, cfg.gamma,
                              cfg.bootstrap_n, self.device, optimize_memory=cfg.optimize_memory)
        self.collector = ReplayCollector(replay, cfg, self.act_space, self.device, self._explore)
        self.replay, self.scaler, self.env_action = replay, self.collector.scaler, self.collector.to_env

    def _update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return update(self.nets, self.optims, batch, self.cfg, self.target_entropy)

    def _explore(self, obs: Tensor) -> Tensor:
        return self.nets.dist(obs).sample()

    def _policy(self, obs: Tensor, deterministic: bool) -> Tensor:
        d = self.nets.dist(obs)
        return d.mode() if deterministic else d.sample()
