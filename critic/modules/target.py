"""Target-network updates: the only way target parameters change (fused foreach ops)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from critic.optim import flat_view


@torch.no_grad()
def polyak_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source, for parameters and floating buffers."""
    src = [p for p in source.parameters()] + [b for b in source.buffers() if b.is_floating_point()]
    tgt = [p for p in target.parameters()] + [b for b in target.buffers() if b.is_floating_point()]
    assert len(src) == len(tgt), "source and target networks differ in structure"
    flat_src, flat_tgt = flat_view(src), flat_view(tgt)  # both flattened: one operation
    if flat_src is not None and flat_tgt is not None and flat_src.shape == flat_tgt.shape:
        src, tgt = [flat_src], [flat_tgt]
    if tau == 1.0:
        torch._foreach_copy_(tgt, src)
    else:
        torch._foreach_lerp_(tgt, src, tau)


@torch.no_grad()
def polyak_members(source: torch.Tensor, target: torch.Tensor, tau: torch.Tensor, mask: torch.Tensor) -> None:
    """:func:`polyak_update` for members stacked ``[M, P]``: each row at its own rate ``tau``
    ``[M, 1]``, only the rows where ``mask`` ``[M]`` is true."""
    target.copy_(torch.where(mask.view(-1, 1), target.lerp(source, tau.to(target.dtype)), target))


def hard_update(source: nn.Module, target: nn.Module) -> None:
    """target <- source."""
    polyak_update(source, target, 1.0)


def freeze(module: nn.Module) -> nn.Module:
    """Mark a target network: no gradients, never handed to an optimizer."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block ``module``'s parameters take no gradient (an actor step through a critic:
    the gradient reaches the actions, not the critic's weights, and costs no weight pass)."""
    module.requires_grad_(False)
    try:
        yield module
    finally:
        module.requires_grad_(True)
