"""Off-policy losses (Q regression, deterministic / soft actor, temperature) against hand-computed
and NumPy values; gradient isolation of actor, critic, target and log_alpha with small networks;
``frozen`` and ``standardize``."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from critic.distributions import Categorical, TanhGaussian
from critic.losses.actor import deterministic_actor_loss, soft_actor_loss, soft_value, temperature_loss
from critic.losses.q import q_regression_loss, td_target
from critic.modules.critics import QEnsemble
from critic.modules.target import frozen
from critic.returns import standardize

OBS_DIM, ACT_DIM, N_ACTIONS, B = 3, 2, 4, 6


def _grads_none(module: nn.Module) -> bool:
    return all(p.grad is None for p in module.parameters())


def _grads_nonzero(module: nn.Module) -> bool:
    return all(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in module.parameters())


# ----------------------------------------------------------------------------- TD target

def test_td_target_termination_keeps_reward_truncation_bootstraps():
    """discount 0 (terminated) leaves y = r; a truncation's gamma^n keeps the bootstrap."""
    r = torch.tensor([1.0, 2.0, 3.0])
    disc = torch.tensor([0.0, 0.99, 0.99 ** 3])  # terminated, truncated (n=1), n=3 not done
    v = torch.tensor([10.0, 10.0, -5.0])
    y = td_target(r, disc, v)
    assert torch.allclose(y, torch.tensor([1.0, 2.0 + 9.9, 3.0 - 5.0 * 0.99 ** 3]))
    # negative control: the terminated row really did have a bootstrap value to drop
    assert td_target(r, torch.ones(3), v)[0].item() == pytest.approx(11.0)


# ----------------------------------------------------------------------------- Q regression

Q2 = torch.tensor([[1.0, 3.0, -0.5], [0.0, 0.0, 0.0]])
Y = torch.tensor([2.0, 0.0, -0.25])


@pytest.mark.parametrize("E", [1, 2])
def test_half_mse_hand_computed_and_numpy(E):
    """1/2 sum_e mean_b (q_e - y)^2; its gradient is (q - y) / B per member."""
    q = Q2[:E].clone().requires_grad_(True)
    loss = q_regression_loss(q, Y)  # default 'half_mse'
    # member 0: errors -1, 3, -0.25 -> 10.0625 ; member 1: errors -2, 0, 0.25 -> 4.0625
    hand = 10.0625 / 6 + (4.0625 / 6 if E == 2 else 0.0)
    ref = 0.5 * ((Q2[:E].numpy() - Y.numpy()) ** 2).mean(1).sum()
    assert loss.item() == pytest.approx(hand) and loss.item() == pytest.approx(float(ref))
    loss.backward()
    assert torch.allclose(q.grad, (Q2[:E] - Y) / 3)


def test_mse_and_huber_sum_over_members():
    """'mse' and 'huber' (delta 1) are torch's losses per member, summed over the ensemble."""
    mse = q_regression_loss(Q2, Y, "mse")
    assert mse.item() == pytest.approx(10.0625 / 3 + 4.0625 / 3)
    assert mse.item() == pytest.approx((F.mse_loss(Q2[0], Y) + F.mse_loss(Q2[1], Y)).item())
    hub = q_regression_loss(Q2, Y, "huber")
    # |e| <= 1: 0.5 e^2, else |e| - 0.5.  member 0: 0.5, 2.5, 0.03125 ; member 1: 1.5, 0, 0.03125
    assert hub.item() == pytest.approx(3.03125 / 3 + 1.53125 / 3)
    assert hub.item() == pytest.approx((F.huber_loss(Q2[0], Y, delta=1.0) + F.huber_loss(Q2[1], Y, delta=1.0)).item())
    # single member: just torch's loss; and half_mse is exactly half the mse (negative control: huber differs)
    assert q_regression_loss(Q2[:1], Y, "mse").item() == pytest.approx(F.mse_loss(Q2[0], Y).item())
    assert q_regression_loss(Q2, Y).item() == pytest.approx(0.5 * mse.item())
    assert hub.item() != pytest.approx(mse.item())


def test_q_regression_rejects_bad_loss_and_shapes():
    with pytest.raises(ValueError, match="unknown Q loss 'l1'"):
        q_regression_loss(Q2, Y, "l1")
    with pytest.raises(AssertionError):
        q_regression_loss(Q2[0], Y)  # [B] instead of [E, B]
    with pytest.raises(AssertionError):
        q_regression_loss(Q2, Y[:2])


