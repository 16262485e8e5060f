"""ACER's policy objective and trust-region projection (Wang et al. 2016, arXiv:1611.01224).

Everything is written per row (one row = one time step of one env) in terms of the policy's
distribution parameters ``f`` = the action probabilities pi(.|s) (the paper's phi_theta(x)):

  objective(f) = rho_bar_t log f(a_t) [Q_ret - V]                                (truncated IS)
               + sum_a [1 - c / rho(a)]_+ f(a) [Q(s, a) - V] log f(a)          (bias correction)
               + ent_coef * H(f)

with rho(a) = f(a) / mu(a), rho_bar = min(c, rho(a_t)); the weights in square brackets, Q and V
are constants. The gradient g = d objective / d f of each row is optionally projected onto the
trust region around the average policy,

  g' = g - max(0, (k^T g - delta) / ||k||^2) k,    k = d KL(f_avg || f) / d f = -f_avg / f,

and then back-propagated into the network through f (``f.backward(-g' / rows)``).
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-6


def acer_policy_objective(f: Tensor, actions: Tensor, mu: Tensor, q: Tensor, v: Tensor, q_ret: Tensor,
                          c: float, ent_coef: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-row objective ``[B]`` (to maximise) as a function of ``f`` ``[B, A]``.

    ``actions [B]``, behaviour probabilities ``mu [B, A]``, ``q [B, A]``, ``v [B]`` and
    ``q_ret [B]`` enter as constants; only ``f`` carries gradient.
    """
    with torch.no_grad():
        rho = f / (mu + EPS)                                  # [B, A]
        rho_a = rho.gather(1, actions[:, None]).squeeze(1)
        rho_bar = rho_a.clamp(max=c)
        adv = q_ret - v
        bc_weight = (1.0 - c / (rho + EPS)).clamp(min=0.0) * f * (q - v[:, None])
    logf = torch.log(f.clamp(min=EPS))
    main = rho_bar * adv * logf.gather(1, actions[:, None]).squeeze(1)
    bias_correction = (bc_weight * logf).sum(1)
    entropy = -(f * logf).sum(1)
    objective = main + bias_correction + ent_coef * entropy
    metrics = {"acer/rho_mean": rho_a.mean(), "acer/rho_truncated_frac": (rho_a > c).float().mean(),
               "loss/entropy": -entropy.detach().mean()}
    return objective, metrics


def kl_grad(f_avg: Tensor, f: Tensor) -> Tensor:
    """k = d KL(f_avg || f) / d f = -f_avg / f, per row ``[B, A]``."""
    return -f_avg / f.clamp(min=EPS)


def trust_region_project(g: Tensor, k: Tensor, delta: float) -> tuple[Tensor, Tensor]:
    """g' = g - max(0, (k.g - delta) / ||k||^2) k per row; returns (g', the scale applied)."""
    kg = (k * g).sum(-1)
    kk = (k * k).sum(-1)
    scale = ((kg - delta) / (kk + EPS)).clamp(min=0.0)
    return g - scale.unsqueeze(-1) * k, scale
