"""ACER's pieces against hand computations: Retrace, the trust region, the bias correction,
gradient isolation, the average network, and the sequence replay."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from critic.algos.acer import ACERConfig, ACERNet, ACERNets, update
from critic.config import ConfigError
from critic.buffers.sequence import SequenceReplay
from critic.losses.acer import acer_policy_objective, kl_grad, trust_region_project
from critic.optim import flatten_
from critic.returns import retrace

GAMMA = 0.9


def brute_force_retrace(r, q_a, v, v_last, rho_bar, term, trunc, v_trunc, gamma):
    """Q_ret(t) by direct recursion on Python floats, one env at a time, following the
    definition: r_t + gamma [rho_bar_{t+1} (Q_ret(t+1) - Q_{t+1}) + V_{t+1}] inside an episode."""
    T, N = len(r), len(r[0])
    out = [[0.0] * N for _ in range(T)]

    def q_ret(t, n):
        if term[t][n]:
            return r[t][n]
        if trunc[t][n]:
            return r[t][n] + gamma * v_trunc[t][n]
        if t == T - 1:
            return r[t][n] + gamma * v_last[n]
        return r[t][n] + gamma * (rho_bar[t + 1][n] * (q_ret(t + 1, n) - q_a[t + 1][n]) + v[t + 1][n])

    for t in range(T):
        for n in range(N):
            out[t][n] = q_ret(t, n)
    return out


def test_retrace_matches_brute_force_with_termination_and_truncation_inside_the_segment():
    rng = np.random.default_rng(3)
    T, N, A, c = 7, 3, 3, 1.5
    pi = rng.dirichlet(np.ones(A), size=(T, N))
    mu = rng.dirichlet(np.ones(A), size=(T, N))
    Q = rng.normal(size=(T, N, A))
    a = rng.integers(0, A, size=(T, N))
    r = rng.normal(size=(T, N))
    v = (pi * Q).sum(-1)
    q_a = np.take_along_axis(Q, a[..., None], -1)[..., 0]
    rho = np.take_along_axis(pi / mu, a[..., None], -1)[..., 0]
    rho_bar = np.minimum(c, rho)
    assert (rho > c).any() and (rho < c).any()  # the truncation is exercised
    term = np.zeros((T, N), bool)
    trunc = np.zeros((T, N), bool)
    term[2, 0] = True          # env 0: an episode terminates mid-segment ...
    trunc[4, 0] = True         # ... and the next one hits a time limit
    trunc[6, 1] = True         # env 1: truncated on the segment's last step
    term[3, 2] = trunc[3, 2] = True  # both flags: termination wins (no bootstrap)
    v_trunc = np.zeros((T, N))
    v_trunc[4, 0], v_trunc[6, 1], v_trunc[3, 2] = 2.5, -1.25, 100.0
    v_last = rng.normal(size=N)
    want = brute_force_retrace(r.tolist(), q_a.tolist(), v.tolist(), v_last.tolist(), rho_bar.tolist(),
                               term.tolist(), trunc.tolist(), v_trunc.tolist(), GAMMA)
    f = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    got = retrace(f(r), f(q_a), f(v), f(v_last), f(rho_bar), torch.tensor(term), torch.tensor(trunc),
                  f(v_trunc), GAMMA)
    np.testing.assert_allclose(got.numpy(), np.array(want), rtol=1e-5, atol=1e-5)
    # spot checks of the three cuts
    assert got[2, 0].item() == pytest.approx(r[2, 0])
    assert got[4, 0].item() == pytest.approx(r[4, 0] + GAMMA * 2.5, rel=1e-5)
    assert got[6, 1].item() == pytest.approx(r[6, 1] + GAMMA * -1.25, rel=1e-5)
    assert got[3, 2].item() == pytest.approx(r[3, 2])


def test_trust_region_projection_bounds_k_dot_g_and_leaves_small_steps_alone():
    g = torch.randn(500, 4, generator=torch.Generator().manual_seed(0)) * 3
    k = torch.randn(500, 4, generator=torch.Generator().manual_seed(1))
    delta = 1.0
    g2, scale = trust_region_project(g, k, delta)
    kg, kg2 = (k * g).sum(1), (k * g2).sum(1)
    inside = kg <= delta
    assert inside.any() and (~inside).any()
    assert torch.equal(g2[inside], g[inside]) and (scale[inside] == 0).all()
    assert (kg2 <= delta + 1e-4).all()
    torch.testing.assert_close(kg2[~inside], torch.full_like(kg2[~inside], delta), atol=1e-4, rtol=1e-4)
    # the change is along k only
    d = g2 - g
    cos = (d * k).sum(1) / (d.norm(dim=1) * k.norm(dim=1) + 1e-12)
    assert torch.allclose(cos[~inside].abs(), torch.ones_like(cos[~inside]), atol=1e-4)


def test_kl_gradient_is_the_derivative_of_kl_avg_to_pi():
    f_avg = torch.softmax(torch.randn(5, 3), -1)
    f = torch.softmax(torch.randn(5, 3), -1).requires_grad_(True)
    kl = (f_avg * (f_avg.log() - f.log())).sum()
    (auto,) = torch.autograd.grad(kl, f)
    torch.testing.assert_close(kl_grad(f_avg, f.detach()), auto)


def _nets_and_batch(T=5, N=3, A=3, seed=0, mu_from_policy=True, truncate=True):
    torch.manual_seed(seed)
    space = gym.spaces.Box(-1, 1, (4,), np.float32)
    nets = ACERNets(ACERNet(space, A, (16,), "tanh"))
    opt = torch.optim.SGD([flatten_(nets.online.parameters())], lr=0.0)  # lr 0: inspect .grad only
    obs = torch.randn(T + 1, N, 4)
    with torch.no_grad():
        p = nets.online.probs(obs[:T].flatten(0, 1)).view(T, N, A)
    mu = p.clone() if mu_from_policy else torch.softmax(torch.randn(T, N, A), -1)
    term = torch.zeros(T, N, dtype=torch.bool)
    trunc = torch.zeros(T, N, dtype=torch.bool)
    term[1, 0] = True
    idx = torch.zeros((0, 2), dtype=torch.long)
    final = torch.zeros((0, 4))
    if truncate:
        trunc[3, 1] = True
        idx = torch.tensor([[3, 1]])
        final = torch.randn(1, 4)
    batch = {"obs": obs, "actions": torch.multinomial(p.flatten(0, 1), 1).view(T, N), "rewards": torch.randn(T, N),
             "mu": mu, "terminated": term, "truncated": trunc, "final_idx": idx, "final_obs": final}
    return nets, opt, batch


def _grads(nets):
    return {n: p.grad.detach().clone() for n, p in nets.online.named_parameters()}


def test_with_mu_equal_pi_the_policy_gradient_is_the_on_policy_advantage_gradient():
    """mu = pi and c >= 1: rho = 1, the bias correction vanishes, and ACER's gradient (taken
    through f and back-propagated as -g/B) equals that of -mean(log pi(a|s) (Q_ret - V))."""
    cfg = ACERConfig(gamma=GAMMA, truncation_c=1.0, ent_coef=0.0, q_coef=0.0, trust_region=False,
                     max_grad_norm=None, avg_decay=0.0)
    nets, opt, batch = _nets_and_batch()
    ref = copy.deepcopy(nets.online)
    update(nets, opt, batch, cfg)
    got = _grads(nets)
    T, N = batch["actions"].shape
    logits, q = ref(torch.cat([batch["obs"].flatten(0, 1), batch["final_obs"]]))
    f = torch.softmax(logits, -1)
    with torch.no_grad():
        v = (f * q).sum(-1)
        a = batch["actions"].reshape(-1)
        q_a = q[: T * N].gather(1, a[:, None]).squeeze(1)
        tv = torch.zeros(T, N)
        tv[3, 1] = v[-1]
        q_ret = retrace(batch["rewards"], q_a.view(T, N), v[: T * N].view(T, N), v[T * N:T * N + N],
                        torch.ones(T, N), batch["terminated"], batch["truncated"], tv, GAMMA).reshape(-1)
    logp = torch.log_softmax(logits[: T * N], -1).gather(1, a[:, None]).squeeze(1)
    (-(logp * (q_ret - v[: T * N])).mean()).backward()
    for n, p in ref.named_parameters():
        want = p.grad if p.grad is not None else torch.zeros_like(p)  # the Q head: no policy gradient
        torch.testing.assert_close(got[n], want, atol=1e-6, rtol=1e-4, msg=n)
    assert any(torch.count_nonzero(g) > 0 for g in got.values())


def test_bias_correction_is_active_off_policy():
    """With mu far from pi and a small c, the bias-correction term is non-zero: check the
    objective's gradient against autograd of the formula written out term by term."""
    torch.manual_seed(1)
    B, A, c = 6, 4, 0.5
    f = torch.softmax(torch.randn(B, A), -1).requires_grad_(True)
    mu = torch.softmax(torch.randn(B, A) * 2, -1)
    q, v, q_ret = torch.randn(B, A), torch.randn(B), torch.randn(B)
    a = torch.randint(0, A, (B,))
    obj, _ = acer_policy_objective(f, a, mu, q, v, q_ret, c, ent_coef=0.0)
    (g,) = torch.autograd.grad(obj.sum(), f)
    rho = (f / mu).detach()
    want = torch.zeros(B, A)
    for i in range(B):
        want[i, a[i]] += min(c, rho[i, a[i]].item()) * (q_ret[i] - v[i]) / f[i, a[i]].item()
        for b in range(A):
            w = max(0.0, 1 - c / rho[i, b].item())
            want[i, b] += w * (q[i, b] - v[i])  # w f(b) (Q - V) * d log f(b) / d f(b) = w (Q - V)
    torch.testing.assert_close(g, want, atol=1e-4, rtol=1e-4)
    assert (torch.clamp(1 - c / rho, min=0) > 0).any()


