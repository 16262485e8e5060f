"""Policy-gradient losses against hand-computed values; gradient isolation of actor and critic."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from critic.distributions import Categorical
from critic.losses import cross_entropy_loss, entropy_loss, pg_loss, policy_loss, ppo_clip_loss, value_loss
from critic.modules.policies import ActorCriticNet


# ----------------------------------------------------------------------------- vanilla PG

def test_pg_loss_hand_computed_and_advantages_are_constants():
    logp = torch.tensor([-0.5, -2.0, -1.0], requires_grad=True)
    adv = torch.tensor([1.0, -0.5, 2.0], requires_grad=True)
    loss, _ = pg_loss(logp, adv)
    # -(1*-0.5 + -0.5*-2 + 2*-1) / 3 = -(-0.5 + 1 - 2) / 3 = 0.5
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert torch.allclose(logp.grad, torch.tensor([-1.0, 0.5, -2.0]) / 3)
    assert adv.grad is None


# ----------------------------------------------------------------------------- PPO clip

def test_ppo_clip_loss_hand_computed():
    eps = 0.2
    ratios = torch.tensor([1.5, 0.5, 1.1, 1.5, 0.5, 0.9])
    adv = torch.tensor([2.0, 2.0, 2.0, -1.0, -1.0, -1.0])
    old = torch.tensor([-1.0, -0.3, -2.0, -0.7, -1.2, -0.4])
    logp = (old + ratios.log()).requires_grad_(True)
    loss, metrics = ppo_clip_loss(logp, old, adv, eps)
    # A>0: min(rA, clip(r)A): r=1.5 -> 1.2*2=2.4 (clipped); r=0.5 -> 0.5*2=1.0; r=1.1 -> 2.2
    # A<0: r=1.5 -> min(-1.5, -1.2) = -1.5; r=0.5 -> min(-0.5, -0.8) = -0.8 (clipped); r=0.9 -> -0.9
    objective = [2.4, 1.0, 2.2, -1.5, -0.8, -0.9]
    assert loss.item() == pytest.approx(-sum(objective) / 6, abs=1e-6)
    loss.backward()
    # d loss / d logp = -r A / B where the unclipped term is active, 0 where clipping binds.
    expected = torch.tensor([0.0, -0.5 * 2, -1.1 * 2, 1.5, 0.0, 0.9]) / 6
    assert torch.allclose(logp.grad, expected, atol=1e-6)
    assert metrics["train/clip_fraction"].item() == pytest.approx(4 / 6)
    k3 = np.mean([(r - 1) - math.log(r) for r in ratios.tolist()])
    assert metrics["train/approx_kl"].item() == pytest.approx(k3, abs=1e-6)


def test_ppo_clip_loss_equals_pg_at_ratio_one():
    logp = torch.tensor([-0.3, -1.7, -0.9])
    adv = torch.tensor([0.5, -2.0, 1.0])
    loss, m = ppo_clip_loss(logp, logp.clone(), adv, 0.2)
    assert loss.item() == pytest.approx(-adv.mean().item())
    assert m["train/clip_fraction"].item() == 0.0
    assert m["train/approx_kl"].item() == pytest.approx(0.0, abs=1e-7)


def test_ppo_clip_old_logp_and_adv_get_no_gradient():
    logp = torch.tensor([-1.0, -2.0], requires_grad=True)
    old = torch.tensor([-1.1, -1.9], requires_grad=True)
    adv = torch.tensor([1.0, -1.0], requires_grad=True)
    ppo_clip_loss(logp, old, adv, 0.2)[0].backward()
    assert old.grad is None and adv.grad is None and logp.grad is not None


# ----------------------------------------------------------------------------- cross-entropy

def test_cross_entropy_with_actions():
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    a = torch.tensor([2, 0, 1, 1])
    loss, _ = cross_entropy_loss(Categorical(logits), a)
    ref = -F.log_softmax(logits, -1)[torch.arange(4), a].mean()
    assert loss.item() == pytest.approx(ref.item(), abs=1e-6)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, a).item(), abs=1e-6)


def test_cross_entropy_with_probability_targets():
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(2)).requires_grad_(True)
    p = torch.softmax(torch.randn(4, 3, generator=torch.Generator().manual_seed(3)), -1).requires_grad_(True)
    loss, _ = cross_entropy_loss(Categorical(logits), p)
    ls = F.log_softmax(logits.detach(), -1).tolist()
    pl = p.detach().tolist()
    ref = -sum(sum(pl[b][k] * ls[b][k] for k in range(3)) for b in range(4)) / 4
    assert loss.item() == pytest.approx(ref, abs=1e-6)
    loss.backward()
    assert p.grad is None  # behaviour probabilities are constants
    # one-hot probability targets give the same loss as the actions
    a = torch.tensor([0, 2, 1, 0])
    l1, _ = cross_entropy_loss(Categorical(logits), F.one_hot(a, 3).float())
    l2, _ = cross_entropy_loss(Categorical(logits), a)
    assert l1.item() == pytest.approx(l2.item(), abs=1e-6)


def test_policy_loss_dispatch():
    logits = torch.randn(3, 2)
    d = Categorical(logits)
    a = torch.tensor([0, 1, 1])
    adv = torch.tensor([1.0, 2.0, -1.0])
    assert torch.equal(policy_loss("vanilla", d, a, adv)[0], pg_loss(d.log_prob(a), adv)[0])
    old = d.log_prob(a) - 0.1
    assert torch.equal(policy_loss("ppo", d, a, adv, old, 0.2)[0], ppo_clip_loss(d.log_prob(a), old, adv, 0.2)[0])
    with pytest.raises(ValueError, match="old_logp"):
        policy_loss("ppo", d, a, adv)
    with pytest.raises(ValueError, match="unknown update_strategy 'foo'"):
        policy_loss("foo", d, a, adv)


# ----------------------------------------------------------------------------- value / entropy

def test_value_loss_mse_and_huber():
    v = torch.tensor([1.0, 3.0, -0.5], requires_grad=True)
    target = torch.tensor([2.0, 0.0, -0.25], requires_grad=True)
    mse, _ = value_loss(v, target, "mse")
    assert mse.item() == pytest.approx((1 + 9 + 0.0625) / 3)  # plain MSE, the SB3 convention
    hub, _ = value_loss(v, target, "huber")
    # |e| <= 1: 0.5 e^2 ; |e| > 1: |e| - 0.5
    assert hub.item() == pytest.approx((0.5 * 1 + (3 - 0.5) + 0.5 * 0.0625) / 3)
    (mse + hub).backward()
    assert target.grad is None


def test_value_loss_clipped():
    v = torch.tensor([1.0, 3.0], requires_grad=True)
    old = torch.tensor([0.0, 2.5])
    target = torch.tensor([2.0, 0.0])
    loss, _ = value_loss(v, target, "mse", old_v_B=old, clip=0.2)
    # clipped values: [0.2, 2.7]; squared errors unclipped [1, 9], clipped [3.24, 7.29]; max [3.24, 9]
    assert loss.item() == pytest.approx((3.24 + 9.0) / 2)
    loss.backward()
    # element 0: the clipped error wins and is flat in v (clamp saturated) -> zero gradient
    assert v.grad[0].item() == 0.0
    assert v.grad[1].item() == pytest.approx(2 * (3.0 - 0.0) / 2)
    # without clip the same inputs give the plain MSE
    assert value_loss(v, target, "mse", old_v_B=old)[0].item() == pytest.approx((1.0 + 9.0) / 2)


def test_entropy_loss():
    ent = torch.tensor([0.5, 1.5, 1.0])
    loss, m = entropy_loss(ent)
    assert loss.item() == pytest.approx(-1.0)
    assert m["train/entropy"].item() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- gradient isolation

OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)


def _batch(net, act_space, B=8):
    g = torch.Generator().manual_seed(0)
    obs = torch.rand(B, 4, generator=g) * 2 - 1
    params, v = net(obs)
    d = net.dist(params)
    with torch.no_grad():
        a = d.sample()
    return obs, d, a, v


def _grads(net, side):
    return net.side_tensors(side, grads=True)


def _all_empty(grads):
    return all(g is None or torch.count_nonzero(g) == 0 for g in grads)


@pytest.mark.parametrize("act_space", [gym.spaces.Discrete(3), gym.spaces.Box(-1.0, 1.0, (2,), np.float32)],
                         ids=["discrete", "box"])
@pytest.mark.parametrize("strategy", ["vanilla", "ppo", "cross_entropy", "entropy"])
def test_actor_losses_leave_critic_gradients_empty(act_space, strategy):
    torch.manual_seed(0)
    net = ActorCriticNet(OBS, act_space, hidden_sizes=(8, 8), shared=False)
    obs, d, a, v = _batch(net, act_space)
    adv = torch.randn(8)
    if strategy == "entropy":
        loss = entropy_loss(d.entropy())[0]
    else:
        loss = policy_loss(strategy, d, a, adv, d.log_prob(a).detach() - 0.05)[0]
    loss.backward()
    critic_grads = _grads(net, "critic")
    assert critic_grads and _all_empty(critic_grads)
    actor_grads = _grads(net, "actor")
    if strategy != "entropy" or isinstance(act_space, gym.spaces.Box):
        # the loss really did reach the actor (otherwise the check above would be vacuous)
        assert any(g is not None and torch.count_nonzero(g) > 0 for g in actor_grads)


@pytest.mark.parametrize("act_space", [gym.spaces.Discrete(3), gym.spaces.Box(-1.0, 1.0, (2,), np.float32)],
                         ids=["discrete", "box"])
@pytest.mark.parametrize("kind", ["mse", "huber"])
def test_value_loss_leaves_actor_gradients_empty(act_space, kind):
    torch.manual_seed(0)
    net = ActorCriticNet(OBS, act_space, hidden_sizes=(8, 8), shared=False)
    obs, d, a, v = _batch(net, act_space)
    loss = value_loss(v, torch.randn(8), kind)[0]
    loss.backward()
    actor_grads = _grads(net, "actor")
    assert actor_grads and _all_empty(actor_grads)
    assert all(g is not None and torch.count_nonzero(g) > 0 for g in _grads(net, "critic"))


def test_gradient_isolation_negative_control_shared_body():
    # With one shared body, the policy loss does move parameters the critic uses: the
    # isolation assertion is capable of failing.
    torch.manual_seed(0)
    net = ActorCriticNet(OBS, gym.spaces.Discrete(3), hidden_sizes=(8, 8), shared=True)
    obs, d, a, v = _batch(net, gym.spaces.Discrete(3))
    pg_loss(d.log_prob(a), torch.randn(8))[0].backward()
    assert not _all_empty(_grads(net, "critic"))


def test_actor_and_critic_parameter_sets_are_disjoint_when_separate():
    net = ActorCriticNet(OBS, gym.spaces.Box(-1.0, 1.0, (2,), np.float32), hidden_sizes=(8,), shared=False)
    actor = {id(p) for p in net.side_tensors("actor")}
    critic = {id(p) for p in net.side_tensors("critic")}
    assert actor and critic and not (actor & critic)
    assert actor | critic == {id(p) for p in net.parameters()}


def test_backward_step_on_flat_parameters_matches_torch():
    """Flattened parameters + our clipping == per-tensor parameters + torch's clip_grad_norm_."""
    from critic.optim import backward_step, flatten_

    for max_norm in (0.05, 1e3, None):  # clipped, left alone, no clipping
        torch.manual_seed(0)
        net_a = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        net_b = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
        net_b.load_state_dict(net_a.state_dict())
        opt_a = torch.optim.Adam([flatten_(net_a.parameters())], lr=0.1)
        opt_b = torch.optim.Adam(net_b.parameters(), lr=0.1)
        for _ in range(3):
            x = torch.randn(5, 3)
            backward_step(opt_a, net_a(x).square().sum(), max_norm)
            opt_b.zero_grad()
            net_b(x).square().sum().backward()
            if max_norm is not None:
                torch.nn.utils.clip_grad_norm_(net_b.parameters(), max_norm)
            opt_b.step()
        for p, q in zip(net_a.parameters(), net_b.parameters()):
            assert torch.allclose(p, q, atol=1e-6)
        assert not torch.equal(net_a[0].weight, torch.zeros_like(net_a[0].weight))


