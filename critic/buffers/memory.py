"""Refuse a replay buffer that cannot fit before allocating it.

A buffer is allocated zero-filled when the agent is built, so one larger than the free memory
gets the process killed by the OS's out-of-memory killer, or fails with an allocator message
that names no setting. :func:`check_fits` turns that into a ``ConfigError`` that names the
field, the bytes it needs and the bytes available, before anything is allocated.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from critic.config import ConfigError


def nbytes(specs: Iterable[tuple[tuple[int, ...], torch.dtype]]) -> int:
    """Total bytes of tensors of the given (shape, dtype)."""
    return sum(math.prod(shape) * torch.empty((), dtype=dt).element_size() for shape, dt in specs)


def available_bytes(device: torch.device) -> int | None:
    """Memory a new allocation can use on ``device``; ``None`` when unknown.

    CPU: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else the physical memory. CUDA: the free
    device memory."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:
            return None
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 / 10 else f"{n / 1024**2:.0f} MiB"


def check_fits(field: str, value: int, need: int, device: torch.device, per_item: float, hint: str = "") -> None:
    """Raise ``ConfigError`` naming ``field`` when ``need`` bytes exceed what ``device`` has free.

    ``per_item`` is the bytes per unit of ``field`` (to say how large it may be here)."""
    free = available_bytes(device)
    if free is None or need <= free:
        return
    most = int(free // per_item) if per_item > 0 else 0
    raise ConfigError(f"invalid value for '{field}': {value:,} needs {_gb(need)} of {device.type} memory for the "
                      f"replay buffer, but {_gb(free)} is available (allowed here: at most about {most:,}"
                      f"{'; ' + hint if hint else ''})")
