"""Replay buffer: n-step targets against a brute-force reference, ring wrap, memory, save/load."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from critic.buffers.replay import ReplayBuffer

OBS = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
G = 0.9


def fill(buf, T, N, term_at=(), trunc_at=(), reward=lambda t, i: 1.0):
    """Write T vector steps; obs of (t, env i) is 100*i + t, next_obs 100*i + t + 0.5."""
    stream = []
    for t in range(T):
        obs = np.array([[100 * i + t] for i in range(N)], np.float32)
        term = np.array([(t, i) in term_at for i in range(N)])
        trunc = np.array([(t, i) in trunc_at for i in range(N)])
        rew = np.array([reward(t, i) for i in range(N)], np.float32)
        buf.add(obs, np.zeros((N, 2), np.float32), rew, obs + 0.5, term, trunc)
        stream.append((rew, term, trunc))
    return stream


def brute(stream, t0, i, n, gamma, last_t):
    """Reference n-step target from the time-ordered stream (independent of the ring)."""
    ret, disc, t = 0.0, 1.0, t0
    for k in range(n):
        t = t0 + k
        if t > last_t:
            t -= 1
            break
        rew, term, trunc = stream[t]
        ret += disc * float(rew[i])
        disc *= gamma
        if term[i]:
            return ret, 0.0, t
        if trunc[i]:
            return ret, disc, t
    return ret, disc, t


@pytest.mark.parametrize("n", [1, 3, 5])
def test_nstep_termination_truncation_and_write_pointer(n):
    T, N = 12, 2
    buf = ReplayBuffer(100 * N, N, OBS, ACT, gamma=G, bootstrap_n=n)
    stream = fill(buf, T, N, term_at={(4, 0)}, trunc_at={(6, 1)}, reward=lambda t, i: 1.0 + t + 10 * i)
    for t0 in range(T):
        for i in range(N):
            got = buf.gather(torch.tensor([t0]), torch.tensor([i]))
            ret, disc, t_last = brute(stream, t0, i, n, G, T - 1)
            assert got["rewards"].item() == pytest.approx(ret, rel=1e-6), (t0, i)
            assert got["discount"].item() == pytest.approx(disc, rel=1e-6), (t0, i)
            assert got["next_obs"].item() == 100 * i + t_last + 0.5, (t0, i)
            assert got["obs"].item() == 100 * i + t0


def test_nstep_ones_closed_form_and_negative_control():
    buf = ReplayBuffer(64, 1, OBS, ACT, gamma=G, bootstrap_n=3)
    fill(buf, 10, 1, term_at={(5, 0)})
    got = buf.gather(torch.tensor([0, 4, 5, 3]), torch.tensor([0, 0, 0, 0]))
    # full window: 1 + g + g^2, discount g^3; window ending on the termination: discount 0
    assert got["rewards"].tolist() == pytest.approx([1 + G + G * G, 1 + G, 1.0, 1 + G + G * G])
    assert got["discount"].tolist() == pytest.approx([G ** 3, 0.0, 0.0, 0.0])
    # negative control: reading the reward across the episode end would have given 1+g+g^2 at t=4
    assert got["rewards"][1].item() != pytest.approx(1 + G + G * G)


def test_wrapped_ring_never_reads_across_the_write_pointer():
    N, C = 1, 8
    buf = ReplayBuffer(C, N, OBS, ACT, gamma=G, bootstrap_n=4)
    stream = fill(buf, 13, N)  # wrapped: rows hold t = 5..12, write pointer at row 5 (t=13 next)
    assert buf.full and buf.pos == 13 % C and len(buf) == C
    for r in range(C):
        t0 = 5 + (r - 5) % C
        got = buf.gather(torch.tensor([r]), torch.tensor([0]))
        ret, disc, t_last = brute(stream, t0, 0, 4, G, 12)
        assert got["obs"].item() == t0
        assert got["rewards"].item() == pytest.approx(ret)
        assert got["discount"].item() == pytest.approx(disc)
        assert got["next_obs"].item() == t_last + 0.5
    newest = buf.gather(torch.tensor([(buf.pos - 1) % C]), torch.tensor([0]))
    assert newest["discount"].item() == pytest.approx(G)  # one step only: nothing newer exists


def test_sampling_is_uniform_and_within_stored_rows():
    buf = ReplayBuffer(1000, 2, OBS, ACT)
    fill(buf, 10, 2)
    s = buf.sample(4000, torch.Generator().manual_seed(0))
    obs = s["obs"].flatten()
    assert set(obs.tolist()) == {100 * i + t for i in range(2) for t in range(10)}
    counts = torch.bincount((obs % 100 + 10 * (obs >= 100)).long(), minlength=20).float()
    assert counts.min() > 140 and counts.max() < 270  # 200 expected per transition


def test_memory_is_raw_bytes_and_images_stay_uint8():
    img = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    buf = ReplayBuffer(1000, 4, img, gym.spaces.Discrete(6))
    raw = 1000 * (2 * 4 * 84 * 84 * 1 + 8 + 4 + 1 + 1)
    assert buf.obs.dtype == torch.uint8 and buf.nbytes == raw
    assert buf.nbytes <= 1.05 * raw


def test_state_dict_round_trip():
    a = ReplayBuffer(16, 2, OBS, ACT, gamma=G, bootstrap_n=2)
    fill(a, 11, 2, term_at={(3, 1)})
    t, m = a.state_dict()
    b = ReplayBuffer(16, 2, OBS, ACT, gamma=G, bootstrap_n=2)
    b.load_state_dict(t, m)
    assert (b.pos, b.full) == (a.pos, a.full)
    g = torch.Generator().manual_seed(1)
    s1, s2 = a.sample(64, g), b.sample(64, torch.Generator().manual_seed(1))
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k


def consistent_stream(bufs, T, N, seed=0, p_term=0.1, p_trunc=0.15):
    """Write the same env-like stream to every buffer: next_obs is the next row's obs except where
    an episode ended (then a distinct final obs, and the next row starts from a reset obs)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(N, 3)).astype(np.float32)
    for _ in range(T):
        term = rng.random(N) < p_term
        trunc = ~term & (rng.random(N) < p_trunc)
        nxt = rng.normal(size=(N, 3)).astype(np.float32)  # true next (final where done)
        act = rng.uniform(-1, 1, (N, 2)).astype(np.float32)
        rew = rng.normal(size=N).astype(np.float32)
        for b in bufs:
            b.add(obs, act, rew, nxt, term, trunc)
        done = term | trunc
        obs = np.where(done[:, None], rng.normal(size=(N, 3)).astype(np.float32) + 50, nxt)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("T", [7, 40])  # before and after the ring wraps (capacity 16 rows)
