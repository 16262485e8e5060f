"""Stacked Q ensemble against separate per-member computations; action scaling; noise."""

import gymnasium as gym
import numpy as np
import torch

from critic.modules.actions import BoxScaler, GaussianNoise, OUNoise
from critic.modules.critics import QEnsemble


def test_q_ensemble_equals_independent_member_networks():
    torch.manual_seed(0)
    q = QEnsemble(3, 2, hidden=(8, 8), n_critics=2)
    obs, act = torch.randn(5, 3), torch.randn(5, 2)
    out = q(obs, act)
    assert out.shape == (2, 5)
    for e in range(2):  # reference: plain matmuls per member, written out
        h = torch.cat([obs, act], -1)
        for i, (w, b) in enumerate(zip(q.weights, q.biases)):
            h = h @ w[e] + b[e, 0]
            if i < len(q.weights) - 1:
                h = torch.relu(h)
        assert torch.allclose(out[e], h.squeeze(-1), atol=1e-6)
        assert torch.allclose(q.member(e, obs, act), h.squeeze(-1), atol=1e-6)
    assert not torch.allclose(out[0], out[1])  # members are initialised independently


def test_q_ensemble_gradients_equal_independent_member_networks():
    """The stacked forward (one-column last layer as multiply-and-sum) backpropagates the same
    gradients as per-member matmuls, to the weights and to the actions."""
    torch.manual_seed(0)
    q = QEnsemble(3, 2, hidden=(8, 8), n_critics=2)
    obs, act = torch.randn(5, 3), torch.randn(5, 2, requires_grad=True)
    coef = torch.randn(2, 5)
    (q(obs, act) * coef).sum().backward()
    got = [p.grad.clone() for p in (*q.weights, *q.biases)], act.grad.clone()
    ref_w = [p.detach().clone().requires_grad_() for p in q.weights]
    ref_b = [p.detach().clone().requires_grad_() for p in q.biases]
    act2 = act.detach().clone().requires_grad_()
    total = 0
    for e in range(2):
        h = torch.cat([obs, act2], -1)
        for i, (w, b) in enumerate(zip(ref_w, ref_b)):
            h = h @ w[e] + b[e, 0]
            if i < len(ref_w) - 1:
                h = torch.relu(h)
        total = total + (h.squeeze(-1) * coef[e]).sum()
    total.backward()
    for g, r in zip(got[0], [p.grad for p in (*ref_w, *ref_b)]):
        assert torch.allclose(g, r, atol=1e-5)
    assert torch.allclose(got[1], act2.grad, atol=1e-5)


def test_q_ensemble_members_get_independent_gradients():
    torch.manual_seed(0)
    q = QEnsemble(3, 2, hidden=(8,), n_critics=2)
    q(torch.randn(4, 3), torch.randn(4, 2))[0].sum().backward()  # loss on member 0 only
    for w in (*q.weights, *q.biases):
        assert torch.count_nonzero(w.grad[1]) == 0 and torch.count_nonzero(w.grad[0]) > 0


def test_last_layer_bound():
    q = QEnsemble(3, 1, hidden=(16,), n_critics=1, last_layer_bound=3e-3)
    assert q.weights[-1].abs().max() <= 3e-3 and q.biases[-1].abs().max() <= 3e-3


def test_box_scaling_round_trip_and_bounds():
    space = gym.spaces.Box(np.array([0.0, -5.0], np.float32), np.array([10.0, 5.0], np.float32))
    s = BoxScaler(space)
    a = np.random.default_rng(0).uniform(-1.5, 1.5, (1000, 2)).astype(np.float32)
    env_a = s.scale(a)
    assert np.all(env_a >= space.low) and np.all(env_a <= space.high)
    inside = np.clip(a, -1, 1)
    np.testing.assert_allclose(s.unscale(env_a), inside, atol=1e-5)
    np.testing.assert_allclose(s.scale(np.array([[-1.0, 1.0]])), [[0.0, 5.0]])
    warm = np.stack([space.sample() for _ in range(100)])  # warm-up actions: stored in [-1, 1]
    stored = s.unscale(warm)
    assert np.all(np.abs(stored) <= 1.0 + 1e-6)


def test_noise_statistics_and_ou_reset():
    g = GaussianNoise((20000, 2), 0.1, np.random.default_rng(0))()
    assert abs(g.std() - 0.1) < 0.005 and abs(g.mean()) < 0.005
    ou = OUNoise((3, 2), 0.3, np.random.default_rng(0))
    xs = np.stack([ou() for _ in range(50)])
    assert np.abs(np.diff(xs, axis=0)).mean() < np.abs(xs).mean()  # correlated in time
    ou.reset(np.array([True, False, False]))
    assert np.all(ou.x[0] == 0) and np.any(ou.x[1] != 0)
