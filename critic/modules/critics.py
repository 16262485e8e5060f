"""Q-function ensembles for the off-policy actor-critics (DDPG: E=1, TD3/SAC: E=2).

The E critics are one stacked network: each layer is a ``[E, in, out]`` batched matmul, so
twin critics cost one forward and one backward pass, not two Python calls. Output ``[E, B]``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from critic.nn import ACTIVATION_FNS


class QEnsemble(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256), n_critics: int = 2,
                 activation: str = "relu", last_layer_bound: float | None = None):
        super().__init__()
        self.E = n_critics
        self.act = ACTIVATION_FNS[activation]
        dims = [obs_dim + act_dim, *hidden, 1]
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

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        """Q-values ``[E, B]`` of every member for the same ``[B, obs]`` and ``[B, act]``."""
        x = torch.cat([obs.reshape(obs.shape[0], -1), act], -1)
        h = x.unsqueeze(0).expand(self.E, *x.shape)
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < n - 1:
                h = self.act(h)
        return h.squeeze(-1)

    def member(self, e: int, obs: Tensor, act: Tensor) -> Tensor:
        """Q of member ``e`` alone, ``[B]`` (e.g. TD3's actor loss uses Q1)."""
        h = torch.cat([obs.reshape(obs.shape[0], -1), act], -1)
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.addmm(b[e], h, w[e])
            if i < n - 1:
                h = self.act(h)
        return h.squeeze(-1)
