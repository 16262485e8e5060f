"""Network building blocks: MLPs, the Nature-CNN encoder, initialisation."""

from __future__ import annotations

import math
import os
import time
from typing import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from critic.config import ACTIVATION_NAMES, TORCH_ACTIVATIONS, ConfigError, activation_key

# every elementwise, parameter-free torch.nn activation, by its lower-case name (critic.config)
ACTIVATIONS: dict[str, type[nn.Module]] = {n.lower(): getattr(nn, n) for n in TORCH_ACTIVATIONS}
# Plain functions for the hot path (an nn.Module call costs a few microseconds per layer).
_FAST_FNS = {"tanh": torch.tanh, "relu": torch.relu, "elu": torch.nn.functional.elu,
             "gelu": torch.nn.functional.gelu}


def activation_module(name: str) -> nn.Module:
    key = activation_key(name)
    if key is None:
        raise ValueError(f"unknown activation {name!r} (allowed: {', '.join(ACTIVATION_NAMES)})")
    return ACTIVATIONS[key]()


def activation_fn(name: str):
    """The activation as a function of a tensor (a plain torch function where there is one)."""
    key = activation_key(name)
    return _FAST_FNS.get(key) or activation_module(name)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _own_running() -> int:
    """This process's threads that are running or runnable now (torch's pool spins a while
    after each operation; they are ours, not competition)."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                n += f.read().rpartition(")")[2].split()[0] == "R"
        except OSError:
            pass
    return n


def busy_cores(samples: int = 5, loadavg: str = "/proc/loadavg") -> int | None:
    """Cores other processes keep busy right now: the runnable tasks Linux counts in
    ``/proc/loadavg`` (its 4th field, an instant count unlike the load averages) less this
    process's own, the median of ``samples`` reads 1 ms apart; None where there is no such file."""
    counts = []
    for i in range(samples):
        try:
            own = _own_running()
            with open(loadavg) as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - max(own, 1))
        except (OSError, IndexError, ValueError):
            return None
        if i + 1 < samples:
            time.sleep(0.001)
    return max(0, sorted(counts)[len(counts) // 2])


def auto_threads(wide: bool) -> int:
    """``torch_threads=0``: 1 for narrow networks; for ``wide`` ones up to 4 of the cores that
    other processes leave free (at least 1).

    Torch's threads spin while they wait for each other, so on a machine whose cores are taken
    they fight the other processes (measured, SAC 256-256 on 2 cores beside 2 busy processes:
    2 threads 2.7x slower per update than 1; passive OpenMP waiting 2.3x, and 1.5x slower
    than 1 thread on an idle machine, so it is not used)."""
    if not wide:
        return 1
    cores = usable_cores()
    busy = busy_cores()
    return max(1, min(4, cores - (busy or 0)))


def set_cpu_threads(device: torch.device, n: int = 0, wide: bool = False) -> None:
    """Torch intra-op threads for a CPU run: ``n`` if given, else :func:`auto_threads`.

    Small networks pay more for thread synchronisation than they gain (measured: 2 threads made
    a 64-64 PPO ~3x slower); 256-wide MLPs and convolutional encoders are matrix-product bound
    and do gain (a 256-256 SAC update: 9.5 ms on 1 thread, 6.2 ms on 2), unless other processes
    hold the cores. ``n=0`` picks 1 for narrow networks and up to 4 free cores for ``wide`` ones
    (the agent chooses again at each ``learn``).
    """
    if torch.device(device).type == "cpu":
        if n == 0:
            n = auto_threads(wide)
        # Adam's second moments and dead units' gradients decay into subnormal floats, which
        # x86 CPUs process ~100x slower: flushing them to zero cut a SAC update by 10-20 %.
        torch.set_flush_denormal(True)
    if n > 0 and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this x86 CPU multiplies bfloat16 natively (AVX-512 BF16 or AMX); ``None`` when
    unknown (no ``/proc/cpuinfo``, or not an x86 CPU)."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None)
    if flags is None:  # ARM and others list "Features", with other names
        return None
    return "avx512_bf16" in flags or "amx_bf16" in flags


def init_layer(layer: nn.Module, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weight init with ``gain`` and constant bias (the PPO/A2C convention)."""
    if isinstance(layer, (nn.Linear, nn.Conv2d)):
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.constant_(layer.bias, bias)
    return layer


def init_uniform(layer: nn.Linear, bound: float = 3e-3) -> nn.Linear:
    """Uniform init in +-bound (DDPG's last actor/critic layer, so tanh starts unsaturated)."""
    nn.init.uniform_(layer.weight, -bound, bound)
    nn.init.uniform_(layer.bias, -bound, bound)
    return layer


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int | None = None, activation: str = "tanh",
        ortho_init: bool = True, out_gain: float = 1.0, layer_norm: bool = False) -> nn.Sequential:
    """Linear-activation stack (with ``layer_norm``, Linear-LayerNorm-activation); ``out_dim``
    appends a final linear layer with gain ``out_gain``."""
    layers: list[nn.Module] = []
    d = in_dim
    hidden_gain = math.sqrt(2)  # the SB3/CleanRL convention for every activation
    for h in hidden:
        lin = nn.Linear(d, h)
        if ortho_init:
            init_layer(lin, hidden_gain)
        layers += [lin, nn.LayerNorm(h), activation_module(activation)] if layer_norm else \
            [lin, activation_module(activation)]
        d = h
    if out_dim is not None:
        lin = nn.Linear(d, out_dim)
        if ortho_init:
            init_layer(lin, out_gain)
        layers.append(lin)
    return nn.Sequential(*layers)


class NatureCNN(nn.Module):
    """Mnih et al. 2015 encoder: 3 conv layers + a 512-unit linear layer, channels first.

    uint8 observations are scaled to [0, 1] here, once, so storage can keep them as bytes.
    """

    def __init__(self, obs_shape: Sequence[int], features: int = 512):
        super().__init__()
        c = obs_shape[0]
        self.convs = nn.Sequential(
            init_layer(nn.Conv2d(c, 32, 8, stride=4)), nn.ReLU(),
            init_layer(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
            init_layer(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n = self.convs(torch.zeros(1, *obs_shape)).shape[1]
        self.fc = nn.Sequential(init_layer(nn.Linear(n, features)), nn.ReLU())
        self.out_dim = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().mul_(1.0 / 255.0)
        return self.fc(self.convs(x))


def is_image_space(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3


def flat_dim(space: gym.Space) -> int:
    return int(np.prod(space.shape))


class Flatten(nn.Module):
    """Flatten everything after the batch dimension (vector observations of any rank <= 2)."""

    def __init__(self, out_dim: int):
        super().__init__()
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1).float() if x.dim() > 2 else x.float() if x.dtype != torch.float32 else x


def is_packed_space(space: gym.Space) -> bool:
    """A Dict/Tuple observation space packed into bytes (``critic.envs.packing.PackedObs``)."""
    return hasattr(space, "layout") and isinstance(space, gym.spaces.Box)


def needs_encoder(space: gym.Space) -> bool:
    """Whether observations pass an encoder module before the MLPs (images, Dict/Tuple), rather
    than going in as flat vectors."""
    return is_image_space(space) or is_packed_space(space)


def has_images(space: gym.Space) -> bool:
    return is_image_space(space) or (is_packed_space(space) and any(f.kind == "image" for f in space.layout.fields))


def encoder_for(space: gym.Space) -> nn.Module:
    """Nature-CNN for image Boxes (C,H,W or H,W,C uint8), one encoder per key for Dict/Tuple
    observations (:class:`DictEncoder`), flatten otherwise."""
    if is_packed_space(space):
        return DictEncoder(space.layout)
    if is_image_space(space):
        shape = space.shape
        if shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):  # HWC -> CHW
            return _HWCtoCHW(NatureCNN((shape[2], shape[0], shape[1])))
        return NatureCNN(shape)
    return Flatten(flat_dim(space))


def _bytes_as(b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bytes ``[..., k * size]`` reinterpreted as ``[..., k]`` values of ``dtype`` (copied first
    where the slice is not contiguous or not aligned to the dtype's size)."""
    size = torch.empty((), dtype=dtype).element_size()
    if not b.is_contiguous() or b.storage_offset() % size:
        b = b.clone(memory_format=torch.contiguous_format)
    return b.view(dtype)


def mask_field(space: gym.Space) -> tuple[int, int] | None:
    """(byte offset, number of flags) of the action mask in a packed observation row, or None."""
    layout = getattr(space, "layout", None) if is_packed_space(space) else None
    f = layout.mask if layout is not None else None
    return None if f is None else (f.offset, f.size)


def read_mask(obs: torch.Tensor, field: tuple[int, int]) -> torch.Tensor:
    """The valid-action flags ``[..., n]`` (bool) stored in packed observation rows."""
    off, n = field
    return _bytes_as(obs[..., off:off + 4 * n], torch.float32) > 0.5


MASKED_LOGIT = -1e9


def mask_logits(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Logits with the invalid actions at -1e9: probability exactly 0 after a softmax (never
    sampled), while every log-probability stays finite and far from overflow, so ``p * log p``,
    ``p * (Q - alpha log p)`` and KLs are 0 there rather than NaN (the dtype's lowest value would
    overflow once scaled by alpha). Masking moves no gradient into them."""
    return logits.masked_fill(~valid, MASKED_LOGIT)


class DictEncoder(nn.Module):
    """Features of a packed Dict/Tuple observation (``critic.envs.packing``): the float32 vectors
    as they are (one block), a one-hot per Discrete key, the Nature CNN per image key, side by
    side (Stable-Baselines3's CombinedExtractor, with raw vectors). The ``action_mask`` key is
    not a feature."""

    def __init__(self, layout):
        super().__init__()
        self.layout = layout
        self.F = layout.vector_size
        self.discrete = [(f.offset, int(f.space.n), int(f.space.start)) for f in layout.fields if f.kind == "discrete"]
        self.images = nn.ModuleList()
        self._image_fields = []
        for f in layout.fields:
            if f.kind == "image":
                self.images.append(encoder_for(f.space))
                self._image_fields.append((f.offset, f.nbytes, f.shape))
        self.out_dim = self.F + sum(n for _, n, _ in self.discrete) + sum(e.out_dim for e in self.images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        parts = []
        if self.F:
            parts.append(_bytes_as(x[..., :4 * self.F], torch.float32))
        for off, n, start in self.discrete:
            idx = _bytes_as(x[..., off:off + 8], torch.int64).squeeze(-1) - start
            parts.append(torch.nn.functional.one_hot(idx, n).to(torch.float32))
        for enc, (off, nbytes, shape) in zip(self.images, self._image_fields):
            img = x[..., off:off + nbytes].reshape(-1, *shape)
            parts.append(enc(img).reshape(*lead, -1))
        return parts[0] if len(parts) == 1 else torch.cat(parts, -1)


class _HWCtoCHW(nn.Module):
    def __init__(self, cnn: NatureCNN):
        super().__init__()
        self.cnn = cnn
        self.out_dim = cnn.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn(x.permute(0, 3, 1, 2))



def compile_forwards(net: nn.Module) -> None:
    """torch.compile the forward of every sub-module with its own forward and parameters, in
    place: parameters and state_dict keys are untouched, so checkpoints stay interchangeable
    with eager runs."""
    for m in net.modules():
        if m is not net and type(m).forward is not nn.Module.forward and not isinstance(
                m, (nn.Linear, nn.ReLU, nn.Tanh)) and any(True for _ in m.parameters()):
            if not getattr(m, "_critic_compiled", False):
                m.forward = torch.compile(m.forward)
                m._critic_compiled = True


# -- your own encoder ---------------------------------------------------------------------------
class EncoderError(ConfigError):
    """A user encoder that cannot be imported, is not allowed, or does not fit the observations."""


def resolve_encoder(path: str, allow_import: tuple[str, ...] = ()):
    """The factory named by ``path``, whose module (or its top-level package) ``allow_import``
    must name (the rule for ``module:EnvId`` ids): neither building an agent from a string nor
    loading a model runs code its caller did not allow. (A factory handed over as a Python
    object allows its own module.)"""
    import importlib

    module, _, qual = path.partition(":")
    if not encoder_allowed(path, allow_import):
        raise EncoderError(f"the encoder '{path}' would import the Python module '{module}'; refused unless "
                           f"explicitly allowed (allow_import=('{module}',) or --allow-import {module})")
    try:
        obj = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise EncoderError(f"cannot find the encoder '{path}': {type(e).__name__}: {e}") from None
    if not callable(obj):
        raise EncoderError(f"the encoder '{path}' is a {type(obj).__name__}, not a callable")
    return obj


def encoder_allowed(path: str, allow_import: tuple[str, ...]) -> bool:
    module = path.partition(":")[0]
    return module in allow_import or module.split(".")[0] in allow_import


class _Features(nn.Module):
    """A user encoder with its feature width (``out_dim``) measured on a sample observation."""

    def __init__(self, net: nn.Module, out_dim: int):
        super().__init__()
        self.net, self.out_dim = net, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_encoder(obs_space: gym.Space, path: str | None, allow_import: tuple[str, ...] = ()) -> nn.Module:
    """The observation encoder: the user's (``path``) when given, else critic's own
    (:func:`encoder_for`). A user encoder must return ``[B, F]`` features for a batch ``[B, ...]``
    of observations as the agent feeds them (float32 vectors, uint8 images)."""
    if path is None:
        return encoder_for(obs_space)
    factory = resolve_encoder(path, allow_import)
    try:
        net = factory(obs_space)
    except Exception as e:
        raise EncoderError(f"the encoder '{path}' failed when called with the observation space {obs_space!r}: "
                           f"{type(e).__name__}: {e}") from None
    if not isinstance(net, nn.Module):
        raise EncoderError(f"the encoder '{path}' returned a {type(net).__name__}, not a torch.nn.Module")
    dtype = torch.uint8 if obs_space.dtype == np.uint8 else torch.float32
    sample = torch.zeros((1, *obs_space.shape), dtype=dtype)  # (not space.sample(): that draws from the env's RNG)
    training = net.training
    try:
        with torch.no_grad():
            out = net.eval()(sample)
        net.train(training)
    except Exception as e:
        raise EncoderError(f"the encoder '{path}' failed on a batch of one observation of shape "
                           f"{tuple(sample.shape)} ({sample.dtype}): {type(e).__name__}: {e}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise EncoderError(f"the encoder '{path}' must return features [B, F] for observations [B, ...]; "
                           f"for a batch of one it returned {shape}")
    return _Features(net, int(out.shape[1]))