def test_gradient_isolation_policy_terms_never_reach_the_q_head_nor_q_loss_the_policy_head():
    cfg = ACERConfig(gamma=GAMMA, q_coef=0.0, max_grad_norm=None)
    nets, opt, batch = _nets_and_batch(mu_from_policy=False)
    update(nets, opt, batch, cfg)
    g0 = _grads(nets)
    assert all(torch.count_nonzero(g0[n]) == 0 for n in g0 if n.startswith("q_head"))
    assert all(torch.count_nonzero(g0[n]) > 0 for n in g0 if n.startswith("pi_head"))
    nets, opt, batch = _nets_and_batch(mu_from_policy=False)
    update(nets, opt, batch, ACERConfig(gamma=GAMMA, q_coef=1.0, max_grad_norm=None))
    g1 = _grads(nets)
    for n in g0:
        if n.startswith("pi_head"):
            torch.testing.assert_close(g1[n], g0[n])  # the Q loss adds nothing to the policy head
        if n.startswith("q_head"):
            assert torch.count_nonzero(g1[n]) > 0


def test_average_network_moves_by_one_minus_alpha_and_is_never_optimised():
    cfg = ACERConfig(gamma=GAMMA, avg_decay=0.9)
    torch.manual_seed(0)
    space = gym.spaces.Box(-1, 1, (4,), np.float32)
    nets = ACERNets(ACERNet(space, 3, (16,)))
    opt = torch.optim.Adam([flatten_(nets.online.parameters())], lr=1e-2)
    _, _, batch = _nets_and_batch()
    before = [p.detach().clone() for p in nets.average.parameters()]
    update(nets, opt, batch, cfg)
    assert all(not p.requires_grad for p in nets.average.parameters())
    for b, avg, on in zip(before, nets.average.parameters(), nets.online.parameters()):
        torch.testing.assert_close(avg, 0.9 * b + 0.1 * on.detach())
    assert any(not torch.equal(b, on) for b, on in zip(before, nets.online.parameters()))


