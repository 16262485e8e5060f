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

import contextvars
from typing import Iterable

import torch
from torch import nn
from torch.optim import optimizer as _torch_optimizer


ACTING: contextvars.ContextVar[bool] = contextvars.ContextVar("critic_acting", default=False)
"""True while an agent loaded to act builds itself: optimizers are :class:`ParamsOnly` then."""


class ParamsOnly:
    """What an agent loaded to act holds in place of an optimizer: the parameter groups, no
    state and no step. (The first torch optimizer a process builds costs ~0.9 s: torch imports
    its compiler stack; an agent that only acts never needs it.)"""

    def __init__(self, params: Iterable[torch.Tensor], lr: float):
        self.param_groups = [{"params": list(params), "lr": lr}]
        self.state: dict = {}

    def step(self, *args, **kwargs):
        raise RuntimeError("this agent was loaded to act and has no optimizer; load it with for_training=True")

    zero_grad = step


def flatten_(params: Iterable[nn.Parameter], grads: bool = True) -> torch.Tensor:
    """Re-home ``params`` into one flat leaf tensor whose ``.grad`` holds all their gradients.

    Returns the flat tensor, to be handed to an optimizer. Call after moving the module to its
    device (``.to()`` would copy the parameters out of the buffer again); ``load_state_dict``
    copies in place and keeps the views. ``grads=False`` flattens a frozen (target) network:
    every parameter, no gradient buffer; :func:`~critic.modules.target.polyak_update` then
    averages it with one operation.
    """
    params = [p for p in params if p.requires_grad or not grads]
    if not params:
        raise ValueError("no trainable parameters to flatten")
    dtypes = {(p.dtype, p.device) for p in params}
    if len(dtypes) != 1:
        raise ValueError(f"cannot flatten parameters of mixed dtypes/devices: {dtypes}")
    total = sum(p.numel() for p in params)
    flat = torch.zeros(total, dtype=params[0].dtype, device=params[0].device)
    grad = torch.zeros_like(flat) if grads else None
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            flat[offset:offset + n].copy_(p.detach().reshape(-1))
            p.data = flat[offset:offset + n].view_as(p)
            if grad is not None:
                p.grad = grad[offset:offset + n].view_as(p)
            offset += n
    flat.grad = grad
    return flat


def flat_view(params: list[torch.Tensor]) -> torch.Tensor | None:
    """The one tensor that ``params`` are consecutive views of, covering it exactly (as
    :func:`flatten_` leaves them), or None when they are not."""
    if not params:
        return None
    first = params[0]
    storage, offset = first.untyped_storage(), 0
    for p in params:
        if (p.untyped_storage().data_ptr() != storage.data_ptr() or p.storage_offset() != offset
                or p.dtype != first.dtype or not p.is_contiguous()):
            return None
        offset += p.numel()
    if offset * first.element_size() != storage.nbytes():
        return None
    return first.new_empty(0).set_(storage, 0, (offset,))


def zero_grad_(opt: torch.optim.Optimizer) -> None:
    """Zero the gradients of ``opt``'s parameters in place (the flat buffers stay where they
    are); one ``zero_`` per flat tensor, without ``Optimizer.zero_grad``'s bookkeeping."""
    for g in opt.param_groups:
        for p in g["params"]:
            if p.grad is not None:
                p.grad.zero_()


