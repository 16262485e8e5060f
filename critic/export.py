"""Export a trained agent's deterministic policy to ONNX or TorchScript.

The exported graph takes a batch of raw env observations ``obs [B, *obs_shape]`` and returns
the env actions ``action [B, ...]`` that ``agent.predict(obs, deterministic=True)`` gives, with
everything between inside it:

* observations: cast to float32 (vectors), normalised with the agent's running mean and std
  and clipped as during training (``normalize_obs``; in float64, as the agent computes it);
  uint8 images stay uint8 and are scaled to [0, 1] by the network's own encoder;
* the deterministic policy: the Gaussian's mean (A2C, A3C, PPO), tanh of the mean (SAC),
  mu(s) (TD3, DDPG), the most probable action (Discrete, MultiDiscrete, MultiBinary; ACER);
* actions: clipped to a Box's bounds (A2C, A3C, PPO), rescaled from [-1, 1] to the Box's
  [low, high] (SAC, TD3, DDPG), argmax indices as int64, MultiBinary bits in the space's dtype.

Refused (:class:`ExportError`): Dict/Tuple observations (packed rows), agents trained with
action masks, batched seed runs (:class:`~critic.algos.batch.SeedBatch`: export a member,
``batch.agents[k]``). ``critic export RUN`` is the command line (:func:`add_export_parser`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from critic.agent import Agent
from critic.algos.acer import ACERNets
from critic.algos.batch import SeedBatch
from critic.algos.sac import SACNets
from critic.config import ConfigError
from critic.distributions import make_dist
from critic.envs.spaces import space_to_dict
from critic.modules.actions import BoxScaler
from critic.modules.deterministic import DeterministicNets
from critic.modules.policies import ActorCriticNet
from critic.nn import is_packed_space
from critic.version import __version__

__all__ = ["FORMATS", "ExportError", "MissingDependency", "add_export_parser", "cmd_export", "export", "metadata", "policy_module"]

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
INSTALL_HINT = 'pip install "critic[export]"'


class ExportError(ConfigError):
    """An agent or request that cannot be exported (the message says why)."""


class MissingDependency(ExportError, ImportError):
    """onnx is not installed."""


# ----------------------------------------------------------------------------- graph pieces

class ObsPreprocess(nn.Module):
    """Raw observations -> what the networks see (``collect.Preprocess.obs`` in torch)."""

    def __init__(self, in_dtype: torch.dtype, mean: np.ndarray | None = None, std: np.ndarray | None = None,
                 clip: float = 10.0):
        super().__init__()
        self.in_dtype, self.clip = in_dtype, float(clip)
        self.normalize = mean is not None
        if mean is not None and std is not None:
            self.register_buffer("mean", torch.as_tensor(np.asarray(mean, np.float64)))
            self.register_buffer("std", torch.as_tensor(np.asarray(std, np.float64)))

    def forward(self, obs: Tensor) -> Tensor:
        x = obs.to(self.in_dtype)
        if self.normalize:  # (x - mean) / sqrt(var + eps) in float64, clipped, then float32
            x = ((x.double() - self.mean) / self.std).clamp(-self.clip, self.clip).float()
        return x


class ActionPostprocess(nn.Module):
    """Policy actions -> env actions: Box clip (on-policy), [-1, 1] -> [low, high] (replay
    algorithms), MultiBinary dtype; indices pass as int64."""

    def __init__(self, space: gym.Space, rescale: bool):
        super().__init__()
        self.kind = "none"
        self.shape = tuple(space.shape) if space.shape is not None else ()
        if isinstance(space, gym.spaces.Box):
            self.kind = "rescale" if rescale else "clip"
            if rescale:  # BoxScaler.scale: low + ((clip(a, -1, 1) + 1) * 0.5) * (high - low), float64
                low, high = space.low.astype(np.float64), space.high.astype(np.float64)
                self.register_buffer("low", torch.as_tensor(low).reshape(-1))
                self.register_buffer("span", torch.as_tensor(high - low).reshape(-1))
                self.out_dtype = _torch_dtype(space.dtype)
            else:  # np.clip(a, low, high) of float32 actions
                dtype = np.result_type(np.float32, space.dtype)
                self.register_buffer("low", torch.as_tensor(space.low.astype(dtype)).reshape(-1))
                self.register_buffer("high", torch.as_tensor(space.high.astype(dtype)).reshape(-1))
                self.out_dtype = _torch_dtype(dtype)
        elif isinstance(space, gym.spaces.MultiBinary):
            self.kind, self.out_dtype = "cast", _torch_dtype(space.dtype)

    def forward(self, a: Tensor) -> Tensor:
        if self.kind == "rescale":
            a = (a.clamp(-1.0, 1.0) + 1.0) * 0.5
            a = (self.low + a.double() * self.span).to(self.out_dtype)
        elif self.kind == "clip":
            a = torch.minimum(torch.maximum(a.to(self.out_dtype), self.low), self.high)
        elif self.kind == "cast":
            return a.to(self.out_dtype)
        else:
            return a
        return a.reshape((-1,) + self.shape)


class OnPolicyActor(nn.Module):
    """A2C's, A3C's and PPO's modal action (the value side left out)."""

    def __init__(self, net: ActorCriticNet):
        super().__init__()
        self.net = _copy(net, drop=("vf_head", *(() if net.shared else ("vf_body", "_vf"))))

    def forward(self, obs: Tensor) -> Tensor:
        net = self.net
        h = net._mlp(net._encode(obs), net._body if net.shared else net._pi)
        params = torch.nn.functional.linear(h, net.pi_head.weight, net.pi_head.bias)
        return make_dist(net.act_space, params, net.log_std).mode()