def test_update_back_propagates_the_projected_gradient():
    """With the trust region on, the network receives exactly -g'/B through f, g' being the
    objective's gradient projected with k from the (here deliberately different) average policy."""
    cfg = ACERConfig(gamma=GAMMA, q_coef=0.0, trust_region_delta=0.05, max_grad_norm=None, ent_coef=0.01)
    nets, opt, batch = _nets_and_batch(seed=4, mu_from_policy=False)
    with torch.no_grad():
        for p in nets.average.parameters():
            p.add_(0.5 * torch.randn_like(p))
    ref, avg = copy.deepcopy(nets.online), copy.deepcopy(nets.average)
    update(nets, opt, batch, cfg)
    got = _grads(nets)
    T, N = batch["actions"].shape
    B = T * N
    logits, q = ref(torch.cat([batch["obs"].flatten(0, 1), batch["final_obs"]]))
    f_all = torch.softmax(logits, -1)
    a = batch["actions"].reshape(-1)
    mu = batch["mu"].reshape(B, -1)
    with torch.no_grad():
        v = (f_all * q).sum(-1)
        f = f_all[:B]
        tv = torch.zeros(T, N)
        tv[3, 1] = v[-1]
        rho_bar = (f.gather(1, a[:, None]).squeeze(1) / mu.gather(1, a[:, None]).squeeze(1)).clamp(max=cfg.retrace_c)
        q_ret = retrace(batch["rewards"], q[:B].gather(1, a[:, None]).view(T, N), v[:B].view(T, N), v[B:B + N],
                        rho_bar.view(T, N), batch["terminated"], batch["truncated"], tv, GAMMA).reshape(-1)
    f_leaf = f.clone().requires_grad_(True)
    obj, _ = acer_policy_objective(f_leaf, a, mu, q[:B].detach(), v[:B], q_ret, cfg.truncation_c, cfg.ent_coef)
    (g,) = torch.autograd.grad(obj.sum(), f_leaf)
    k = kl_grad(avg.probs(batch["obs"][:T].flatten(0, 1)).detach(), f)
    g2, scale = trust_region_project(g, k, cfg.trust_region_delta)
    assert (scale > 0).any() and (scale == 0).any()  # some rows projected, some not
    f_all[:B].backward(-g2 / B)
    for n, p in ref.named_parameters():
        want = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(got[n], want, atol=1e-6, rtol=1e-4, msg=n)


