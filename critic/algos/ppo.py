"""Proximal policy optimisation with the clipped surrogate (Schulman et al. 2017, arXiv:1707.06347).

Per rollout: GAE advantages (arXiv:1506.02438), then ``n_epochs`` passes of shuffled
minibatches minimising
  L = -E[min(r A, clip(r, 1-eps, 1+eps) A)] + vf_coef * L_V - ent_coef * H(pi),
r = pi(a|s) / pi_old(a|s), with optional value clipping (L_V = max of clipped and unclipped
errors), advantage standardisation per minibatch, gradient-norm clipping, linear learning-rate
annealing and an early stop of the epochs when the approximate KL passes ``target_kl``.

Variants: a clipping range that shrinks linearly to 0 (``clip_schedule``, as Coach's clipped
PPO and the RL Zoo's ``lin_`` schedules); and the KL-penalised surrogate of the same paper
(section 4), ``clip_eps=None`` with ``kl_penalty``:
  L_pi = -E[r A] + beta KL + kl_cutoff_coef * max(0, KL - 2 kl_target)^2,
KL = E_minibatch[KL(pi_old || pi)] in closed form; with ``kl_penalty='adaptive'`` beta is
multiplied by 1.5 after an update whose last epoch's mean KL exceeded 1.3 kl_target and
divided by 1.5 below 0.7 kl_target (the constants of John Schulman's modular_rl, which Coach's
PPO uses; the paper's are 1.5 and 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from critic.agent import Agent
from critic.algos.batch import Batched
from critic.algos.common import (actor_critic_net, apply_lr_schedule, make_optimizer, on_policy_batch_policy,
                                 on_policy_collector)
from critic.config import ConfigError, OnPolicyConfig, check, check_choice, check_sampling_workers
from critic.distributions import kl_divergence, make_dist
from critic.optim import MemberAdam, backward_step
from critic.losses import entropy_loss, ppo_clip_loss, value_loss
from critic.modules.members import Members
from critic.modules.policies import ActorCriticNet, StackedActorCritic
from critic.returns import gae, standardize


@dataclass(kw_only=True)
class PPOConfig(OnPolicyConfig):
    n_steps: int = 2048
    """Rollout length per env between updates."""
    gae_lambda: float = 0.95
    """GAE lambda: 1 gives n-step (Monte-Carlo within the rollout) returns, 0 gives TD(0)."""
    batch_size: int = 64
    """Minibatch size (at most n_steps * num_envs, times workers with Ray sampling)."""
    n_epochs: int = 10
    """Passes over each rollout."""
    clip_eps: float | None = 0.2
    """Clipping range of the probability ratio (none: the unclipped surrogate, for kl_penalty)."""
    clip_schedule: str = "constant"
    """'constant', or 'linear': the clipping range shrinks linearly to 0 over clip_schedule_steps."""
    clip_schedule_steps: int = 0
    """Env steps over which a linear clip_schedule reaches 0, counted from the agent's first
    step (0: over each learn() call, as lr_schedule)."""
    kl_penalty: str = "none"
    """'none', 'fixed' (a penalty kl_coef * KL(pi_old || pi)) or 'adaptive' (kl_coef adapted
    towards kl_target after every update)."""
    kl_coef: float = 1.0
    """Initial weight beta of the KL penalty."""
    kl_target: float = 0.01
    """The KL per update that the adaptive penalty aims at."""
    kl_cutoff_coef: float = 1000.0
    """Weight of the extra penalty max(0, KL - 2 kl_target)^2 when kl_penalty is on (0: none)."""
    clip_vf: float | None = None
    """Clip value updates to this distance from the old values (none = no value clipping)."""
    target_kl: float | None = None
    """Stop the epochs of an update once the approximate KL exceeds this (none = never)."""
    normalize_advantage: bool = True
    """Standardise advantages per (mini)batch."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        parts = self.workers if self.backend == "ray" else 1  # Ray samplers' rollouts side by side
        rollout = self.n_steps * self.num_envs * parts
        check(self.batch_size <= rollout, "batch_size", self.batch_size,
              f"at most n_steps * num_envs{' * workers' if parts > 1 else ''} = {rollout}, the rollout size")
        check(self.n_epochs >= 1, "n_epochs", self.n_epochs, "an integer >= 1")
        check(self.clip_eps is None or 0 < self.clip_eps < 1, "clip_eps", self.clip_eps,
              "a number in (0, 1), or none for the unclipped surrogate")
        check_choice("clip_schedule", self.clip_schedule, ("constant", "linear"))
        check(self.clip_schedule == "constant" or self.clip_eps is not None, "clip_schedule", self.clip_schedule,
              "'constant' when clip_eps is none")
        check(self.clip_schedule_steps >= 0, "clip_schedule_steps", self.clip_schedule_steps, "an integer >= 0")
        check_choice("kl_penalty", self.kl_penalty, ("none", "fixed", "adaptive"))
        check(self.kl_coef >= 0, "kl_coef", self.kl_coef, "a number >= 0")
        check(self.kl_target > 0, "kl_target", self.kl_target, "a number > 0")
        check(self.kl_cutoff_coef >= 0, "kl_cutoff_coef", self.kl_cutoff_coef, "a number >= 0")
        check(self.clip_vf is None or self.clip_vf > 0, "clip_vf", self.clip_vf, "a number > 0 or none")
        check(self.target_kl is None or self.target_kl > 0, "target_kl", self.target_kl, "a number > 0 or none")
        check_sampling_workers(self)


