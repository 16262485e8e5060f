"""Storage: on-policy rollouts (and, later, replay)."""

from critic.buffers.replay import ReplayBuffer
from critic.buffers.rollout import RolloutBuffer

__all__ = ["ReplayBuffer", "RolloutBuffer"]
