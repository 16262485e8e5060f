"""Collectors: one per kind of data, between the envs and the storage.

    EnvStream (envs/step + normalisers)  ->  collector  ->  storage  ->  batches for the update

* :class:`RolloutCollector` - on-policy rollouts ``[T, N]`` (A2C, PPO, A3C's workers, Ray samplers);
* :class:`ReplayCollector` - replay stepping (DDPG, TD3, SAC): warm-up, exploration,
  ``train_freq``/``gradient_steps``, the bf16 context, Box rescaling;
* :class:`SequenceCollector` - ACER's segments with behaviour probabilities, and their replay.

Every collector takes its collaborators explicitly (the env stream, its storage, the acting
function), answers ``collect(stream) -> (env steps, finished episode returns)`` and
``batches(env_steps)`` (the batches to update on now), and contributes its own part of a
checkpoint (``state()`` / ``load_state()``). A member axis (many seeds in one process) puts a
leading ``M`` on the stream's observations, the acting function and the storage; the
collectors' loops stay as they are.
"""

from critic.collect.base import Collector
from critic.collect.replay import ReplayCollector
from critic.collect.rollout import RolloutCollector
from critic.collect.sequence import SequenceCollector
from critic.collect.stream import EnvStream, Preprocess

__all__ = ["Collector", "EnvStream", "Preprocess", "ReplayCollector", "RolloutCollector", "SequenceCollector"]
