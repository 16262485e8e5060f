"""MemberAdam: one optimizer over stacked members is M separate torch Adams (per-member
learning rate, clipping, step count and skipped steps), to float32 rounding."""

import pytest
import torch

from critic.optim import MemberAdam

M = 3


def _solo_and_stacked(seed=0):
    torch.manual_seed(seed)
    solos = [[torch.randn(4, 5, requires_grad=True), torch.randn(5, requires_grad=True)] for _ in range(M)]
    stacked = [torch.stack([s[i].detach() for s in solos]).requires_grad_(True) for i in range(2)]
    return solos, stacked


def _step_solos(solos, opts, grads, mask, clip=None):
    """Each solo optimizer steps on its member's gradients where ``mask`` is set (clipped first)."""
    for k, (s, opt) in enumerate(zip(solos, opts)):
        if mask[k]:
            for p, g in zip(s, grads):
                p.grad = g[k].clone()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(s, clip)
            opt.step()


def _grads(step, seed=1):
    g = torch.Generator().manual_seed(seed + step)
    return [torch.randn(M, 4, 5, generator=g) * 3, torch.randn(M, 5, generator=g) * 3]


def test_equals_separate_torch_adams_with_per_member_lr_and_clipping():
    solos, stacked = _solo_and_stacked()
    lrs = [1e-3, 3e-3, 1e-2]
    opts = [torch.optim.Adam(s, lr=lr, foreach=True) for s, lr in zip(solos, lrs)]
    mine = MemberAdam(stacked, torch.tensor(lrs), M)
    for step in range(25):
        grads = _grads(step)
        for k, (s, opt) in enumerate(zip(solos, opts)):
            for p, g in zip(s, grads):
                p.grad = g[k].clone()
            torch.nn.utils.clip_grad_norm_(s, 1.0)
            opt.step()
        for p, g in zip(stacked, grads):
            p.grad = g.clone()
        norms = mine.clip_(1.0)
        assert torch.allclose(norms, torch.stack([torch.cat([g[k].flatten() for g in grads]).norm()
                                                  for k in range(M)]), rtol=1e-5)
        mine.step()
    for k in range(M):
        for p_solo, p_stack in zip(solos[k], stacked):
            torch.testing.assert_close(p_stack[k], p_solo.detach(), rtol=1e-5, atol=1e-6)


def test_members_do_not_mix_negative_control():
    # the same updates with the members' learning rates swapped give different members
    _, a = _solo_and_stacked()
    _, b = _solo_and_stacked()
    oa, ob = MemberAdam(a, torch.tensor([1e-3, 3e-3, 1e-2]), M), MemberAdam(b, torch.tensor([1e-2, 3e-3, 1e-3]), M)
    for step in range(5):
        for ps, o in ((a, oa), (b, ob)):
            for p, g in zip(ps, _grads(step)):
                p.grad = g.clone()
            o.step()
    assert torch.equal(a[0][1], b[0][1])  # member 1 had the same rate in both
    assert not torch.allclose(a[0][0], b[0][0]) and not torch.allclose(a[0][2], b[0][2])


def test_a_masked_step_is_a_step_not_taken():
    solos, stacked = _solo_and_stacked()
    opts = [torch.optim.Adam(s, lr=1e-2, foreach=True) for s in solos]
    mine = MemberAdam(stacked, 1e-2, M)
    masks = [torch.tensor([1, 1, 1]), torch.tensor([1, 0, 1]), torch.tensor([0, 0, 1]), torch.tensor([1, 1, 1])]
    for step, mask in enumerate(masks):
        grads = _grads(step)
        _step_solos(solos, opts, grads, mask)
        before = [p.detach().clone() for p in stacked]
        for p, g in zip(stacked, grads):
            p.grad = g.clone()
        mine.step(mask.bool())
        for p, b in zip(stacked, before):
            for k in range(M):
                if not mask[k]:
                    assert torch.equal(p[k], b[k])  # untouched
    assert mine.steps.tolist() == [3, 2, 4]
    for k in range(M):
        for p_solo, p_stack in zip(solos[k], stacked):
            torch.testing.assert_close(p_stack[k], p_solo.detach(), rtol=1e-5, atol=1e-6)


def test_state_round_trip_and_shape_errors():
    _, stacked = _solo_and_stacked()
    opt = MemberAdam(stacked, 1e-3, M)
    for p, g in zip(stacked, _grads(0)):
        p.grad = g
    opt.step()
    other = MemberAdam([p.detach().clone().requires_grad_(True) for p in stacked], 5e-3, M)
    other.load_state_dict(opt.state_dict())
    assert torch.equal(other.lr, opt.lr) and torch.equal(other.exp_avg_sq[0], opt.exp_avg_sq[0])
    with pytest.raises(ValueError, match="leading axis of 3 members"):
        MemberAdam([torch.zeros(2, 4, requires_grad=True)], 1e-3, M)


def test_member_rmsprop_equals_separate_torch_rmsprops_with_masks_and_clipping():
    from critic.optim import MemberRMSprop

    solos, stacked = _solo_and_stacked()
    lrs = [7e-4, 1e-3, 3e-3]
    opts = [torch.optim.RMSprop(s, lr=lr, alpha=0.99, eps=1e-5, foreach=True) for s, lr in zip(solos, lrs)]
    mine = MemberRMSprop(stacked, torch.tensor(lrs), M, alpha=0.99, eps=1e-5)
    masks = [torch.tensor([1, 1, 1]), torch.tensor([1, 0, 1]), torch.tensor([0, 1, 1])] * 4
    for step, mask in enumerate(masks):
        grads = _grads(step)
        _step_solos(solos, opts, grads, mask, clip=0.5)
        for p, g in zip(stacked, grads):
            p.grad = g.clone()
        mine.clip_(0.5)
        mine.step(mask.bool())
    for k in range(M):
        for p_solo, p_stack in zip(solos[k], stacked):
            torch.testing.assert_close(p_stack[k], p_solo.detach(), rtol=1e-5, atol=1e-6)
        st = opts[k].state[solos[k][0]]
        mine_k = mine.member_state(k)
        torch.testing.assert_close(mine_k["square_avg"], st["square_avg"], rtol=1e-5, atol=1e-7)
        assert float(mine_k["step"]) == float(st["step"])
    # negative control: swapped learning rates give other members
    other = MemberRMSprop([p.detach().clone().requires_grad_(True) for p in stacked], torch.tensor(lrs[::-1]), M)
    for p, g in zip(other.params, _grads(0)):
        p.grad = g.clone()
    other.step()
    assert not torch.allclose(other.params[0][0], stacked[0][0])
