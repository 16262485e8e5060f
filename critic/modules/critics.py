"""Q-function ensembles for the off-policy actor-critics (DDPG: E=1, TD3/SAC: E=2).

The E critics are one stacked network: each layer is a ``[E, in, out]`` batched matmul, so
twin critics cost one forward and one backward pass, not two Python calls.

Two kinds (keras-gym's names): type I takes ``(s, a)`` and returns ``[E, B]`` (continuous
actions); type II (``act_dim=0, n_outputs=|A|``) takes ``s`` and returns ``[E, B, |A|]``,
one value per discrete action (discrete SAC). Image observations pass through one CNN
encoder shared by the members (``encoder``), the way Stable-Baselines3's critics share theirs.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from critic.nn import activation_fn


class QEnsemble(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), n_critics: int = 2,
                 activation: str = "relu", last_layer_bound: float | None = None, n_outputs: int = 1,
                 encoder: nn.Module | None = None, layer_norm: bool = False):
        super().__init__()
        self.E = n_critics
        self.act = activation_fn(activation)
        self.n_outputs = n_outputs
        dims = [obs_dim + act_dim, *hidden, n_outputs]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            w = torch.empty(n_critics, a, b)
            bias = torch.empty(n_critics, 1, b)
            for e in range(n_critics):  # each member initialised like an independent nn.Linear
                # (PyTorch's default init, as Stable-Baselines3 and CleanRL use for critics)
                lin = nn.Linear(a, b)
                last = i == len(dims) - 2
                if last and last_layer_bound is not None:
                    nn.init.uniform_(lin.weight, -last_layer_bound, last_layer_bound)
                    nn.init.uniform_(lin.bias, -last_layer_bound, last_layer_bound)
                w[e], bias[e, 0] = lin.weight.detach().T, lin.bias.detach()
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(bias))
        # layer_norm: each critic's hidden layers normalised (LayerNorm, its own scale and shift)
        # before the activation.
        self.ln_weights = nn.ParameterList([nn.Parameter(torch.ones(n_critics, 1, h)) for h in hidden]) \
            if layer_norm else None
        self.ln_biases = nn.ParameterList([nn.Parameter(torch.zeros(n_critics, 1, h)) for h in hidden]) \
            if layer_norm else None
        # Image observations: one CNN (``obs_dim`` = its feature width) shared by the E members,
        # trained by the critic loss only; vectors go in flattened.
        self.encoder = encoder

    def _input(self, obs: Tensor, act: Tensor | None) -> Tensor:
        x = self.encoder(obs) if self.encoder is not None else obs.reshape(obs.shape[0], -1)
        return x if act is None else torch.cat([x, act.to(x.dtype)], -1)

    def _out(self, h: Tensor) -> Tensor:
        h = h.float()  # float32 Q-values under bf16 autocast (a no-op otherwise)
        return h.squeeze(-1) if self.n_outputs == 1 else h

    def forward(self, obs: Tensor, act: Tensor | None = None) -> Tensor:
        """Q-values of every member for the same batch: ``[E, B]`` for ``(s, a)``, or
        ``[E, B, |A|]`` for ``s`` alone (type II)."""
        x = self._input(obs, act)
        return self._out(self._layers(x.unsqueeze(0).expand(self.E, *x.shape), list(self.weights),
                                      list(self.biases), self._norms()))

    def _norms(self, params: dict[str, Tensor] | None = None, prefix: str = "", pick=None):
        if self.ln_weights is None:
            return None
        if params is None:
            return list(zip(self.ln_weights, self.ln_biases))
        return [(pick(params[f"{prefix}.ln_weights.{i}"]), pick(params[f"{prefix}.ln_biases.{i}"]))
                for i in range(len(self.ln_weights))]

    def stacked(self, params: dict[str, Tensor], prefix: str, obs: Tensor, act: Tensor | None = None,
                e: int | None = None) -> Tensor:
        """M stacked copies of this ensemble at once (``params[f"{prefix}.weights.{i}"]`` is
        ``[M, E, in, out]``; vector ``obs [M, B, ...]``): ``[M, E, B]`` (or ``[M, E, B, |A|]``);
        with ``e``, critic ``e`` alone: ``[M, B]`` (or ``[M, B, |A|]``)."""
        if self.encoder is not None:
            raise TypeError("QEnsemble.stacked: image encoders are not stacked (use Members.vmap)")
        x = obs.reshape(*obs.shape[:2], -1)
        if act is not None:
            x = torch.cat([x, act.to(x.dtype)], -1)
        n = len(self.weights)
        pick = (lambda t: t) if e is None else (lambda t: t[:, e:e + 1])  # noqa: E731
        h = x.unsqueeze(1).expand(x.shape[0], self.E if e is None else 1, *x.shape[1:])
        out = self._out(self._layers(h, [pick(params[f"{prefix}.weights.{i}"]) for i in range(n)],
                                     [pick(params[f"{prefix}.biases.{i}"]) for i in range(n)],
                                     self._norms(params, prefix, pick)))
        return out if e is None else out.squeeze(1)

    def _layers(self, h: Tensor, weights: list[Tensor], biases: list[Tensor],
                norms: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
        n = len(weights)
        for i, (w, b) in enumerate(zip(weights, biases)):
            if i == n - 1 and self.n_outputs == 1:
                # One output column: a batched matrix-vector product. MKL's batched GEMM takes
                # 5-15x longer for it (forward and both backward products) than this
                # multiply-and-sum, whose backward is two broadcast multiplies.
                h = torch.sum(h * w.transpose(-1, -2), -1, keepdim=True) + b
            elif h.dim() == 3:
                h = torch.baddbmm(b, h, w)
            else:  # members stacked in front: [M, E, B, in] @ [M, E, in, out]
                h = torch.matmul(h, w) + b
            if i < n - 1:
                if norms is not None:
                    h = self._norm(h, *norms[i])
                h = self.act(h)
        return h

    @staticmethod
    def _norm(h: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        return torch.addcmul(shift, F.layer_norm(h, h.shape[-1:]), scale)

    def member(self, e: int, obs: Tensor, act: Tensor | None = None) -> Tensor:
        """Q of member ``e`` alone, ``[B]`` or ``[B, |A|]`` (e.g. TD3's actor loss uses Q1)."""
        h = self._input(obs, act)
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.addmm(b[e], h, w[e])
            if i < n - 1:
                if self.ln_weights is not None:
                    h = self._norm(h, self.ln_weights[i][e], self.ln_biases[i][e])
                h = self.act(h)
        return self._out(h)
