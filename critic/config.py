"""Typed configurations shared by every algorithm.

A config is a keyword-only dataclass. Each field carries a one-line docstring (the string
literal right after it) which is also the CLI help. Invalid values fail in ``__post_init__``
with a :class:`ConfigError` naming the field, the value and what is allowed. Configs round-trip
through YAML and JSON with ``to_dict`` / ``from_dict``; YAML is read with ``safe_load`` only,
so a ``!!python`` payload is refused and never executed.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import json
import math
import re
import textwrap
import types
import typing
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import yaml


class ConfigError(ValueError):
    """An invalid hyper-parameter or configuration file (the message names the field)."""


# ----------------------------------------------------------------------------- validation

def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a one-line message, shortened (a 400-digit integer is not worth
    printing, and one beyond Python's int-to-str limit cannot be printed at all)."""
    try:
        r = repr(value)
    except ValueError:  # an int above sys.get_int_max_str_digits() digits, or a list holding one
        if isinstance(value, int):
            return f"an integer of {abs(value).bit_length()} bits"
        return f"a {type(value).__name__} holding an integer too long to print"
    return r if len(r) <= limit else f"{r[:limit - 24]}...{r[-12:]} ({len(r)} characters)"


def check(cond: bool, name: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"invalid value for '{name}': {short_repr(value)} (allowed: {allowed})")


def check_choice(name: str, value: Any, choices: typing.Iterable[Any]) -> None:
    choices = tuple(choices)
    check(value in choices, name, value, "one of " + ", ".join(repr(c) for c in choices))


# ----------------------------------------------------------------------------- field docs

@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Map each dataclass field to the docstring written under it (searched along the MRO)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):  # pragma: no cover - source not available
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for stmt, nxt in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


# ----------------------------------------------------------------------------- coercion

@lru_cache(maxsize=None)
def _resolved_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # cached: evaluating the string annotations dominated from_dict


def coerce(name: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (from YAML, JSON or a ``--set`` string) to the field type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(name, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"invalid value for '{name}': {short_repr(value)}")
    if origin is typing.Literal:
        check_choice(name, value, args)
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            s = value.strip().strip("()[]")
            value = [v for v in (p.strip() for p in s.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"invalid value for '{name}': {short_repr(value)} (allowed: a list)")
        inner = args[0] if args else Any
        out = [coerce(name, v, inner) for v in value]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"invalid value for '{name}': {short_repr(value)} (allowed: true or false)")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"invalid value for '{name}': {short_repr(value)} (allowed: an integer)")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            s = value.replace("_", "")
            try:
                return int(s)  # exact: no rounding through a float for large integers
            except ValueError:
                pass
            try:
                f = float(s)  # "1e3", "4.0"
            except ValueError:
                f = math.nan
            if math.isfinite(f) and f.is_integer():
                return int(f)
        raise ConfigError(f"invalid value for '{name}': {short_repr(value)} (allowed: an integer)")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"invalid value for '{name}': {value!r} (allowed: a number)")
        try:
            if isinstance(value, (int, float)):
                return float(value)
            if isinstance(value, str):
                return float(value.replace("_", ""))
        except (ValueError, OverflowError):  # not a number, or an integer beyond the float range
            pass
        raise ConfigError(f"invalid value for '{name}': {short_repr(value)} (allowed: a number)")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"invalid value for '{name}': {short_repr(value)} (allowed: a string)")
    return value


# ----------------------------------------------------------------------------- base config

_DEVICE = re.compile(r"cpu|mps|auto|cuda(:(0|[1-9][0-9]{0,3}))?", re.ASCII)  # what torch.device parses


_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")

# Hidden activations: every elementwise, parameter-free activation of torch.nn, by its class
# name in any case, with or without underscores ('tanh', 'SiLU', 'leaky_relu'). Left out: the
# ones that mix a row (Softmax, LogSoftmax, Softmin, Softmax2d), halve it (GLU), draw random
# slopes (RReLU), learn a parameter (PReLU) or need arguments (Threshold). (critic.nn builds them.)
TORCH_ACTIVATIONS = ("ReLU", "Hardtanh", "ReLU6", "Sigmoid", "Hardsigmoid", "Tanh", "SiLU", "Mish", "Hardswish",
                     "ELU", "CELU", "SELU", "GELU", "Hardshrink", "LeakyReLU", "LogSigmoid", "Softplus",
                     "Softshrink", "Softsign", "Tanhshrink")
ACTIVATION_NAMES = tuple(sorted(n.lower() for n in TORCH_ACTIVATIONS))


def activation_key(name: str) -> str | None:
    """The canonical (lower-case) name of an activation, or None if critic has none by that name."""
    key = str(name).lower().replace("_", "").replace("-", "")
    return key if key in ACTIVATION_NAMES else None


def encoder_path(fn: object) -> str:
    """The import path ``module:qualname`` of a module-level encoder factory (what a checkpoint
    stores instead of code)."""
    module, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not callable(fn) or not module or not qual or "<" in qual:
        raise ConfigError(f"invalid value for 'encoder': {fn!r} (allowed: a module-level function or class "
                          "taking the observation space and returning a torch.nn.Module, so that a saved "
                          "model can name it; lambdas and nested functions have no import path)")
    return f"{module}:{qual}"


@dataclass(kw_only=True)
class Config:
    """Fields every algorithm has."""

    _nonfinite_ok: typing.ClassVar[frozenset[str]] = frozenset()  # float fields where inf/NaN mean something

    seed: int = 0
    """Random seed for torch, NumPy, Python and the environments."""
    num_envs: int = 1
    """Number of environments stepped in parallel (a vector env)."""
    vectorization: str = "auto"
    """How the vector env runs its sub-envs: 'sync' (one process), 'async' (subprocesses),
    'native' (Gymnasium's own vectorised implementation of the env, its ``vector_entry_point``:
    CartPole steps all sub-envs as NumPy arrays) or 'auto' (native where the env has one and
    num_envs >= 16, where it is faster; else sync)."""
    device: str = "cpu"
    """Torch device: 'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available)."""
    torch_threads: int = 0
    """Torch intra-op threads; 0 chooses automatically (on CPU: 1 for networks narrower than 256,
    up to 4 cores for wider ones and for images)."""
    learning_rate: float = 3e-4
    """Optimizer learning rate."""
    gamma: float = 0.99
    """Discount factor."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the MLP bodies."""
    activation: str = "tanh"
    """Hidden activation: any elementwise torch.nn activation by name ('tanh', 'relu', 'elu',
    'gelu', 'silu', 'leaky_relu', 'mish', ...)."""
    actor_hidden_sizes: tuple[int, ...] | None = None
    """Hidden layer widths of the actor (policy) MLP; none = hidden_sizes."""
    critic_hidden_sizes: tuple[int, ...] | None = None
    """Hidden layer widths of the critic (value or Q) MLP; none = hidden_sizes."""
    layer_norm: bool = False
    """A LayerNorm after each hidden linear layer, before its activation."""
    action_masks: bool = True
    """Use the env's action masks where it gives them (info['action_mask'], an action_masks()
    method, or a Dict observation key 'action_mask'): invalid actions are never taken and have
    probability 0 everywhere the policy is evaluated. False ignores them."""
    encoder: str | None = None
    """Your own observation encoder: 'package.module:function', a module-level function taking the
    observation space and returning a torch.nn.Module whose output (features) feeds the MLPs.
    In Python you may pass the function itself. Loading a model made with one imports that module
    only where allowed (allow_import / --allow-import)."""
    adam_betas: tuple[float, ...] = (0.9, 0.999)
    """Adam's (beta1, beta2), for every Adam optimizer of the algorithm."""
    normalize_obs: bool = False
    """Normalise observations with running mean/std (statistics are saved with the model)."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (saved with the model)."""
    reward_scale: float = 1.0
    """Multiply every reward by this before learning from it (a fixed rescaling, Coach's
    RewardRescaleFilter; applied before normalize_reward). Logged returns stay unscaled."""
    compile: bool = False
    """torch.compile every network's forward (compiles on first use; see benchmarks/RESULTS.md for what it
    gives: on a small CPU it was slower than eager)."""
    log_every: int = 1000
    """Write a metrics row (and refresh the progress bar) every this many env steps."""

    def __post_init__(self) -> None:
        for f in fields(self):  # generic: no NaN / inf, no integer beyond 64 bits, in any field
            v = getattr(self, f.name)
            for x in v if isinstance(v, tuple) else (v,):
                if isinstance(x, float) and not math.isfinite(x) and f.name not in self._nonfinite_ok:
                    raise ConfigError(f"invalid value for '{f.name}': {short_repr(v)} (allowed: a finite number)")
                if isinstance(x, int) and not -2**63 <= x < 2**63:
                    raise ConfigError(f"invalid value for '{f.name}': {short_repr(v)} "
                                      "(allowed: an integer of at most 64 bits)")
        check(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        check(self.num_envs >= 1, "num_envs", self.num_envs, "an integer >= 1")
        check_choice("vectorization", self.vectorization, ("auto", "sync", "async", "native"))
        check(_DEVICE.fullmatch(self.device) is not None, "device", self.device,
              "'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'")
        check(self.torch_threads >= 0, "torch_threads", self.torch_threads, "an integer >= 0 (0 = auto)")
        check(math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate",
              self.learning_rate, "a number > 0")
        check(math.isfinite(self.gamma) and 0.0 <= self.gamma <= 1.0, "gamma", self.gamma,
              "a number in [0, 1]")
        check(len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes),
              "hidden_sizes", self.hidden_sizes, "one or more positive integers")
        check(activation_key(self.activation) is not None, "activation", self.activation,
              f"a torch.nn activation by name: {', '.join(ACTIVATION_NAMES)} (any case, '_' optional)")
        for name in ("actor_hidden_sizes", "critic_hidden_sizes"):
            sizes = getattr(self, name)
            check(sizes is None or (len(sizes) >= 1 and all(h >= 1 for h in sizes)), name, sizes,
                  "one or more positive integers, or none (= hidden_sizes)")
        check(self.encoder is None or _IMPORT_PATH.fullmatch(self.encoder) is not None, "encoder", self.encoder,
              "none, or the import path 'package.module:function' of a module-level function that takes the "
              "observation space and returns a torch.nn.Module")
        check(self.log_every >= 1, "log_every", self.log_every, "an integer >= 1")
        check(self.reward_scale > 0, "reward_scale", self.reward_scale, "a number > 0")
        check(len(self.adam_betas) == 2 and all(0.0 <= b < 1.0 for b in self.adam_betas), "adam_betas",
              self.adam_betas, "two numbers in [0, 1), e.g. [0.9, 0.999]")

    # -- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def sizes_of(self, network: str) -> tuple[int, ...]:
        """The hidden widths of ``network`` ('actor' or 'critic'): its own field when set, else
        ``hidden_sizes``."""
        own = getattr(self, f"{network}_hidden_sizes", None)
        return tuple(self.hidden_sizes) if own is None else tuple(own)

    def lr_of(self, network: str) -> float:
        """The learning rate of ``network`` ('actor' or 'critic'): its own field when the config
        has one and it is set, else ``learning_rate``."""
        own = getattr(self, f"{network}_learning_rate", None)
        return self.learning_rate if own is None else own

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping of field names to values, got {type(data).__name__}")
        names = cls.field_names()
        types_ = _resolved_types(cls)
        kwargs = {}
        for key, value in data.items():
            if key not in names:
                raise ConfigError(f"unknown field {str(key)!r} for {cls.__name__}{suggest(str(key), names)}")
            kwargs[key] = coerce(key, value, types_[key])
        kwargs = {**cls.implied_defaults(kwargs), **kwargs}
        try:
            return cls(**kwargs)
        except TypeError as e:  # pragma: no cover - defensive
            raise ConfigError(str(e)) from None

    @classmethod
    def implied_defaults(cls, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults that depend on the fields the caller gave (a flavour of the algorithm): they
        fill only fields left out, and the resolved config stores them like any other value."""
        return {}

    def replace(self, **changes: Any) -> "Config":
        d = self.to_dict()
        d.update(changes)
        return type(self).from_dict(d)

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """(name, type, default, doc) for every field: the source of the CLI help."""
        docs = field_docs(cls)
        types_ = _resolved_types(cls)
        out = []
        for f in fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            tp = types_[f.name]
            tname = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
            out.append((f.name, tname, default, docs.get(f.name, "")))
        return out


# Names other libraries use for critic's fields (Stable-Baselines3 / RL Zoo, CleanRL, keras-gym),
# so a misspelt or foreign name is answered with the field that means the same thing.
ALIASES = {
    "lr": "learning_rate", "alpha": "ent_coef", "clip_range": "clip_eps", "clip_param": "clip_eps",
    "clip_coef": "clip_eps", "n_envs": "num_envs", "net_arch": "hidden_sizes", "activation_fn": "activation",
    "target_policy_noise": "target_noise", "policy_noise": "target_noise", "noise_clip": "target_noise_clip",
    "policy_frequency": "policy_delay", "policy_freq": "policy_delay", "max_grad_norm": "max_grad_norm",
    "vf_coef": "vf_coef", "entropy_beta": "ent_coef", "ent_coef": "ent_coef", "n_epochs": "n_epochs",
    "update_epochs": "n_epochs", "num_steps": "n_steps", "n_step": "bootstrap_n", "nstep": "bootstrap_n",
    "bootstrap_n": "bootstrap_n", "buffer_size": "buffer_size", "learning_starts": "learning_starts",
    "tau": "tau", "gae_lambda": "gae_lambda", "lam": "gae_lambda", "lambda": "gae_lambda", "discount": "gamma",
    "batch": "batch_size", "minibatch_size": "batch_size", "seed": "seed", "normalize": "normalize_obs",
    "norm_obs": "normalize_obs", "norm_reward": "normalize_reward", "normalize_advantages": "normalize_advantage",
    "norm_adv": "normalize_advantage", "target_kl": "target_kl", "use_sde": None, "policy_lr": "actor_learning_rate",
    "q_lr": "critic_learning_rate", "actor_lr": "actor_learning_rate", "critic_lr": "critic_learning_rate",
    "exploration_noise": "action_noise", "noise_std": "action_noise", "start_steps": "learning_starts",
    "total_timesteps": None, "n_timesteps": None, "num_workers": "workers", "n_workers": "workers",
    "features_extractor_class": "encoder", "features_extractor": "encoder", "pi": "actor_hidden_sizes",
    "vf": "critic_hidden_sizes", "qf": "critic_hidden_sizes", "use_layer_norm": "layer_norm",
}


def suggest(key: str, names: typing.Sequence[str]) -> str:
    """'; did you mean X, Y?' for an unknown field: the field another library's name means, then
    the closest spellings (difflib), or '' when nothing is close."""
    out: list[str] = []
    alias = ALIASES.get(key.lower().replace("-", "_"))
    if alias in names:
        out.append(alias)
    if key.lower() in ("total_timesteps", "n_timesteps", "steps"):
        return " (the number of env steps is not a hyper-parameter: use --steps N, or learn(N))"
    norm = {n.replace("_", ""): n for n in names}
    for cand in difflib.get_close_matches(key.lower().replace("_", "").replace("-", ""), list(norm), n=3, cutoff=0.6):
        if norm[cand] not in out:
            out.append(norm[cand])
    for cand in difflib.get_close_matches(key, names, n=3, cutoff=0.6):
        if cand not in out:
            out.append(cand)
    if not out:  # a word of the name inside a field (e.g. 'noise' -> action_noise, target_noise)
        words = [w for w in re.split(r"[_\-]", key.lower()) if len(w) >= 3]
        out = [n for n in names if any(w in n.split("_") for w in words)][:3]
    return f"; did you mean {', '.join(out[:3])}?" if out else ""


def parse_set(items: typing.Iterable[str]) -> dict[str, str]:
    """Parse CLI ``--set key=value`` items into a dict of raw strings."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {short_repr(item)} (several pairs may follow one "
                              "--set; give ALGO and ENV_ID before it)")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects key=value with a non-empty key, got {short_repr(item)}")
        out[key] = value.strip()
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping safely: tags such as ``!!python/object`` are refused, never run."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"refusing config file {path}: {msg}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False)


