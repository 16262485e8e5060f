"""Twin Delayed DDPG (Fujimoto et al. 2018, arXiv:1802.09477), continuous actions.

Critic target with target policy smoothing and clipped double-Q:
    a' = clip(mu'(s') + clip(N(0, target_noise), -c, c), -1, 1)
    y  = r + discount * min_e Q'_e(s', a')
    L_Q = 1/2 sum_e E[(Q_e(s, a) - y)^2]
Every ``policy_delay`` critic steps: the actor maximises Q_1(s, mu(s)) and both targets
(actor and critics) move by Polyak averaging with rate ``tau``.
The actor is a tanh MLP in [-1, 1] (rescaled to the Box), last layer initialised in +-3e-3;
networks and exploration are ``modules/deterministic.py``'s, shared with DDPG.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import Tensor

from critic.agent import Agent
from critic.algos.batch import Batched
from critic.algos.common import build_deterministic, deterministic_batch_act, deterministic_update_members
from critic.config import DeterministicConfig, check
from critic.losses.actor import deterministic_actor_loss
from critic.losses.q import q_regression_loss, td_target
from critic.modules.deterministic import DeterministicNets
from critic.modules.target import frozen, polyak_update
from critic.optim import backward_step


@dataclass(kw_only=True)
class TD3Config(DeterministicConfig):
    policy_delay: int = 2
    """Critic steps per actor (and target) update."""
    target_noise: float = 0.2
    """Std of the target policy smoothing noise (in the policy's [-1, 1] range)."""
    target_noise_clip: float = 0.5
    """Clip of the target policy smoothing noise."""
    n_critics: int = 2
    """Critics in the ensemble (the target takes their minimum)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.policy_delay >= 1, "policy_delay", self.policy_delay, "an integer >= 1")
        check(self.target_noise >= 0, "target_noise", self.target_noise, "a number >= 0")
        check(self.target_noise_clip >= 0, "target_noise_clip", self.target_noise_clip, "a number >= 0")
        check(self.n_critics >= 1, "n_critics", self.n_critics, "an integer >= 1")


def update(nets: DeterministicNets, opts: dict[str, torch.optim.Optimizer], batch: dict[str, Tensor], cfg: TD3Config,
           step: int, noise: Tensor | None = None) -> dict[str, Tensor]:
    """One critic step; the actor and targets every ``policy_delay`` steps (``step`` counts updates).
    ``noise``: the smoothing noise's standard normal draw, from torch's global generator unless given."""
    obs, act, rew, next_obs, disc = (batch[k] for k in ("obs", "actions", "rewards", "next_obs", "discount"))
    with torch.no_grad():
        a2 = nets.mu(next_obs, target=True)
        if cfg.target_noise > 0:
            noise = ((torch.randn_like(a2) if noise is None else noise) * cfg.target_noise).clamp(-cfg.target_noise_clip, cfg.target_noise_clip)
            a2 = (a2 + noise).clamp(-1.0, 1.0)
        y = td_target(rew, disc, nets.critic_target(next_obs, a2).min(0).values)
    critic_loss = q_regression_loss(nets.critic(obs, act), y)
    backward_step(opts["critic"], critic_loss, None)
    metrics = {"loss/critic": critic_loss.detach()}
    if step % cfg.policy_delay == 0:
        with frozen(nets.critic):  # the actor's gradient reaches the actions, not the critic's weights
            actor_loss = deterministic_actor_loss(nets.critic.member(0, obs, nets.mu(obs)))
            backward_step(opts["actor"], actor_loss, None)
        polyak_update(nets.critic, nets.critic_target, cfg.tau)
        polyak_update(nets.actor, nets.actor_target, cfg.tau)
        metrics["loss/actor"] = actor_loss.detach()
    return metrics


class TD3(Batched, Agent):
    """``critic.TD3(env, **hparams)``: TD3 for Box action spaces; ``critic.TD3(env, seeds=[...])``
    trains a batch of them."""

    algo = "td3"
    config_cls = TD3Config
    allowed_actions = (gym.spaces.Box,)
    sweepable = ("learning_rate", "actor_learning_rate", "critic_learning_rate", "gamma", "tau", "action_noise",
                 "target_noise", "target_noise_clip")

    @classmethod
    def batch_act(cls, batch):
        return deterministic_batch_act(batch)

    @classmethod
    def batch_update(cls, batch, data, active):
        cfg = batch.agents[0].cfg
        return deterministic_update_members(batch, data, active, cfg.policy_delay, smoothing=True)

    def _build(self) -> None:
        build_deterministic(self, self.cfg.n_critics)

    def _update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return update(self.nets, self.optims, batch, self.cfg, self.updates + 1)

    def _policy(self, obs: Tensor, deterministic: bool) -> Tensor:
        return self.exploration.act(obs, deterministic)

    def _extra_state(self):
        return self.exploration.state()

    def _load_extra_state(self, tensors, meta) -> None:
        self.exploration.load_state(tensors, meta)

