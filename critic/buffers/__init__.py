"""Storage: on-policy rollouts (and, later, replay)."""

from critic.buffers.rollout import RolloutBuffer

__all__ = ["RolloutBuffer"]
