"""On-policy actor-critic network: encoder, actor and critic bodies (shared or separate), heads."""

from __future__ import annotations

import gymnasium as gym
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from critic.distributions import make_dist, param_dim
from critic.modules.members import stackable, stacked_linear, stacked_sequential
from critic.nn import (_FAST_FNS, ACTIVATIONS, encoder_for, init_layer, is_image_space, is_packed_space, mask_field,
                       mask_logits, mlp, read_mask)


def _plan(seq: nn.Module) -> list[tuple[nn.Linear, nn.LayerNorm | None, object]] | None:
    """``critic.nn.mlp``'s Linear-[LayerNorm]-activation triples as (linear, norm, function), run
    as plain ``F.linear``/``F.layer_norm`` calls; None for any other body (called as a module, so
    every layer it holds is applied)."""
    if not isinstance(seq, nn.Sequential):
        return None
    mods, out, i = list(seq), [], 0
    while i < len(mods):
        lin = mods[i]
        norm = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.LayerNorm) else None
        j = i + (2 if norm is not None else 1)
        if not isinstance(lin, nn.Linear) or j >= len(mods) or type(mods[j]) not in _ACT_TYPES:
            return None
        act = mods[j]
        fast = _FAST_FNS.get(type(act).__name__.lower())
        out.append((lin, norm, fast if fast is not None and repr(act) == repr(type(act)()) else act))
        i = j + 1
    return out


_ACT_TYPES = set(ACTIVATIONS.values())


class _Whole:
    """A body run as a module (kept out of the network's registered submodules: it is already
    registered under its own name)."""

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, x: Tensor) -> Tensor:
        return self.module(x)


