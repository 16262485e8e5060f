"""Algorithm names -> agent classes (imported lazily so the CLI starts fast)."""

from __future__ import annotations

import difflib
import importlib

from critic.config import ConfigError

ALGOS = {
    "a2c": ("critic.algos.a2c", "A2C"),
    "a3c": ("critic.algos.a3c", "A3C"),
    "acer": ("critic.algos.acer", "ACER"),
    "ddpg": ("critic.algos.ddpg", "DDPG"),
    "ppo": ("critic.algos.ppo", "PPO"),
    "sac": ("critic.algos.sac", "SAC"),
    "td3": ("critic.algos.td3", "TD3"),
}


def get_algo(name: str):
    key = name.lower()
    if key not in ALGOS:
        close = difflib.get_close_matches(key, list(ALGOS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown algorithm '{name}' (available: {', '.join(sorted(ALGOS))}){hint}")
    module, cls = ALGOS[key]
    return getattr(importlib.import_module(module), cls)
