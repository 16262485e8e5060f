"""Networks shared by algorithms: on-policy actor-critic, target-network helpers."""

from critic.modules.policies import ActorCriticNet
from critic.modules.target import hard_update, polyak_update

__all__ = ["ActorCriticNet", "hard_update", "polyak_update"]