def algorithm2_q_retrace(r, q_a, v, v_boot, rho, term, trunc, v_trunc, gamma):
    """ACER's Algorithm 2 (Wang et al. 2016) for one env's segment, written as the paper does:
    walk backwards from the bootstrap value, Q_ret <- r_i + gamma Q_ret, record it, then
    Q_ret <- min(1, rho_i) (Q_ret - Q(x_i, a_i)) + V(x_i). An episode end inside the segment
    restarts the walk: 0 after a termination, V(true final observation) after a truncation."""
    T = len(r)
    out = [0.0] * T
    q_ret = v_boot
    for i in range(T - 1, -1, -1):
        if term[i]:
            q_ret = 0.0
        elif trunc[i]:
            q_ret = v_trunc[i]
        q_ret = r[i] + gamma * q_ret
        out[i] = q_ret
        q_ret = min(1.0, rho[i]) * (q_ret - q_a[i]) + v[i]
    return out


@pytest.mark.parametrize("retrace_c, matches", [(1.0, True), (10.0, False)])
def test_acer_update_regresses_q_on_algorithm_2_targets(retrace_c, matches):
    """The update's Q loss is 1/2 mean (Q_ret - Q(s, a))^2 with Q_ret from Algorithm 2 (traces
    truncated at 1) on a hand-made off-policy segment with a termination and a truncation.
    Negative control: the traces truncated at c = 10 (the old code) give other targets."""
    T, N, A = 6, 2, 3
    nets, opt, batch = _nets_and_batch(T=T, N=N, A=A, seed=5, mu_from_policy=False)
    # behaviour far from the policy: mu(a_t) = 0.05 on even steps (ratios near 7), 0.9 on odd ones
    taken = torch.nn.functional.one_hot(batch["actions"], A).float()
    p_taken = torch.where(torch.arange(T)[:, None, None] % 2 == 0, 0.05, 0.9)
    batch["mu"] = taken * p_taken + (1 - taken) * (1 - p_taken) / (A - 1)
    cfg = ACERConfig(gamma=GAMMA, retrace_c=retrace_c, truncation_c=10.0, max_grad_norm=None, trust_region=False)
    logits, q = nets.online(torch.cat([batch["obs"].flatten(0, 1), batch["final_obs"]]))
    with torch.no_grad():
        f = torch.softmax(logits, -1)
        v = (f * q).sum(-1).numpy().astype(np.float64)
    a = batch["actions"].numpy()
    f, q = f.numpy().astype(np.float64), q.detach().numpy().astype(np.float64)
    mu = batch["mu"].numpy().astype(np.float64)
    B = T * N
    want = np.zeros((T, N))
    for n in range(N):
        rows = [t * N + n for t in range(T)]
        rho = [f[i, a[t, n]] / mu[t, n, a[t, n]] for t, i in enumerate(rows)]
        v_trunc = [v[B + N] if (t, n) == (3, 1) else 0.0 for t in range(T)]
        want[:, n] = algorithm2_q_retrace(batch["rewards"][:, n].tolist(), [q[i, a[t, n]] for t, i in enumerate(rows)],
                                          [v[i] for i in rows], v[B + n], rho, batch["terminated"][:, n].tolist(),
                                          batch["truncated"][:, n].tolist(), v_trunc, GAMMA)
    assert max(r for n in range(N) for r in [f[t * N + n, a[t, n]] / mu[t, n, a[t, n]] for t in range(T)]) > 5
    q_a = np.take_along_axis(q[:B], a.reshape(B, 1), 1)[:, 0]
    want_loss = 0.5 * np.mean((want.reshape(B) - q_a) ** 2)
    metrics = update(nets, opt, batch, cfg)
    got = float(metrics["loss/critic"])
    if matches:
        assert got == pytest.approx(want_loss, rel=1e-5)
    else:
        assert abs(got - want_loss) > 1e-3 * max(want_loss, 1.0)


