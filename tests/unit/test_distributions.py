"""Action distributions against torch.distributions and numerical integration."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch
import torch.distributions as D
from torch.distributions.transforms import TanhTransform

from critic.distributions import (
    Categorical,
    DiagGaussian,
    MultiCategorical,
    TanhGaussian,
    make_dist,
    param_dim,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- Categorical

def test_categorical_matches_torch():
    logits = torch.randn(6, 4) * 3
    ours, ref = Categorical(logits), D.Categorical(logits=logits)
    a = torch.tensor([0, 1, 2, 3, 3, 0])
    assert torch.allclose(ours.log_prob(a), ref.log_prob(a), atol=1e-6)
    assert torch.allclose(ours.entropy(), ref.entropy(), atol=1e-6)
    assert torch.allclose(ours.probs, ref.probs, atol=1e-6)
    assert torch.equal(ours.mode(), logits.argmax(-1))
    assert ours.log_prob(a).shape == (6,)


def test_categorical_sample_frequencies():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7]]))
    d = Categorical(logits.expand(20000, 3))
    s = d.sample()
    assert s.shape == (20000,)
    freq = torch.bincount(s, minlength=3).float() / 20000
    # binomial std at p=0.7, n=20000 is ~0.0032: 0.02 is > 6 sigma
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.7]), atol=0.02)


def test_multicategorical_matches_independent_torch():
    nvec = [3, 2, 4]
    logits = torch.randn(5, sum(nvec))
    d = MultiCategorical(logits, nvec)
    a = torch.stack([torch.randint(0, n, (5,)) for n in nvec], -1)
    parts = torch.split(logits, nvec, -1)
    ref_lp = sum(D.Categorical(logits=p).log_prob(a[:, i]) for i, p in enumerate(parts))
    ref_h = sum(D.Categorical(logits=p).entropy() for p in parts)
    assert torch.allclose(d.log_prob(a), ref_lp, atol=1e-5)
    assert torch.allclose(d.entropy(), ref_h, atol=1e-5)
    s = d.sample()
    assert s.shape == (5, 3)
    for i, n in enumerate(nvec):
        assert ((s[:, i] >= 0) & (s[:, i] < n)).all()
    assert torch.equal(d.mode(), torch.stack([p.argmax(-1) for p in parts], -1))


# ----------------------------------------------------------------------------- DiagGaussian

def test_diag_gaussian_matches_torch():
    mean = torch.randn(7, 3)
    log_std = torch.randn(3) * 0.5
    ours = DiagGaussian(mean, log_std)
    ref = D.Independent(D.Normal(mean, log_std.exp().expand_as(mean)), 1)
    a = torch.randn(7, 3) * 2
    assert torch.allclose(ours.log_prob(a), ref.log_prob(a), atol=1e-5)
    assert torch.allclose(ours.entropy(), ref.entropy(), atol=1e-5)
    assert torch.equal(ours.mode(), mean)


def test_diag_gaussian_sample_moments_and_reparam():
    mean = torch.tensor([1.0, -2.0], requires_grad=True)
    log_std = torch.log(torch.tensor([0.5, 2.0])).requires_grad_(True)
    d = DiagGaussian(mean.expand(50000, 2), log_std)
    s = d.rsample()
    assert torch.allclose(s.mean(0), torch.tensor([1.0, -2.0]), atol=0.05)
    assert torch.allclose(s.std(0), torch.tensor([0.5, 2.0]), rtol=0.03)
    s.sum().backward()  # rsample is reparameterised
    assert mean.grad is not None and torch.allclose(mean.grad, torch.full((2,), 50000.0))


# ----------------------------------------------------------------------------- TanhGaussian

def _density_integral(mean: float, std: float, corrected: bool = True) -> float:
    a = torch.linspace(-1 + 1e-9, 1 - 1e-9, 400_001, dtype=torch.float64)[:, None]
    d = TanhGaussian(torch.full_like(a, mean), torch.full_like(a, std).log())
    if corrected:
        lp = d.log_prob(a)
    else:  # the classic bug: base density at atanh(a) without the Jacobian correction
        lp = d.base.log_prob(torch.atanh(a))
    return torch.trapezoid(lp.exp(), a[:, 0]).item()


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (0.3, 0.8), (1.2, 0.4), (-0.7, 0.3)])
def test_tanh_gaussian_density_integrates_to_one(mean, std):
    assert _density_integral(mean, std) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (0.3, 0.8), (1.2, 0.4)])
def test_tanh_gaussian_without_correction_does_not_integrate_to_one(mean, std):
    # Negative control: the same assertion fails when the correction is omitted.
    assert abs(_density_integral(mean, std, corrected=False) - 1.0) > 0.05


def test_tanh_gaussian_log_prob_matches_transformed_distribution():
    mean = torch.randn(6, 2, dtype=torch.float64)
    log_std = torch.randn(6, 2, dtype=torch.float64) * 0.5
    ours = TanhGaussian(mean, log_std)
    ref = D.TransformedDistribution(D.Normal(mean, log_std.exp()), TanhTransform(cache_size=1))
    a = torch.rand(6, 2, dtype=torch.float64) * 1.9 - 0.95
    assert torch.allclose(ours.log_prob(a), ref.log_prob(a).sum(-1), atol=1e-8)
    assert torch.equal(ours.mode(), torch.tanh(mean))


@pytest.mark.parametrize("mu", [0.5, 20.0, -20.0])
@pytest.mark.parametrize("std", [1.0, 1e-3])
def test_tanh_gaussian_rsample_log_prob_matches_torch_and_is_finite(mu, std):
    mean = torch.full((4, 2), mu, requires_grad=True)
    log_std = torch.full((4, 2), float(torch.tensor(std).log()), requires_grad=True)
    d = TanhGaussian(mean, log_std)
    torch.manual_seed(123)
    a, lp = d.rsample_with_log_prob()
    # Rebuild the pre-squash sample u with the same noise, then ask torch for log pi(tanh u)
    # through a cached transform (so torch uses u itself, not atanh of a saturated a).
    torch.manual_seed(123)
    u = (mean + log_std.exp() * torch.randn_like(mean)).detach()
    assert torch.equal(a.detach(), torch.tanh(u))
    t = TanhTransform(cache_size=1)
    ref = D.TransformedDistribution(D.Normal(mean.detach(), log_std.detach().exp()), [t])
    ref_lp = ref.log_prob(t(u)).sum(-1)
    assert torch.isfinite(lp).all()
    assert torch.allclose(lp.detach(), ref_lp, rtol=1e-5, atol=1e-3)
    (lp.sum() + a.sum()).backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_std.grad).all()
    # the correction's derivative is nonzero, so the mean always gets a gradient
    assert (mean.grad.abs() > 0).all()


@pytest.mark.parametrize("mu", [20.0, -20.0])
def test_tanh_gaussian_log_prob_of_saturated_action_is_finite(mu):
    mean = torch.full((3, 1), mu, requires_grad=True)
    log_std = torch.full((3, 1), -6.9, requires_grad=True)
    d = TanhGaussian(mean, log_std)
    a = torch.full((3, 1), 1.0 if mu > 0 else -1.0)  # tanh(20) == 1 in float32
    lp = d.log_prob(a)
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_std.grad).all()


def test_tanh_gaussian_samples_in_open_interval_range():
    d = TanhGaussian(torch.zeros(1000, 3), torch.zeros(1000, 3))
    s = d.sample()
    assert s.shape == (1000, 3) and (s.abs() <= 1).all()


# ----------------------------------------------------------------------------- dispatch

def test_make_dist_and_param_dim():
    assert param_dim(gym.spaces.Discrete(5)) == 5
    assert param_dim(gym.spaces.MultiDiscrete([2, 3])) == 5
    assert param_dim(gym.spaces.Box(-1, 1, (3,))) == 3
    assert isinstance(make_dist(gym.spaces.Discrete(5), torch.zeros(2, 5)), Categorical)
    assert isinstance(make_dist(gym.spaces.MultiDiscrete([2, 3]), torch.zeros(2, 5)), MultiCategorical)
    assert isinstance(make_dist(gym.spaces.Box(-1, 1, (3,)), torch.zeros(2, 3), torch.zeros(3)), DiagGaussian)
    with pytest.raises(TypeError):
        param_dim(gym.spaces.Tuple((gym.spaces.Discrete(2),)))


def test_categorical_with_masked_action_has_finite_entropy_and_cross_entropy():
    from critic.distributions import Categorical
    from critic.losses import cross_entropy_loss

    logits = torch.tensor([[0.0, 1.0, float("-inf")]])
    d = Categorical(logits)
    ref = torch.distributions.Categorical(logits=logits).entropy()
    assert torch.allclose(d.entropy(), ref)
    loss, _ = cross_entropy_loss(d, torch.tensor([[0.5, 0.5, 0.0]]))
    assert torch.isfinite(loss)
