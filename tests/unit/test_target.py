"""Target-network updates against a reference loop."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from critic.modules.target import freeze, hard_update, polyak_update


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 2))
    with torch.no_grad():  # non-trivial running statistics
        net[1].weight.uniform_(0.5, 1.5)  # BatchNorm affine starts at 1/0 in every net
        net[1].bias.uniform_(-1, 1)
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].num_batches_tracked.fill_(7 + seed)
    return net


def _float_state(net):
    return [t.detach().clone() for t in list(net.parameters()) + [b for b in net.buffers() if b.is_floating_point()]]


@pytest.mark.parametrize("tau", [0.005, 0.3, 1.0])
def test_polyak_matches_reference_loop(tau):
    src, tgt = _net(0), _net(1)
    src_before, tgt_before = _float_state(src), _float_state(tgt)
    nbt_before = tgt[1].num_batches_tracked.clone()
    polyak_update(src, tgt, tau)
    expected = [(1 - tau) * t.double() + tau * s.double() for s, t in zip(src_before, tgt_before)]
    after = _float_state(tgt)
    assert len(after) == len(expected) == 8  # 6 params (2 Linear, BatchNorm affine) + running mean/var
    for e, a in zip(expected, after):
        assert torch.allclose(a.double(), e, atol=1e-6, rtol=0)
    if tau == 1.0:
        assert all(torch.equal(a, s) for a, s in zip(after, src_before))
    else:
        # really moved, and not all the way (a no-op or a copy would fail the reference check)
        assert not any(torch.equal(a, t) for a, t in zip(after, tgt_before))
        assert not any(torch.equal(a, s) for a, s in zip(after, src_before))
    # the source is untouched and integer buffers are left alone
    assert all(torch.equal(a, b) for a, b in zip(_float_state(src), src_before))
    assert torch.equal(tgt[1].num_batches_tracked, nbt_before)


def test_polyak_repeated_small_tau_converges_geometrically():
    src, tgt = _net(0), _net(1)
    s0, t0 = _float_state(src), _float_state(tgt)
    for _ in range(10):
        polyak_update(src, tgt, 0.005)
    k = (1 - 0.005) ** 10
    for s, t, a in zip(s0, t0, _float_state(tgt)):
        assert torch.allclose(a, k * t + (1 - k) * s, atol=1e-5)


def test_hard_update_copies_exactly_and_keeps_storage():
    src, tgt = _net(0), _net(1)
    ptrs = [p.data_ptr() for p in tgt.parameters()]
    hard_update(src, tgt)
    for a, b in zip(_float_state(src), _float_state(tgt)):
        assert torch.equal(a, b)
    assert ptrs == [p.data_ptr() for p in tgt.parameters()]  # in place: optimizers/refs stay valid
    # afterwards the two are independent
    with torch.no_grad():
        next(src.parameters()).add_(1.0)
    assert not torch.equal(next(src.parameters()), next(tgt.parameters()))


def test_polyak_refuses_structure_mismatch():
    with pytest.raises(AssertionError):
        polyak_update(nn.Linear(3, 2), nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)), 0.5)


def test_frozen_target_gets_no_gradient_and_update_runs_without_autograd():
    src = _net(0)
    tgt = freeze(copy.deepcopy(src))
    assert all(not p.requires_grad for p in tgt.parameters())
    src.train(False)
    tgt.train(False)
    x = torch.randn(4, 3)
    (src(x).sum() + tgt(x).sum()).backward()
    assert all(p.grad is None for p in tgt.parameters())
    polyak_update(src, tgt, 0.5)  # no autograd error on leaf tensors, still frozen
    assert all(not p.requires_grad and p.grad is None for p in tgt.parameters())


@pytest.mark.parametrize("tau", [0.005, 1.0])
def test_polyak_on_flattened_networks_is_one_operation_with_the_same_result(tau):
    """Off-policy targets are flattened (frozen, no gradient buffer): Polyak then averages the
    one flat tensor; the result equals the per-tensor update exactly."""
    from critic.optim import flat_view, flatten_

    def pair():
        torch.manual_seed(0)
        s, t = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)), nn.Sequential(
            nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
        return s, freeze(t)

    src_a, tgt_a = pair()
    src_b, tgt_b = pair()
    flatten_(src_b.parameters())
    flat_t = flatten_(tgt_b.parameters(), grads=False)
    assert flat_t.grad is None and all(not p.requires_grad for p in tgt_b.parameters())
    assert flat_view(list(tgt_b.parameters())).data_ptr() == flat_t.data_ptr()
    assert flat_view(list(tgt_a.parameters())) is None  # separate tensors: the foreach path
    before = [p.clone() for p in tgt_b.parameters()]
    for _ in range(3):
        polyak_update(src_a, tgt_a, tau)
        polyak_update(src_b, tgt_b, tau)
    for a, b in zip(tgt_a.parameters(), tgt_b.parameters()):
        assert torch.equal(a, b)
    assert not any(torch.equal(a, b) for a, b in zip(tgt_b.parameters(), before))  # it moved
