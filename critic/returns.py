"""Return estimators (pure functions). Rollouts are ``[T, N]``.

All of them keep ``terminated`` and ``truncated`` apart. ``next_values_TN[t]`` is V(s_{t+1})
where s_{t+1} is the *true* next state: for a step that ended an episode it is the final
observation (not the reset one), so a truncated step bootstraps from it and a terminated one
multiplies it by zero.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _check(rewards_TN: Tensor, *others: Tensor) -> None:
    assert rewards_TN.dim() == 2, f"expected [T, N] rewards, got {tuple(rewards_TN.shape)}"
    for o in others:
        assert o.shape == rewards_TN.shape, f"shape mismatch {tuple(o.shape)} vs {tuple(rewards_TN.shape)}"


def gae(rewards_TN: Tensor, values_TN: Tensor, next_values_TN: Tensor, terminated_TN: Tensor,
        truncated_TN: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, arXiv:1506.02438).

    delta_t = r_t + gamma (1 - term_t) V(s_{t+1}) - V(s_t)
    A_t     = delta_t + gamma lam (1 - done_t) A_{t+1}          (done = term | trunc)
    Returns ``(advantages_TN, returns_TN = advantages + values)``. lam=1 gives Monte-Carlo
    returns bootstrapped at truncations and the rollout end; lam=0 gives TD(0).
    """
    _check(rewards_TN, values_TN, next_values_TN, terminated_TN, truncated_TN)
    not_term = 1.0 - terminated_TN.float()
    not_done = (1.0 - torch.maximum(terminated_TN.float(), truncated_TN.float())) * (gamma * lam)
    deltas = rewards_TN + gamma * not_term * next_values_TN - values_TN
    adv = _backward_recursion(deltas, not_done)
    return adv, adv + values_TN


def _backward_recursion(x_TN: Tensor, decay_TN: Tensor) -> Tensor:
    """y_t = x_t + decay_t * y_{t+1} (y_T = 0). The recursion is sequential over T and each
    step touches only N numbers, so it runs in NumPy on the host (about 1 us a step, against
    several for a torch op) and comes back as one tensor on the original device."""
    x = x_TN.detach().cpu().numpy()
    d = decay_TN.detach().cpu().numpy()
    y = np.empty_like(x)
    last = np.zeros_like(x[0])
    for t in range(x.shape[0] - 1, -1, -1):
        last = x[t] + d[t] * last
        y[t] = last
    return torch.from_numpy(y).to(x_TN.device)


def discounted_returns(rewards_TN: Tensor, next_values_TN: Tensor, terminated_TN: Tensor,
                       truncated_TN: Tensor, gamma: float) -> Tensor:
    """G_t = r_t + gamma (1 - term_t) [done_t ? V(s_{t+1}) : G_{t+1}], G bootstrapped at the end."""
    _check(rewards_TN, next_values_TN, terminated_TN, truncated_TN)
    not_term = 1.0 - terminated_TN.float()
    cut = torch.maximum(terminated_TN.float(), truncated_TN.float())
    cut[-1] = 1.0  # the rollout end bootstraps like a truncation
    x = rewards_TN + gamma * not_term * cut * next_values_TN
    return _backward_recursion(x, gamma * (1.0 - cut))


def nstep_targets(rewards_TN: Tensor, terminated_TN: Tensor, truncated_TN: Tensor, gamma: float,
                  n: int) -> tuple[Tensor, Tensor, Tensor]:
    """keras-gym's n-step pieces for every start step t of a rollout.

    Rn_t = sum_{k<m} gamma^k r_{t+k} over the m = min(n, steps to episode end, steps to rollout end)
    steps that follow; In_t = gamma^m, or 0 when the episode terminated inside the window.
    ``boot_TN[t]`` is the step t+m-1 whose next state s_{t+m} the target bootstraps from
    (its true final observation when the episode was truncated there), so the full target is
    ``Rn + In * next_values[boot]``.
    """
    _check(rewards_TN, terminated_TN, truncated_TN)
    assert n >= 1, "n must be >= 1"
    T, N = rewards_TN.shape
    term = terminated_TN.bool()
    done = term | truncated_TN.bool()
    Rn = torch.zeros(T, N, dtype=torch.float32, device=rewards_TN.device)
    In = torch.zeros(T, N, dtype=torch.float32, device=rewards_TN.device)
    boot = torch.zeros(T, N, dtype=torch.long, device=rewards_TN.device)
    for t in range(T):
        alive = torch.ones(N, dtype=torch.bool, device=rewards_TN.device)  # window still open
        disc = torch.ones(N, dtype=torch.float32, device=rewards_TN.device)
        for k in range(n):
            s = t + k
            if s >= T:
                break
            Rn[t] += alive * disc * rewards_TN[s]
            boot[t] = torch.where(alive, torch.full_like(boot[t], s), boot[t])
            disc = torch.where(alive, disc * gamma, disc)
            ended_term = alive & term[s]
            In[t] = torch.where(alive, disc, In[t])
            In[t] = torch.where(ended_term, torch.zeros_like(In[t]), In[t])
            alive = alive & ~done[s]
    return Rn, In, boot