class SACActor(nn.Module):
    """SAC's modal action: tanh(mean) in [-1, 1], or the most probable discrete action."""

    def __init__(self, nets: SACNets):
        super().__init__()
        self.nets = _copy(nets, drop=("critic", "critic_target", "log_alpha"))

    def forward(self, obs: Tensor) -> Tensor:
        return self.nets.dist(obs).mode()


class DeterministicActor(nn.Module):
    """TD3's and DDPG's mu(s) in [-1, 1]."""

    def __init__(self, nets: DeterministicNets):
        super().__init__()
        self.nets = _copy(nets, drop=("critic", "critic_target", "actor_target"))

    def forward(self, obs: Tensor) -> Tensor:
        return self.nets.mu(obs)


class ACERActor(nn.Module):
    """ACER's most probable action under pi(.|s)."""

    def __init__(self, nets: ACERNets):
        super().__init__()
        self.net = _copy(nets.online, drop=("q_head",))

    def forward(self, obs: Tensor) -> Tensor:
        return self.net.probs(obs).argmax(-1)


class PolicyModule(nn.Module):
    """Raw observations ``[B, *obs_shape]`` -> env actions ``[B, ...]``, deterministic."""

    def __init__(self, prep: ObsPreprocess, actor: nn.Module, post: ActionPostprocess, info: dict[str, Any]):
        super().__init__()
        self.prep, self.actor, self.post = prep, actor, post
        self.info = info  # the metadata written with the exported file

    def forward(self, obs: Tensor) -> Tensor:
        return self.post(self.actor(self.prep(obs)))


# ----------------------------------------------------------------------------- building

def policy_module(agent: Agent) -> PolicyModule:
    """A self-contained module (CPU, eval mode, no gradients, weights copied) that maps a batch
    of raw observations to the actions of ``agent.predict(obs, deterministic=True)``."""
    _check_exportable(agent)
    nets = agent.nets
    if isinstance(nets, ActorCriticNet):
        actor: nn.Module = OnPolicyActor(nets)
    elif isinstance(nets, SACNets):
        actor = SACActor(nets)
    elif isinstance(nets, DeterministicNets):
        actor = DeterministicActor(nets)
    elif isinstance(nets, ACERNets):
        actor = ACERActor(nets)
    else:
        raise ExportError(f"cannot export a {type(agent).__name__} agent (its networks are a "
                          f"{type(nets).__name__}; exportable: A2C, A3C, PPO, SAC, TD3, DDPG, ACER)")
    norm = agent.prep.obs_norm
    mean = std = None
    clip = 10.0
    if norm is not None:
        mean, clip = np.asarray(norm.rms.mean, np.float64), norm.clip
        std = np.sqrt(np.asarray(norm.rms.var, np.float64) + norm.eps)
    prep = ObsPreprocess(_input_dtype(agent), mean, std, clip)
    post = ActionPostprocess(agent.act_space, rescale=isinstance(getattr(agent, "scaler", None), BoxScaler))
    module = PolicyModule(prep, actor, post, metadata(agent))
    return module.cpu().eval().requires_grad_(False)