def _direct_fused_adam(opt: torch.optim.Optimizer) -> torch.Tensor | None:
    """The flat parameter of a plain fused Adam with one tensor, initialised state and no
    step hooks (what every off-policy optimizer is after its first step), else None."""
    if type(opt) is not torch.optim.Adam or len(opt.param_groups) != 1 or "step" in opt.__dict__:
        return None  # an LR scheduler's counter patches opt.step on the instance
    g = opt.param_groups[0]
    if len(g["params"]) != 1 or not g["fused"] or isinstance(g["lr"], torch.Tensor) or any(
            g[k] for k in ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay")):
        return None
    if any(getattr(o, name, None) for o, name in (
            (opt, "_optimizer_step_pre_hooks"), (opt, "_optimizer_step_post_hooks"),
            (_torch_optimizer, "_global_optimizer_pre_hooks"), (_torch_optimizer, "_global_optimizer_post_hooks"))):
        return None
    p = g["params"][0]
    return p if p.grad is not None and opt.state.get(p) else None


def step_(opt: torch.optim.Optimizer) -> None:
    """``opt.step()``. For a fused Adam over one flat tensor it calls the same fused kernel
    directly, with the same state and the same result, skipping ``Optimizer.step``'s per-call
    bookkeeping (about 35 us of Python, several % of a 256-256 SAC update on one CPU thread)."""
    p = _direct_fused_adam(opt)
    if p is None:
        opt.step()
        return
    g, state = opt.param_groups[0], opt.state[p]
    state["step"].add_(1)
    beta1, beta2 = g["betas"]
    torch._fused_adam_([p], [p.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
                       lr=g["lr"], beta1=beta1, beta2=beta2, weight_decay=g["weight_decay"], eps=g["eps"],
                       amsgrad=False, maximize=False)


def backward_clip(opt: torch.optim.Optimizer, loss: torch.Tensor, max_grad_norm: float | None) -> None:
    """zero the gradients of ``opt``'s parameters, backward, clip their global norm (no host sync)."""
    zero_grad_(opt)  # in place: the flat gradient buffer must stay where it is
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
    step_(opt)


class _MemberOptimizer:
    """What an optimizer keeps per instance, for parameters stacked on a leading member axis
    ``[M, ...]``: the learning rate, the step count, gradient clipping (each member's own global
    norm) and whether a member steps at all, each ``[M]``."""

    state_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[torch.Tensor], lr: float | torch.Tensor, members: int):
        self.params = list(params)
        self.M = members
        for p in self.params:
            if p.dim() == 0 or p.shape[0] != members:
                raise ValueError(f"{type(self).__name__} needs parameters stacked on a leading axis of {members} "
                                 f"members, got shape {tuple(p.shape)}")
        dev = self.params[0].device
        self.lr = torch.as_tensor(lr, dtype=torch.float64, device=dev).expand(members).clone()
        self.steps = torch.zeros(members, dtype=torch.float64, device=dev)

    def _per_member(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return x.to(like.dtype).view(self.M, *([1] * (like.dim() - 1)))

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def clip_(self, max_norm: float | torch.Tensor) -> torch.Tensor:
        """Scale each member's gradients so that their global norm is at most ``max_norm``
        (``torch.nn.utils.clip_grad_norm_``'s rule, member by member); returns the norms ``[M]``."""
        grads = [p.grad for p in self.params if p.grad is not None]
        sq = torch.stack([g.reshape(self.M, -1).float().square().sum(1) for g in grads]).sum(0)
        norms = sq.sqrt()
        coef = (torch.as_tensor(max_norm, dtype=norms.dtype, device=norms.device) / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(self._per_member(coef, g))
        return norms

    def _states(self) -> list[list[torch.Tensor]]:
        return [getattr(self, n) for n in self.state_names]

    def member_state(self, k: int, i: int = 0) -> dict[str, torch.Tensor]:
        """Member ``k``'s state of parameter ``i`` in torch.optim's form (its own optimizer's)."""
        out = {"step": torch.tensor(float(self.steps[k]))}
        for name, st in zip(self.state_names, self._states()):
            out[name] = st[i][k].detach().clone()
        return out

    def load_member_state(self, k: int, state: dict[str, torch.Tensor], i: int = 0) -> None:
        """The inverse of :meth:`member_state` (a member's own optimizer's state for parameter ``i``)."""
        for name, st in zip(self.state_names, self._states()):
            flat = state[name].reshape(-1)  # a member's own parameter: its row's first entries
            st[i][k].reshape(-1)[:flat.numel()].copy_(flat)
        self.steps[k] = float(state["step"])

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {"lr": self.lr, "steps": self.steps}
        for name, st in zip(self.state_names, self._states()):
            for i, t in enumerate(st):
                out[f"{name}/{i}"] = t
        return {k: t.detach().clone() for k, t in out.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.lr.copy_(state["lr"])
        self.steps.copy_(state["steps"])
        for name, st in zip(self.state_names, self._states()):
            for i, t in enumerate(st):
                t.copy_(state[f"{name}/{i}"])


class MemberAdam(_MemberOptimizer):
    """Adam over parameters stacked on a leading member axis ``[M, ...]``, member by member.

    Adam is elementwise, so one Adam over stacked parameters already is M independent Adams,
    except for what an optimizer keeps per instance: the learning rate, the step count (bias
    correction), gradient clipping (each member's own global norm) and whether it steps at all.
    Those are ``[M]`` here: ``lr`` may differ per member (a sweep), :meth:`clip_` clips each
    member's norm, and ``step(mask)`` leaves masked members untouched (parameters, moments and
    count: PPO's KL early stop, a frozen diverged member). The arithmetic is torch.optim.Adam's
    (``foreach`` form), member by member, to float32 rounding.
    """

    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[torch.Tensor], lr: float | torch.Tensor, members: int,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, lr, members)
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, mask: torch.Tensor | None = None) -> None:
        """One Adam step for every member (or those where ``mask`` [M] is true)."""
        b1, b2 = self.betas
        if (mask is None or bool(mask.all())) and self._uniform():
            return self._fused_step()
        active = torch.ones(self.M, dtype=torch.bool, device=self.steps.device) if mask is None else mask.bool()
        self.steps += active.to(self.steps.dtype)
        t = self.steps.clamp(min=1.0)  # a member that never stepped keeps its (unused) step size finite
        step_size = self.lr / (1.0 - b1 ** t)
        bc2_sqrt = (1.0 - b2 ** t).sqrt()
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            g = p.grad
            on = self._per_member(active, p).bool()
            m.copy_(torch.where(on, torch.lerp(m, g, 1 - b1), m))
            v.copy_(torch.where(on, v * b2 + (1 - b2) * g * g, v))
            denom = v.sqrt() / self._per_member(bc2_sqrt, p) + self.eps
            p.copy_(torch.where(on, p - self._per_member(step_size, p) * m / denom, p))

    def _uniform(self) -> bool:
        """Every member at the same step count with the same learning rate (no sweep over it,
        no masked step so far): then one fused Adam kernel over all of them is exact."""
        return bool((self.steps == self.steps[0]).all()) and bool((self.lr == self.lr[0]).all()) and \
            all(p.device.type in ("cpu", "cuda") for p in self.params)

    def _fused_step(self) -> None:
        with_grad = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not with_grad:
            return
        self.steps += 1
        step = torch.tensor(float(self.steps[0]), device=self.params[0].device)
        ps = [self.params[i] for i in with_grad]
        torch._fused_adam_(ps, [p.grad for p in ps], [self.exp_avg[i] for i in with_grad],
                           [self.exp_avg_sq[i] for i in with_grad], [], [step] * len(ps), lr=float(self.lr[0]),
                           beta1=self.betas[0], beta2=self.betas[1], weight_decay=0.0, eps=self.eps,
                           amsgrad=False, maximize=False)


class MemberRMSprop(_MemberOptimizer):
    """RMSprop (torch.optim.RMSprop's plain form: no momentum, not centred) over parameters
    stacked on a leading member axis, member by member, with :class:`MemberAdam`'s per-member
    learning rate, clipping and masked steps."""

    state_names = ("square_avg",)

    def __init__(self, params: Iterable[torch.Tensor], lr: float | torch.Tensor, members: int,
                 alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(params, lr, members)
        self.alpha, self.eps = float(alpha), float(eps)
        self.square_avg = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, mask: torch.Tensor | None = None) -> None:
        active = torch.ones(self.M, dtype=torch.bool, device=self.steps.device) if mask is None else mask.bool()
        self.steps += active.to(self.steps.dtype)
        for p, sq in zip(self.params, self.square_avg):
            if p.grad is None:
                continue
            g = p.grad
            on = self._per_member(active, p).bool()
            sq.copy_(torch.where(on, sq * self.alpha + (1 - self.alpha) * g * g, sq))
            avg = sq.sqrt() + self.eps
            p.copy_(torch.where(on, p - self._per_member(self.lr, p) * g / avg, p))