def _nets(seed: int = 0):
    torch.manual_seed(seed)
    actor = nn.Linear(OBS_DIM, ACT_DIM)
    critic = QEnsemble(OBS_DIM, ACT_DIM, hidden=(8,), n_critics=2)
    target = copy.deepcopy(critic)  # deliberately NOT frozen: only the loss's detach protects it
    obs, next_obs = torch.randn(B, OBS_DIM), torch.randn(B, OBS_DIM)
    act = torch.rand(B, ACT_DIM) * 2 - 1  # replay data
    return actor, critic, target, obs, next_obs, act


@pytest.mark.parametrize("kind", ["half_mse", "mse", "huber"])
def test_q_regression_gradient_reaches_critic_only(kind):
    """The critic gets a gradient; the target network and the actor (which built the target's
    next action) get none, because the loss detaches y; batch actions are data."""
    actor, critic, target, obs, next_obs, act = _nets()
    y = td_target(torch.randn(B), torch.full((B,), 0.99), target(next_obs, torch.tanh(actor(next_obs))).min(0).values)
    assert y.requires_grad  # the target carries a graph: the detach inside the loss is what is tested
    q_regression_loss(critic(obs, act), y, kind).backward()
    assert _grads_nonzero(critic)
    assert _grads_none(target) and _grads_none(actor)


def test_q_regression_isolation_negative_control():
    """The same regression without the detach would move the target and the actor."""
    actor, critic, target, obs, next_obs, act = _nets()
    y = target(next_obs, torch.tanh(actor(next_obs))).min(0).values
    (0.5 * (critic(obs, act) - y).square().mean(1).sum()).backward()
    assert not _grads_none(target) and not _grads_none(actor)


# ----------------------------------------------------------------------------- deterministic actor

def test_deterministic_actor_loss_hand_computed():
    q = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    loss = deterministic_actor_loss(q)
    assert loss.item() == pytest.approx(-2.0)
    loss.backward()
    assert torch.allclose(q.grad, torch.full((3,), -1 / 3))


def test_deterministic_actor_loss_under_frozen_moves_actor_only():
    """Inside ``frozen(critic)`` the gradient goes through the critic to the actions and reaches
    the actor's weights; no critic parameter gets a .grad; requires_grad is restored after."""
    actor, critic, _, obs, *_ = _nets()
    with frozen(critic) as c:
        assert c is critic and not any(p.requires_grad for p in critic.parameters())
        loss = deterministic_actor_loss(critic.member(0, obs, torch.tanh(actor(obs))))
        loss.backward()
    assert _grads_nonzero(actor)
    assert _grads_none(critic)
    assert all(p.requires_grad for p in critic.parameters())


def test_deterministic_actor_loss_without_frozen_reaches_critic():
    """Negative control: the same loss outside ``frozen`` does put gradients on the critic."""
    actor, critic, _, obs, *_ = _nets()
    deterministic_actor_loss(critic(obs, torch.tanh(actor(obs))).min(0).values).backward()
    assert _grads_nonzero(actor) and not _grads_none(critic)


def test_frozen_restores_requires_grad_after_exception():
    _, critic, *_ = _nets()
    with pytest.raises(RuntimeError, match="boom"):
        with frozen(critic):
            assert not any(p.requires_grad for p in critic.parameters())
            raise RuntimeError("boom")
    assert all(p.requires_grad for p in critic.parameters())


# ----------------------------------------------------------------------------- soft actor / value

def test_soft_actor_loss_continuous_hand_computed():
    """E[alpha logp - q] at one sample: gradient alpha / B on logp, -1 / B on q."""
    logp = torch.tensor([-1.0, -2.0, 0.5], requires_grad=True)
    q = torch.tensor([3.0, 1.0, -1.0], requires_grad=True)
    loss = soft_actor_loss(0.2, logp, q)
    # [-0.2 - 3, -0.4 - 1, 0.1 + 1] = [-3.2, -1.4, 1.1]
    assert loss.item() == pytest.approx(-3.5 / 3)
    assert soft_actor_loss(torch.tensor(0.2), logp, q).item() == pytest.approx(loss.item())
    loss.backward()
    assert torch.allclose(logp.grad, torch.full((3,), 0.2 / 3)) and torch.allclose(q.grad, torch.full((3,), -1 / 3))


