"""Small pieces the on-policy algorithm files share (optimizer construction, LR schedule)."""

from __future__ import annotations

import torch

from critic.config import OnPolicyConfig


def make_optimizer(params, cfg: OnPolicyConfig) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.learning_rate, alpha=cfg.rmsprop_alpha, eps=cfg.optim_eps,
                                   foreach=True)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=cfg.learning_rate, eps=cfg.optim_eps, fused=fused)


def apply_lr_schedule(opt: torch.optim.Optimizer, cfg: OnPolicyConfig, env_steps: int,
                      span: tuple[int, int]) -> None:
    """Linear annealing from learning_rate to 0 over the current learn() call."""
    if cfg.lr_schedule != "linear":
        return
    start, end = span
    frac = 1.0 - (env_steps - start) / max(end - start, 1)
    for g in opt.param_groups:
        g["lr"] = cfg.learning_rate * max(frac, 0.0)


def clip_and_step(opt: torch.optim.Optimizer, max_grad_norm: float | None) -> None:
    """Clip the global gradient norm of the optimizer's parameters, then step.

    The same arithmetic as ``torch.nn.utils.clip_grad_norm_`` (norm of the per-tensor norms,
    scale by ``min(1, max_norm / (norm + 1e-6))``) in five foreach/tensor ops and no host
    sync, skipping its per-call grouping of tensors by device and dtype (all of an agent's
    parameters share both).
    """
    if max_grad_norm is not None:
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        if grads:
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            torch._foreach_mul_(grads, (max_grad_norm / (total + 1e-6)).clamp_(max=1.0))
    opt.step()
