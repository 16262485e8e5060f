"""Proximal policy optimisation with the clipped surrogate (Schulman et al. 2017, arXiv:1707.06347).

Per rollout: GAE advantages (arXiv:1506.02438), then ``n_epochs`` passes of shuffled
minibatches minimising
  L = -E[min(r A, clip(r, 1-eps, 1+eps) A)] + vf_coef * L_V - ent_coef * H(pi),
r = pi(a|s) / pi_old(a|s), with optional value clipping (L_V = max of clipped and unclipped
errors), advantage standardisation per minibatch, gradient-norm clipping, linear learning-rate
annealing and an early stop of the epochs when the approximate KL passes ``target_kl``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from critic.agent import Agent
from critic.algos.common import apply_lr_schedule, make_optimizer
from critic.config import OnPolicyConfig, check
from critic.optim import backward_step
from critic.losses import entropy_loss, ppo_clip_loss, value_loss
from critic.modules.policies import ActorCriticNet
from critic.returns import gae


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
    clip_eps: float = 0.2
    """Clipping range of the probability ratio."""
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
        check(0 < self.clip_eps < 1, "clip_eps", self.clip_eps, "a number in (0, 1)")
        check(self.clip_vf is None or self.clip_vf > 0, "clip_vf", self.clip_vf, "a number > 0 or none")
        check(self.target_kl is None or self.target_kl > 0, "target_kl", self.target_kl, "a number > 0 or none")


def minibatch_step(nets: ActorCriticNet, opt: torch.optim.Optimizer, mb: dict[str, torch.Tensor],
                   cfg: PPOConfig, normalize: bool, with_metrics: bool) -> dict[str, torch.Tensor]:
    adv = mb["adv"]
    if normalize and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    params, values = nets(mb["obs"])
    dist = nets.dist(params)
    pi_loss, metrics = ppo_clip_loss(dist.log_prob(mb["actions"]), mb["logp"], adv, cfg.clip_eps, with_metrics)
    vf_loss, _ = value_loss(values, mb["ret"], cfg.value_loss, mb["values"], cfg.clip_vf)
    loss = pi_loss + cfg.vf_coef * vf_loss
    if cfg.ent_coef > 0:
        ent_loss, m = entropy_loss(dist.entropy())
        loss = loss + cfg.ent_coef * ent_loss
        metrics.update(m)
    backward_step(opt, loss, cfg.max_grad_norm)
    metrics.update({"loss/actor": pi_loss.detach(), "loss/critic": vf_loss.detach()})
    return metrics


def update(nets: ActorCriticNet, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
           cfg: PPOConfig) -> dict[str, torch.Tensor]:
    adv, ret = gae(batch["rewards"], batch["values"], batch["next_values"], batch["terminated"],
                   batch["truncated"], cfg.gamma, cfg.gae_lambda)
    data = {"obs": batch["obs"].flatten(0, 1), "actions": batch["actions"].flatten(0, 1),
            "logp": batch["logp"].flatten(), "values": batch["values"].flatten(),
            "adv": adv.flatten(), "ret": ret.flatten()}
    B = data["adv"].shape[0]
    bs = cfg.batch_size
    whole = bs >= B  # one minibatch per epoch: shuffling changes nothing, normalise once
    if whole and cfg.normalize_advantage and B > 1:
        data["adv"] = (data["adv"] - data["adv"].mean()) / (data["adv"].std() + 1e-8)
    starts = [0] if whole else list(range(0, B, bs))  # the last minibatch may be smaller (as in SB3)
    metrics: dict[str, torch.Tensor] = {}
    for epoch in range(cfg.n_epochs):
        perm = None if whole else torch.randperm(B, device=data["adv"].device)
        for i, start in enumerate(starts):
            mb = data if perm is None else {k: v[perm[start:start + bs]] for k, v in data.items()}
            # Metrics cost operations: compute them where they are read (the last minibatch,
            # or every epoch's last one when the KL early stop needs them).
            last = i == len(starts) - 1 and (epoch == cfg.n_epochs - 1 or cfg.target_kl is not None)
            metrics = minibatch_step(nets, opt, mb, cfg, cfg.normalize_advantage and not whole, last)
        # The only host sync in PPO, and only when asked for: the KL early stop.
        if cfg.target_kl is not None and float(metrics["train/approx_kl"]) > cfg.target_kl:
            break
    return metrics


class PPO(Agent):
    """``critic.PPO(env, **hparams)``."""

    algo = "ppo"
    config_cls = PPOConfig

    def _build(self) -> None:
        cfg = self.cfg
        self.nets = ActorCriticNet(self.obs_space, self.act_space, cfg.hidden_sizes, cfg.activation,
                                   cfg.shared_body, cfg.ortho_init, cfg.log_std_init).to(self.device)
        self.optims = {"main": make_optimizer(self.nets, cfg)}

    def _update(self) -> dict[str, torch.Tensor]:
        opt = self.optims["main"]
        apply_lr_schedule(opt, self.cfg, self.env_steps, self._learn_span)
        return update(self.nets, opt, self.buffer.view(), self.cfg)
