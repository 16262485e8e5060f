"""JSON round trip of the spaces critic supports (so a saved model loads without its env)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    from critic.envs.packing import PackedObs

    if isinstance(space, PackedObs):  # stored as the env's own Dict/Tuple space
        return {"type": "Packed", "space": space_to_dict(space.layout.space)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {str(k): space_to_dict(s) for k, s in space.spaces.items()}}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_dict(s) for s in space.spaces]}
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "shape": list(space.shape)}
    if isinstance(space, gym.spaces.Box):
        low, high = space.low, space.high
        uniform = np.all(low == low.flat[0]) and np.all(high == high.flat[0])
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": float(low.flat[0]) if uniform else low.tolist(),
                "high": float(high.flat[0]) if uniform else high.tolist()}
    raise TypeError(f"cannot serialise space {space!r}")


def _num(x: Any) -> Any:
    if isinstance(x, list):
        return [_num(v) for v in x]
    return float(x) if x is not None else np.nan


def space_from_dict(d: dict[str, Any]) -> gym.Space:
    if d["type"] == "Packed":
        from critic.envs.packing import PackedObs

        return PackedObs(space_from_dict(d["space"]))
    if d["type"] == "Dict":
        return gym.spaces.Dict({k: space_from_dict(v) for k, v in d["spaces"].items()})
    if d["type"] == "Tuple":
        return gym.spaces.Tuple([space_from_dict(v) for v in d["spaces"]])
    if d["type"] == "Discrete":
        return gym.spaces.Discrete(d["n"], start=d.get("start", 0))
    if d["type"] == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(np.array(d["nvec"]))
    if d["type"] == "MultiBinary":
        shape = d["shape"]
        return gym.spaces.MultiBinary(shape[0] if len(shape) == 1 else shape)
    if d["type"] == "Box":
        dtype = np.dtype(d["dtype"])
        shape = tuple(d["shape"])
        low = np.broadcast_to(np.array(_num(d["low"]), dtype=np.float64), shape)
        high = np.broadcast_to(np.array(_num(d["high"]), dtype=np.float64), shape)
        return gym.spaces.Box(low=low.astype(dtype), high=high.astype(dtype), shape=shape, dtype=dtype)
    raise ValueError(f"unknown space type {d.get('type')!r}")


def same_space(a: gym.Space, b: gym.Space) -> bool:
    return space_to_dict(a) == space_to_dict(b)
