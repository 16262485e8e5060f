"""Seeding and RNG state capture (torch, NumPy, Python) for determinism and resume."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy's legacy global RNG and torch; return a fresh NumPy Generator."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def rng_state(np_rng: np.random.Generator) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """JSON-safe RNG state plus tensors (torch's generator state) for a checkpoint."""
    py = random.getstate()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy_legacy": _legacy_np_state(),
        "numpy": np_rng.bit_generator.state,
    }
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda{i}"] = s
    return meta, tensors


def set_rng_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor], np_rng: np.random.Generator) -> None:
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    leg = meta["numpy_legacy"]
    np.random.set_state((leg[0], np.asarray(leg[1], dtype=np.uint32), leg[2], leg[3], leg[4]))
    np_rng.bit_generator.state = meta["numpy"]
    torch.set_rng_state(tensors["rng/torch"])
    if torch.cuda.is_available():
        keys = sorted((k for k in tensors if k.startswith("rng/cuda")), key=lambda k: int(k[len("rng/cuda"):]))
        states = [tensors[k] for k in keys]  # by device number (text order puts cuda10 before cuda2)
        if states:
            torch.cuda.set_rng_state_all(states)


def _legacy_np_state() -> list[Any]:
    s = np.random.get_state()
    return [s[0], s[1].tolist(), int(s[2]), int(s[3]), float(s[4])]
