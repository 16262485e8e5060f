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
"""

from __future__ import annotations

import copy
import json
import os
import random
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from critic import checkpoint as ckpt
from critic.checkpoint import CheckpointError
from critic.seeding import rng_state, set_rng_state

KIND = "components"
COMPONENTS_VERSION = 1
ROLES = ("policy", "v_func", "q_func1", "q_func2")  # the heads of ActorCritic / SoftActorCritic
SINGLE = "model"  # the role of a head saved on its own


# ----------------------------------------------------------------------------- layout

class _Layout:
    """What of an object goes into a checkpoint, under which names."""

    def __init__(self, obj: Any):
        from critic.components.actor_critic import _Combined
        from critic.components.approximators import _Head

        self.obj = obj
        if isinstance(obj, _Combined):
            self.heads = {r: getattr(obj, r) for r in ROLES if hasattr(obj, r)}
            self.joint = obj  # owner of the joint optimizer and the n-step cache
        elif isinstance(obj, _Head):
            self.heads, self.joint = {SINGLE: obj}, None
        else:
            raise TypeError(f"cannot checkpoint a {type(obj).__name__}")
        bodies: list[int] = []
        self.body_index = {}
        for role, h in self.heads.items():
            if id(h.body) not in bodies:
                bodies.append(id(h.body))
            self.body_index[role] = bodies.index(id(h.body))

    # optimizers: name -> (optimizer or None when not built yet, how to build it)
    def optimizers(self) -> dict[str, tuple[torch.optim.Optimizer | None, Any]]:
        out: dict[str, tuple[torch.optim.Optimizer | None, Any]] = {}
        if self.joint is not None:
            out["optimizer"] = (self.joint.optimizer, None)
        for role, h in self.heads.items():
            out[f"{role}.optimizer"] = (h._optimizer, h)
        return out

    # n-step caches: name -> (cache or None when not built yet, the V head that builds it lazily)
    def caches(self) -> dict[str, tuple[Any, Any]]:
        from critic.components.approximators import V

        out: dict[str, tuple[Any, Any]] = {}
        if self.joint is not None:
            out["cache"] = (self.joint.cache, None)
        for role, h in self.heads.items():
            if isinstance(h, V):
                out[f"{role}.cache"] = (h._cache, h)
        return out

    def generators(self) -> dict[str, torch.Generator]:
        return {role: h.generator for role, h in self.heads.items() if hasattr(h, "generator")}

    def architecture(self) -> dict[str, Any]:
        from critic.components.approximators import GaussianPolicy

        heads = {}
        for role, h in self.heads.items():
            d: dict[str, Any] = {
                "class": type(h).__name__,
                "body": self.body_index[role],
                "optimizer": h.func.optimizer_name,
                "spaces": {"observation": _space(h.func.observation_space), "action": _space(h.func.action_space)},
                "parameters": {k: [list(v.shape), _dtype(v)] for k, v in h.state_dict().items()},
            }
            if isinstance(h, GaussianPolicy):
                d["squash"] = h.squash
            heads[role] = d
        arch: dict[str, Any] = {"class": type(self.obj).__name__, "heads": heads}
        if self.joint is not None:
            arch["optimizer"] = type(self.joint.optimizer).__name__
        return arch

    def settings(self) -> dict[str, Any]:
        """Constructor settings, for reference only (load neither checks nor restores them)."""
        keys = ("gamma", "bootstrap_n", "bootstrap_with_target_model", "loss", "update_strategy", "ppo_clip_eps",
                "entropy_beta")
        out: dict[str, Any] = {r: {k: _jsonable(vars(h)[k]) for k in keys if k in vars(h)}
                               for r, h in self.heads.items()}
        for r, h in self.heads.items():
            out[r]["lr"] = h.func.lr
        if self.joint is not None:
            out["value_loss_weight"] = self.joint.value_loss_weight
        return out


def _space(space) -> Any:
    from critic.envs.spaces import space_to_dict
    try:
        return space_to_dict(space)
    except TypeError:
        return repr(space)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if callable(v):
        return f"callable {getattr(v, '__qualname__', type(v).__name__)}"
    return repr(v)


# ----------------------------------------------------------------------------- state

def _state(lay: _Layout, np_rng: np.random.Generator | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    for role, h in lay.heads.items():
        for k, v in h.state_dict().items():
            tensors[f"heads/{role}/{k}"] = v
    optim_meta = {}
    for name, (opt, _) in lay.optimizers().items():
        if opt is None:
            continue
        t, m = ckpt.optimizer_state(name, opt)
        tensors.update(t)
        optim_meta[name] = {"class": type(opt).__name__, **m}
    for role, g in lay.generators().items():
        tensors[f"generators/{role}"] = g.get_state()
    cache_meta = {}
    for name, (cache, _) in lay.caches().items():
        if cache is None:
            continue
        t, m = _cache_state(name, cache)
        tensors.update(t)
        cache_meta[name] = m
    rng_meta, rng_tensors = rng_state(np_rng if np_rng is not None else np.random.default_rng(0))
    if np_rng is None:
        del rng_meta["numpy"]
    tensors.update(rng_tensors)
    from critic import __version__
    meta = {"kind": KIND, "components_version": COMPONENTS_VERSION, "critic_version": __version__,
            "architecture": lay.architecture(), "settings": lay.settings(), "optimizers": optim_meta,
            "caches": cache_meta, "rng": rng_meta}
    return tensors, meta


def _cache_state(name: str, cache) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {}
    for field, items in (("s", cache._s), ("a", cache._a)):
        for i, x in enumerate(items):
            tensors[f"cache/{name}/{field}/{i}"] = _array_tensor(x, f"{name}: a cached {field}")
    if cache._final is not None:
        tensors[f"cache/{name}/final"] = _array_tensor(cache._final, f"{name}: the cached final observation")
    return tensors, {"class": type(cache).__name__, "r": list(cache._r), "term": list(cache._term),
                     "trunc": list(cache._trunc), "ended": bool(cache._ended), "final": cache._final is not None}


def _array_tensor(x: np.ndarray, what: str) -> torch.Tensor:
    try:
        return torch.from_numpy(np.array(x, order="C", copy=True))  # keeps 0-d arrays 0-d
    except TypeError:
        raise ValueError(f"cannot checkpoint {what} of dtype {x.dtype} (numeric or bool arrays only)") from None


def _apply(lay: _Layout, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
           scratch_optims: dict[str, torch.optim.Optimizer], np_rng: np.random.Generator | None) -> None:
    """Copy a validated state into the object (nothing here may fail on a validated state)."""
    from critic.components.caches import NStepCache

    for role, h in lay.heads.items():
        prefix = f"heads/{role}/"
        h.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    for name, (opt, owner) in lay.optimizers().items():
        if name not in meta["optimizers"]:
            owner._optimizer = None  # not built when saved: the next batch_update builds a fresh one
            continue
        if opt is None:
            opt = owner._optimizer = scratch_optims[name]
        m = meta["optimizers"][name]
        ckpt.load_optimizer_state(name, opt, tensors, {"param_groups": m["param_groups"], "scalars": m["scalars"]})
    for role, g in lay.generators().items():
        g.set_state(tensors[f"generators/{role}"])
    for name, (cache, owner) in lay.caches().items():
        m = meta["caches"].get(name)
        if m is None:
            if owner is not None:
                owner._cache = None
            else:
                cache.reset()
            continue
        if cache is None:
            cache = owner._cache = NStepCache(None, owner.bootstrap_n, owner.gamma)
        cache.reset()
        k = len(m["r"])
        cache._s = [tensors[f"cache/{name}/s/{i}"].numpy().copy() for i in range(k)]
        cache._a = [tensors[f"cache/{name}/a/{i}"].numpy().copy() for i in range(k)]
        cache._r = [float(x) for x in m["r"]]
        cache._term = [bool(x) for x in m["term"]]
        cache._trunc = [bool(x) for x in m["trunc"]]
        cache._ended = bool(m["ended"])
        cache._final = tensors[f"cache/{name}/final"].numpy().copy() if m["final"] else None
    rng = meta["rng"]
    if np_rng is not None and "numpy" in rng:
        set_rng_state(rng, tensors, np_rng)
    else:
        scratch = np.random.default_rng(0)
        set_rng_state({**rng, "numpy": scratch.bit_generator.state}, tensors, scratch)


# ----------------------------------------------------------------------------- validation

def _diff(saved: Any, here: Any, where: str) -> Iterator[str]:
    if isinstance(saved, dict) and isinstance(here, dict):
        for k in saved.keys() | here.keys():
            w = f"{where}.{k}"
            if k not in here:
                yield f"{w} is in the checkpoint, not in this object"
            elif k not in saved:
                yield f"{w} is in this object, not in the checkpoint"
            else:
                yield from _diff(saved[k], here[k], w)
    elif saved != here:
        yield f"{where}: checkpoint has {_short(saved)}, this object {_short(here)}"


def _short(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 120 else s[:117] + "..."


def _order(diffs: list[str]) -> list[str]:
    # class and structure differences first: they explain the shape differences that follow
    return sorted(diffs, key=lambda d: (".parameters." in d, d))


def _validate(lay: _Layout, tensors: dict[str, torch.Tensor], meta: Any, path: Path,
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

    here = lay.architecture()
    diffs = _order(list(_diff(meta.get("architecture"), here, "architecture")))
    if diffs:
        more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
        raise fail(f"checkpoint does not match this {type(lay.obj).__name__}: " + "; ".join(diffs[:4]) + more)

    expected: dict[str, tuple[list[int], str | None]] = {}  # tensor name -> (shape, dtype or None: any)
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
    layout_optims = lay.optimizers()
    for name in optims:
        if name not in layout_optims:
            raise fail(f"optimizer {name!r} in the checkpoint has no counterpart in this object")
    if lay.joint is not None and "optimizer" not in optims:
        raise fail("the joint optimizer's state is missing")
    for name, m in optims.items():
        opt, owner = layout_optims[name]
        if opt is None:  # built lazily by the head: check against the one it would build
            opt = scratch[name] = owner.func.make_optimizer(owner.online_parameters())
        expected.update(_check_optimizer(name, opt, m, tensors, fail))

    # sampling generators
    for role, g in lay.generators().items():
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
    layout_caches = lay.caches()
    for name, m in caches.items():
        if name not in layout_caches:
            raise fail(f"cache {name!r} in the checkpoint has no counterpart in this object")
        expected.update(_check_cache(name, m, tensors, fail))

    # global RNG states (checked on scratch generators, so a bad one changes nothing)
    rng = meta.get("rng")
    try:
        py = rng["python"]
        random.Random().setstate((py[0], tuple(py[1]), py[2]))
        leg = rng["numpy_legacy"]
        np.random.RandomState().set_state((leg[0], np.asarray(leg[1], dtype=np.uint32), leg[2], leg[3], leg[4]))
        if np_rng is not None:
            if "numpy" not in rng:
                raise fail("no NumPy Generator state to restore into np_rng (the checkpoint was saved without one)")
            type(np_rng.bit_generator)().state = rng["numpy"]
        torch.Generator().set_state(tensors["rng/torch"])
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise fail(f"invalid RNG state ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    expected["rng/torch"] = (list(tensors["rng/torch"].shape), None)
    for k in tensors:
        if k.startswith("rng/cuda"):
            idx = k[len("rng/cuda"):]
            if not idx.isdigit() or (torch.cuda.is_available() and int(idx) >= torch.cuda.device_count()):
                raise fail(f"RNG state {k!r} for no CUDA device of this machine")
            expected[k] = (list(tensors[k].shape), None)

    # every tensor where it should be, at its shape and dtype, and nothing else
    for key, (shape, dtype) in expected.items():
        t = tensors.get(key)
        if t is None:
            raise fail(f"tensor {key!r} is missing")
        if list(t.shape) != list(shape) or (dtype is not None and _dtype(t) != dtype):
            raise fail(f"tensor {key!r} has shape {list(t.shape)} {_dtype(t)}, this object needs {list(shape)} "
                       f"{dtype or ''}".rstrip())
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise fail(f"unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    return scratch


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return torch.equal(a.contiguous().flatten().view(torch.uint8), b.contiguous().flatten().view(torch.uint8))


def _check_optimizer(name: str, opt: torch.optim.Optimizer, m: Any, tensors: dict[str, torch.Tensor],
                     fail) -> dict[str, tuple[list[int], str | None]]:
    if not isinstance(m, dict):
        raise fail(f"optimizer {name!r}: malformed entry")
    if m.get("class") != type(opt).__name__:
        raise fail(f"optimizer {name!r}: checkpoint has {m.get('class')!r}, this object {type(opt).__name__!r}")
    groups, scalars = m.get("param_groups"), m.get("scalars")
    if not isinstance(groups, list) or not isinstance(scalars, dict) or len(groups) != len(opt.param_groups):
        raise fail(f"optimizer {name!r}: malformed or mismatched param_groups")
    params = [p for g in opt.param_groups for p in g["params"]]
    saved_ids: list[int] = []
    for g, g_here in zip(groups, opt.param_groups):
        if not isinstance(g, dict) or "params" not in g:
            raise fail(f"optimizer {name!r}: malformed param_group {_short(g)}")
        for k in g.keys() & g_here.keys() - {"params"}:  # a torch version may add or drop keys
            if not _same_kind(g[k], g_here[k]):
                raise fail(f"optimizer {name!r}: hyper-parameter {k!r} is {_short(g[k])}, this optimizer "
                           f"expects something like {_short(_jsonable_group_value(g_here[k]))}")
        ids = g["params"]
        if not isinstance(ids, list) or len(ids) != len(g_here["params"]) or \
                not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise fail(f"optimizer {name!r}: parameter list does not match this optimizer's "
                       f"{len(g_here['params'])} parameters")
        saved_ids.extend(ids)
    if len(set(saved_ids)) != len(saved_ids):
        raise fail(f"optimizer {name!r}: repeated parameter ids")
    param_of = dict(zip(saved_ids, params))  # torch maps saved ids to parameters in this order
    expected = {}
    prefix = f"optim/{name}/"
    for key, t in tensors.items():
        if not key.startswith(prefix):
            continue
        idx, _, k = key[len(prefix):].partition("/")
        if not idx.lstrip("-").isdigit() or int(idx) not in param_of or not k:
            raise fail(f"optimizer {name!r}: state {key!r} for no parameter")
        p = param_of[int(idx)]
        if k == "step":
            if t.numel() != 1 or not t.is_floating_point():
                raise fail(f"optimizer {name!r}: malformed step count {key!r}")
            expected[key] = (list(t.shape), None)
        else:
            expected[key] = (list(p.shape), _dtype(p))
    for key in scalars:
        idx, _, k = str(key).partition("/")
        if not idx.lstrip("-").isdigit() or int(idx) not in param_of or not k:
            raise fail(f"optimizer {name!r}: state {key!r} for no parameter")
    return expected


def _same_kind(saved: Any, here: Any) -> bool:
    """Whether a JSON value can stand in for an optimizer hyper-parameter of this type."""
    if here is None or isinstance(here, bool):
        return saved is None or isinstance(saved, bool)
    if isinstance(here, (int, float)):
        return isinstance(saved, (int, float)) and not isinstance(saved, bool)
    if isinstance(here, (tuple, list)):
        return isinstance(saved, list) and len(saved) == len(here) and all(map(_same_kind, saved, here))
    return isinstance(saved, type(here))


def _jsonable_group_value(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v if isinstance(v, (bool, int, float, str, type(None))) else repr(v)


def _check_cache(name: str, m: Any, tensors: dict[str, torch.Tensor], fail) -> dict[str, tuple[list[int], None]]:
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
    expected = {}
    for key in keys:
        if key not in tensors:
            raise fail(f"tensor {key!r} is missing")
        expected[key] = (list(tensors[key].shape), None)
    return expected


# ----------------------------------------------------------------------------- entry points

def save(obj: Any, path: str | os.PathLike, np_rng: np.random.Generator | None = None) -> Path:
    """Atomically write ``obj``'s full state to ``path`` (a folder gets ``agent.safetensors``)."""
    tensors, meta = _state(_Layout(obj), np_rng)
    for k, v in tensors.items():  # never write diverged weights over a good checkpoint
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            from critic.agent import NonFiniteError
            raise NonFiniteError(f"{k} is non-finite; nothing was written to {path}")
    path = Path(path)
    if path.suffix == "" or path.is_dir():
        path = path / ckpt.FILENAME
    return ckpt.write(path, tensors, meta)


def load(obj: Any, path: str | os.PathLike, np_rng: np.random.Generator | None = None) -> None:
    """Restore a checkpoint written by :func:`save` into ``obj`` (same architecture); validates
    everything first, so on :class:`CheckpointError` the object is unchanged."""
    lay = _Layout(obj)
    path = ckpt.resolve(path)
    tensors, meta = ckpt.read(path)
    try:
        scratch = _validate(lay, tensors, meta, path, np_rng)
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: malformed components checkpoint ({type(e).__name__}: {e})") from None
    backup = _state(lay, np_rng)
    backup = ({k: v.detach().clone() for k, v in backup[0].items()}, copy.deepcopy(backup[1]))
    try:
        _apply(lay, tensors, meta, scratch, np_rng)
    except Exception as e:  # validation should make this unreachable; put everything back regardless
        _apply(lay, *backup, {}, np_rng)
        raise CheckpointError(f"{path}: could not load ({type(e).__name__}: {str(e).splitlines()[0]}); "
                              "the object was left as it was") from None