def test_direct_fused_adam_step_is_bit_identical_to_optimizer_step():
    """step_ calls the fused Adam kernel directly for one flat tensor: same parameters and
    state as opt.step() to the bit (weight decay and a learning-rate change included); an LR
    scheduler (which patches opt.step) or a step hook sends it back to opt.step()."""
    from critic.optim import _direct_fused_adam, backward_step, flatten_

    def run(direct: bool):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        flat = flatten_(net.parameters())
        opt = torch.optim.Adam([flat], lr=1e-2, weight_decay=1e-3, fused=True)
        for i in range(6):
            x = torch.randn(5, 3)
            if i == 3:
                opt.param_groups[0]["lr"] = 3e-3
            if direct:
                backward_step(opt, net(x).square().sum(), None)
            else:
                opt.zero_grad(set_to_none=False)
                net(x).square().sum().backward()
                opt.step()
        return flat.detach().clone(), {k: v.clone() for k, v in opt.state[flat].items()}, opt

    (p_a, s_a, opt), (p_b, s_b, _) = run(True), run(False)
    assert _direct_fused_adam(opt) is not None  # the direct path was the one taken
    assert torch.equal(p_a, p_b)
    assert all(torch.equal(s_a[k], s_b[k]) for k in s_b) and float(s_a["step"]) == 6
    handle = opt.register_step_post_hook(lambda *a: None)
    assert _direct_fused_adam(opt) is None
    handle.remove()
    assert _direct_fused_adam(opt) is not None
    torch.optim.lr_scheduler.StepLR(opt, 1)
    assert _direct_fused_adam(opt) is None
    plain = torch.optim.Adam([torch.zeros(3, requires_grad=True)], lr=0.1)  # not fused
    assert _direct_fused_adam(plain) is None
