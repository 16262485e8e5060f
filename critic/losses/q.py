"""Pure losses of the Q critics (DDPG, TD3, SAC, ACER's Q head, and the components face).

``q_EB`` holds the values of an ensemble of E critics on a batch of B rows (E = 1 for a single
critic); the target ``[B]`` is shared by every member and never receives a gradient.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

Q_LOSSES = ("half_mse", "mse", "huber")


def td_target(reward_B: Tensor, discount_B: Tensor, next_value_B: Tensor) -> Tensor:
    """y = r + discount * V(s'), with the replay's per-sample discount gamma^n (1 - terminated):
    a termination zeroes the bootstrap, a time-limit truncation keeps it."""
    return reward_B + discount_B * next_value_B


def q_regression_loss(q_EB: Tensor, target_B: Tensor, loss: str = "half_mse") -> Tensor:
    """Sum over the ensemble of each critic's regression onto the (detached) target.

    ``'half_mse'``: 1/2 E[(Q_e - y)^2], the DDPG / TD3 / SAC papers' critic loss (the agents);
    ``'mse'`` and ``'huber'`` (delta 1): keras-gym's loss functions (the components face).
    """
    assert q_EB.dim() >= 2 and target_B.shape == q_EB.shape[:-2] + q_EB.shape[-1:], \
        f"expected q [E, B] and target [B], got {tuple(q_EB.shape)} and {tuple(target_B.shape)}"
    y = target_B.detach()
    if loss == "half_mse":  # members stacked in front ([M, E, B] and [M, B]): one loss per member
        return 0.5 * (q_EB - y.unsqueeze(-2)).square().mean(-1).sum(-1)
    if loss not in ("mse", "huber"):
        raise ValueError(f"unknown Q loss {loss!r} (allowed: {', '.join(Q_LOSSES)})")
    assert q_EB.dim() == 2, "the mse and huber losses take one agent's q [E, B]"
    fn = F.mse_loss if loss == "mse" else F.huber_loss
    total = fn(q_EB[0], y)
    for e in range(1, q_EB.shape[0]):
        total = total + fn(q_EB[e], y)
    return total
