"""Members: M independent copies of one network as one set of stacked weights.

The many-seeds axis of a batched run. ``torch.func.stack_module_state`` stacks M networks'
parameters on a leading ``M`` axis; :meth:`Members.vmap` runs any function written for *one*
network (an act function, a pure loss) on all of them at once with ``torch.func.vmap``, so
each layer becomes one batched matrix product instead of M calls. Gradients of the summed
per-member losses land in the stacked parameters member by member (members share no weight),
and :class:`critic.optim.MemberAdam` steps them member by member.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap


class _Apply(nn.Module):
    """``fn(net, *args)`` as a module, so ``functional_call`` can swap ``net``'s weights."""

    def __init__(self, net: nn.Module, fn: Callable[..., Any]):
        super().__init__()
        self.net, self.fn = net, fn

    def forward(self, *args: Any) -> Any:
        return self.fn(self.net, *args)


class Members:
    """M networks of one architecture, stacked: ``params[name]`` is ``[M, *shape]``."""

    def __init__(self, nets: list[nn.Module]):
        if not nets:
            raise ValueError("Members needs at least one network")
        self.M = len(nets)
        params, buffers = stack_module_state(nets)
        self.params: dict[str, Tensor] = {k: v.detach().requires_grad_(v.requires_grad) for k, v in params.items()}
        self.buffers: dict[str, Tensor] = buffers
        self.base = copy.deepcopy(nets[0])  # the architecture; its own weights are never used

    @classmethod
    def from_params(cls, base: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor] | None = None
                    ) -> "Members":
        """Members over given stacked tensors (e.g. views of one ``[M, P]`` buffer that M agents'
        networks also view), with ``base`` the architecture."""
        self = cls.__new__(cls)
        self.M = next(iter(params.values())).shape[0]
        self.params, self.buffers, self.base = dict(params), dict(buffers or {}), base
        return self

    def parameters(self) -> list[Tensor]:
        return list(self.params.values())

    def vmap(self, fn: Callable[..., Any], randomness: str = "error") -> Callable[..., Any]:
        """``fn(net, *args)`` written for one network -> a function of member-stacked ``args``
        (each ``[M, ...]``) returning member-stacked results."""
        wrapper = _Apply(self.base, fn)

        def one(params: dict[str, Tensor], buffers: dict[str, Tensor], *args: Any) -> Any:
            state = {**{f"net.{k}": v for k, v in params.items()}, **{f"net.{k}": v for k, v in buffers.items()}}
            return functional_call(wrapper, state, args)

        batched = vmap(one, randomness=randomness)
        return lambda *args: batched(self.params, self.buffers, *args)

    def member(self, k: int) -> nn.Module:
        """A standalone copy of member ``k`` (for saving it alone, or comparing with a solo run)."""
        net = copy.deepcopy(self.base)
        net.load_state_dict({**{n: p[k].detach() for n, p in self.params.items()},
                             **{n: b[k] for n, b in self.buffers.items()}})
        return net


def stacked_linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """M members' ``nn.Linear`` at once: ``x [M, B, in]``, ``weight [M, out, in]``, ``bias [M, out]``."""
    return torch.baddbmm(bias.unsqueeze(-2), x, weight.transpose(-1, -2))


def stacked_sequential(seq: nn.Sequential, params: dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    """An ``nn.Sequential`` of Linear layers, LayerNorms and elementwise activations (``critic.nn.mlp``) for
    M members at once, with the members' weights ``params[f"{prefix}.{i}.weight"]`` stacked
    ``[M, ...]`` and ``x [M, B, in]``: one batched product per layer where vmap would trace each."""
    for i, layer in enumerate(seq):
        if isinstance(layer, nn.Linear):
            x = stacked_linear(x, params[f"{prefix}.{i}.weight"], params[f"{prefix}.{i}.bias"])
        elif _affine_layer_norm(layer):  # normalise, then each member's own scale and shift
            x = torch.nn.functional.layer_norm(x, layer.normalized_shape, None, None, layer.eps)
            x = torch.addcmul(params[f"{prefix}.{i}.bias"].unsqueeze(-2), x, params[f"{prefix}.{i}.weight"].unsqueeze(-2))
        elif not list(layer.parameters()) and not list(layer.buffers()):
            x = layer(x)  # an activation: elementwise, any shape
        else:
            raise TypeError(f"stacked_sequential: {type(layer).__name__} layers are not stacked (use Members.vmap)")
    return x


def _affine_layer_norm(m: nn.Module) -> bool:
    return (isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1 and m.weight is not None
            and m.bias is not None)


def stackable(seq: nn.Module) -> bool:
    """Whether :func:`stacked_sequential` runs ``seq``."""
    return isinstance(seq, nn.Sequential) and all(
        isinstance(m, nn.Linear) or _affine_layer_norm(m) or (not list(m.parameters()) and not list(m.buffers()))
        for m in seq)


def run_members(nets: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(nets, *args)`` on a stacked adapter (``StackedActorCritic``, SAC's ``Stacked``, ...),
    or ``fn`` vmapped over :class:`Members` (networks the adapters do not stack: image encoders)."""
    return nets.vmap(fn)(*args) if isinstance(nets, Members) else fn(nets, *args)
