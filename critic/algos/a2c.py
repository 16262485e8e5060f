"""Advantage actor-critic, synchronous (Mnih et al. 2016, arXiv:1602.01783, A2C form).

One code path, three flavours (the Keras actor-critic CartPole example and its per-step variant):
  * n-step A2C: N envs, rollouts of ``n_steps``; advantages by GAE (lambda=1 gives the
    n-step return R_t = sum_k gamma^k r_{t+k} + gamma^m V(s_{t+m}) minus V(s_t)).
  * per-step on-policy A2C: ``n_steps=1`` with one env: an update after every step,
    A_t = r_t + gamma (1 - term_t) V(s_{t+1}) - V(s_t). Its defaults differ (Adam 1e-3, no
    gradient clipping; ``A2CConfig.implied_defaults``).
  * episodic A2C (``episodic=True``): one update per finished episode with per-episode
    standardised Monte-Carlo returns G_t and a Huber critic loss, as in the Keras example.

Loss: L = -E[A log pi(a|s)] + vf_coef * value_loss(V, G) - ent_coef * H(pi).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from critic.agent import Agent
from critic.algos.batch import Batched
from critic.algos.common import (actor_critic_net, apply_lr_schedule, make_optimizer, on_policy_batch_policy,
                                 on_policy_collector)
from critic.config import ConfigError, OnPolicyConfig, check, check_sampling_workers
from critic.optim import backward_step
from critic.losses import entropy_loss, policy_loss, value_loss
from critic.modules.policies import ActorCriticNet, StackedActorCritic
from critic.returns import discounted_returns, gae, standardize


@dataclass(kw_only=True)
class ActorCriticConfig(OnPolicyConfig):
    """The settings of the A2C loss, shared by A2C and A3C (whose workers compute it)."""

    learning_rate: float = 7e-4
    """Optimizer learning rate."""
    optimizer: str = "rmsprop"
    """Optimizer: 'adam' or 'rmsprop'. Per-step A2C (n_steps=1, one env) defaults to adam with
    learning_rate 1e-3 and max_grad_norm none instead (for the fields not given)."""
    episodic: bool = False
    """Update once per finished episode with standardised Monte-Carlo returns (needs num_envs=1)."""
    value_loss: str = "mse"
    """Critic loss: 'mse' (mean squared error) or 'huber' (the episodic variant uses huber)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(not self.episodic or self.num_envs == 1, "num_envs", self.num_envs,
              "1 when episodic=True (one episode per update)")
        check(not self.episodic or self.backend == "local", "backend", self.backend,
              "'local' when episodic=True (episodes end at different times on different workers)")


@dataclass(kw_only=True)
class A2CConfig(ActorCriticConfig):
    @classmethod
    def implied_defaults(cls, given: dict) -> dict:
        """The per-step flavour (one env, ``n_steps=1``): Adam 1e-3 without gradient clipping
        for the fields left out. RL-Zoo's n-step values (RMSprop 7e-4, clipping at 0.5) starve
        single-sample updates: they reached at most 157 on CartPole-v1 in 100k steps, these 500
        within 10k (seeds 0-2)."""
        if cls is A2CConfig and given.get("n_steps") == 1 and given.get("num_envs", 1) == 1 \
                and not given.get("episodic", False):
            return {"optimizer": "adam", "learning_rate": 1e-3, "max_grad_norm": None}
        return {}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_sampling_workers(self)


