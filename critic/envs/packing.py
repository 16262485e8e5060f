"""Dict and Tuple observations, packed into one row of bytes.

A ``Dict`` (or ``Tuple``) observation space, nested at most one level, becomes a
:class:`PackedObs`: a 1-D uint8 ``Box`` whose rows hold each key's values in its own dtype,
side by side: float32 vectors (every ``Box`` that is not an image, ``MultiBinary``,
``MultiDiscrete``), int64 indices (``Discrete``), uint8 images (3-D uint8 ``Box``), and the
``action_mask`` key (PettingZoo's convention) as float32 0/1, kept out of the features.

Everything between the env and the networks (vector envs, rollouts, replay with
``optimize_memory``, n-step returns, batches of seeds, checkpoints) sees one uint8 row, so it
stores every key at its own width (images stay bytes) without knowing about keys; the networks'
:class:`critic.nn.DictEncoder` unpacks the row, encodes each key (the vectors concatenated, a
one-hot per Discrete, the Nature CNN per image) and concatenates the features; observation
normalisation normalises the float32 vectors only (:class:`PackedNormalizer`).

Vector fields come first, so all of them form one float32 block at the start of the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from critic.envs.errors import EnvError

MASK_KEY = "action_mask"


@dataclass(frozen=True)
class Field:
    key: str  # "obs", "goal", or "outer.inner" for one level of nesting; Tuple items are "0", "1", ...
    kind: str  # "vector" | "discrete" | "image" | "mask"
    shape: tuple[int, ...]  # the env's shape (images: as the env gives them, HWC or CHW)
    dtype: np.dtype  # the stored dtype: float32 (vector, mask), int64 (discrete), uint8 (image)
    offset: int  # byte offset in the row
    space: gym.Space  # the env's subspace

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def _items(space: gym.Space) -> list[tuple[str, gym.Space]]:
    if isinstance(space, gym.spaces.Dict):
        return [(str(k), s) for k, s in space.spaces.items()]
    return [(str(i), s) for i, s in enumerate(space.spaces)]


def _kind(key: str, space: gym.Space) -> tuple[str, tuple[int, ...], np.dtype]:
    if key.rsplit(".", 1)[-1] == MASK_KEY and isinstance(space, (gym.spaces.MultiBinary, gym.spaces.Box)):
        return "mask", (int(np.prod(space.shape)),), np.dtype(np.float32)
    if isinstance(space, gym.spaces.Box):
        if space.dtype == np.uint8 and len(space.shape) == 3:
            return "image", tuple(space.shape), np.dtype(np.uint8)
        if len(space.shape) == 0:
            return "vector", (1,), np.dtype(np.float32)
        return "vector", tuple(space.shape), np.dtype(np.float32)
    if isinstance(space, gym.spaces.Discrete):
        return "discrete", (), np.dtype(np.int64)
    if isinstance(space, (gym.spaces.MultiBinary, gym.spaces.MultiDiscrete)):
        return "vector", tuple(space.shape), np.dtype(np.float32)
    raise EnvError(f"unsupported observation subspace '{key}': {space!r}; a Dict/Tuple observation may hold Box "
                   "(vectors, or uint8 images (C,H,W)/(H,W,C)), Discrete, MultiBinary and MultiDiscrete spaces, "
                   "nested one level at most")


class Layout:
    """Where each key of a Dict/Tuple observation lives in a packed row of bytes."""

    def __init__(self, space: gym.Space):
        if not isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
            raise TypeError(f"Layout takes a Dict or Tuple space, got {space!r}")
        self.space = space
        flat: list[tuple[str, gym.Space]] = []
        for key, sub in _items(space):
            if isinstance(sub, (gym.spaces.Dict, gym.spaces.Tuple)):
                for inner, s in _items(sub):
                    if isinstance(s, (gym.spaces.Dict, gym.spaces.Tuple)):
                        raise EnvError(f"unsupported observation space: '{key}.{inner}' is nested two levels deep "
                                       f"({s!r}); critic takes Dict/Tuple observations nested one level at most")
                    flat.append((f"{key}.{inner}", s))
            else:
                flat.append((key, sub))
        if not flat:
            raise EnvError(f"unsupported observation space {space!r}: it holds no subspace")
        kinds = [(key, sub, *_kind(key, sub)) for key, sub in flat]
        order = {"vector": 0, "mask": 1, "discrete": 2, "image": 3}
        kinds.sort(key=lambda t: order[t[2]])  # stable: the env's order within a kind
        fields, offset = [], 0
        for key, sub, kind, shape, dtype in kinds:
            f = Field(key, kind, shape, dtype, offset, sub)
            fields.append(f)
            offset += f.nbytes
        self.fields: tuple[Field, ...] = tuple(fields)
        self.nbytes = offset
        self.vector_size = sum(f.size for f in fields if f.kind == "vector")  # the float32 block at the start
        self.mask = next((f for f in fields if f.kind == "mask"), None)
        self._nested = {f.key.split(".", 1)[0] for f in fields if "." in f.key}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and other.space == self.space

    def __hash__(self) -> int:
        return hash(self.nbytes)

    def _get(self, obs: Any, key: str) -> Any:
        parts = key.split(".", 1)
        if isinstance(obs, dict):
            v = obs[parts[0]]
        else:
            v = obs[int(parts[0])]
        if len(parts) == 2:
            v = v[parts[1]] if isinstance(v, dict) else v[int(parts[1])]
        return v

    def is_batch(self, obs: Any) -> bool:
        """Whether ``obs`` holds a batch of observations (each value with a leading axis)."""
        f = self.fields[0]
        return np.asarray(self._get(obs, f.key)).ndim > len(f.shape)

    def pack(self, obs: Any) -> np.ndarray:
        """One observation (a dict or tuple) -> its row ``[nbytes]``; a batch -> ``[B, nbytes]``."""
        batch = self.is_batch(obs)
        values = [np.asarray(self._get(obs, f.key)) for f in self.fields]
        n = values[0].shape[0] if batch else None
        out = np.empty((n, self.nbytes) if batch else (self.nbytes,), np.uint8)
        for f, v in zip(self.fields, values):
            lead = (n,) if batch else ()
            want = (*lead, *f.shape) if f.shape else lead
            try:
                v = v.reshape(*lead, -1) if f.kind in ("mask",) else v.reshape(want)
            except ValueError:
                raise ValueError(f"observation key '{f.key}' has shape {v.shape}; its space has {f.shape or '()'}"
                                 + (" per observation of a batch" if batch else "")) from None
            out[..., f.offset:f.offset + f.nbytes] = np.ascontiguousarray(v, f.dtype).reshape(*lead, -1).view(np.uint8)
        return out

    def unpack(self, row: np.ndarray) -> dict[str, np.ndarray]:
        """A packed row (or rows) -> ``{key: values}`` in their stored dtypes (for inspection)."""
        row = np.asarray(row, np.uint8)
        lead = row.shape[:-1]
        return {f.key: np.ascontiguousarray(row[..., f.offset:f.offset + f.nbytes]).view(f.dtype).reshape(lead + f.shape)
                for f in self.fields}


class PackedObs(gym.spaces.Box):
    """A Dict/Tuple observation space as one uint8 row per observation (``layout`` says where
    each key lives)."""

    def __init__(self, space: gym.Space):
        self.layout = Layout(space)
        super().__init__(0, 255, (self.layout.nbytes,), np.uint8)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PackedObs) and other.layout == self.layout

    def __hash__(self) -> int:
        return hash(("packed", self.layout.nbytes))

    def __repr__(self) -> str:
        return f"PackedObs({self.layout.space!r})"

    def contains(self, x: Any) -> bool:
        return isinstance(x, np.ndarray) and x.shape == self.shape and x.dtype == np.uint8


class PackObservation(gym.ObservationWrapper):
    """Packs a Dict/Tuple observation into its uint8 row (what critic's envs hand on)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = PackedObs(env.observation_space)

    def observation(self, observation: Any) -> np.ndarray:
        return self.observation_space.layout.pack(observation)


def packable(space: gym.Space) -> bool:
    return isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple))


class PackedNormalizer:
    """Running mean/std normalisation of a packed row's float32 vector block (other keys pass)."""

    def __init__(self, layout: Layout, clip: float = 10.0, eps: float = 1e-8):
        from critic.normalize import ObsNormalizer

        self.layout, self.F = layout, layout.vector_size
        self.inner = ObsNormalizer((self.F,), clip=clip, eps=eps)

    @property
    def rms(self):
        return self.inner.rms

    @rms.setter
    def rms(self, value) -> None:  # (A3C swaps in statistics shared between processes)
        self.inner.rms = value

    def __call__(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if self.F == 0:
            return obs
        obs = np.asarray(obs, np.uint8)
        vec = np.ascontiguousarray(obs[..., :4 * self.F]).view(np.float32)
        out = obs.copy()
        out[..., :4 * self.F] = np.ascontiguousarray(self.inner(vec, update=update), np.float32).view(np.uint8)
        return out