def test_soft_actor_loss_discrete_exact_expectation():
    """sum_a pi(a|s) (alpha log pi - Q), averaged over rows: by hand and against NumPy."""
    p = torch.tensor([[0.25, 0.75]])
    hand = 0.25 * (0.5 * math.log(0.25) - 1.0) + 0.75 * (0.5 * math.log(0.75) - 2.0)
    assert soft_actor_loss(0.5, p.log(), torch.tensor([[1.0, 2.0]]), p).item() == pytest.approx(hand)
    g = torch.Generator().manual_seed(0)
    logits, q = torch.randn(B, N_ACTIONS, generator=g), torch.randn(B, N_ACTIONS, generator=g)
    d = Categorical(logits)
    loss = soft_actor_loss(0.3, d.logits, q, d.probs)
    pn, lpn = d.probs.numpy().astype(np.float64), d.logits.numpy().astype(np.float64)
    ref = (pn * (0.3 * lpn - q.numpy())).sum(-1).mean()
    assert loss.item() == pytest.approx(float(ref), abs=1e-6)
    # negative control: the single-sample form on the same [B, A] tensors is a different number
    assert soft_actor_loss(0.3, d.logits, q).mean().item() != pytest.approx(loss.item(), abs=1e-3)


def test_soft_value_both_forms():
    """V = q - alpha logp at a sample; sum_a pi (q - alpha logp) exactly; the discrete actor loss
    is minus its batch mean."""
    logp, q = torch.tensor([-1.0, -2.0, 0.5]), torch.tensor([3.0, 1.0, -1.0])
    assert torch.allclose(soft_value(0.2, logp, q), torch.tensor([3.2, 1.4, -1.1]))
    p = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    qa = torch.tensor([[1.0, 2.0], [-1.0, 3.0]])
    v = soft_value(0.5, p.log(), qa, p)
    hand = [0.25 * (1 - 0.5 * math.log(0.25)) + 0.75 * (2 - 0.5 * math.log(0.75)),
            0.5 * (-1 - 0.5 * math.log(0.5)) + 0.5 * (3 - 0.5 * math.log(0.5))]
    assert v.shape == (2,) and torch.allclose(v, torch.tensor(hand))
    assert soft_actor_loss(0.5, p.log(), qa, p).item() == pytest.approx(-v.mean().item())


def _gaussian_actor(seed: int):
    """Critic, obs and a SAC actor: one Linear to (mean, log-std) -> TanhGaussian."""
    _, critic, _, obs, *_ = _nets(seed)
    actor = nn.Linear(OBS_DIM, 2 * ACT_DIM)
    return actor, critic, obs


def _tanh_gaussian(actor: nn.Linear, obs) -> TanhGaussian:
    mean, log_std = actor(obs).chunk(2, -1)
    return TanhGaussian(mean, log_std.clamp(-5.0, 2.0))


def _sac_continuous(alpha_detached: bool):
    actor, critic, obs = _gaussian_actor(1)
    log_alpha = nn.Parameter(torch.tensor(math.log(0.2)))
    a, logp = _tanh_gaussian(actor, obs).rsample_with_log_prob()
    alpha = log_alpha.exp().detach() if alpha_detached else log_alpha.exp()
    with frozen(critic):
        q = critic(obs, a).min(0).values
        soft_actor_loss(alpha, logp, q).backward()
    return actor, critic, log_alpha


def test_sac_actor_loss_continuous_moves_actor_only():
    """Reparameterised TanhGaussian sample through a frozen critic: actor gets a gradient,
    critic and log_alpha (alpha = log_alpha.exp().detach()) get none."""
    actor, critic, log_alpha = _sac_continuous(alpha_detached=True)
    assert _grads_nonzero(actor)
    assert _grads_none(critic) and log_alpha.grad is None


def test_sac_actor_loss_continuous_negative_control_alpha_not_detached():
    actor, critic, log_alpha = _sac_continuous(alpha_detached=False)
    assert log_alpha.grad is not None and log_alpha.grad.item() != 0.0
    assert _grads_none(critic)