def advantages(batch: dict[str, torch.Tensor], cfg: ActorCriticConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A rollout's ``[T, N]`` advantages and return targets, flattened to ``[T * N]``: GAE, or for
    the episodic flavour standardised Monte-Carlo returns (and ``G - V``)."""
    r, v, nv = batch["rewards"], batch["values"], batch["next_values"]
    term, trunc = batch["terminated"], batch["truncated"]
    if cfg.episodic:
        ret = discounted_returns(r, nv, term, trunc, cfg.gamma)
        ret = standardize(ret, unbiased=False)
        adv = ret - v
    else:
        adv, ret = gae(r, v, nv, term, trunc, cfg.gamma, cfg.gae_lambda)
    return adv.flatten(), ret.flatten()


def network_loss(nets: ActorCriticNet, obs: torch.Tensor, actions: torch.Tensor, adv: torch.Tensor,
                 ret: torch.Tensor, cfg: ActorCriticConfig, vf_coef: torch.Tensor | None = None,
                 ent_coef: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The actor-critic loss given the advantages (pure: one network's, or members stacked in
    front); ``vf_coef`` / ``ent_coef``: each member's own ``[M]`` (a sweep), default the config's."""
    if cfg.normalize_advantage and adv.shape[-1] > 1:  # [B], or [M, B] for stacked members
        adv = standardize(adv, dim=-1 if adv.dim() > 1 else None)
    params, values = nets(obs)
    dist = nets.dist(params)
    pi_loss, metrics = policy_loss("vanilla", dist, actions, adv)
    vf_loss, _ = value_loss(values, ret, "huber" if cfg.episodic else cfg.value_loss)
    total = pi_loss + (cfg.vf_coef if vf_coef is None else vf_coef) * vf_loss
    if ent_coef is not None or cfg.ent_coef > 0:
        ent_loss, m = entropy_loss(dist.entropy())
        total = total + (cfg.ent_coef if ent_coef is None else ent_coef) * ent_loss
        metrics.update(m)
    metrics.update({"loss/actor": pi_loss.detach(), "loss/critic": vf_loss.detach()})
    return total, metrics


def loss(nets: ActorCriticNet, batch: dict[str, torch.Tensor],
         cfg: ActorCriticConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The actor-critic loss of a whole rollout ``[T, N]`` (A2C's, and each A3C worker's)."""
    adv, ret = advantages(batch, cfg)
    return network_loss(nets, batch["obs"].flatten(0, 1), batch["actions"].flatten(0, 1), adv, ret, cfg)


def update(nets: ActorCriticNet, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
           cfg: ActorCriticConfig) -> dict[str, torch.Tensor]:
    """One gradient step on a whole rollout ``[T, N]``."""
    total, metrics = loss(nets, batch, cfg)
    backward_step(opt, total, cfg.max_grad_norm)
    return metrics


class A2C(Batched, Agent):
    """``critic.A2C(env, **hparams)``: n-step, per-step (``n_steps=1``) or episodic A2C;
    ``critic.A2C(env, seeds=[...])`` trains a batch of n-step or per-step ones."""

    algo = "a2c"
    config_cls = A2CConfig
    sweepable = ("learning_rate", "gamma", "gae_lambda", "vf_coef", "ent_coef", "max_grad_norm")

    @classmethod
    def check_batchable(cls, cfg: A2CConfig) -> None:
        if cfg.episodic:
            raise ConfigError("seeds=[...] batches n-step and per-step A2C; episodic A2C updates at each member's "
                              "episode end, and the members' episodes differ in length (episodic=False, or one "
                              "run per seed)")

    @classmethod
    def batch_policy(cls, batch):
        return on_policy_batch_policy(batch)

    @classmethod
    def batch_update(cls, batch, data: dict[str, torch.Tensor], active: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every member's A2C step on its rollout ``[M, T, N]``: its own advantages (discount,
        lambda), learning rate (schedule), gradient clipping and optimizer step."""
        agents, opt, M = batch.agents, batch.opts["main"], batch.M
        cfg = agents[0].cfg
        for k, a in enumerate(agents):
            apply_lr_schedule(a.optims["main"], a.cfg, a.env_steps, a._learn_span)
            opt.lr[k] = a.optims["main"].param_groups[0]["lr"]
        _, T, N = data["rewards"].shape
        keys = ("rewards", "values", "next_values", "terminated", "truncated")
        if "gamma" in batch.swept or "gae_lambda" in batch.swept:
            parts = [advantages({key: data[key][k] for key in keys}, a.cfg) for k, a in enumerate(agents)]
            adv, ret = (torch.stack([p[i] for p in parts]) for i in (0, 1))
        else:  # one GAE over the members' columns side by side
            adv, ret = advantages({key: data[key].transpose(0, 1).reshape(T, M * N) for key in keys}, cfg)
            adv, ret = (x.reshape(T, M, N).transpose(0, 1).reshape(M, T * N) for x in (adv, ret))
        members = batch.members()
        args = (data["obs"].flatten(1, 2), data["actions"].flatten(1, 2), adv, ret)
        coef = {k: batch.constant(f"a2c/{k}", lambda k=k: torch.tensor([getattr(a.cfg, k) for a in agents]))
                for k in ("vf_coef", "ent_coef") if k in batch.swept}
        if StackedActorCritic.stackable(members.base):  # one batched product per layer
            total, metrics = network_loss(StackedActorCritic(members.base, members.params), *args, cfg, **coef)
        else:  # image encoders: the same loss vmapped over the members
            total, metrics = members.vmap(lambda net, o, a, ad, r, c: network_loss(net, o, a, ad, r, cfg, **c))(
                *args, coef)
        opt.zero_grad()
        total.sum().backward()
        max_norm = cfg.max_grad_norm
        if "max_grad_norm" in batch.swept:  # none (no clipping) is infinity
            max_norm = batch.constant("a2c/max_grad_norm", lambda: torch.tensor(
                [math.inf if a.cfg.max_grad_norm is None else a.cfg.max_grad_norm for a in agents]))
        if max_norm is not None:
            opt.clip_(max_norm)
        opt.step(active)
        return {k: v.detach() for k, v in metrics.items()}

    def _build(self) -> None:
        cfg = self.cfg
        self.nets = actor_critic_net(self, cfg).to(self.device)
        self.optims = {"main": make_optimizer(self.nets, cfg)}
        # an episodic rollout runs to the episode's end (the storage doubles from 256 as needed)
        self.collector = on_policy_collector(self, 256 if cfg.episodic else cfg.n_steps, cfg.episodic)
        self.buffer = self.collector.buffer

    def _update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        opt = self.optims["main"]
        apply_lr_schedule(opt, self.cfg, self.env_steps, self._learn_span)
        return update(self.nets, opt, batch, self.cfg)
