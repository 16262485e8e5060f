"""Return estimators against brute-force references written as plain Python loops.

The rollouts follow the convention of ``critic.returns``: ``next_values[t]`` is V of the *true*
next state (the final observation where an episode ended), ``values[t + 1]`` is V of the state
the agent acted on next (a reset observation after an episode end).
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from critic.returns import discounted_returns, gae, nstep_targets

T = 9
# Per env: {step: "term" | "trunc"}. Env 0 has a termination and a truncation inside the
# rollout (so the 1-env case has both); env 1 truncates first, then terminates on the last
# step; env 2 never ends (bootstraps from the last value only).
ENDS = [{2: "term", 5: "trunc"}, {1: "trunc", 8: "term"}, {}]
TERMINAL_GARBAGE = 1e3  # V(terminal state) must be multiplied by zero; a leak is obvious


def fixed_critic_rollout(n_envs: int, seed: int = 0):
    """A rollout from a fixed-value critic: V is a fixed table over the states visited."""
    rng = random.Random(seed)
    rewards, values, next_values, term, trunc = ([[0.0] * n_envs for _ in range(T)] for _ in range(5))
    for n in range(n_envs):
        ends = ENDS[n]
        # V(s_t) for every state the agent acted on, plus V(s_T) after the rollout.
        v_states = [rng.uniform(-2, 2) for _ in range(T + 1)]
        for t in range(T):
            rewards[t][n] = rng.uniform(-1, 1)
            values[t][n] = v_states[t]
            kind = ends.get(t)
            term[t][n] = kind == "term"
            trunc[t][n] = kind == "trunc"
            if kind == "term":
                next_values[t][n] = TERMINAL_GARBAGE
            elif kind == "trunc":
                next_values[t][n] = rng.uniform(3, 5)  # V(true final observation), not V(reset obs)
            else:
                next_values[t][n] = v_states[t + 1]
    as_t = lambda x, dt=torch.float32: torch.tensor(x, dtype=dt)  # noqa: E731
    return (as_t(rewards), as_t(values), as_t(next_values), as_t(term, torch.bool), as_t(trunc, torch.bool))


# ----------------------------------------------------------------------------- references

def ref_gae(r, v, nv, term, trunc, gamma, lam):
    """A_t = sum_k (gamma lam)^k delta_{t+k}, the sum cut after the first step that ends an episode."""
    r, v, nv, term, trunc = (x.tolist() for x in (r, v, nv, term, trunc))
    Tn, N = len(r), len(r[0])
    out = [[0.0] * N for _ in range(Tn)]
    for n in range(N):
        delta = [r[t][n] + (0.0 if term[t][n] else gamma * nv[t][n]) - v[t][n] for t in range(Tn)]
        for t in range(Tn):
            total, w = 0.0, 1.0
            for s in range(t, Tn):
                total += w * delta[s]
                if term[s][n] or trunc[s][n]:
                    break
                w *= gamma * lam
            out[t][n] = total
    return torch.tensor(out, dtype=torch.float64)


def ref_mc_return(r, nv, term, trunc, gamma):
    """Discounted reward sum to the episode end; bootstrapped from V(final obs) at a truncation
    and from V(s_T) at the rollout end, zero after a termination."""
    r, nv, term, trunc = (x.tolist() for x in (r, nv, term, trunc))
    Tn, N = len(r), len(r[0])
    out = [[0.0] * N for _ in range(Tn)]
    for n in range(N):
        for t in range(Tn):
            g, disc, s = 0.0, 1.0, t
            while True:
                g += disc * r[s][n]
                disc *= gamma
                if term[s][n]:
                    break
                if trunc[s][n] or s == Tn - 1:
                    g += disc * nv[s][n]
                    break
                s += 1
            out[t][n] = g
    return torch.tensor(out, dtype=torch.float64)


def ref_td0(r, v, nv, term, gamma):
    r, v, nv, term = (x.tolist() for x in (r, v, nv, term))
    return torch.tensor([[r[t][n] + (0.0 if term[t][n] else gamma * nv[t][n]) - v[t][n]
                          for n in range(len(r[0]))] for t in range(len(r))], dtype=torch.float64)


def close(a, b, tol=1e-4):
    return torch.allclose(a.double(), b.double(), atol=tol, rtol=0)


# ----------------------------------------------------------------------------- GAE

@pytest.mark.parametrize("n_envs", [1, 3])
@pytest.mark.parametrize("gamma,lam", list(itertools.product([1.0, 0.99], [0.0, 0.9, 1.0])))
def test_gae_matches_brute_force(n_envs, gamma, lam):
    r, v, nv, term, trunc = fixed_critic_rollout(n_envs)
    adv, ret = gae(r, v, nv, term, trunc, gamma, lam)
    assert adv.shape == ret.shape == (T, n_envs)
    ref = ref_gae(r, v, nv, term, trunc, gamma, lam)
    assert close(adv, ref), (adv, ref)
    assert close(ret, ref + v.double())

    # Negative control: treating the truncation as a termination (dropping V(final obs))
    # gives a different answer, and the same assertion catches it.
    wrong, _ = gae(r, v, nv, term | trunc, torch.zeros_like(trunc), gamma, lam)
    assert not close(wrong, ref)
    # ... and, for lam > 0, ignoring the truncation (joining two episodes) is caught too
    # (TD(0) never looks past one step, so lam = 0 cannot join episodes).
    if lam > 0:
        wrong2, _ = gae(r, v, nv, term, torch.zeros_like(trunc), gamma, lam)
        assert not close(wrong2, ref)


@pytest.mark.parametrize("n_envs", [1, 3])
@pytest.mark.parametrize("gamma", [1.0, 0.99])
def test_gae_lambda_one_is_monte_carlo_minus_value(n_envs, gamma):
    r, v, nv, term, trunc = fixed_critic_rollout(n_envs)
    adv, ret = gae(r, v, nv, term, trunc, gamma, 1.0)
    mc = ref_mc_return(r, nv, term, trunc, gamma)
    assert close(adv, mc - v.double())
    assert close(ret, mc)
    # Negative control: the reference without the truncation bootstrap differs.
    mc_wrong = ref_mc_return(r, nv, term | trunc, torch.zeros_like(trunc), gamma)
    assert not close(ret, mc_wrong)


@pytest.mark.parametrize("n_envs", [1, 3])
@pytest.mark.parametrize("gamma", [1.0, 0.99])
def test_gae_lambda_zero_is_td0(n_envs, gamma):
    r, v, nv, term, trunc = fixed_critic_rollout(n_envs)
    adv, _ = gae(r, v, nv, term, trunc, gamma, 0.0)
    assert close(adv, ref_td0(r, v, nv, term, gamma))


def test_gae_terminal_next_value_is_ignored():
    r, v, nv, term, trunc = fixed_critic_rollout(3)
    adv, _ = gae(r, v, nv, term, trunc, 0.99, 0.9)
    nv2 = torch.where(term, torch.full_like(nv, -7.0), nv)
    adv2, _ = gae(r, v, nv2, term, trunc, 0.99, 0.9)
    assert torch.equal(adv, adv2)


def test_gae_hand_computed_two_steps():
    # r = [1, 2], V = [0.5, 1], V(s_2) = 3, gamma = 0.5, lam = 0.5, no episode end.
    # delta_1 = 2 + 0.5*3 - 1 = 2.5 ; delta_0 = 1 + 0.5*1 - 0.5 = 1.0
    # A_1 = 2.5 ; A_0 = 1.0 + 0.25 * 2.5 = 1.625
    r = torch.tensor([[1.0], [2.0]])
    v = torch.tensor([[0.5], [1.0]])
    nv = torch.tensor([[1.0], [3.0]])
    z = torch.zeros(2, 1, dtype=torch.bool)
    adv, ret = gae(r, v, nv, z, z, 0.5, 0.5)
    assert adv.flatten().tolist() == [1.625, 2.5]
    assert ret.flatten().tolist() == [2.125, 3.5]


# ----------------------------------------------------------------------------- discounted returns

@pytest.mark.parametrize("n_envs", [1, 3])
@pytest.mark.parametrize("gamma", [1.0, 0.99, 0.5])
def test_discounted_returns_match_monte_carlo(n_envs, gamma):
    r, v, nv, term, trunc = fixed_critic_rollout(n_envs)
    g = discounted_returns(r, nv, term, trunc, gamma)
    assert g.shape == (T, n_envs)
    assert close(g, ref_mc_return(r, nv, term, trunc, gamma))
    wrong = discounted_returns(r, nv, term | trunc, torch.zeros_like(trunc), gamma)
    assert not close(wrong, ref_mc_return(r, nv, term, trunc, gamma))


# ----------------------------------------------------------------------------- n-step

def expected_nstep_ones(T_, k, kind, n, gamma):
    """Closed form for a reward stream of 1s with one episode end (kind) at step k."""
    Rn, In, boot = [], [], []
    for t in range(T_):
        end = k if t <= k else T_ - 1  # last step of the window's episode (or rollout)
        m = min(n, end - t + 1, T_ - t)
        Rn.append(sum(gamma ** j for j in range(m)))
        terminated_inside = kind == "term" and t <= k < t + m
        In.append(0.0 if terminated_inside else gamma ** m)
        boot.append(t + m - 1)
    return Rn, In, boot


@pytest.mark.parametrize("gamma", [1.0, 0.9])
@pytest.mark.parametrize("n", [1, 3, 5])
def test_nstep_ones_termination_and_truncation(gamma, n):
    T_, k = 10, 4
    rewards = torch.ones(T_, 2)
    term = torch.zeros(T_, 2, dtype=torch.bool)
    trunc = torch.zeros(T_, 2, dtype=torch.bool)
    term[k, 0] = True   # env 0 terminates at k
    trunc[k, 1] = True  # env 1 is truncated at k
    Rn, In, boot = nstep_targets(rewards, term, trunc, gamma, n)
    assert Rn.shape == In.shape == boot.shape == (T_, 2)
    for col, kind in ((0, "term"), (1, "trunc")):
        eRn, eIn, eboot = expected_nstep_ones(T_, k, kind, n, gamma)
        assert torch.allclose(Rn[:, col], torch.tensor(eRn), atol=1e-6), (kind, Rn[:, col], eRn)
        assert torch.allclose(In[:, col], torch.tensor(eIn), atol=1e-6), (kind, In[:, col], eIn)
        assert boot[:, col].tolist() == eboot, (kind, boot[:, col], eboot)
    # Hand-checked anchors (n=3, gamma=0.9): the window starting at k-1 stops at k.
    if n == 3 and gamma == 0.9:
        assert Rn[k - 1, 0].item() == pytest.approx(1.9)
        assert In[k - 1, 0].item() == 0.0
        assert In[k - 1, 1].item() == pytest.approx(0.81)
        assert boot[k - 1].tolist() == [k, k]
        assert Rn[k - 3, 0].item() == pytest.approx(2.71)  # full window, no end inside
        assert In[k - 3, 0].item() == pytest.approx(0.729)
        # The window never crosses into the next episode: start k+1 is a fresh episode.
        assert boot[k + 1].tolist() == [k + 3, k + 3]


def test_nstep_negative_control_termination_as_truncation():
    T_, k, n, gamma = 10, 4, 3, 0.9
    rewards = torch.ones(T_, 1)
    term = torch.zeros(T_, 1, dtype=torch.bool)
    term[k, 0] = True
    _, eIn, _ = expected_nstep_ones(T_, k, "term", n, gamma)
    _, In_wrong, _ = nstep_targets(rewards, torch.zeros_like(term), term, gamma, n)
    assert not torch.allclose(In_wrong[:, 0], torch.tensor(eIn), atol=1e-6)


def ref_nstep_target(r, nv, term, trunc, gamma, n):
    r, nv, term, trunc = (x.tolist() for x in (r, nv, term, trunc))
    Tn, N = len(r), len(r[0])
    out = [[0.0] * N for _ in range(Tn)]
    for i in range(N):
        for t in range(Tn):
            g, disc = 0.0, 1.0
            for s in range(t, min(t + n, Tn)):
                g += disc * r[s][i]
                disc *= gamma
                if term[s][i]:
                    break
                if trunc[s][i] or s == min(t + n, Tn) - 1:
                    g += disc * nv[s][i]
                    break
            out[t][i] = g
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("n", [1, 2, 4, 20])
def test_nstep_full_target_random_rewards(n):
    r, v, nv, term, trunc = fixed_critic_rollout(3, seed=3)
    Rn, In, boot = nstep_targets(r, term, trunc, 0.95, n)
    target = Rn + In * nv.gather(0, boot)
    assert close(target, ref_nstep_target(r, nv, term, trunc, 0.95, n))
    # With n >= T the n-step target is the Monte-Carlo return (lambda = 1).
    if n >= T:
        assert close(target, ref_mc_return(r, nv, term, trunc, 0.95))
