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
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT = "critic-checkpoint"
VERSION = 1
FILENAME = "agent.safetensors"
MAX_HEADER = 100 * 1024 * 1024


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded (the message names the path and the reason)."""


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


def read(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Validate and read a checkpoint; any defect raises :class:`CheckpointError`."""
    path = resolve(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    if len(blob) == 0:
        raise CheckpointError(f"{path}: file is empty")
    if len(blob) < 8:
        raise CheckpointError(f"{path}: truncated file ({len(blob)} bytes)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER or 8 + n > len(blob):
        raise CheckpointError(f"{path}: truncated or not a checkpoint (header of {n} bytes, file of {len(blob)})")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
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
    if hashlib.sha256(blob[8 + n:]).hexdigest() != file_meta.get("sha256"):
        raise CheckpointError(f"{path}: data checksum mismatch (file truncated or corrupted)")
    try:
        meta = json.loads(file_meta["meta"])
        tensors = st_load(blob)
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