def test_retrace_traces_truncated_at_one_keep_q_ret_variance_bounded():
    """Q errors of std 1 along a 20-step segment, actions from mu far from pi: with the traces
    truncated at 1 the spread of Q_ret(0) stays near the errors' own; truncated at c = 10 (the
    old choice, negative control) products of ratios up to 10 blow it up."""
    g = torch.Generator().manual_seed(0)
    T, N, A = 20, 4000, 4
    dirichlet = torch.distributions.Dirichlet(torch.full((A,), 0.3))
    torch.manual_seed(0)
    pi, mu = dirichlet.sample((T, N)), dirichlet.sample((T, N))
    a = torch.multinomial(mu.reshape(-1, A), 1, generator=g).view(T, N, 1)
    q_err = torch.randn(T, N, A, generator=g)  # the true Q is 0 everywhere (no rewards)
    v = (pi * q_err).sum(-1)
    rho = (pi.gather(-1, a) / mu.gather(-1, a)).squeeze(-1)
    none = torch.zeros(T, N, dtype=torch.bool)
    spread = {}
    for c in (1.0, 10.0):
        q_ret = retrace(torch.zeros(T, N), q_err.gather(-1, a).squeeze(-1), v, torch.zeros(N), rho.clamp(max=c),
                        none, none, torch.zeros(T, N), 0.99)
        spread[c] = (q_ret[0].std().item(), q_ret[0].abs().max().item())
    assert spread[1.0][0] < 1.5 and spread[1.0][1] < 10
    assert spread[10.0][0] > 5 * spread[1.0][0] and spread[10.0][1] > 20 * spread[1.0][1]


