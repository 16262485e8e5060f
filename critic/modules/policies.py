"""On-policy actor-critic network: encoder, actor and critic bodies (shared or separate), heads."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import Tensor, nn

from critic.distributions import make_dist, param_dim
from critic.nn import encoder_for, init_layer, is_image_space, mlp


class ActorCriticNet(nn.Module):
    """pi(a|s) and V(s) for Discrete, MultiDiscrete and Box actions.

    Vector observations: two MLPs (``shared=False``, the PPO default) or one body with two
    heads. Image observations always share one Nature-CNN encoder. Box actions use a
    state-independent log-std parameter. The policy head starts near uniform (gain 0.01).
    """

    def __init__(self, obs_space: gym.Space, act_space: gym.Space, hidden_sizes=(64, 64),
                 activation: str = "tanh", shared: bool = False, ortho_init: bool = True,
                 log_std_init: float = 0.0):
        super().__init__()
        self.act_space = act_space
        self.encoder = encoder_for(obs_space)
        d = self.encoder.out_dim
        self.shared = shared or is_image_space(obs_space)
        if self.shared:
            self.body = mlp(d, hidden_sizes, None, activation, ortho_init) if not is_image_space(obs_space) else nn.Identity()
            d_out = hidden_sizes[-1] if not is_image_space(obs_space) else d
            self.pi_body = self.vf_body = None
        else:
            self.body = None
            self.pi_body = mlp(d, hidden_sizes, None, activation, ortho_init)
            self.vf_body = mlp(d, hidden_sizes, None, activation, ortho_init)
            d_out = hidden_sizes[-1]
        self.pi_head = nn.Linear(d_out, param_dim(act_space))
        self.vf_head = nn.Linear(d_out, 1)
        if ortho_init:
            init_layer(self.pi_head, 0.01)
            init_layer(self.vf_head, 1.0)
        self.log_std = (nn.Parameter(torch.full((param_dim(act_space),), float(log_std_init)))
                        if isinstance(act_space, gym.spaces.Box) else None)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Distribution parameters ``[B, P]`` and values ``[B]``."""
        x = self.encoder(obs)
        if self.shared:
            h = self.body(x)
            return self.pi_head(h), self.vf_head(h).squeeze(-1)
        return self.pi_head(self.pi_body(x)), self.vf_head(self.vf_body(x)).squeeze(-1)

    def value(self, obs: Tensor) -> Tensor:
        x = self.encoder(obs)
        h = self.body(x) if self.shared else self.vf_body(x)
        return self.vf_head(h).squeeze(-1)

    def dist(self, params: Tensor):
        return make_dist(self.act_space, params, self.log_std)

    def act(self, obs: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Sampled (or modal) actions, their log-probs and the values, all for one batch."""
        params, v = self(obs)
        d = self.dist(params)
        a = d.mode() if deterministic else d.sample()
        return a, d.log_prob(a), v

    def actor_parameters(self):
        if self.shared:
            return [p for n, p in self.named_parameters() if not n.startswith("vf_")]
        return [p for n, p in self.named_parameters() if n.startswith(("pi_", "log_std")) or n.startswith("encoder")]

    def critic_parameters(self):
        if self.shared:
            return [p for n, p in self.named_parameters() if not n.startswith(("pi_", "log_std"))]
        return [p for n, p in self.named_parameters() if n.startswith("vf_") or n.startswith("encoder")]
