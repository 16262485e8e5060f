"""What every collector answers (the agent's training loop only talks to this)."""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Iterator

import torch

from critic.collect.stream import EnvStream

Batch = dict[str, torch.Tensor]


def storage_state(generator: torch.Generator, storage: Any, save: bool
                  ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A replaying collector's checkpoint part: its sampling generator and, with ``save``, the
    storage's contents (``replay/...`` tensors, ``meta["replay"]``)."""
    tensors = {"replay/sample_generator": generator.get_state()}
    meta: dict[str, Any] = {}
    if save:
        stored, meta["replay"] = storage.state_dict()
        tensors.update(stored)
    return tensors, meta


def load_storage_state(generator: torch.Generator, storage: Any, tensors: dict[str, torch.Tensor],
                       meta: dict[str, Any]) -> bool:
    """The inverse of :func:`storage_state`; whether the storage's contents were in it."""
    generator.set_state(tensors["replay/sample_generator"])
    if "replay" not in meta:
        return False
    storage.load_state_dict(tensors, meta["replay"])
    return True


class Collector:
    envs_elsewhere: str | None = None
    """Why the training envs are not in this process (their state then stays out of checkpoints)."""

    def collect(self, stream: EnvStream | None, env_steps: int) -> tuple[int, list[float]]:
        """Step the envs and fill the storage (``env_steps``: the agent's count so far); returns
        (env steps taken, finished episodes' returns)."""
        raise NotImplementedError

    def batches(self, env_steps: int) -> Iterator[Batch]:
        """The batches to update on after a collection at ``env_steps`` (maybe none)."""
        raise NotImplementedError

    def sample(self) -> Batch:
        """One batch from the storage, whether or not an update is due (benchmarks, tests)."""
        raise NotImplementedError

    def precision(self) -> ContextManager[Any]:
        """The context the updates run in (bf16 autocast for replay with precision='bf16')."""
        return contextlib.nullcontext()

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """This collector's part of a checkpoint: tensors and JSON metadata."""
        return {}, {}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass
