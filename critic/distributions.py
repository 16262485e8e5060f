"""Action distributions, written lean for the hot path (no torch.distributions validation).

Each has ``sample()``, ``log_prob(a)``, ``entropy()`` and ``mode()``; log-probs and entropies
are summed over action dimensions so they are always ``[B]``.
"""

from __future__ import annotations

import math

import gymnasium as gym
import torch
import torch.nn.functional as F

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # the clamp of state-dependent log-stds (SAC actors, GaussianPolicy)


class Categorical:
    """Softmax policy over ``n`` actions from unnormalised ``logits [B, n]``."""

    def __init__(self, logits: torch.Tensor):
        self.logits = torch.log_softmax(logits, -1)  # log-probabilities (one fused op)

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.exp()

    def sample(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``noise``: the Exp(1) draws, shaped like the logits (drawn here unless given)."""
        # Gumbel-max: argmax(log p - log E), E ~ Exp(1); three small ops, about 3x cheaper
        # than torch.multinomial on a handful of rows.
        e = torch.empty_like(self.logits).exponential_() if noise is None else noise
        return (self.logits - e.log()).argmax(-1)

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        return self.logits.gather(-1, a.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        # masked actions (-inf logits) contribute 0 * log 0 = 0, not NaN
        return -(self.logits.exp() * self.logits.clamp(min=torch.finfo(self.logits.dtype).min)).sum(-1)

    def mode(self) -> torch.Tensor:
        return self.logits.argmax(-1)

    def params(self) -> torch.Tensor:
        return self.probs


class MultiCategorical:
    """Independent categoricals for a MultiDiscrete space; actions ``[B, k]``."""

    def __init__(self, logits: torch.Tensor, nvec: list[int]):
        self.nvec = nvec
        self.dists = [Categorical(x) for x in torch.split(logits, nvec, dim=-1)]

    def sample(self) -> torch.Tensor:
        return torch.stack([d.sample() for d in self.dists], -1)

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        return sum(d.log_prob(a[..., i]) for i, d in enumerate(self.dists))  # type: ignore[return-value]

    def entropy(self) -> torch.Tensor:
        return sum(d.entropy() for d in self.dists)  # type: ignore[return-value]

    def mode(self) -> torch.Tensor:
        return torch.stack([d.mode() for d in self.dists], -1)

    def params(self) -> torch.Tensor:
        return torch.cat([d.probs for d in self.dists], -1)


class Bernoulli:
    """Independent Bernoullis for a MultiBinary space, from logits ``[B, k]`` (``k`` = the
    number of bits; actions ``[B, *shape]`` of 0/1, as integers). Log-probabilities and
    entropies sum over the bits."""

    def __init__(self, logits: torch.Tensor, shape: tuple[int, ...] | None = None):
        self.logits = logits
        self.shape = tuple(shape) if shape is not None else (logits.shape[-1],)
        # log p(1) and log p(0): one fused op each, stable for large |logits|
        self.log_p1, self.log_p0 = F.logsigmoid(logits), F.logsigmoid(-logits)

    @property
    def probs(self) -> torch.Tensor:
        return torch.sigmoid(self.logits)

    def _shaped(self, bits: torch.Tensor) -> torch.Tensor:
        return bits.reshape(*bits.shape[:-1], *self.shape)

    def sample(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """``noise``: uniform [0, 1) draws shaped like the logits (drawn here unless given)."""
        u = torch.rand_like(self.logits) if noise is None else noise
        return self._shaped((u < self.probs).long())

    def _flat(self, a: torch.Tensor) -> torch.Tensor:
        return a.reshape(*a.shape[:a.dim() - len(self.shape)], -1).to(self.logits.dtype)

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        a = self._flat(a)
        return (a * self.log_p1 + (1.0 - a) * self.log_p0).sum(-1)

    def entropy(self) -> torch.Tensor:
        p1 = self.log_p1.exp()
        return -(p1 * self.log_p1 + (1.0 - p1) * self.log_p0).sum(-1)

    def mode(self) -> torch.Tensor:
        return self._shaped((self.logits > 0).long())

    def params(self) -> torch.Tensor:
        return self.probs


class DiagGaussian:
    """Gaussian with diagonal covariance; ``mean, log_std`` broadcast to ``[B, d]``."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor):
        self.mean = mean
        self.log_std = log_std.expand_as(mean)

    def sample(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        """mean + std * noise, with standard normal ``noise`` drawn here unless given (a batch of
        members draws each member's from its own generator)."""
        return self.mean + self.log_std.exp() * (torch.randn_like(self.mean) if noise is None else noise)

    rsample = sample

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        z = (a - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z.square() - self.log_std - LOG_SQRT_2PI).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (self.log_std + 0.5 + LOG_SQRT_2PI).sum(-1)

    def mode(self) -> torch.Tensor:
        return self.mean

    def params(self) -> torch.Tensor:
        return torch.cat([self.mean, self.log_std], -1)


def kl_divergence(old, new) -> torch.Tensor:
    """KL(old || new) ``[B]``, in closed form, for two distributions of the same kind
    (Categorical, MultiCategorical, Bernoulli or DiagGaussian), summed over action dimensions."""
    if isinstance(old, Categorical) and isinstance(new, Categorical):
        lo = old.logits.clamp(min=torch.finfo(old.logits.dtype).min)  # 0 * log 0 = 0 for masked actions
        return (old.logits.exp() * (lo - new.logits.clamp(min=torch.finfo(new.logits.dtype).min))).sum(-1)
    if isinstance(old, MultiCategorical) and isinstance(new, MultiCategorical):
        return sum(kl_divergence(a, b) for a, b in zip(old.dists, new.dists))  # type: ignore[return-value]
    if isinstance(old, Bernoulli) and isinstance(new, Bernoulli):
        p1 = old.log_p1.exp()
        return (p1 * (old.log_p1 - new.log_p1) + (1.0 - p1) * (old.log_p0 - new.log_p0)).sum(-1)
    if isinstance(old, DiagGaussian) and isinstance(new, DiagGaussian):
        var_ratio = torch.exp(2.0 * (old.log_std - new.log_std))
        mean_term = ((old.mean - new.mean) * torch.exp(-new.log_std)).square()
        return 0.5 * (var_ratio + mean_term - 1.0 - torch.log(var_ratio)).sum(-1)
    raise TypeError(f"no closed-form KL between {type(old).__name__} and {type(new).__name__}")


def _log1m_tanh_sq(u: torch.Tensor) -> torch.Tensor:
    """log(1 - tanh(u)^2) computed stably: 2 (log 2 - u - softplus(-2u))."""
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


class TanhGaussian:
    """a = tanh(u), u ~ N(mean, std): log pi(a) = log N(u) - sum log(1 - tanh(u)^2), exactly.

    The correction is computed from the pre-squash sample ``u`` (never from ``atanh(a)`` on
    the sampling path), so it stays finite where tanh saturates.
    """

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor):
        self.base = DiagGaussian(mean, log_std)

    def rsample_with_log_prob(self, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample and its log-probability (``noise``: see ``DiagGaussian.sample``)."""
        u = self.base.rsample(noise)
        return torch.tanh(u), self.base.log_prob(u) - _log1m_tanh_sq(u).sum(-1)

    def sample(self, noise: torch.Tensor | None = None) -> torch.Tensor:
        return torch.tanh(self.base.sample(noise))

    def log_prob(self, a: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(a.dtype).eps
        u = torch.atanh(a.clamp(-1 + eps, 1 - eps))
        return self.base.log_prob(u) - _log1m_tanh_sq(u).sum(-1)

    def entropy(self) -> torch.Tensor:
        # No closed form; the base entropy is the usual stand-in (SAC uses -log pi instead).
        return self.base.entropy()

    def mode(self) -> torch.Tensor:
        return torch.tanh(self.base.mean)

    def params(self) -> torch.Tensor:
        return self.base.params()


SUPPORTED_ACTION_SPACES = "Discrete, MultiDiscrete, MultiBinary, Box"


def param_dim(space: gym.Space) -> int:
    """Width of the policy head's output for an action space."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return int(space.nvec.sum())
    if isinstance(space, gym.spaces.MultiBinary):
        return int(math.prod(space.shape))
    if isinstance(space, gym.spaces.Box):
        return int(math.prod(space.shape))
    raise TypeError(f"unsupported action space {space}")


def make_dist(space: gym.Space, params: torch.Tensor, log_std: torch.Tensor | None = None):
    """Distribution for ``space`` from the policy head output (and a log-std for Box)."""
    if isinstance(space, gym.spaces.Discrete):
        return Categorical(params)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return MultiCategorical(params, [int(n) for n in space.nvec.reshape(-1)])
    if isinstance(space, gym.spaces.MultiBinary):
        return Bernoulli(params, space.shape)
    assert log_std is not None
    return DiagGaussian(params, log_std)
