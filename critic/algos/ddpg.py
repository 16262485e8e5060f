"""Deep Deterministic Policy Gradient (Lillicrap et al. 2015, arXiv:1509.02971), continuous
actions: the Keras DDPG example's algorithm with the terminal mask it forgot.

    y   = r + discount * Q'(s', mu'(s'))          (discount = 0 past a termination)
    L_Q = 1/2 E[(Q(s, a) - y)^2]
    L_mu = -E[Q(s, mu(s))]
Both targets follow by Polyak averaging with rate ``tau`` after every step. The actor is a
tanh MLP in [-1, 1] (rescaled to the Box), last layer initialised in +-3e-3; exploration adds
Gaussian or Ornstein-Uhlenbeck noise. The networks (one critic), exploration and replay
collector are ``modules/deterministic.py``'s and ``critic.collect``'s, which TD3 uses too.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import Tensor

from critic.agent import Agent
from critic.algos.batch import Batched
from critic.algos.common import build_deterministic, deterministic_batch_act, deterministic_update_members
from critic.config import DeterministicConfig
from critic.losses.actor import deterministic_actor_loss
from critic.losses.q import q_regression_loss, td_target
from critic.modules.deterministic import DeterministicNets
from critic.modules.target import frozen, polyak_update
from critic.optim import backward_step


@dataclass(kw_only=True)
class DDPGConfig(DeterministicConfig):
    pass


def update(nets: DeterministicNets, opts: dict[str, torch.optim.Optimizer], batch: dict[str, Tensor]
           ) -> dict[str, Tensor]:
    """One critic step and one actor step (the agent then moves both targets)."""
    obs, act, rew, next_obs, disc = (batch[k] for k in ("obs", "actions", "rewards", "next_obs", "discount"))
    with torch.no_grad():
        y = td_target(rew, disc, nets.critic_target.member(0, next_obs, nets.mu(next_obs, target=True)))
    critic_loss = q_regression_loss(nets.critic.member(0, obs, act)[None], y)
    backward_step(opts["critic"], critic_loss, None)
    with frozen(nets.critic):  # the actor's gradient reaches the actions, not the critic's weights
        actor_loss = deterministic_actor_loss(nets.critic.member(0, obs, nets.mu(obs)))
        backward_step(opts["actor"], actor_loss, None)
    return {"loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach()}


class DDPG(Batched, Agent):
    """``critic.DDPG(env, **hparams)``: DDPG for Box action spaces; ``critic.DDPG(env, seeds=[...])``
    trains a batch of them."""

    algo = "ddpg"
    config_cls = DDPGConfig
    allowed_actions = (gym.spaces.Box,)
    sweepable = ("learning_rate", "actor_learning_rate", "critic_learning_rate", "gamma", "tau", "action_noise")

    @classmethod
    def batch_act(cls, batch):
        return deterministic_batch_act(batch)

    @classmethod
    def batch_update(cls, batch, data, active):
        return deterministic_update_members(batch, data, active)

    def _build(self) -> None:
        build_deterministic(self, n_critics=1)

    def _update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        metrics = update(self.nets, self.optims, batch)
        polyak_update(self.nets.critic, self.nets.critic_target, self.cfg.tau)
        polyak_update(self.nets.actor, self.nets.actor_target, self.cfg.tau)
        return metrics

    def _policy(self, obs: Tensor, deterministic: bool) -> Tensor:
        return self.exploration.act(obs, deterministic)

    def _extra_state(self):
        return self.exploration.state()

    def _load_extra_state(self, tensors, meta) -> None:
        self.exploration.load_state(tensors, meta)
