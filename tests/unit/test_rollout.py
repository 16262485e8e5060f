"""On-policy rollout storage: add, finish (next values incl. truncation values), grow."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from critic.buffers.rollout import RolloutBuffer
from critic.returns import gae

OBS = gym.spaces.Box(-10.0, 10.0, (3,), np.float32)


def _fill(buf, T, N, term_at=(), trunc_at=(), trunc_vals=None):
    """values[t, n] = 10 t + n; rewards = t + n/10; obs encodes (t, n)."""
    for t in range(T):
        obs = torch.tensor([[t, n, 0] for n in range(N)], dtype=torch.float32)
        term = np.array([(t, n) in term_at for n in range(N)])
        trunc = np.array([(t, n) in trunc_at for n in range(N)])
        buf.add(obs, torch.arange(N) % 2, torch.full((N,), -0.5), torch.tensor([10.0 * t + n for n in range(N)]),
                np.array([t + n / 10 for n in range(N)], np.float32), term, trunc)
        if trunc.any():
            idx = np.flatnonzero(trunc)
            buf.set_truncation_values(idx, torch.tensor([trunc_vals[(t, int(i))] for i in idx]))


def test_add_and_view_shapes_and_contents():
    buf = RolloutBuffer(4, 2, OBS, gym.spaces.Discrete(2))
    assert not buf.full
    _fill(buf, 4, 2)
    assert buf.full and buf.t == 4
    v = buf.view()
    assert v["obs"].shape == (4, 2, 3) and v["actions"].shape == (4, 2) and v["actions"].dtype == torch.long
    assert v["values"][2].tolist() == [20.0, 21.0]
    assert v["rewards"][3].tolist() == [3.0, 3.0999999046325684]
    assert v["obs"][1, 1].tolist() == [1.0, 1.0, 0.0]
    assert v["terminated"].dtype == torch.bool and not v["terminated"].any()


def test_finish_next_values_with_truncation_and_termination():
    T, N = 5, 2
    buf = RolloutBuffer(T, N, OBS, gym.spaces.Discrete(2))
    trunc_vals = {(1, 1): 99.0, (4, 0): 77.0}
    _fill(buf, T, N, term_at={(2, 0)}, trunc_at=set(trunc_vals), trunc_vals=trunc_vals)
    buf.finish(torch.tensor([-1.0, -2.0]))
    nv = buf.view()["next_values"]
    expected = [[10.0, 11.0],   # V(s_1)
                [20.0, 99.0],   # env 1 truncated at t=1: V(true final obs)
                [30.0, 31.0],   # env 0 terminated at t=2: whatever (GAE zeroes it), here V(reset obs)
                [40.0, 41.0],
                [77.0, -2.0]]   # last row: V(last obs), except env 0 truncated there
    assert nv.tolist() == expected


def test_truncation_value_does_not_leak_into_a_later_rollout():
    T, N = 3, 1
    buf = RolloutBuffer(T, N, OBS, gym.spaces.Discrete(2))
    _fill(buf, T, N, trunc_at={(1, 0)}, trunc_vals={(1, 0): 55.0})
    buf.finish(torch.tensor([5.0]))
    assert buf.view()["next_values"][:, 0].tolist() == [10.0, 55.0, 5.0]
    buf.reset()
    assert buf.t == 0 and not buf.full
    _fill(buf, T, N)  # no truncations this time
    buf.finish(torch.tensor([6.0]))
    assert buf.view()["next_values"][:, 0].tolist() == [10.0, 20.0, 6.0]
    assert not buf.view()["truncated"].any()


def test_finish_feeds_gae_with_truncation_bootstrap():
    T, N = 3, 1
    buf = RolloutBuffer(T, N, OBS, gym.spaces.Discrete(2))
    _fill(buf, T, N, trunc_at={(0, 0)}, trunc_vals={(0, 0): 4.0})
    buf.finish(torch.tensor([1.0]))
    b = buf.view()
    adv, _ = gae(b["rewards"], b["values"], b["next_values"], b["terminated"], b["truncated"], 0.5, 1.0)
    # t=0 truncated: r0 + 0.5 * 4 - V0 = 0 + 2 - 0 = 2
    # t=2 (rollout end): G2 = r2 + 0.5 * 1 = 2.5 -> A2 = 2.5 - 20 = -17.5
    # t=1: G1 = r1 + 0.5 * G2 = 1 + 1.25 = 2.25 -> A1 = 2.25 - 10 = -7.75
    assert adv[:, 0].tolist() == [2.0, -7.75, -17.5]


def test_grow_keeps_contents_and_doubles_capacity():
    buf = RolloutBuffer(2, 2, OBS, gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    assert buf.actions.shape == (2, 2, 2) and buf.view()["actions"].dtype == torch.float32
    for t in range(2):
        buf.add(torch.full((2, 3), float(t)), torch.full((2, 2), 0.1 * t), torch.full((2,), -float(t)),
                torch.full((2,), 10.0 * t), np.full(2, t, np.float32), np.array([False, t == 1]),
                np.array([t == 1, False]))
    buf.set_truncation_values(np.array([0]), torch.tensor([42.0]))
    assert buf.full
    before = {k: v.clone() for k, v in buf.view().items() if k != "next_values"}
    buf.grow()
    assert buf.T == 4 and buf.t == 2 and not buf.full
    after = buf.view()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    assert buf.trunc_values[1, 0].item() == 42.0
    for t in (2, 3):
        buf.add(torch.full((2, 3), float(t)), torch.full((2, 2), 0.1 * t), torch.full((2,), -float(t)),
                torch.full((2,), 10.0 * t), np.full(2, t, np.float32), np.array([False, False]),
                np.array([False, False]))
    assert buf.full
    buf.finish(torch.tensor([7.0, 8.0]))
    nv = buf.view()["next_values"]
    assert nv[:, 0].tolist() == [10.0, 42.0, 30.0, 7.0]
    assert nv[:, 1].tolist() == [10.0, 20.0, 30.0, 8.0]
    assert buf.view()["obs"][:, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_uint8_observations_stay_bytes():
    img = gym.spaces.Box(0, 255, (1, 4, 4), np.uint8)
    buf = RolloutBuffer(2, 1, img, gym.spaces.MultiDiscrete([2, 3]))
    buf.add(np.zeros((1, 1, 4, 4), np.uint8), np.zeros((1, 2), np.int64), np.zeros(1), np.zeros(1),
            np.zeros(1, np.float32), np.zeros(1, bool), np.zeros(1, bool))
    assert buf.obs.dtype == np.uint8 and buf.view()["obs"].dtype == torch.uint8
    assert buf.actions.shape == (2, 1, 2) and buf.view()["actions"].dtype == torch.long