@dataclass(kw_only=True)
class OnPolicyConfig(Config):
    """Fields shared by the on-policy actor-critics (A2C, PPO)."""

    n_steps: int = 5
    """Rollout length per env between updates."""
    gae_lambda: float = 1.0
    """GAE lambda: 1 gives n-step (Monte-Carlo within the rollout) returns, 0 gives TD(0)."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss."""
    max_grad_norm: float | None = 0.5
    """Clip the global gradient norm to this value (none = no clipping)."""
    normalize_advantage: bool = False
    """Standardise advantages per (mini)batch."""
    optimizer: str = "adam"
    """Optimizer: 'adam' or 'rmsprop'."""
    optim_eps: float = 1e-5
    """Optimizer epsilon."""
    rmsprop_alpha: float = 0.99
    """RMSprop smoothing constant (used when optimizer='rmsprop')."""
    lr_schedule: str = "constant"
    """Learning-rate schedule: 'constant' or 'linear' (annealed to 0 over the learn() call)."""
    value_loss: str = "mse"
    """Critic loss: 'mse' (mean squared error) or 'huber'."""
    shared_body: bool = False
    """One MLP body for actor and critic (two heads) instead of two separate MLPs."""
    ortho_init: bool = True
    """Orthogonal initialisation (policy head gain 0.01, value head gain 1)."""
    log_std_init: float = 0.0
    """Initial log standard deviation of Gaussian policies (Box actions)."""
    backend: str = "local"
    """'local' (this process) or 'ray' (rollouts collected by `workers` Ray actors, num_envs each)."""
    workers: int = 1
    """Sampling workers with backend='ray' (each runs num_envs envs; one learner updates)."""
    address: str | None = None
    """Ray cluster address for backend='ray' (e.g. 'auto' or 'HEAD_IP:6379'); None starts Ray locally."""
    max_restarts: int = 3
    """Restarts allowed per worker after it dies or hangs; one more failure stops training with an error."""
    worker_timeout: float = 60.0
    """Seconds without progress after which a worker counts as hung: it is killed and restarted."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.n_steps >= 1, "n_steps", self.n_steps, "an integer >= 1")
        check_choice("backend", self.backend, ("local", "ray"))
        check(self.workers >= 1, "workers", self.workers, "an integer >= 1")
        check(self.max_restarts >= 0, "max_restarts", self.max_restarts, "an integer >= 0")
        check(self.worker_timeout > 0, "worker_timeout", self.worker_timeout, "a number of seconds > 0")
        check(0.0 <= self.gae_lambda <= 1.0, "gae_lambda", self.gae_lambda, "a number in [0, 1]")
        check(self.ent_coef >= 0 and math.isfinite(self.ent_coef), "ent_coef", self.ent_coef, "a number >= 0")
        check(self.vf_coef >= 0 and math.isfinite(self.vf_coef), "vf_coef", self.vf_coef, "a number >= 0")
        check(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm,
              "a number > 0 or none")
        check_choice("optimizer", self.optimizer, ("adam", "rmsprop"))
        check(self.optim_eps > 0, "optim_eps", self.optim_eps, "a number > 0")
        check(0 < self.rmsprop_alpha < 1, "rmsprop_alpha", self.rmsprop_alpha, "a number in (0, 1)")
        check_choice("lr_schedule", self.lr_schedule, ("constant", "linear"))
        check_choice("value_loss", self.value_loss, ("mse", "huber"))


def check_sampling_workers(cfg: OnPolicyConfig) -> None:
    """A synchronous on-policy learner (A2C, PPO): several workers only as Ray samplers, and no
    normalisation statistics that each sampler would keep on its own."""
    check(cfg.backend == "ray" or cfg.workers == 1, "workers", cfg.workers,
          "1 with backend='local' (more sampling workers need backend='ray'; asynchronous workers "
          "on this machine are A3C's: critic.A3C)")
    if cfg.backend == "ray":
        for name in ("normalize_obs", "normalize_reward"):
            check(not getattr(cfg, name), name, True,
                  "false with backend='ray' (each sampling worker would keep its own statistics)")


@dataclass(kw_only=True)
class OffPolicyConfig(Config):
    """Fields shared by the replay-based actor-critics (DDPG, TD3, SAC)."""

    learning_rate: float = 3e-4
    """Optimizer learning rate (actor, critics and entropy coefficient)."""
    actor_learning_rate: float | None = None
    """The actor's learning rate; none uses learning_rate (CleanRL's policy_lr)."""
    critic_learning_rate: float | None = None
    """The critics' learning rate; none uses learning_rate (CleanRL's q_lr)."""
    optim_eps: float = 1e-8
    """Adam's epsilon."""
    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor and critic MLPs."""
    activation: str = "relu"
    """Hidden activation: 'tanh', 'relu', 'elu' or 'gelu'."""
    buffer_size: int = 1_000_000
    """Replay capacity in transitions."""
    learning_starts: int = 100
    """Env steps of uniform random actions before learning starts."""
    batch_size: int = 256
    """Transitions per gradient step."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    train_freq: int = 1
    """Vector env steps between rounds of gradient steps."""
    gradient_steps: int = 1
    """Gradient steps per round (the update-to-data ratio with train_freq and num_envs)."""
    bootstrap_n: int = 1
    """n-step return horizon of the critic targets."""
    optimize_memory: bool = False
    """Store each observation once in replay (the next one is read from the following row):
    about half the memory for image observations."""
    precision: str = "float32"
    """Arithmetic of the gradient updates: 'float32', or 'bf16' (torch.autocast: matrix
    products in bfloat16, weights, optimizer states, losses and the network outputs in
    float32). On CPUs with AVX-512 BF16 or AMX, 1.4-1.7x more updates/s with 256-wide networks;
    elsewhere it can be slower. Acting and evaluation stay float32."""
    save_replay: bool = True
    """Write the replay contents into checkpoints (exact --resume); false keeps checkpoints small,
    and a resumed run refills the buffer for learning_starts steps before updating again."""
    log_every: int = 1000
    """Write a metrics row (and refresh the progress bar) every this many env steps."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.optim_eps > 0, "optim_eps", self.optim_eps, "a number > 0")
        for name in ("actor_learning_rate", "critic_learning_rate"):
            lr = getattr(self, name)
            check(lr is None or lr > 0, name, lr, "a number > 0, or none to use learning_rate")
        check(self.buffer_size >= self.num_envs, "buffer_size", self.buffer_size, f"an integer >= num_envs ({self.num_envs})")
        check(self.learning_starts >= 0, "learning_starts", self.learning_starts, "an integer >= 0")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        check(self.batch_size <= self.buffer_size, "batch_size", self.batch_size,
              f"at most buffer_size = {self.buffer_size}")
        check(0.0 < self.tau <= 1.0, "tau", self.tau, "a number in (0, 1]")
        check(self.train_freq >= 1, "train_freq", self.train_freq, "an integer >= 1")
        check(self.gradient_steps >= 0, "gradient_steps", self.gradient_steps, "an integer >= 0")
        check(self.bootstrap_n >= 1, "bootstrap_n", self.bootstrap_n, "an integer >= 1")
        check_choice("precision", self.precision, ("float32", "bf16"))


@dataclass(kw_only=True)
class DeterministicConfig(OffPolicyConfig):
    """Fields shared by the deterministic-actor algorithms (DDPG, TD3)."""

    learning_rate: float = 1e-3
    """Optimizer learning rate (actor and critics)."""
    action_noise: float = 0.1
    """Std of the exploration noise (in the policy's [-1, 1] range)."""
    noise_type: str = "gaussian"
    """Exploration noise: 'gaussian' or 'ou' (Ornstein-Uhlenbeck, reset per episode)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.action_noise >= 0, "action_noise", self.action_noise, "a number >= 0")
        check_choice("noise_type", self.noise_type, ("gaussian", "ou"))


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``, or a ConfigError when this machine does not have it (before
    any network is built, rather than a raw error at the first ``.to()``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"invalid value for 'device': {name!r} ({str(e).splitlines()[0]}; "
                          "allowed: 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto')") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"invalid value for 'device': {name!r} (CUDA is not available on this machine; "
                              "use 'cpu')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"invalid value for 'device': {name!r} (this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s): cuda:0 to "
                              f"cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"invalid value for 'device': {name!r} (Apple's MPS backend is not available on "
                              "this machine; use 'cpu')")
    elif dev.type != "cpu":
        raise ConfigError(f"invalid value for 'device': {name!r} (allowed: 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto')")
    return dev


def build_config(config_cls: type[Config], config: Config | dict | None, overrides: dict[str, Any]) -> Config:
    """The config an agent is built with: ``config`` (an instance, a dict or None) with ``overrides``."""
    if config is None:
        data: dict[str, Any] = {}
    elif isinstance(config, Config):
        data = config.to_dict()
    elif isinstance(config, dict):
        data = dict(config)
    else:
        raise ConfigError(f"config must be a {config_cls.__name__}, a dict or None, got {type(config).__name__}")
    data.update(overrides)
    if callable(data.get("encoder")):  # a factory function: stored by its import path, never as code
        data["encoder"] = encoder_path(data["encoder"])
    return config_cls.from_dict(data)


def worker_hparams(cfg: Config, config_cls: type[Config], worker_id: int, generation: int) -> dict[str, Any]:
    """The config of one worker's in-process agent (A3C worker, Ray sampler): the fields of
    ``config_cls``, its own seed (new envs after each restart), one torch thread, no backend."""
    names = set(config_cls.field_names())
    data = {k: v for k, v in cfg.to_dict().items() if k in names}
    data["seed"] = cfg.seed + 1000 * (worker_id + 1) + 100_003 * generation
    data["torch_threads"] = 1
    data.update(backend="local", workers=1, address=None)
    if "batch_size" in data:  # a sampler never updates; its own rollout may be smaller than the learner's
        data["batch_size"] = min(data["batch_size"], data["n_steps"] * data["num_envs"])
    return data
