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


def standardize(x: Tensor, unbiased: bool = True, eps: float = 1e-8, dim: int | None = None) -> Tensor:
    """(x - mean) / (std + eps): advantages per batch (A2C, PPO), or returns per episode
    (episodic A2C, which uses the population std, ``unbiased=False``); with ``dim``, along that
    axis alone (each member's row of a batched run)."""
    if dim is None:
        return (x - x.mean()) / (x.std(unbiased=unbiased) + eps)
    return (x - x.mean(dim, keepdim=True)) / (x.std(dim, unbiased=unbiased, keepdim=True) + eps)


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
    # Sequential over the window and tiny per step: NumPy on the host (see _backward_recursion).
    r = rewards_TN.detach().cpu().numpy().astype(np.float32, copy=False)
    term = terminated_TN.detach().cpu().numpy().astype(bool)
    done = term | truncated_TN.detach().cpu().numpy().astype(bool)
    T, N = r.shape
    Rn = np.zeros((T, N), np.float32)
    In = np.zeros((T, N), np.float32)
    boot = np.zeros((T, N), np.int64)
    for t in range(T):
        alive = np.ones(N, bool)  # window still open
        disc = np.ones(N, np.float32)
        for s in range(t, min(t + n, T)):
            Rn[t] += alive * disc * r[s]
            boot[t] = np.where(alive, s, boot[t])
            disc = np.where(alive, disc * gamma, disc).astype(np.float32)
            In[t] = np.where(alive, np.where(term[s], 0.0, disc), In[t])
            alive &= ~done[s]
            if not alive.any():
                break
    dev = rewards_TN.device
    Rn, In, boot = torch.from_numpy(Rn).to(dev), torch.from_numpy(In).to(dev), torch.from_numpy(boot).to(dev)
    return Rn, In, boot


def retrace(rewards_TN: Tensor, q_taken_TN: Tensor, values_TN: Tensor, last_values_N: Tensor,
            rho_bar_TN: Tensor, terminated_TN: Tensor, truncated_TN: Tensor, truncation_values_TN: Tensor,
            gamma: float) -> Tensor:
    """Retrace targets of ACER (Munos et al. 2016; Wang et al. 2016, arXiv:1611.01224, eq. 5).

        Q_ret(t) = r_t + gamma * [rho_bar_{t+1} (Q_ret(t+1) - Q(s_{t+1}, a_{t+1})) + V(s_{t+1})]

    inside an episode and segment; at a termination Q_ret(t) = r_t, at a truncation
    Q_ret(t) = r_t + gamma V(true final observation) (``truncation_values_TN[t]``), at the
    segment end Q_ret(T-1) = r_{T-1} + gamma V(s_T) (``last_values_N``). ``rho_bar_TN[t]`` is
    the trace coefficient min(1, pi(a_t|s_t) / mu(a_t|s_t)): ACER's Algorithm 2 (and Retrace,
    Munos et al. 2016) truncate the traces at 1. The larger c of ACER's policy gradient (10)
    does not belong here: a product of ratios up to 10 along a segment makes Q_ret's variance
    explode. All inputs are treated as constants (no gradient).

    Written as the linear recursion Q_ret(t) = x_t + d_t Q_ret(t+1) with
    x_t = r_t + gamma (V_{t+1} - rho_bar_{t+1} Q_{t+1}) and d_t = gamma rho_bar_{t+1} where the
    trajectory continues, and d_t = 0 (x_t the cut target) where it does not.
    """
    _check(rewards_TN, q_taken_TN, values_TN, rho_bar_TN, terminated_TN, truncated_TN, truncation_values_TN)
    r, q, v, rho = (x.detach().float() for x in (rewards_TN, q_taken_TN, values_TN, rho_bar_TN))
    term, trunc = terminated_TN.bool(), truncated_TN.bool()
    # values of the step after t (segment end: the bootstrap observation's value)
    v_next = torch.cat([v[1:], last_values_N.detach().float().reshape(1, -1)])
    q_next = torch.cat([q[1:], torch.zeros_like(q[:1])])
    rho_next = torch.cat([rho[1:], torch.zeros_like(rho[:1])])  # no correction past the segment
    cont = ~(term | trunc)
    boot = torch.where(trunc & ~term, truncation_values_TN.detach().float(), v_next)
    x = torch.where(cont, r + gamma * (v_next - rho_next * q_next), r + gamma * (~term) * boot)
    d = torch.where(cont, gamma * rho_next, torch.zeros_like(rho_next))
    return _backward_recursion(x, d)
