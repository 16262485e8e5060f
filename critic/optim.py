"""Optimizer plumbing shared by every algorithm: flat parameters and one backward step.

On a CPU a small network's optimizer step is dominated by per-tensor overhead: Adam (even
fused) and RMSprop touch each of a 64-64 actor-critic's dozen tensors separately, and so does
gradient clipping. :func:`flatten_` moves a module's parameters (and their gradients) into
one contiguous buffer each, leaving every parameter a view of it: the module computes exactly
as before, autograd accumulates into the views in place, and the optimizer, the clipping norm
and ``zero_grad`` each see one tensor. The arithmetic is unchanged (Adam and RMSprop are
elementwise; the clipping norm is the global norm either way).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


def flatten_(params: Iterable[nn.Parameter]) -> torch.Tensor:
    """Re-home ``params`` into one flat leaf tensor whose ``.grad`` holds all their gradients.

    Returns the flat tensor, to be handed to an optimizer. Call after moving the module to its
    device (``.to()`` would copy the parameters out of the buffer again); ``load_state_dict``
    copies in place and keeps the views.
    """
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters to flatten")
    dtypes = {(p.dtype, p.device) for p in params}
    if len(dtypes) != 1:
        raise ValueError(f"cannot flatten parameters of mixed dtypes/devices: {dtypes}")
    total = sum(p.numel() for p in params)
    flat = torch.zeros(total, dtype=params[0].dtype, device=params[0].device)
    grad = torch.zeros_like(flat)
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            flat[offset:offset + n].copy_(p.detach().reshape(-1))
            p.data = flat[offset:offset + n].view_as(p)
            p.grad = grad[offset:offset + n].view_as(p)
            offset += n
    flat.grad = grad
    return flat


def backward_clip(opt: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None) -> None:
    """zero the gradients of ``opt``'s parameters, backward, clip their global norm (no host sync)."""
    opt.zero_grad(set_to_none=False)  # the flat gradient buffer must stay in place
    loss.backward()
    if max_grad_norm is not None:
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        # torch.nn.utils.clip_grad_norm_'s arithmetic without its per-call tensor grouping
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) \
            if len(grads) > 1 else torch.linalg.vector_norm(grads[0])
        coef = (max_grad_norm / (total + 1e-6)).clamp_(max=1.0)
        for g in grads:
            g.mul_(coef)


def backward_step(opt: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None) -> None:
    """zero grads, backward, clip the global gradient norm (no host sync), step."""
    backward_clip(opt, loss, max_grad_norm)
    opt.step()
