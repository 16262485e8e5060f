"""vectorization='native': Gymnasium's CartPoleVectorEnv in same-step-autoreset form. Its
physics are CartPoleEnv's, an ending sub-env is reset in the same step with its true final
observation reported, time limits truncate, seeds repeat, and a run resumes exactly."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic
from critic.envs import EnvError, EnvStepper, make_vec_env
from critic.envs.vector import SameStepCartPole, native_vector_env


def test_native_is_used_for_cartpole_only():
    assert isinstance(make_vec_env("CartPole-v1", 4, seed=0, vectorization="native"), SameStepCartPole)
    assert native_vector_env("Pendulum-v1", 4) is None
    assert type(make_vec_env("Pendulum-v1", 2, seed=0)).__name__ == "LeanSyncVectorEnv"
    assert isinstance(make_vec_env("CartPole-v1", 16, seed=0), SameStepCartPole)  # 'auto', the default, from 16
    assert type(make_vec_env("CartPole-v1", 8, seed=0)).__name__ == "LeanSyncVectorEnv"  # (slower below)
    assert type(make_vec_env("CartPole-v1", 2, seed=0, vectorization="sync")).__name__ == "LeanSyncVectorEnv"
    with pytest.raises(EnvError, match="vectorization='native'.*'Pendulum-v1' has none"):
        make_vec_env("Pendulum-v1", 2, seed=0, vectorization="native")
    assert native_vector_env("CartPole-v0", 2).max_episode_steps == 200


def test_physics_final_observations_and_same_step_resets_match_cartpole_env():
    venv = SameStepCartPole(4)
    obs, _ = venv.reset(seed=0)
    single = gym.make("CartPole-v1").unwrapped
    rng = np.random.default_rng(1)
    ends = 0
    for _ in range(400):
        state = venv.state.copy()
        actions = rng.integers(0, 2, 4)
        nxt, rew, term, trunc, info = venv.step(actions)
        assert not trunc.any() and (rew == 1.0).all()
        for i in range(4):
            single.state, single.steps_beyond_terminated = state[:, i].copy(), None
            want, _, want_term, _, _ = single.step(int(actions[i]))
            got = info["final_obs"][i] if term[i] else nxt[i]
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
            assert bool(term[i]) == bool(want_term)
            if term[i]:  # reset in the same step: a fresh initial state
                ends += 1
                assert np.abs(nxt[i]).max() <= 0.05 and venv.steps[i] == 0
    assert ends > 10


def test_time_limit_truncates_and_the_stepper_counts_episodes():
    stepper = EnvStepper(SameStepCartPole(3, max_episode_steps=5))
    stepper.reset(seed=0)
    lengths, truncs = [], 0
    for _ in range(12):
        step = stepper.step(np.zeros(3, dtype=np.int64) + np.array([0, 1, 0]))
        lengths += step.episode_lengths
        truncs += int(step.truncated.sum())
    assert truncs >= 3 and set(lengths) <= {1, 2, 3, 4, 5} and 5 in lengths


def test_seeds_repeat_and_differ():
    def run(seed):
        v = SameStepCartPole(4)
        v.reset(seed=[seed, seed + 1, seed + 2, seed + 3])
        out = [v.step(np.array([0, 1, 1, 0]))[0] for _ in range(60)]
        return np.stack(out)

    assert np.array_equal(run(3), run(3)) and not np.array_equal(run(3), run(4))


def test_native_training_resumes_exactly(tmp_path):
    hp = dict(vectorization="native", num_envs=4, n_steps=16, batch_size=64, n_epochs=2, hidden_sizes=(16,))
    straight = critic.PPO("CartPole-v1", seed=0, **hp)
    straight.learn(1024, progress_bar=False)
    first = critic.PPO("CartPole-v1", seed=0, **hp)
    first.learn(512, progress_bar=False)
    first.save(tmp_path / "a.safetensors")
    again = critic.load(tmp_path / "a.safetensors", for_training=True)
    again.learn(512, progress_bar=False)
    for (n, p), (_, q) in zip(straight.nets.state_dict().items(), again.nets.state_dict().items()):
        assert torch.equal(p, q), n
    sync = critic.PPO("CartPole-v1", seed=0, **{**hp, "vectorization": "sync"})  # negative control
    sync.learn(1024, progress_bar=False)
    assert not torch.equal(sync.nets.pi_head.weight, straight.nets.pi_head.weight)


@pytest.mark.parametrize("bad", ["vectorised", "gpu"])
def test_unknown_vectorization_is_refused(bad):
    with pytest.raises(critic.ConfigError, match="vectorization"):
        critic.PPO("CartPole-v1", vectorization=bad)
