"""Deep Deterministic Policy Gradient (Lillicrap et al. 2015, arXiv:1509.02971), continuous
actions: the Keras DDPG example's algorithm with the terminal mask it forgot.

    y   = r + discount * Q'(s', mu'(s'))          (discount = 0 past a termination)
    L_Q = 1/2 E[(Q(s, a) - y)^2]
    L_mu = -E[Q(s, mu(s))]
Both targets follow by Polyak averaging with rate ``tau`` after every step. The actor is a
tanh MLP in [-1, 1] (rescaled to the Box), last layer initialised in +-3e-3; exploration adds
Gaussian or Ornstein-Uhlenbeck noise. Networks, exploration and checkpoints are TD3's: DDPG is
TD3 without the twin critic, the target smoothing and the delay.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from critic.algos.td3 import TD3, DeterministicConfig, TD3Nets
from critic.modules.target import polyak_update
from critic.optim import backward_step


@dataclass(kw_only=True)
class DDPGConfig(DeterministicConfig):
    pass


def update(nets: TD3Nets, opts: dict[str, torch.optim.Optimizer], batch: dict[str, Tensor]) -> dict[str, Tensor]:
    obs, act, rew, next_obs, disc = (batch[k] for k in ("obs", "actions", "rewards", "next_obs", "discount"))
    with torch.no_grad():
        y = rew + disc * nets.critic_target.member(0, next_obs, nets.mu(next_obs, target=True))
    critic_loss = 0.5 * (nets.critic.member(0, obs, act) - y).square().mean()
    backward_step(opts["critic"], critic_loss, None)
    nets.critic.requires_grad_(False)  # no critic weight gradients in the actor step
    actor_loss = -nets.critic.member(0, obs, nets.mu(obs)).mean()
    backward_step(opts["actor"], actor_loss, None)
    nets.critic.requires_grad_(True)
    return {"loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach()}


class DDPG(TD3):
    """``critic.DDPG(env, **hparams)``: DDPG for Box action spaces."""

    algo = "ddpg"
    config_cls = DDPGConfig

    def _n_critics(self) -> int:
        return 1

    def _update(self) -> dict[str, Tensor]:
        metrics = update(self.nets, self.optims, self._sample())
        polyak_update(self.nets.critic, self.nets.critic_target, self.cfg.tau)
        polyak_update(self.nets.actor, self.nets.actor_target, self.cfg.tau)
        return metrics