def test_optimize_memory_samples_what_the_full_buffer_samples(n, T):
    obs3 = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    full = ReplayBuffer(16 * 3, 3, obs3, ACT, gamma=G, bootstrap_n=n)
    lean = ReplayBuffer(16 * 3, 3, obs3, ACT, gamma=G, bootstrap_n=n, optimize_memory=True)
    consistent_stream([full, lean], T, 3, p_trunc=0.3)
    rows = full.C if full.full else full.pos
    r = torch.arange(rows).repeat_interleave(3)
    e = torch.arange(3).repeat(rows)
    a, b = full.gather(r, e), lean.gather(r, e)
    for k in ("obs", "actions", "rewards", "discount"):
        assert torch.equal(a[k], b[k]), k
    live = a["discount"] > 0  # past a termination the next observation is never used
    assert torch.equal(a["next_obs"][live], b["next_obs"][live])
    assert int((lean.final_slot >= 0).sum()) == int((full.truncated & ~full.terminated).sum())


def test_optimize_memory_side_store_grows_with_one_step_episodes_and_round_trips():
    obs3 = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    full = ReplayBuffer(64 * 2, 2, obs3, ACT, bootstrap_n=2)
    lean = ReplayBuffer(64 * 2, 2, obs3, ACT, bootstrap_n=2, optimize_memory=True)
    consistent_stream([full, lean], 150, 2, seed=3, p_term=0.0, p_trunc=1.0)  # every step truncates
    assert lean.final_obs.shape[0] >= 128 and len(lean._free) == lean.final_obs.shape[0] - 128
    t, m = lean.state_dict()
    again = ReplayBuffer(64 * 2, 2, obs3, ACT, bootstrap_n=2, optimize_memory=True)
    again.load_state_dict(t, m)
    s1, s2, s3 = (x.sample(100, torch.Generator().manual_seed(5)) for x in (full, lean, again))
    for k in s1:
        assert torch.equal(s1[k], s2[k]) and torch.equal(s2[k], s3[k]), k
    with pytest.raises(ValueError, match="optimize_memory"):
        full.load_state_dict(t, m)


def test_optimize_memory_halves_image_replay():
    img = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    full = ReplayBuffer(1000, 4, img, gym.spaces.Discrete(6))
    lean = ReplayBuffer(1000, 4, img, gym.spaces.Discrete(6), optimize_memory=True)
    # obs once, plus one next obs per env and 16 final-obs slots to start with
    assert lean.nbytes <= 0.52 * full.nbytes, lean.nbytes / full.nbytes
