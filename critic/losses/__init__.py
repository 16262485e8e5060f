"""Pure loss functions: ``(tensors, hyper-parameters) -> (loss, metrics)``."""

from critic.losses.pg import (
    UPDATE_STRATEGIES,
    cross_entropy_loss,
    entropy_loss,
    pg_loss,
    policy_loss,
    ppo_clip_loss,
    value_loss,
)

__all__ = ["UPDATE_STRATEGIES", "cross_entropy_loss", "entropy_loss", "pg_loss", "policy_loss",
           "ppo_clip_loss", "value_loss"]