class ActorCriticNet(nn.Module):
    """pi(a|s) and V(s) for Discrete, MultiDiscrete, MultiBinary and Box actions.

    Vector observations: two separate MLPs (``shared=False``, the PPO default) or one body
    with two heads (``shared=True``). Image observations always share one Nature-CNN encoder.
    A user ``encoder`` (an ``nn.Module`` with ``out_dim``) is shared by both sides and feeds their
    MLPs. Box actions use a state-independent log-std parameter. The policy head starts near
    uniform (gain 0.01). The MLPs run as plain ``F.linear``/activation calls: nn.Module
    dispatch costs a few microseconds per layer, a real share of a 64-64 network's forward.
    """

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, hidden_sizes=(64, 64),
                 activation: str = "tanh", shared: bool = False, ortho_init: bool = True,
                 log_std_init: float = 0.0, actor_sizes=None, critic_sizes=None, layer_norm: bool = False,
                 encoder: nn.Module | None = None, action_masks: bool = False):
        super().__init__()
        self.act_space = act_space
        # action masks stored in the observation rows (envs/masking.py): invalid actions' logits
        # at the dtype's lowest value (Discrete, MultiDiscrete)
        self._mask = mask_field(obs_space) if action_masks else None  # (sizes checked by the agent)
        if encoder is None and is_packed_space(obs_space):  # Dict/Tuple: one encoder per key, then the MLPs
            encoder = encoder_for(obs_space)
        pi_sizes = tuple(actor_sizes or hidden_sizes)
        vf_sizes = tuple(critic_sizes or hidden_sizes)
        self._vector = not is_image_space(obs_space) and encoder is None  # raw vectors into the MLPs
        image = is_image_space(obs_space) and encoder is None  # the Nature-CNN, heads on its features
        self.shared = shared or image
        P = param_dim(act_space)
        self.encoder = encoder if encoder is not None else encoder_for(obs_space)
        d = self.encoder.out_dim
        if self.shared:
            if not image and pi_sizes != vf_sizes:
                raise ValueError(f"a shared body has one set of widths, but the actor's are {list(pi_sizes)} "
                                 f"and the critic's {list(vf_sizes)}")
            self.body = nn.Identity() if image else mlp(d, pi_sizes, None, activation, ortho_init,
                                                        layer_norm=layer_norm)
            d_pi = d_vf = d if image else pi_sizes[-1]
        else:
            self.pi_body = mlp(d, pi_sizes, None, activation, ortho_init, layer_norm=layer_norm)
            self.vf_body = mlp(d, vf_sizes, None, activation, ortho_init, layer_norm=layer_norm)
            d_pi, d_vf = pi_sizes[-1], vf_sizes[-1]
        self.pi_head, self.vf_head = nn.Linear(d_pi, P), nn.Linear(d_vf, 1)
        if ortho_init:
            init_layer(self.pi_head, 0.01)
            init_layer(self.vf_head, 1.0)
        self.log_std = (nn.Parameter(torch.full((P,), float(log_std_init)))
                        if isinstance(act_space, gym.spaces.Box) else None)
        self._body = self._runner(self.body) if self.shared else None
        self._pi = self._runner(self.pi_body) if not self.shared else None
        self._vf = self._runner(self.vf_body) if not self.shared else None

    @staticmethod
    def _runner(seq: nn.Module):
        """How :meth:`_mlp` runs a body: ``(linears, act)`` for Linear-activation pairs with one
        activation function (the common case, a tight loop), a plan of (linear, norm, activation)
        triples, or the module itself (the identity of an image body, or any other layers)."""
        plan = _plan(seq)
        if plan is None:
            return _Whole(seq)
        if all(norm is None for _, norm, _ in plan) and len({id(f) for _, _, f in plan}) == 1:
            return [lin for lin, _, _ in plan], plan[0][2]
        return plan

    @staticmethod
    def _mlp(x: Tensor, runner) -> Tensor:
        if isinstance(runner, tuple):
            layers, act = runner
            for lin in layers:
                x = act(F.linear(x, lin.weight, lin.bias))
            return x
        if isinstance(runner, list):
            for lin, norm, act in runner:
                x = F.linear(x, lin.weight, lin.bias)
                if norm is not None:
                    x = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
                x = act(x)
            return x
        return runner(x)

    def _encode(self, obs: Tensor) -> Tensor:
        if self._vector:
            return obs.reshape(obs.shape[0], -1) if obs.dim() > 2 else obs
        return self.encoder(obs)

    def _heads(self, h_pi: Tensor, h_vf: Tensor) -> tuple[Tensor, Tensor]:
        return (F.linear(h_pi, self.pi_head.weight, self.pi_head.bias),
                F.linear(h_vf, self.vf_head.weight, self.vf_head.bias).squeeze(-1))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Distribution parameters ``[B, P]`` and values ``[B]``."""
        x = self._encode(obs)
        if self.shared:
            h = self._mlp(x, self._body)
            params, v = self._heads(h, h)
        else:
            params, v = self._heads(self._mlp(x, self._pi), self._mlp(x, self._vf))
        if self._mask is not None:
            params = mask_logits(params, read_mask(obs, self._mask))
        return params, v

    def value(self, obs: Tensor) -> Tensor:
        h = self._mlp(self._encode(obs), self._body if self.shared else self._vf)
        return F.linear(h, self.vf_head.weight, self.vf_head.bias).squeeze(-1)

    def dist(self, params: Tensor):
        return make_dist(self.act_space, params, self.log_std)

    def act(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Sampled (or modal) actions, their log-probs and the values, all for one batch."""
        params, v = self(obs)
        d = self.dist(params)
        a = d.mode() if deterministic else d.sample()
        return a, d.log_prob(a), v

    def side_tensors(self, side: str, grads: bool = False) -> list[Tensor | None]:
        """The parameters (or their gradients) the actor or the critic computes with. With a
        shared body both sides include it; with separate networks the lists are disjoint."""
        if self.shared:
            common = [p for n, p in self.named_parameters() if not n.startswith(("pi_head", "vf_head", "log_std"))]
        else:
            common = list((self.pi_body if side == "actor" else self.vf_body).parameters())
        own = ([*self.pi_head.parameters()] + ([self.log_std] if self.log_std is not None else [])
               if side == "actor" else [*self.vf_head.parameters()])
        return [p.grad if grads else p for p in [*common, *own]]


class StackedActorCritic:
    """M members' :class:`ActorCriticNet` at once, from their weights stacked ``[M, ...]``
    (``SeedBatch.members().params``): ``(params [M, B, P], values [M, B])`` for observations
    ``[M, B, ...]``, one batched product per layer, and ``dist`` as the network's (the log-std
    is each member's). Vector observations only (:meth:`stackable`)."""

    def __init__(self, net: ActorCriticNet, params: dict[str, Tensor]):
        self.net, self.params, self.act_space = net, params, net.act_space

    @staticmethod
    def stackable(net: nn.Module) -> bool:
        if not isinstance(net, ActorCriticNet) or not net._vector:
            return False
        bodies = [net.body] if net.shared else [net.pi_body, net.vf_body]
        return all(stackable(b) for b in bodies)

    def __call__(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        p, net = self.params, self.net
        x = obs.reshape(*obs.shape[:2], -1)
        if net.shared:
            h_pi = h_vf = stacked_sequential(net.body, p, "body", x)
        else:
            h_pi, h_vf = (stacked_sequential(net.pi_body, p, "pi_body", x),
                          stacked_sequential(net.vf_body, p, "vf_body", x))
        return (stacked_linear(h_pi, p["pi_head.weight"], p["pi_head.bias"]),
                stacked_linear(h_vf, p["vf_head.weight"], p["vf_head.bias"]).squeeze(-1))

    def dist(self, params: Tensor):
        log_std = self.params.get("log_std")
        return make_dist(self.act_space, params, log_std.unsqueeze(-2) if log_std is not None else None)
