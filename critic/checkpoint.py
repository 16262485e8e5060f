"""Checkpoint files that never execute code on load.

One file per checkpoint, in the safetensors format: tensors (network weights, optimizer
moments, normaliser statistics, torch RNG state) plus a JSON metadata header (format version,
algorithm, config, spaces, counters, Python/NumPy RNG states, optimizer hyper-parameters).
A SHA-256 of the tensor data is stored in the header, so a flipped byte is caught. Writes are
atomic: a temp file in the same folder, fsync, then ``os.replace``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT = "critic-checkpoint"
VERSION = 1
FILENAME = "agent.safetensors"
MAX_HEADER = 100 * 1024 * 1024

Expected = dict[str, tuple[list[int], "str | None"]]  # tensor name -> (shape, dtype name or None: any)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded (the message names the path and the reason)."""


class NonFiniteError(RuntimeError):
    """A loss or metric became NaN/inf: training stops, the last good checkpoint is kept (and no
    checkpoint with non-finite weights is written)."""


# ----------------------------------------------------------------------------- writing

def write(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Atomically write ``tensors`` and JSON ``meta`` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    body = st_save(tensors, metadata=None)
    digest = hashlib.sha256(_data_section(body)).hexdigest()
    full_meta = {"format": FORMAT, "version": str(VERSION), "sha256": digest,
                 "meta": json.dumps(meta)}
    blob = st_save(tensors, metadata=full_meta)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def save_path(path: str | os.PathLike) -> Path:
    """Where a ``save(path)`` writes: the file itself, or ``agent.safetensors`` inside a folder
    (an existing one, or a name without a suffix)."""
    path = Path(path)
    return path / FILENAME if path.suffix == "" or path.is_dir() else path


def check_finite(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Refuse (:class:`NonFiniteError`) to write diverged weights: a file already at ``path``
    stays the last good checkpoint."""
    for k, v in tensors.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise NonFiniteError(f"{k} is non-finite; nothing was written to {path}")


def _data_section(blob: bytes) -> bytes:
    (n,) = struct.unpack("<Q", blob[:8])
    return blob[8 + n:]


# ----------------------------------------------------------------------------- reading

def resolve(path: str | os.PathLike) -> Path:
    """A checkpoint file, a ``model/`` folder, a run directory, or its ``checkpoints/`` folder."""
    p = Path(path)
    for cand in (p, p / FILENAME, p / "model" / FILENAME, p / "checkpoints" / FILENAME,
                 p / "checkpoints" / "latest" / FILENAME):
        if cand.is_file():
            return cand
    raise CheckpointError(f"{p}: no checkpoint found (looked for the file itself, {FILENAME}, "
                          f"model/{FILENAME} and checkpoints/{FILENAME})")


def read(path: str | os.PathLike, select: Callable[[str], bool] | None = None
         ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Validate and read a checkpoint; any defect raises :class:`CheckpointError`.

    ``select``: read only the tensors whose name it accepts (the checksum is still verified,
    over the file streamed in chunks), so loading a model for inference out of a full training
    checkpoint does not hold its replay in memory."""
    path = resolve(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) == 8:
                (n,) = struct.unpack("<Q", head)
                header_bytes = f.read(n) if n <= MAX_HEADER else b""
            if select is None:
                rest = f.read()
            else:
                digest = hashlib.sha256()
                for chunk in iter(lambda: f.read(1 << 24), b""):
                    digest.update(chunk)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    if size == 0:
        raise CheckpointError(f"{path}: file is empty")
    if size < 8:
        raise CheckpointError(f"{path}: truncated file ({size} bytes)")
    if n > MAX_HEADER or 8 + n > size:
        raise CheckpointError(f"{path}: truncated or not a checkpoint (header of {n} bytes, file of {size})")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
        file_meta = header.get("__metadata__") or {}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        raise CheckpointError(f"{path}: corrupted header (not valid JSON)") from None
    if file_meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a critic checkpoint (format {file_meta.get('format')!r})")
    try:
        version = int(file_meta.get("version", "-1"))
    except ValueError:
        raise CheckpointError(f"{path}: corrupted version field {file_meta.get('version')!r}") from None
    if version > VERSION:
        raise CheckpointError(f"{path}: written by a newer critic (checkpoint version {version}, this "
                              f"critic reads up to {VERSION}); upgrade critic to load it")
    if version < 1:
        raise CheckpointError(f"{path}: unknown checkpoint version {version}")
    found = hashlib.sha256(rest).hexdigest() if select is None else digest.hexdigest()
    if found != file_meta.get("sha256"):
        raise CheckpointError(f"{path}: data checksum mismatch (file truncated or corrupted)")
    try:
        meta = json.loads(file_meta["meta"])
        if select is None:
            tensors = st_load(head + header_bytes + rest)
        else:
            with safe_open(str(path), framework="pt") as st:
                tensors = {k: st.get_tensor(k).clone() for k in st.keys() if select(k)}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: corrupted checkpoint ({type(e).__name__}: {e})") from None
    return tensors, meta


# ----------------------------------------------------------------------------- optimizers

def optimizer_state(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Flatten an optimizer's state into tensors plus JSON (hyper-parameters, scalar state)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim/{name}/{idx}/{k}"] = v
            else:
                scalars[f"{idx}/{k}"] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def load_optimizer_state(name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                         meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim/{name}/"
    for key, v in tensors.items():
        if key.startswith(prefix):
            idx, k = key[len(prefix):].split("/", 1)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split("/", 1)
        state.setdefault(int(idx), {})[k] = v
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


# ----------------------------------------------------------------------------- validating content
# Checks of a file that read correctly but whose content may not fit the object: each raises
# CheckpointError naming the path, and returns the tensors it accounts for (see check_tensors),
# so a caller can refuse a file before it changes anything.

def training_state(nets: torch.nn.Module, optims: dict[str, torch.optim.Optimizer]
                   ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A network's ``nets/...`` tensors and its optimizers' states: (tensors, optimizer metadata)."""
    tensors = {f"nets/{k}": v for k, v in nets.state_dict().items()}
    meta = {}
    for name, opt in optims.items():
        t, meta[name] = optimizer_state(name, opt)
        tensors.update(t)
    return tensors, meta


def load_training_state(nets: torch.nn.Module, optims: dict[str, torch.optim.Optimizer],
                        tensors: dict[str, torch.Tensor], optim_meta: dict[str, Any]) -> None:
    """The inverse of :func:`training_state` (strict: every key must match)."""
    nets.load_state_dict({k[len("nets/"):]: v for k, v in tensors.items() if k.startswith("nets/")}, strict=True)
    for name, opt in optims.items():
        load_optimizer_state(name, opt, tensors, optim_meta[name])


def _fail(path: str | os.PathLike, msg: str) -> CheckpointError:
    return CheckpointError(f"{path}: {msg}")


def dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def short_json(v: Any) -> str:
    """A JSON value for an error message, cut to 120 characters."""
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 120 else s[:117] + "..."


def differences(saved: Any, here: Any, where: str) -> Iterator[str]:
    """Each difference between two JSON values (a saved description and this object's), by key path."""
    if isinstance(saved, dict) and isinstance(here, dict):
        for k in saved.keys() | here.keys():
            w = f"{where}.{k}"
            if k not in here:
                yield f"{w} is in the checkpoint, not in this object"
            elif k not in saved:
                yield f"{w} is in this object, not in the checkpoint"
            else:
                yield from differences(saved[k], here[k], w)
    elif saved != here:
        yield f"{where}: checkpoint has {short_json(saved)}, this object {short_json(here)}"


def check_optimizer_state(path: str | os.PathLike, name: str, opt: torch.optim.Optimizer, meta: Any,
                          tensors: dict[str, torch.Tensor]) -> Expected:
    """Whether :func:`optimizer_state`'s output (``meta``: param_groups and scalars, plus its
    ``optim/<name>/`` tensors) fits ``opt``, so :func:`load_optimizer_state` cannot fail."""
    if not isinstance(meta, dict):
        raise _fail(path, f"optimizer {name!r}: malformed entry")
    groups, scalars = meta.get("param_groups"), meta.get("scalars")
    if not isinstance(groups, list) or not isinstance(scalars, dict) or len(groups) != len(opt.param_groups):
        raise _fail(path, f"optimizer {name!r}: malformed or mismatched param_groups")
    params = [p for g in opt.param_groups for p in g["params"]]
    saved_ids: list[int] = []
    for g, g_here in zip(groups, opt.param_groups):
        if not isinstance(g, dict) or "params" not in g:
            raise _fail(path, f"optimizer {name!r}: malformed param_group {short_json(g)}")
        for k in g.keys() & g_here.keys() - {"params"}:  # a torch version may add or drop keys
            if not _same_kind(g[k], g_here[k]):
                raise _fail(path, f"optimizer {name!r}: hyper-parameter {k!r} is {short_json(g[k])}, this "
                                  f"optimizer expects something like {short_json(_jsonable_group_value(g_here[k]))}")
        ids = g["params"]
        if not isinstance(ids, list) or len(ids) != len(g_here["params"]) or \
                not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise _fail(path, f"optimizer {name!r}: parameter list does not match this optimizer's "
                              f"{len(g_here['params'])} parameters")
        saved_ids.extend(ids)
    if len(set(saved_ids)) != len(saved_ids):
        raise _fail(path, f"optimizer {name!r}: repeated parameter ids")
    param_of = dict(zip(saved_ids, params))  # torch maps saved ids to parameters in this order
    expected: Expected = {}
    prefix = f"optim/{name}/"
    for key, t in tensors.items():
        if not key.startswith(prefix):
            continue
        idx, _, k = key[len(prefix):].partition("/")
        if not idx.lstrip("-").isdigit() or int(idx) not in param_of or not k:
            raise _fail(path, f"optimizer {name!r}: state {key!r} for no parameter")
        p = param_of[int(idx)]
        if k == "step":
            if t.numel() != 1 or not t.is_floating_point():
                raise _fail(path, f"optimizer {name!r}: malformed step count {key!r}")
            expected[key] = (list(t.shape), None)
        else:
            expected[key] = (list(p.shape), dtype_name(p))
    for key in scalars:
        idx, _, k = str(key).partition("/")
        if not idx.lstrip("-").isdigit() or int(idx) not in param_of or not k:
            raise _fail(path, f"optimizer {name!r}: state {key!r} for no parameter")
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


def check_rng_state(path: str | os.PathLike, rng: Any, tensors: dict[str, torch.Tensor],
                    np_rng: np.random.Generator | None) -> Expected:
    """Whether :func:`critic.seeding.rng_state`'s output (``rng``, plus the ``rng/`` tensors) can
    be restored, tried on scratch generators so a bad state changes nothing. ``np_rng``: the
    Generator that would receive the saved NumPy state (None: none is restored)."""
    try:
        py = rng["python"]
        random.Random().setstate((py[0], tuple(py[1]), py[2]))
        leg = rng["numpy_legacy"]
        np.random.RandomState().set_state((leg[0], np.asarray(leg[1], dtype=np.uint32), leg[2], leg[3], leg[4]))
        if np_rng is not None:
            if "numpy" not in rng:
                raise _fail(path, "no NumPy Generator state to restore into np_rng (the checkpoint was saved "
                                  "without one)")
            type(np_rng.bit_generator)().state = rng["numpy"]
        torch.Generator().set_state(tensors["rng/torch"])
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, OverflowError) as e:
        raise _fail(path, f"invalid RNG state ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") \
            from None
    expected: Expected = {"rng/torch": (list(tensors["rng/torch"].shape), None)}
    for k in tensors:
        if k.startswith("rng/cuda"):
            idx = k[len("rng/cuda"):]
            if not idx.isdigit() or (torch.cuda.is_available() and int(idx) >= torch.cuda.device_count()):
                raise _fail(path, f"RNG state {k!r} for no CUDA device of this machine")
            expected[k] = (list(tensors[k].shape), None)
    return expected


def check_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], expected: Expected) -> None:
    """Every expected tensor present at its shape (and dtype, where given), and nothing else."""
    for key, (shape, dtype) in expected.items():
        t = tensors.get(key)
        if t is None:
            raise _fail(path, f"tensor {key!r} is missing")
        if list(t.shape) != list(shape) or (dtype is not None and dtype_name(t) != dtype):
            raise _fail(path, f"tensor {key!r} has shape {list(t.shape)} {dtype_name(t)}, this object needs "
                              f"{list(shape)} {dtype or ''}".rstrip())
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise _fail(path, f"unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''}")