@pytest.mark.parametrize("detach", [True, False], ids=["detached", "negative_control"])
def test_sac_actor_loss_discrete_moves_actor_only(detach):
    """Discrete SAC with a detached q: only the actor moves. Negative control (q and alpha not
    detached): the critic and log_alpha would get gradients."""
    torch.manual_seed(2)
    actor = nn.Linear(OBS_DIM, N_ACTIONS)
    critic = QEnsemble(OBS_DIM, 0, hidden=(8,), n_critics=2, n_outputs=N_ACTIONS)
    log_alpha = nn.Parameter(torch.tensor(math.log(0.2)))
    obs = torch.randn(B, OBS_DIM)
    d = Categorical(actor(obs))
    q = critic(obs).min(0).values
    assert q.shape == (B, N_ACTIONS)
    alpha = log_alpha.exp()
    if detach:
        q, alpha = q.detach(), alpha.detach()
    soft_actor_loss(alpha, d.logits, q, d.probs).backward()
    assert _grads_nonzero(actor)
    if detach:
        assert _grads_none(critic) and log_alpha.grad is None
    else:
        assert not _grads_none(critic) and log_alpha.grad is not None and log_alpha.grad.item() != 0.0


# ----------------------------------------------------------------------------- temperature

def test_temperature_loss_value_and_grad_match_autograd():
    """loss = -log_alpha * gap, grad = -gap, identical to autograd of that expression."""
    log_alpha = nn.Parameter(torch.tensor(-0.7))
    gap = torch.tensor(0.35)
    loss, grad = temperature_loss(log_alpha, gap)
    assert loss.item() == pytest.approx(0.7 * 0.35) and grad.item() == pytest.approx(-0.35)
    assert not loss.requires_grad  # computed without a graph
    leaf = torch.tensor(-0.7, requires_grad=True)
    (auto,) = torch.autograd.grad(-leaf * gap, leaf)
    assert torch.allclose(grad, auto)
    # negative control: a different gap gives a different gradient
    assert not torch.allclose(temperature_loss(log_alpha, torch.tensor(-0.2))[1], auto)


def test_temperature_loss_refuses_gap_with_grad():
    log_alpha = nn.Parameter(torch.tensor(0.0))
    logp = torch.tensor([-1.0, -0.5], requires_grad=True)
    with pytest.raises(AssertionError, match="detached"):
        temperature_loss(log_alpha, logp.mean() + 1.0)
    temperature_loss(log_alpha, logp.mean().detach() + 1.0)  # detached: accepted


def test_temperature_step_touches_only_log_alpha():
    """Set log_alpha.grad = -gap and step: log_alpha moves the right way; actor and critic are
    untouched (no grads, same weights)."""
    actor, critic, obs = _gaussian_actor(3)
    log_alpha = nn.Parameter(torch.tensor(0.0))
    before = [p.detach().clone() for p in [*actor.parameters(), *critic.parameters()]]
    _, logp = _tanh_gaussian(actor, obs).rsample_with_log_prob()
    gap = logp.detach().mean() + (-float(ACT_DIM))  # target entropy -|A|
    opt = torch.optim.SGD([log_alpha], lr=0.1)
    _, grad = temperature_loss(log_alpha, gap)
    log_alpha.grad = grad
    opt.step()
    assert log_alpha.item() == pytest.approx(0.1 * gap.item())  # 0 - lr * (-gap)
    assert _grads_none(actor) and _grads_none(critic)
    after = [p.detach() for p in [*actor.parameters(), *critic.parameters()]]
    assert all(torch.equal(a, b) for a, b in zip(before, after))


# ----------------------------------------------------------------------------- standardize

@pytest.mark.parametrize("unbiased,ddof", [(True, 1), (False, 0)])
def test_standardize_matches_numpy(unbiased, ddof):
    """(x - mean) / (std + eps) with the sample (ddof=1) or population (ddof=0) std."""
    x = np.random.default_rng(0).normal(3.0, 2.0, 5)
    out = standardize(torch.tensor(x), unbiased=unbiased).numpy()
    ref = (x - x.mean()) / (x.std(ddof=ddof) + 1e-8)
    assert np.allclose(out, ref, atol=1e-10)
    assert abs(out.mean()) < 1e-10 and out.std(ddof=ddof) == pytest.approx(1.0, abs=1e-7)
    # negative control: with n = 5 the other convention's std is sqrt(4/5) or sqrt(5/4), not 1
    assert out.std(ddof=1 - ddof) != pytest.approx(1.0, abs=1e-2)