def minibatch_loss(nets: ActorCriticNet, mb: dict[str, torch.Tensor], cfg: PPOConfig, normalize: bool,
                   with_metrics: bool, clip_eps: float | torch.Tensor | None = None,
                   kl_coef: torch.Tensor | None = None, old_log_std: torch.Tensor | None = None,
                   vf_coef: torch.Tensor | None = None, ent_coef: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's loss on one minibatch (pure: no optimizer step), and its metrics. ``vf_coef`` /
    ``ent_coef``: this network's own coefficients (a member of a sweep), default the config's."""
    adv = mb["adv"]
    if normalize and adv.shape[-1] > 1:  # [B], or [M, B] for stacked members: each row its own
        adv = standardize(adv, dim=-1 if adv.dim() > 1 else None)
    params, values = nets(mb["obs"])
    dist = nets.dist(params)
    logp = dist.log_prob(mb["actions"])
    if clip_eps is None:  # the KL-penalised variant: the plain surrogate -E[r A]
        ratio = (logp - mb["logp"]).exp()
        pi_loss, metrics = -(ratio * adv.detach()).mean(), {}
    else:
        pi_loss, metrics = ppo_clip_loss(logp, mb["logp"], adv, clip_eps, with_metrics)
    if kl_coef is not None:
        kl = kl_divergence(make_dist(nets.act_space, mb["old_params"], old_log_std), dist).mean()
        pi_loss = pi_loss + kl_coef * kl + cfg.kl_cutoff_coef * (kl - 2.0 * cfg.kl_target).clamp(min=0.0).square()
        metrics["train/kl"] = kl.detach()
    vf_loss, _ = value_loss(values, mb["ret"], cfg.value_loss, mb["values"], cfg.clip_vf)
    loss = pi_loss + (cfg.vf_coef if vf_coef is None else vf_coef) * vf_loss
    if ent_coef is not None or cfg.ent_coef > 0:
        ent_loss, m = entropy_loss(dist.entropy())
        loss = loss + (cfg.ent_coef if ent_coef is None else ent_coef) * ent_loss
        metrics.update(m)
    metrics.update({"loss/actor": pi_loss.detach(), "loss/critic": vf_loss.detach()})
    return loss, metrics


def minibatch_step(nets: ActorCriticNet, opt: torch.optim.Optimizer, mb: dict[str, torch.Tensor],
                   cfg: PPOConfig, normalize: bool, with_metrics: bool, clip_eps: float | None = None,
                   kl_coef: torch.Tensor | None = None,
                   old_log_std: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """:func:`minibatch_loss`, then one optimizer step (gradient norm clipped)."""
    loss, metrics = minibatch_loss(nets, mb, cfg, normalize, with_metrics, clip_eps, kl_coef, old_log_std)
    backward_step(opt, loss, cfg.max_grad_norm)
    return metrics


def update(nets: ActorCriticNet, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
           cfg: PPOConfig, clip_eps: float | None = None, kl_coef: torch.Tensor | None = None
           ) -> dict[str, torch.Tensor]:
    """One PPO update on a rollout ``[T, N]``. ``clip_eps`` is this update's clipping range
    (a schedule's current value; default ``cfg.clip_eps``); ``kl_coef`` the KL penalty's beta
    (a tensor, no penalty when None). With a penalty the metrics carry ``train/kl``, the mean
    KL of the last epoch's minibatches, which the adaptive rule reads."""
    if clip_eps is None:
        clip_eps = cfg.clip_eps
    adv, ret = gae(batch["rewards"], batch["values"], batch["next_values"], batch["terminated"],
                   batch["truncated"], cfg.gamma, cfg.gae_lambda)
    data = {"obs": batch["obs"].flatten(0, 1), "actions": batch["actions"].flatten(0, 1),
            "logp": batch["logp"].flatten(), "values": batch["values"].flatten(),
            "adv": adv.flatten(), "ret": ret.flatten()}
    old_log_std = None
    if kl_coef is not None:  # pi_old: the network as it collected the rollout, before any step
        with torch.no_grad():
            data["old_params"] = nets(data["obs"])[0]
        old_log_std = nets.log_std.detach().clone() if nets.log_std is not None else None
    B = data["adv"].shape[0]
    bs = cfg.batch_size
    whole = bs >= B  # one minibatch per epoch: shuffling changes nothing, normalise once
    if whole and cfg.normalize_advantage and B > 1:
        data["adv"] = standardize(data["adv"])
    starts = [0] if whole else list(range(0, B, bs))  # the last minibatch may be smaller (as in SB3)
    metrics: dict[str, torch.Tensor] = {}
    for epoch in range(cfg.n_epochs):
        perm = None if whole else torch.randperm(B, device=data["adv"].device)
        kls = []
        for i, start in enumerate(starts):
            mb = data if perm is None else {k: v[perm[start:start + bs]] for k, v in data.items()}
            # Metrics cost operations: compute them where they are read (the last minibatch,
            # or every epoch's last one when the KL early stop needs them).
            last = i == len(starts) - 1 and (epoch == cfg.n_epochs - 1 or cfg.target_kl is not None)
            metrics = minibatch_step(nets, opt, mb, cfg, cfg.normalize_advantage and not whole, last, clip_eps,
                                     kl_coef, old_log_std)
            if kl_coef is not None:
                kls.append(metrics["train/kl"])
        if kls:
            metrics["train/kl"] = torch.stack(kls).mean()
        # The only host sync in PPO, and only when asked for: the KL early stop.
        if cfg.target_kl is not None and clip_eps is not None and float(metrics["train/approx_kl"]) > cfg.target_kl:
            break
    return metrics


def update_members(members: Members, opt: MemberAdam, batch: dict[str, torch.Tensor], cfg: PPOConfig,
                   generators: list[torch.Generator], clip_eps: float | None = None,
                   active: torch.Tensor | None = None, gammas: list[float] | None = None,
                   lambdas: list[float] | None = None, coefs: dict[str, torch.Tensor] | None = None
                   ) -> dict[str, torch.Tensor]:
    """:func:`update` for M members at once: ``batch`` holds each member's rollout ``[M, T, N]``,
    ``generators`` each member's minibatch shuffling. Every member's arithmetic is its solo
    update's: its own GAE, advantage standardisation, permutations, gradient clipping, Adam
    step, and KL early stop (a member that stops skips the remaining epochs while the others go
    on). ``active`` [M] leaves members out from the start (a frozen, diverged member). Metrics are
    ``[M]``. ``gammas`` / ``lambdas``: per-member discount and GAE lambda (a sweep); default the
    config's. ``coefs``: per-member ``[M]`` values of ``clip_eps``, ``vf_coef``, ``ent_coef``,
    ``max_grad_norm`` and ``target_kl`` (a sweep; inf for no clipping or no stop). The
    KL-penalised variant is not batched yet."""
    clip_eps = cfg.clip_eps if clip_eps is None else clip_eps
    if clip_eps is None:
        raise ValueError("update_members batches the clipped surrogate only (clip_eps=None is not supported yet)")
    M, T, N = batch["rewards"].shape
    keys = ("rewards", "values", "next_values", "terminated", "truncated")
    if gammas is None and lambdas is None:
        to_tn = lambda x: x.transpose(0, 1).reshape(T, M * N)  # noqa: E731  (GAE runs column by column)
        adv, ret = gae(*(to_tn(batch[k]) for k in keys), cfg.gamma, cfg.gae_lambda)
    else:  # each member its own discount and lambda
        g, lam = gammas or [cfg.gamma] * M, lambdas or [cfg.gae_lambda] * M
        parts = [gae(*(batch[k][m] for k in keys), g[m], lam[m]) for m in range(M)]
        adv, ret = (torch.stack([p[i] for p in parts], 1).reshape(T, M * N) for i in (0, 1))
    per_member = lambda x: x.reshape(T, M, N).transpose(0, 1).reshape(M, T * N)  # noqa: E731
    data = {"obs": batch["obs"].flatten(1, 2), "actions": batch["actions"].flatten(1, 2),
            "logp": batch["logp"].flatten(1), "values": batch["values"].flatten(1),
            "adv": per_member(adv), "ret": per_member(ret)}
    B, bs = T * N, cfg.batch_size
    whole = bs >= B
    if whole and cfg.normalize_advantage and B > 1:
        data["adv"] = standardize(data["adv"], dim=1)
    starts = [0] if whole else list(range(0, B, bs))
    norm = cfg.normalize_advantage and not whole
    coefs = dict(coefs or {})
    per = {k: coefs.pop(k) for k in ("clip_eps", "vf_coef", "ent_coef") if k in coefs}  # vmapped with the weights
    if StackedActorCritic.stackable(members.base):  # one batched product per layer
        net = StackedActorCritic(members.base, members.params)
        per = {k: v.view(M, 1) if k == "clip_eps" else v for k, v in per.items()}  # clip_eps against [M, B]
        loss_fns = {w: (lambda mb, per, w=w: minibatch_loss(
            net, mb, cfg, norm, w, per.get("clip_eps", clip_eps), vf_coef=per.get("vf_coef"),
            ent_coef=per.get("ent_coef"))) for w in (False, True)}
    else:  # image encoders: the same loss vmapped over the members
        loss_fns = {w: members.vmap(lambda net, mb, per, w=w: minibatch_loss(
            net, mb, cfg, norm, w, per.get("clip_eps", clip_eps), vf_coef=per.get("vf_coef"),
            ent_coef=per.get("ent_coef"))) for w in (False, True)}
    max_norm = coefs.get("max_grad_norm", cfg.max_grad_norm)
    target_kl = coefs.get("target_kl", cfg.target_kl)
    rows = torch.arange(M)[:, None]
    active = torch.ones(M, dtype=torch.bool) if active is None else active.bool().clone()
    metrics: dict[str, torch.Tensor] = {}
    for epoch in range(cfg.n_epochs):
        perm = None if whole else torch.stack([torch.randperm(B, generator=g) if active[k] else torch.arange(B)
                                               for k, g in enumerate(generators)])
        for i, start in enumerate(starts):
            mb = data if perm is None else {k: v[rows, perm[:, start:start + bs]] for k, v in data.items()}
            last = i == len(starts) - 1 and (epoch == cfg.n_epochs - 1 or target_kl is not None)
            losses, m = loss_fns[last](mb, per)
            opt.zero_grad()
            losses.sum().backward()
            if max_norm is not None:
                opt.clip_(max_norm)
            opt.step(active)
            if last:  # a member's metrics are those of its last update (a stopped member keeps its own)
                metrics = {k: torch.where(active, v.detach(), metrics[k]) if k in metrics else v.detach()
                           for k, v in m.items()}
        if target_kl is not None:
            active = active & (metrics["train/approx_kl"] <= target_kl)
            if not bool(active.any()):
                break
    return metrics


class PPO(Batched, Agent):
    """``critic.PPO(env, **hparams)``; ``critic.PPO(env, seeds=[...])`` trains a batch of them."""

    algo = "ppo"
    config_cls = PPOConfig
    sweepable = ("learning_rate", "gamma", "gae_lambda", "clip_eps", "vf_coef", "ent_coef", "max_grad_norm",
                 "target_kl")

    @classmethod
    def check_batchable(cls, cfg: PPOConfig) -> None:
        if cfg.kl_penalty != "none" or cfg.clip_eps is None:
            raise ConfigError("seeds=[...] batches PPO's clipped surrogate so far (kl_penalty='none', clip_eps a "
                              f"number; got kl_penalty={cfg.kl_penalty!r}, clip_eps={cfg.clip_eps!r})")

    @classmethod
    def batch_policy(cls, batch):
        return on_policy_batch_policy(batch)

    @classmethod
    def batch_update(cls, batch, data: dict[str, torch.Tensor], active: torch.Tensor) -> dict[str, torch.Tensor]:
        """:func:`update_members` on the members' rollouts ``[M, T, N]``, each member at its own
        learning rate (schedule), discount and GAE lambda."""
        agents = batch.agents
        opt = batch.opts["main"]
        for k, a in enumerate(agents):
            apply_lr_schedule(a.optims["main"], a.cfg, a.env_steps, a._learn_span)
            opt.lr[k] = a.optims["main"].param_groups[0]["lr"]
        gae_settings = {}
        if "gamma" in batch.swept or "gae_lambda" in batch.swept:
            gae_settings = {"gammas": [a.cfg.gamma for a in agents], "lambdas": [a.cfg.gae_lambda for a in agents]}
        coefs = {}
        if "clip_eps" in batch.swept:
            coefs["clip_eps"] = torch.tensor([a.clip_range() for a in agents])
        for k in ("vf_coef", "ent_coef", "max_grad_norm", "target_kl"):
            if k in batch.swept:  # none (no clipping, no early stop) is infinity
                coefs[k] = torch.tensor([math.inf if getattr(a.cfg, k) is None else getattr(a.cfg, k) for a in agents])
        return update_members(batch.members(), opt, data, agents[0].cfg, batch.generators, agents[0].clip_range(),
                              active=active, coefs=coefs, **gae_settings)

    def _build(self) -> None:
        cfg = self.cfg
        self.nets = actor_critic_net(self, cfg).to(self.device)
        self.optims = {"main": make_optimizer(self.nets, cfg)}
        self.kl_coef = torch.tensor(float(cfg.kl_coef), device=self.device) if cfg.kl_penalty != "none" else None
        self.collector = on_policy_collector(self, cfg.n_steps)
        self.buffer = self.collector.buffer

    def clip_range(self) -> float | None:
        """The clipping range of the next update (``clip_schedule``), None when unclipped."""
        cfg = self.cfg
        if cfg.clip_eps is None or cfg.clip_schedule == "constant":
            return cfg.clip_eps
        if not cfg.clip_schedule_steps and self._learn_span is None:
            return cfg.clip_eps  # outside learn(): the schedule has no span to run over
        start, end = (0, cfg.clip_schedule_steps) if cfg.clip_schedule_steps else self._learn_span
        return cfg.clip_eps * max(0.0, 1.0 - (self.env_steps - start) / max(end - start, 1))

    def _update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, opt = self.cfg, self.optims["main"]
        apply_lr_schedule(opt, cfg, self.env_steps, self._learn_span)
        clip = self.clip_range()
        metrics = update(self.nets, opt, batch, cfg, clip, self.kl_coef)
        if clip is not None and cfg.clip_schedule != "constant":
            metrics["train/clip_range"] = torch.tensor(clip)
        if self.kl_coef is not None:
            metrics["train/kl_coef"] = self.kl_coef.clone()
            if cfg.kl_penalty == "adaptive":  # one host read per update, as target_kl's
                kl = float(metrics["train/kl"])
                if kl > 1.3 * cfg.kl_target:
                    self.kl_coef.mul_(1.5)
                elif kl < 0.7 * cfg.kl_target:
                    self.kl_coef.div_(1.5)
        return metrics

    def _extra_state(self):
        return ({"ppo/kl_coef": self.kl_coef.detach().cpu().reshape(1)} if self.kl_coef is not None else {}), {}

    def _load_extra_state(self, tensors, meta) -> None:
        if self.kl_coef is not None:
            self.kl_coef.copy_(tensors["ppo/kl_coef"].reshape(()))
