"""Atari preprocessing (envs/atari.py) on real ALE games, and game-score episode returns."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("ale_py")

import critic  # noqa: E402
from critic.envs import EnvError, EnvStepper, make_env, make_vec_env  # noqa: E402
from critic.envs.atari import FireReset, MaxAndSkip, is_atari_id, make_atari  # noqa: E402


@pytest.fixture
def raw_steps(monkeypatch):
    """Record (action, raw reward) of every agent-level step (MaxAndSkip) in any Atari env."""
    log: list[tuple[int, float]] = []
    original = MaxAndSkip.step

    def step(self, action):
        out = original(self, action)
        log.append((int(action), out[1]))
        return out

    monkeypatch.setattr(MaxAndSkip, "step", step)
    return log


def _wrappers(env) -> list[type]:
    out = []
    while hasattr(env, "env"):
        out.append(type(env))
        env = env.env
    return out


def test_is_atari_id():
    assert is_atari_id("ALE/Pong-v5") and is_atari_id("BreakoutNoFrameskip-v4")
    assert not is_atari_id("CartPole-v1") and not is_atari_id("Breakout-v4")


def test_observation_space_and_dtype():
    env = make_env("ALE/Pong-v5")
    assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    obs, *_ = env.step(0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and obs.max() > 0
    env.close()


def test_same_seed_same_observations():
    a, b = make_atari("ALE/Breakout-v5"), make_atari("ALE/Breakout-v5")
    oa, _ = a.reset(seed=3)
    ob, _ = b.reset(seed=3)
    np.testing.assert_array_equal(oa, ob)
    for act in np.random.default_rng(0).integers(0, 4, 30):
        oa, ra, *_ = a.step(int(act))
        ob, rb, *_ = b.step(int(act))
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb


def test_rewards_clipped_for_training_raw_for_eval():
    # Same seed and actions: identical games until the first life loss (where they diverge).
    train = make_env("ALE/SpaceInvaders-v5")
    ev = make_env("ALE/SpaceInvaders-v5", atari_eval=True)
    train.reset(seed=0)
    ev.reset(seed=0)
    rng = np.random.default_rng(0)
    r_train, r_eval = [], []
    for _ in range(300):
        a = int(rng.integers(6))
        _, rt, term, trunc, _ = train.step(a)
        _, re, *_ = ev.step(a)
        if term or trunc:
            break
        r_train.append(rt)
        r_eval.append(re)
    assert max(r_eval) > 1  # SpaceInvaders aliens are worth 5..30 points
    assert r_train == [float(np.sign(r)) for r in r_eval]


def test_fire_on_reset_for_breakout(raw_steps):
    env = make_atari("ALE/Breakout-v5")
    assert FireReset in _wrappers(env)
    env.reset(seed=0)
    assert [a for a, _ in raw_steps] == [1, 2]  # FIRE, then action 2 (as DeepMind's wrapper)
    ev = make_env("ALE/Breakout-v5", atari_eval=True)  # same preprocessing for evaluation
    assert FireReset in _wrappers(ev)


def test_episodic_life_continues_the_game():
    env = make_atari("ALE/Breakout-v5")
    env.action_space.seed(0)
    _, info = env.reset(seed=0)
    lives = info["lives"]
    for _ in range(2000):
        _, _, term, trunc, info = env.step(env.action_space.sample())
        if term or trunc:
            break
    assert term and not trunc
    assert 0 < info["lives"] < lives and math.isnan(info["episode_score"])  # a life, not the game
    frame = info["episode_frame_number"]
    _, info2 = env.reset()
    assert info2["lives"] == info["lives"]  # not restarted
    assert info2["episode_frame_number"] > frame


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_stepper_reports_one_episode_per_game_with_raw_score(raw_steps, vectorization):
    venv = make_vec_env("ALE/Breakout-v5", 1, seed=0, vectorization=vectorization)
    stepper = EnvStepper(venv)
    stepper.reset(seed=0)
    venv.action_space.seed(0)
    clipped, terminations, n = 0.0, 0, 0
    for _ in range(3000):
        step = stepper.step(venv.action_space.sample())
        n += 1
        clipped += float(step.reward[0])
        terminations += int(step.terminated[0])
        if step.episode_returns:
            break
    stepper.close()
    assert terminations == 5  # Breakout has 5 lives: four life losses, then game over
    assert step.episode_lengths == [n]
    if vectorization == "sync":  # the spy sees the env only in this process
        assert step.episode_returns == [sum(r for _, r in raw_steps)]
    assert step.episode_returns[0] >= clipped


def test_vec_env_two_pong_envs():
    venv = make_vec_env("ALE/Pong-v5", 2, seed=0)
    stepper = EnvStepper(venv)
    obs = stepper.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    for _ in range(10):
        step = stepper.step(venv.action_space.sample())
    assert step.obs.shape == (2, 4, 84, 84) and set(np.unique(step.reward)) <= {-1.0, 0.0, 1.0}
    stepper.close()


def test_unknown_ale_id_is_a_clear_error():
    with pytest.raises(EnvError, match="unknown environment id 'ALE/NotAGame-v5'"):
        make_env("ALE/NotAGame-v5")


def test_a2c_learns_a_few_steps_on_pong():
    agent = critic.A2C("ALE/Pong-v5", num_envs=2, n_steps=5)
    agent.learn(40)
    env = agent.make_eval_env()
    assert not any(t.__name__ in ("ClipReward", "EpisodicLife") for t in _wrappers(env))
    env.close()
