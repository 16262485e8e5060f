"""Policy-gradient losses shared by the A2C/PPO agents and the components face.

Update strategies (keras-gym names):
  vanilla        J = -A(s,a) log pi(a|s)
  ppo            J = -min(r A, clip(r, 1-eps, 1+eps) A),  r = pi(a|s) / pi_old(a|s)
  cross_entropy  J = -sum_a pi_b(a|s) log pi(a|s)   (advantages unused)
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Metrics = dict[str, Tensor]
UPDATE_STRATEGIES = ("vanilla", "ppo", "cross_entropy")


def batch_mean(x: Tensor) -> Tensor:
    """The mean over the batch axis: of all of ``x [B]``, or per member of ``x [M, B]`` (members
    of a batched run stacked in front; ``M`` losses, each its member's own)."""
    return x.mean() if x.dim() <= 1 else x.mean(-1)


def pg_loss(logp_B: Tensor, adv_B: Tensor) -> tuple[Tensor, Metrics]:
    """Vanilla policy gradient surrogate -E[A log pi(a|s)] (advantages are constants)."""
    return -batch_mean(adv_B.detach() * logp_B), {}


def ppo_clip_loss(logp_B: Tensor, old_logp_B: Tensor, adv_B: Tensor, clip_eps: float,
                  with_metrics: bool = True) -> tuple[Tensor, Metrics]:
    """PPO's clipped surrogate (Schulman et al. 2017, arXiv:1707.06347, eq. 7).

    ``with_metrics=False`` skips the approximate KL and clip fraction (hot-path saving)."""
    log_ratio = logp_B - old_logp_B.detach()
    ratio = log_ratio.exp()
    adv = adv_B.detach()
    loss = -batch_mean(torch.min(ratio * adv, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv))
    if not with_metrics:
        return loss, {}
    with torch.no_grad():
        metrics = {
            "train/approx_kl": batch_mean((ratio - 1.0) - log_ratio),  # k3 estimator, always >= 0
            "train/clip_fraction": batch_mean(((ratio - 1.0).abs() > clip_eps).float()),
        }
    return loss, metrics


def cross_entropy_loss(dist, target: Tensor) -> tuple[Tensor, Metrics]:
    """-sum_a p_b(a|s) log pi(a|s): ``target`` is a batch of actions (one-hot p_b) or, for a
    categorical policy, a ``[B, n]`` matrix of behaviour probabilities."""
    if target.is_floating_point() and hasattr(dist, "logits") and target.shape == dist.logits.shape:
        logp = dist.logits.clamp(min=torch.finfo(dist.logits.dtype).min)  # 0 * -inf -> 0
        return -(target.detach() * logp).sum(-1).mean(), {}
    return -dist.log_prob(target).mean(), {}


def policy_loss(strategy: str | Callable, dist, actions: Tensor, adv_B: Tensor,
                old_logp_B: Tensor | None = None, clip_eps: float = 0.2,
                target: Tensor | None = None) -> tuple[Tensor, Metrics]:
    """Dispatch on the update strategy; a callable gets ``(dist, actions, adv, old_logp)``."""
    if callable(strategy):
        out = strategy(dist, actions, adv_B, old_logp_B)
        return out if isinstance(out, tuple) else (out, {})
    if strategy == "vanilla":
        return pg_loss(dist.log_prob(actions), adv_B)
    if strategy == "ppo":
        if old_logp_B is None:
            raise ValueError("update_strategy='ppo' needs the behaviour log-probabilities old_logp")
        return ppo_clip_loss(dist.log_prob(actions), old_logp_B, adv_B, clip_eps)
    if strategy == "cross_entropy":
        return cross_entropy_loss(dist, actions if target is None else target)
    raise ValueError(f"unknown update_strategy {strategy!r} (allowed: {', '.join(UPDATE_STRATEGIES)} or a callable)")


def value_loss(v_B: Tensor, target_B: Tensor, kind: str = "mse", old_v_B: Tensor | None = None,
               clip: float | None = None) -> tuple[Tensor, Metrics]:
    """Critic regression towards a (detached) target: mean squared error (the Stable-Baselines3
    convention, so ``vf_coef`` means the same there and here) or Huber (delta 1).

    With ``clip``, PPO's value clipping: the larger of the clipped and unclipped errors.
    """
    target = target_B.detach()

    if (clip is None or old_v_B is None) and v_B.dim() <= 1:  # the common case in as few operations as possible
        if kind == "huber":
            return F.huber_loss(v_B, target, delta=1.0), {}
        return F.mse_loss(v_B, target), {}

    def err(v: Tensor) -> Tensor:
        if kind == "huber":
            return F.huber_loss(v, target, reduction="none", delta=1.0)
        return (v - target).square()

    if clip is None or old_v_B is None:  # members stacked [M, B]: one loss per member
        return batch_mean(err(v_B)), {}
    old = old_v_B.detach()
    v_clipped = old + (v_B - old).clamp(-clip, clip)
    return batch_mean(torch.max(err(v_B), err(v_clipped))), {}


def entropy_loss(entropy_B: Tensor) -> tuple[Tensor, Metrics]:
    """-E[H(pi)]: adding ``ent_coef * entropy_loss`` rewards exploration."""
    ent = batch_mean(entropy_B)
    return -ent, {"train/entropy": ent.detach()}
