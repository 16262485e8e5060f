"""Pure losses of the off-policy actors and of SAC's temperature.

Each takes the critic's values as plain tensors: whether the critic's weights see a gradient is
decided by the caller (critic weights frozen with ``modules.target.frozen``, or values detached),
and only the actor (or ``log_alpha``) is moved by these losses.
"""

from __future__ import annotations

import torch
from torch import Tensor


def deterministic_actor_loss(q_B: Tensor) -> Tensor:
    """DDPG / TD3: L_mu = -E[Q(s, mu(s))], ``q_B`` computed from the actor's own actions."""
    return -q_B.mean(-1)


def soft_actor_loss(alpha: Tensor | float, logp: Tensor, q: Tensor, probs: Tensor | None = None) -> Tensor:
    """SAC: L_pi = E[alpha log pi(a|s) - Q(s, a)].

    Continuous actions: ``logp [B]`` and ``q [B]`` at one reparameterised sample a ~ pi(.|s).
    Discrete actions: ``probs``, ``logp`` and ``q`` are ``[B, A]`` and the expectation over the
    policy is exact, sum_a pi(a|s) (alpha log pi(a|s) - Q(s, a)).
    """
    if probs is None:
        return (alpha * logp - q).mean(-1)
    return (probs * (alpha * logp - q)).sum(-1).mean(-1)


def soft_value(alpha: Tensor | float, logp: Tensor, q: Tensor, probs: Tensor | None = None) -> Tensor:
    """The soft state value V(s) = E_pi[Q(s, a) - alpha log pi(a|s)], the bootstrap of SAC's
    critic target: at a sample (continuous, ``[B]``) or exactly over the actions (``[B, A]``)."""
    if probs is None:
        return q - alpha * logp
    return (probs * (q - alpha * logp)).sum(-1)


def temperature_loss(log_alpha: Tensor, gap: Tensor) -> tuple[Tensor, Tensor]:
    """SAC's temperature: L_alpha = -log_alpha * gap with gap = E[log pi] + target_entropy
    (for discrete actions E[log pi] is the exact negative entropy).

    Returns ``(loss, grad)``, grad = dL/dlog_alpha = -gap: a scalar, set as ``log_alpha.grad``
    directly rather than through autograd (the backward pass would cost more than the step).
    ``gap`` must be detached: nothing but log_alpha moves."""
    assert not gap.requires_grad, "the temperature's gap must be detached from the actor"
    with torch.no_grad():
        loss = -log_alpha * gap
    return loss, -gap
