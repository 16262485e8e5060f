"""Save and load the components face, in the library's checkpoint format (``critic.checkpoint``).

keras-gym style: build the same objects as before, then ``load`` the file into them::

    ac.save("ac.safetensors")
    ...
    ac = critic.ActorCritic.from_func(critic.FunctionApproximator(env, lr=1e-3), gamma=0.99)
    ac.load("ac.safetensors")

One file holds, for every head (policy, v_func, q_func1, q_func2, or one head saved alone):
its online parameters and buffers and its target copy (``head.state_dict()``); every optimizer
that exists (the joint one of an ``ActorCritic``/``SoftActorCritic`` and any a head built
for its own ``batch_update``): moments, step counts, hyper-parameters; each policy's sampling
generator; the transitions waiting in the n-step caches; the torch, Python and NumPy global
RNG states (and a NumPy ``Generator`` the caller passes as ``np_rng``). The metadata carries
``"kind": "components"`` and a description of the architecture (classes, spaces, which heads
share a body, per-head tensor names, shapes and dtypes, optimizer classes).

``load`` checks all of it against the object before it changes anything: a checkpoint of
another kind, another architecture or with a malformed entry raises :class:`CheckpointError`
naming the file and the reason, and leaves the object (and the global RNGs) as they were.
Constructor settings (gamma, bootstrap_n, entropy_beta, ...) are recorded for reference and
not restored; the optimizers' hyper-parameters (lr, betas, ...) are restored, as torch's
``Optimizer.load_state_dict`` does.

This module knows no component class: each object describes itself as :class:`Parts` (its
``_checkpoint_parts()``), and the file format, its checks and the atomic write are
:mod:`critic.checkpoint`'s, shared with the agents.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

import critic.checkpoint as ckpt
from critic.checkpoint import CheckpointError
from critic.seeding import rng_state, set_rng_state
from critic.version import __version__

KIND = "components"
COMPONENTS_VERSION = 1
SINGLE = "model"  # the role of a head saved on its own


# ----------------------------------------------------------------------------- what an object hands over

@dataclass
class Slot:
    """An optimizer or n-step cache held in ``owner.<attr>``. ``build`` makes the one the owner
    would build itself, for one it builds on first use (then None until used, and dropped on
    load when the checkpoint has none); ``build=None``: the owner always holds one."""

    owner: Any
    attr: str
    build: Callable[[], Any] | None = None

    @property
    def value(self) -> Any:
        return getattr(self.owner, self.attr)

    def set(self, value: Any) -> None:
        setattr(self.owner, self.attr, value)


@dataclass
class HeadParts:
    """One head: its module (``state_dict()``: online weights, buffers and target copy), its body
    (heads that share one hand the same module), the description a load must match (class,
    optimizer kind, spaces, ...), its constructor settings (for reference), its own optimizer,
    and an n-step cache and a sampling generator where it has them."""

    module: nn.Module
    body: nn.Module
    description: dict[str, Any]
    settings: dict[str, Any]
    optimizer: Slot
    cache: Slot | None = None
    generator: torch.Generator | None = None


@dataclass
class Parts:
    """A whole checkpointable object: its class name, its heads by role, and what it owns beside
    them (a joint optimizer, an n-step cache, settings such as ``value_loss_weight``)."""

    name: str
    heads: dict[str, HeadParts]
    optimizers: dict[str, Slot] = field(default_factory=dict)
    caches: dict[str, Slot] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    # every optimizer / cache / generator under its name in the file
    def all_optimizers(self) -> dict[str, Slot]:
        return {**self.optimizers, **{f"{r}.optimizer": h.optimizer for r, h in self.heads.items()}}

    def all_caches(self) -> dict[str, Slot]:
        return {**self.caches, **{f"{r}.cache": h.cache for r, h in self.heads.items() if h.cache is not None}}

    def generators(self) -> dict[str, torch.Generator]:
        return {r: h.generator for r, h in self.heads.items() if h.generator is not None}

    def architecture(self) -> dict[str, Any]:
        bodies: list[int] = []
        heads = {}
        for role, h in self.heads.items():
            if id(h.body) not in bodies:
                bodies.append(id(h.body))
            d = dict(h.description)
            heads[role] = {"class": d.pop("class"), "body": bodies.index(id(h.body)), **d,
                           "parameters": {k: [list(v.shape), ckpt.dtype_name(v)]
                                          for k, v in h.module.state_dict().items()}}
        arch: dict[str, Any] = {"class": self.name, "heads": heads}
        for name, slot in self.optimizers.items():
            arch[name] = type(slot.value).__name__
        return arch

    def all_settings(self) -> dict[str, Any]:
        """Constructor settings, for reference only (load neither checks nor restores them)."""
        out: dict[str, Any] = {r: {k: _jsonable(v) for k, v in h.settings.items()} for r, h in self.heads.items()}
        out.update({k: _jsonable(v) for k, v in self.settings.items()})
        return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if callable(v):
        return f"callable {getattr(v, '__qualname__', type(v).__name__)}"
    return repr(v)


# ----------------------------------------------------------------------------- state

def _state(parts: Parts, np_rng: np.random.Generator | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    for role, h in parts.heads.items():
        for k, v in h.module.state_dict().items():
            tensors[f"heads/{role}/{k}"] = v
    optim_meta = {}
    for name, slot in parts.all_optimizers().items():
        opt = slot.value
        if opt is None:
            continue
        t, m = ckpt.optimizer_state(name, opt)
        tensors.update(t)
        optim_meta[name] = {"class": type(opt).__name__, **m}
    for role, g in parts.generators().items():
        tensors[f"generators/{role}"] = g.get_state()
    cache_meta = {}
    for name, slot in parts.all_caches().items():
        if slot.value is None:
            continue
        t, m = _cache_state(name, slot.value)
        tensors.update(t)
        cache_meta[name] = m
    rng_meta, rng_tensors = rng_state(np_rng if np_rng is not None else np.random.default_rng(0))
    if np_rng is None:
        del rng_meta["numpy"]
    tensors.update(rng_tensors)
    meta = {"kind": KIND, "components_version": COMPONENTS_VERSION, "critic_version": __version__,
            "architecture": parts.architecture(), "settings": parts.all_settings(), "optimizers": optim_meta,
            "caches": cache_meta, "rng": rng_meta}
    return tensors, meta


def _cache_state(name: str, cache) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    st = cache.get_state()
    tensors = {}
    for f in ("s", "a"):
        for i, x in enumerate(st[f]):
            tensors[f"cache/{name}/{f}/{i}"] = _array_tensor(x, f"{name}: a cached {f}")
    if st["final"] is not None:
        tensors[f"cache/{name}/final"] = _array_tensor(st["final"], f"{name}: the cached final observation")
    return tensors, {"class": type(cache).__name__, "r": st["r"], "term": st["term"], "trunc": st["trunc"],
                     "ended": bool(st["ended"]), "final": st["final"] is not None}


def _array_tensor(x: np.ndarray, what: str) -> torch.Tensor:
    try:
        return torch.from_numpy(np.array(x, order="C", copy=True))  # keeps 0-d arrays 0-d
    except TypeError:
        raise ValueError(f"cannot checkpoint {what} of dtype {x.dtype} (numeric or bool arrays only)") from None


def _apply(parts: Parts, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
           scratch_optims: dict[str, torch.optim.Optimizer], np_rng: np.random.Generator | None) -> None:
    """Copy a validated state into the object (nothing here may fail on a validated state)."""
    for role, h in parts.heads.items():
        prefix = f"heads/{role}/"
        h.module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                 strict=True)
    for name, slot in parts.all_optimizers().items():
        if name not in meta["optimizers"]:
            slot.set(None)  # not built when saved: the next batch_update builds a fresh one
            continue
        opt = slot.value
        if opt is None:
            opt = scratch_optims[name]
            slot.set(opt)
        m = meta["optimizers"][name]
        ckpt.load_optimizer_state(name, opt, tensors, {"param_groups": m["param_groups"], "scalars": m["scalars"]})
    for role, g in parts.generators().items():
        g.set_state(tensors[f"generators/{role}"])
    for name, slot in parts.all_caches().items():
        m = meta["caches"].get(name)
        if m is None:
            if slot.build is not None:
                slot.set(None)
            else:
                slot.value.reset()
            continue
        cache = slot.value
        if cache is None:
            cache = slot.build()
            slot.set(cache)
        k = len(m["r"])
        cache.set_state({
            "s": [tensors[f"cache/{name}/s/{i}"].numpy().copy() for i in range(k)],
            "a": [tensors[f"cache/{name}/a/{i}"].numpy().copy() for i in range(k)],
            "r": [float(x) for x in m["r"]], "term": [bool(x) for x in m["term"]],
            "trunc": [bool(x) for x in m["trunc"]], "ended": bool(m["ended"]),
            "final": tensors[f"cache/{name}/final"].numpy().copy() if m["final"] else None})
    rng = meta["rng"]
    if np_rng is not None and "numpy" in rng:
        set_rng_state(rng, tensors, np_rng)
    else:
        scratch = np.random.default_rng(0)
        set_rng_state({**rng, "numpy": scratch.bit_generator.state}, tensors, scratch)


# ----------------------------------------------------------------------------- validation

def _validate(parts: Parts, tensors: dict[str, torch.Tensor], meta: Any, path: Path,
              np_rng: np.random.Generator | None) -> dict[str, torch.optim.Optimizer]:
    """Everything ``_apply`` relies on; returns the optimizers to build for lazily built ones."""
    def fail(msg: str) -> CheckpointError:
        return CheckpointError(f"{path}: {msg}")

    if not isinstance(meta, dict):
        raise fail("not a components checkpoint (its metadata is not an object)")
    if meta.get("kind") != KIND:
        if "algo" in meta:
            raise fail(f"this is a critic agent checkpoint (algo {meta['algo']!r}), not a components one: "
                       "load it with critic.load")
        raise fail(f"not a components checkpoint (kind {meta.get('kind')!r}, expected {KIND!r})")
    version = meta.get("components_version")
    if not isinstance(version, int) or version < 1:
        raise fail(f"corrupted components_version {version!r}")
    if version > COMPONENTS_VERSION:
        raise fail(f"written by a newer critic (components checkpoint version {version}, this critic reads up to "
                   f"{COMPONENTS_VERSION}); upgrade critic to load it")

    here = parts.architecture()
    # class and structure differences first: they explain the shape differences that follow
    diffs = sorted(ckpt.differences(meta.get("architecture"), here, "architecture"),
                   key=lambda d: (".parameters." in d, d))
    if diffs:
        more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
        raise fail(f"checkpoint does not match this {parts.name}: " + "; ".join(diffs[:4]) + more)

    expected: ckpt.Expected = {}
    # heads: every state_dict entry, at the architecture's shape and dtype
    for role, h in here["heads"].items():
        for k, (shape, dtype) in h["parameters"].items():
            expected[f"heads/{role}/{k}"] = (shape, dtype)
    # heads sharing a body must carry the same body weights
    first_of_body: dict[int, str] = {}
    for role, h in here["heads"].items():
        if h["body"] in first_of_body:
            other = first_of_body[h["body"]]
            for k in h["parameters"]:
                if k.startswith("body."):
                    a, b = tensors.get(f"heads/{role}/{k}"), tensors.get(f"heads/{other}/{k}")
                    if a is not None and b is not None and not _same_bits(a, b):
                        raise fail(f"heads {other!r} and {role!r} share a body but the checkpoint holds different "
                                   f"values for {k}")
        else:
            first_of_body[h["body"]] = role

    # optimizers
    scratch: dict[str, torch.optim.Optimizer] = {}
    optims = meta.get("optimizers")
    if not isinstance(optims, dict):
        raise fail("malformed entry 'optimizers'")
    slots = parts.all_optimizers()
    for name in optims:
        if name not in slots:
            raise fail(f"optimizer {name!r} in the checkpoint has no counterpart in this object")
    for name in parts.optimizers:
        if name not in optims:
            raise fail(f"the state of the {parts.name}'s optimizer {name!r} is missing")
    for name, m in optims.items():
        opt = slots[name].value
        if opt is None:  # built on first use by its owner: check against the one it would build
            opt = scratch[name] = slots[name].build()
        if not isinstance(m, dict):
            raise fail(f"optimizer {name!r}: malformed entry")
        if m.get("class") != type(opt).__name__:
            raise fail(f"optimizer {name!r}: checkpoint has {m.get('class')!r}, this object {type(opt).__name__!r}")
        expected.update(ckpt.check_optimizer_state(path, name, opt, m, tensors))

    # sampling generators
    for role, g in parts.generators().items():
        key = f"generators/{role}"
        t = tensors.get(key)
        if t is None:
            raise fail(f"tensor {key!r} is missing")
        try:
            torch.Generator(device=g.device).set_state(t)
        except (RuntimeError, TypeError, ValueError) as e:
            raise fail(f"invalid generator state {key!r} ({str(e).splitlines()[0]})") from None
        expected[key] = (list(t.shape), None)

    # n-step caches
    caches = meta.get("caches")
    if not isinstance(caches, dict):
        raise fail("malformed entry 'caches'")
    cache_slots = parts.all_caches()
    for name, m in caches.items():
        if name not in cache_slots:
            raise fail(f"cache {name!r} in the checkpoint has no counterpart in this object")
        expected.update(_check_cache(name, m, tensors, fail))

    # global RNG states, then every tensor where it should be and nothing else
    expected.update(ckpt.check_rng_state(path, meta.get("rng"), tensors, np_rng))
    ckpt.check_tensors(path, tensors, expected)
    return scratch


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return torch.equal(a.contiguous().flatten().view(torch.uint8), b.contiguous().flatten().view(torch.uint8))


def _check_cache(name: str, m: Any, tensors: dict[str, torch.Tensor], fail) -> ckpt.Expected:
    try:
        r, term, trunc = list(m["r"]), list(m["term"]), list(m["trunc"])
        ok = (len(r) == len(term) == len(trunc) and all(isinstance(x, (int, float)) for x in r)
              and all(isinstance(x, bool) for x in term + trunc) and isinstance(m["ended"], bool)
              and isinstance(m["final"], bool) and (m["ended"] or not m["final"]))
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise fail(f"cache {name!r}: malformed entry")
    keys = [f"cache/{name}/{f}/{i}" for f in ("s", "a") for i in range(len(r))]
    if m["final"]:
        keys.append(f"cache/{name}/final")
    expected: ckpt.Expected = {}
    for key in keys:
        if key not in tensors:
            raise fail(f"tensor {key!r} is missing")
        expected[key] = (list(tensors[key].shape), None)
    return expected


# ----------------------------------------------------------------------------- entry points

def save(parts: Parts, path: str | os.PathLike, np_rng: np.random.Generator | None = None) -> Path:
    """Atomically write an object's full state to ``path`` (a folder gets ``agent.safetensors``)."""
    tensors, meta = _state(parts, np_rng)
    ckpt.check_finite(tensors, path)  # never write diverged weights over a good checkpoint
    return ckpt.write(ckpt.save_path(path), tensors, meta)


def load(parts: Parts, path: str | os.PathLike, np_rng: np.random.Generator | None = None) -> None:
    """Restore a checkpoint written by :func:`save` into the object (same architecture);
    validates everything first, so on :class:`CheckpointError` the object is unchanged."""
    path = ckpt.resolve(path)
    tensors, meta = ckpt.read(path)
    try:
        scratch = _validate(parts, tensors, meta, path, np_rng)
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: malformed components checkpoint ({type(e).__name__}: {e})") from None
    backup = _state(parts, np_rng)
    backup = ({k: v.detach().clone() for k, v in backup[0].items()}, copy.deepcopy(backup[1]))
    try:
        _apply(parts, tensors, meta, scratch, np_rng)
    except Exception as e:  # validation should make this unreachable; put everything back regardless
        _apply(parts, *backup, {}, np_rng)
        raise CheckpointError(f"{path}: could not load ({type(e).__name__}: {str(e).splitlines()[0]}); "
                              "the object was left as it was") from None