def metadata(agent: Agent) -> dict[str, Any]:
    """What an exported file records about its policy (JSON-serialisable)."""
    in_dtype = _input_dtype(agent)
    rescale = isinstance(getattr(agent, "scaler", None), BoxScaler)
    space = agent.act_space
    post = ("rescale [-1, 1] -> [low, high]" if rescale and isinstance(space, gym.spaces.Box) else
            "clip to [low, high]" if isinstance(space, gym.spaces.Box) else
            "most probable bits" if isinstance(space, gym.spaces.MultiBinary) else "argmax")
    return {"format": "critic-policy", "algo": agent.algo, "critic_version": __version__, "env_id": agent.env_id,
            "deterministic": True, "env_steps": int(agent.env_steps),
            "inputs": {"obs": {"shape": ["batch", *map(int, agent.obs_space.shape)],
                               "dtype": str(in_dtype).removeprefix("torch."),
                               "normalized_inside": agent.prep.obs_norm is not None}},
            "outputs": {"action": {"dtype": _action_dtype(agent), "postprocess": post}},
            "observation_space": space_to_dict(agent.obs_space), "action_space": space_to_dict(space)}


def export(agent: Agent, path: str | os.PathLike, format: str = "onnx", opset: int | None = None) -> Path:
    """Write ``agent``'s deterministic policy (see the module docstring) to ``path`` as ONNX
    (input ``obs``, output ``action``, a dynamic batch axis; metadata in ``metadata_props``) or
    TorchScript (``torch.jit.load``-able; metadata in the extra file ``critic.json``).
    ``opset``: the ONNX opset (default: torch's). Returns the path written."""
    if format not in FORMATS:
        raise ExportError(f"invalid export format {format!r} (allowed: {', '.join(FORMATS)})")
    if format == "onnx":
        _require_onnx()
    module = policy_module(agent)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = _example(agent, module)
    info = json.dumps(module.info, sort_keys=True)
    tmp = path.with_name(f".{path.name}.tmp")  # written whole, then moved: no half-written file at path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.trace, the TorchScript ONNX exporter
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            if format == "torchscript":
                traced = torch.jit.trace(module, example, check_trace=False)
                torch.jit.save(traced, str(tmp), _extra_files={"critic.json": info})
            else:
                _export_onnx(module, example, tmp, opset, info)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _export_onnx(module: nn.Module, example: Tensor, path: Path, opset: int | None, info: str) -> None:
    import onnx

    torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["obs"], output_names=["action"],
                      dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}}, opset_version=opset)
    model = onnx.load(str(path))
    meta = json.loads(info)
    props = {"critic.json": info, "algo": meta["algo"], "critic_version": meta["critic_version"],
             "env_id": meta["env_id"] or "", "observation_shape": json.dumps(meta["inputs"]["obs"]["shape"]),
             "observation_dtype": meta["inputs"]["obs"]["dtype"], "action_space": json.dumps(meta["action_space"]),
             "action_dtype": meta["outputs"]["action"]["dtype"]}
    onnx.helper.set_model_props(model, props)
    model.producer_name, model.doc_string = "critic", f"critic {meta['algo']} policy: obs -> action (deterministic)"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _check_exportable(agent: Any) -> None:
    if isinstance(agent, SeedBatch):
        raise ExportError(f"a batched seed run (SeedBatch of {agent.M} {agent.algo_cls.algo} agents) is not one "
                          "policy; export a member: export(batch.agents[k], path), or `critic export RUN/seed_<s>`")
    if not isinstance(agent, Agent):
        raise ExportError(f"export takes a critic agent, not a {type(agent).__name__}")
    if agent.cfg.action_masks and getattr(agent.obs_space, "layout", None) is not None \
            and agent.obs_space.layout.mask is not None:
        raise ExportError("cannot export an agent trained with action masks (not supported by export; "
                          "use agent.predict(obs, action_mask=...))")
    if is_packed_space(agent.obs_space):
        raise ExportError(f"cannot export an agent with Dict/Tuple observations ({agent.obs_space.layout.space}): "
                          "packed observation rows are not supported by export")