def test_retrace_c_is_validated():
    with pytest.raises(ConfigError, match="retrace_c"):
        ACERConfig(retrace_c=0.0)


# ----------------------------------------------------------------------------- sequence replay

def _segment(T, N, A, fill, finals=()):
    obs = torch.full((T + 1, N, 2), float(fill))
    return {"obs": obs, "actions": torch.full((T, N), fill % A, dtype=torch.long),
            "rewards": torch.full((T, N), float(fill)), "mu": torch.full((T, N, A), 1.0 / A),
            "terminated": torch.zeros(T, N, dtype=torch.bool),
            "truncated": torch.zeros(T, N, dtype=torch.bool).index_put_(
                tuple(torch.tensor([[t, n] for t, n in finals]).T) if finals else (), torch.tensor(True))
            if finals else torch.zeros(T, N, dtype=torch.bool),
            "final_idx": torch.tensor(list(finals), dtype=torch.long).reshape(-1, 2),
            "final_obs": torch.full((len(finals), 2), 1000.0 + fill)}


def test_sequence_replay_round_trip_ring_and_final_observations():
    T, N, A = 4, 2, 3
    buf = SequenceReplay(3 * T * N + 5, T, N, (2,), torch.float32, A)
    assert buf.S == 3 and len(buf) == 0
    buf.add(_segment(T, N, A, 1, finals=[(2, 1)]))
    buf.add(_segment(T, N, A, 2))
    seg = buf.get(0)
    assert seg["obs"].shape == (T + 1, N, 2) and seg["mu"].shape == (T, N, A)
    assert seg["final_idx"].tolist() == [[2, 1]] and seg["final_obs"].tolist() == [[1001.0, 1001.0]]
    assert buf.get(1)["final_idx"].shape == (0, 2)
    buf.add(_segment(T, N, A, 3, finals=[(0, 0), (3, 1)]))
    assert len(buf) == 3 * T * N and buf.full
    free_before = len(buf._free)
    buf.add(_segment(T, N, A, 4))  # overwrites slot 0: its final observation is freed
    assert len(buf._free) == free_before + 1
    assert buf.get(0)["rewards"][0, 0].item() == 4.0 and buf.get(0)["final_idx"].shape == (0, 2)
    got = buf.get(2)
    assert got["final_idx"].tolist() == [[0, 0], [3, 1]] and (got["final_obs"] == 1003.0).all()
    gen = torch.Generator().manual_seed(0)
    seen = {buf.sample(gen)["rewards"][0, 0].item() for _ in range(50)}
    assert seen == {2.0, 3.0, 4.0}
    # many truncations: the side store grows and keeps every final observation
    buf.add(_segment(T, N, A, 5, finals=[(t, n) for t in range(T) for n in range(N)]))
    assert (buf.get(1)["final_obs"] == 1005.0).all() and buf.get(1)["final_obs"].shape == (T * N, 2)
    # checkpoint round trip
    tensors, meta = buf.state_dict()
    other = SequenceReplay(3 * T * N + 5, T, N, (2,), torch.float32, A)
    other.load_state_dict(tensors, meta)
    for s in range(3):
        a, b = buf.get(s), other.get(s)
        assert all(torch.equal(a[k], b[k]) for k in a)
    other.add(_segment(T, N, A, 6, finals=[(1, 1)]))
    assert other.get(2)["final_obs"].tolist() == [[1006.0, 1006.0]]
    with pytest.raises(ValueError, match="shape mismatch"):
        SequenceReplay(2 * T * N, T, N, (2,), torch.float32, A).load_state_dict(tensors, meta)
