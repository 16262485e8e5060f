"""Running statistics against NumPy on the concatenated data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from critic.normalize import ObsNormalizer, RewardNormalizer, RunningMeanStd

PRIOR = 1e-4  # RunningMeanStd starts as a pseudo-sample of weight 1e-4 with mean 0, var 1


def _batches(seed=0):
    rng = np.random.default_rng(seed)
    # batches of different sizes and very different means, so a naive combination is wrong
    sizes = [1, 7, 200, 33, 500, 2]
    return [rng.normal(loc=5.0 * i - 8, scale=0.5 + i, size=(n, 3)) for i, n in enumerate(sizes)]


def test_running_mean_std_matches_numpy_on_concatenation():
    batches = _batches()
    rms = RunningMeanStd((3,))
    for b in batches:
        rms.update(b)
    data = np.concatenate(batches)
    N = len(data)
    assert rms.count == pytest.approx(N + PRIOR, rel=1e-12)
    # exact reference including the pseudo-sample: a weighted two-component mixture
    mean_ref = data.sum(0) / (N + PRIOR)
    m2 = ((data - mean_ref) ** 2).sum(0) + PRIOR * (1.0 + mean_ref**2)
    var_ref = m2 / (N + PRIOR)
    np.testing.assert_allclose(rms.mean, mean_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(rms.var, var_ref, rtol=1e-10)
    # and against numpy directly: the prior weighs 1e-4 / N ~ 1e-7 of the data
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-6)


def test_running_mean_std_negative_control_naive_combination():
    # Averaging the batch variances (forgetting the between-batch term) is far off: the
    # tolerance above would catch a bug of that kind.
    batches = _batches()
    data = np.concatenate(batches)
    naive = np.average([b.var(0) for b in batches], axis=0, weights=[len(b) for b in batches])
    assert not np.allclose(naive, data.var(0), rtol=1e-6)


def test_running_mean_std_order_independent_and_scalar_shape():
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=n) * 3 + 1 for n in (4, 100, 9)]
    a, b = RunningMeanStd(()), RunningMeanStd(())
    for x in xs:
        a.update(x)
    for x in reversed(xs):
        b.update(x)
    assert a.mean.shape == ()
    assert a.mean == pytest.approx(b.mean, rel=1e-12) and a.var == pytest.approx(b.var, rel=1e-12)
    data = np.concatenate(xs)
    assert a.mean == pytest.approx(data.mean(), rel=1e-5) and a.var == pytest.approx(data.var(), rel=1e-5)


def test_running_mean_std_state_dict_round_trip():
    rms = RunningMeanStd((2,))
    rms.update(np.arange(10.0).reshape(5, 2))
    sd = rms.state_dict("obs_norm")
    assert all(t.dtype == torch.float64 for t in sd.values())
    other = RunningMeanStd((2,))
    other.load_state_dict(sd, "obs_norm")
    assert np.array_equal(other.mean, rms.mean) and np.array_equal(other.var, rms.var)
    assert other.count == rms.count


def test_obs_normalizer_standardises_and_clips():
    rng = np.random.default_rng(2)
    x = rng.normal(loc=3.0, scale=2.0, size=(5000, 2))
    norm = ObsNormalizer((2,), clip=5.0)
    out = norm(x, update=True)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(out.std(0), 1.0, atol=1e-3)
    far = norm(np.array([[1e6, -1e6]]))
    assert far.tolist() == [[5.0, -5.0]]
    count = norm.rms.count
    norm(x)  # update=False leaves the statistics alone
    assert norm.rms.count == count


def test_reward_normalizer_uses_discounted_return_and_resets_on_done():
    rn = RewardNormalizer(num_envs=2, gamma=0.5)
    out = rn(np.array([1.0, 2.0]), np.array([False, True]))
    assert rn.ret.tolist() == [1.0, 0.0]  # env 1 finished: its running return restarts
    rn(np.array([1.0, 1.0]), np.array([False, False]))
    assert rn.ret.tolist() == [1.5, 1.0]
    # rewards are divided by the std of the returns seen so far, never shifted
    ref = RunningMeanStd(())
    ref.update(np.array([1.0, 2.0]))
    assert out.tolist() == pytest.approx((np.array([1.0, 2.0]) / np.sqrt(ref.var + 1e-8)).tolist(), rel=1e-6)