def _input_dtype(agent: Agent) -> torch.dtype:
    """uint8 for uint8 images (as predict feeds them), float32 otherwise."""
    return torch.uint8 if agent.image and agent.obs_space.dtype == np.uint8 else torch.float32


def _action_dtype(agent: Agent) -> str:
    space = agent.act_space
    if isinstance(space, gym.spaces.Box):
        rescale = isinstance(getattr(agent, "scaler", None), BoxScaler)
        return str(np.dtype(space.dtype) if rescale else np.result_type(np.float32, space.dtype))
    if isinstance(space, gym.spaces.MultiBinary):
        return str(np.dtype(space.dtype))
    return "int64"


def _torch_dtype(dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype)).dtype


def _example(agent: Agent, module: PolicyModule) -> Tensor:
    """A batch of 2 observations to trace with (the graph has no data-dependent branches)."""
    return torch.zeros((2, *agent.obs_space.shape), dtype=module.prep.in_dtype)


def _copy(module: nn.Module, drop: tuple[str, ...] = ()) -> nn.Module:
    """A CPU copy of ``module`` without the submodules/parameters named in ``drop`` and without
    ``torch.compile`` wrappers (``config.compile``), so that it traces as plain modules."""
    memo: dict[int, Any] = {}
    for name in drop:
        part = getattr(module, name, None)
        if part is not None:
            memo[id(part)] = None
    for m in module.modules():
        if "forward" in m.__dict__:  # nn.compile_forwards' wrapper, bound to the original
            memo[id(m.__dict__["forward"])] = None
    out = copy.deepcopy(module, memo)
    for m in out.modules():
        if "forward" in m.__dict__:
            del m.__dict__["forward"]
            m.__dict__.pop("_critic_compiled", None)
    return out.cpu()


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise MissingDependency(f"ONNX export needs the onnx package: {INSTALL_HINT}") from None


# ----------------------------------------------------------------------------- command line

def add_export_parser(sub: Any) -> argparse.ArgumentParser:
    """``critic export RUN_OR_MODEL [--format onnx|torchscript] [-o FILE] [--allow-import M]``."""
    x = sub.add_parser("export", help="write the deterministic policy as ONNX or TorchScript",
                       description="Export a trained agent's deterministic policy, observation normalisation and "
                                   "action rescaling included, to run without critic (onnxruntime, torch.jit.load).")
    x.add_argument("path", metavar="RUN_OR_MODEL", help="a run directory (its model/, else checkpoints/) or a "
                                                        ".safetensors model file")
    x.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default) or torchscript")
    x.add_argument("-o", "--output", metavar="FILE",
                   help="file to write (default RUN/model/policy.onnx, or policy.pt for torchscript)")
    x.add_argument("--opset", type=int, default=None, help="ONNX opset version (default: torch's)")
    x.add_argument("--allow-import", action="append", metavar="MODULE",
                   help="allow the model's env id (MODULE:Env) or its own encoder (MODULE:function) to import MODULE")
    x.set_defaults(func=cmd_export)
    return x


def cmd_export(args: argparse.Namespace) -> int:
    """Load the model, export it, print ``critic: wrote FILE (SIZE)``."""
    import critic
    from critic import checkpoint as ckpt

    fmt = getattr(args, "format", "onnx") or "onnx"
    if fmt not in FORMATS:
        raise ExportError(f"invalid export format {fmt!r} (allowed: {', '.join(FORMATS)})")
    if fmt == "onnx":
        _require_onnx()
    src = Path(args.path)
    if src.is_dir() and (src / "batch.safetensors").is_file():
        raise ExportError(f"{src}: a batched run of several seeds; export one member's run directory "
                          f"({src}/seed_<s>)")
    model = ckpt.resolve(src)
    out = Path(args.output) if getattr(args, "output", None) else (
        (src / "model" if src.is_dir() else model.parent) / f"policy{SUFFIXES[fmt]}")
    agent = critic.load(model, allow_import=tuple(getattr(args, "allow_import", None) or ()))
    try:
        written = export(agent, out, fmt, getattr(args, "opset", None))
    finally:
        agent.close()
    print(f"critic: wrote {written} ({_size(written.stat().st_size)}, {fmt}, {agent.algo} policy)")
    return 0


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MiB"
