"""learn()'s callback info and the ready-made callbacks (evaluate and keep the best, checkpoint
every N keeping K, stop at a reward threshold)."""

import csv

import gymnasium as gym
import numpy as np
import pytest

import critic
from critic.callbacks import CheckpointCallback, EvalCallback, StopOnReward
from critic.config import ConfigError


def small_ppo(**kw):
    return critic.PPO("CartPole-v1", seed=0, num_envs=2, n_steps=32, batch_size=64, n_epochs=2,
                      torch_threads=1, log_every=64, **kw)


class InfoEnv(gym.Wrapper):
    """CartPole whose last step's info says how the episode went."""

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        if term or trunc:
            info = {**info, "is_success": bool(trunc), "custom_len": 1}
        return obs, r, term, trunc, info


def test_info_has_eval_episode_infos_and_log(tmp_path):
    seen = []

    def cb(agent, info):
        seen.append({k: info[k] for k in ("env_steps", "evaluated", "eval", "episode_returns", "episode_infos",
                                          "start", "target", "run_dir")})
        info["log"]("my/score", info["env_steps"] / 2)

    with critic.PPO(lambda: InfoEnv(gym.make("CartPole-v1")), seed=0, num_envs=2, n_steps=32, batch_size=64,
                    n_epochs=2, torch_threads=1, log_every=64) as agent:
        agent.learn(640, callback=cb, eval_every=256, eval_episodes=2, run_dir=tmp_path / "run")
    assert seen[0]["eval"] is None and seen[0]["start"] == 0 and seen[0]["target"] == 640
    evaluated = [s for s in seen if s["evaluated"]]
    assert [s["env_steps"] for s in evaluated] == [256, 512, 640]
    assert all(s["eval"]["env_steps"] == s["env_steps"] and np.isfinite(s["eval"]["mean"]) for s in evaluated)
    later = [s for s in seen if not s["evaluated"] and s["env_steps"] > 256]
    assert later and all(s["eval"]["env_steps"] <= s["env_steps"] for s in later)  # the latest one, kept
    infos = [i for s in seen for i in s["episode_infos"]]
    returns = [r for s in seen for r in s["episode_returns"]]
    assert len(infos) == len(returns) > 5
    assert [i["episode"]["r"] for i in infos] == returns
    assert all(i["custom_len"] == 1 and isinstance(i["is_success"], bool) for i in infos)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [float(r["my/score"]) for r in rows] == [int(r["env_steps"]) / 2 for r in rows]


def test_log_refuses_bad_values():
    def cb(agent, info):
        info["log"]("x", "not a number")

    with small_ppo() as agent, pytest.raises(ConfigError, match="log\\('x'"):
        agent.learn(64, callback=cb)


def test_list_of_callbacks_and_stop(tmp_path):
    calls = []
    with small_ppo() as agent:
        agent.learn(640, callback=[lambda a, i: calls.append("a"), lambda a, i: False if i["env_steps"] >= 128 else None])
        assert agent.env_steps == 128 and calls == ["a", "a"]
        with pytest.raises(ConfigError, match="callable"):
            agent.learn(64, callback=[3])


def test_stop_on_reward_stops_at_the_evaluation_that_reaches_it(tmp_path):
    stop = StopOnReward(threshold=-1e9, verbose=False)  # any evaluation reaches it
    with small_ppo() as agent:
        agent.learn(2000, callback=stop, eval_every=256, eval_episodes=1, run_dir=tmp_path / "run")
        assert stop.stopped_at == agent.env_steps == 256
    assert (tmp_path / "run" / "model" / "agent.safetensors").is_file()  # a stopped run is finished, not cut
    never = StopOnReward(threshold=1e9, verbose=False)
    with small_ppo() as agent:
        agent.learn(512, callback=never, eval_every=256, eval_episodes=1)
        assert never.stopped_at is None and agent.env_steps == 512
    with pytest.raises(ConfigError, match="'on'"):
        StopOnReward(475, on="test")


def test_stop_on_training_returns():
    stop = StopOnReward(threshold=5, on="train", window=10, verbose=False)
    with small_ppo() as agent:
        agent.learn(5000, callback=stop)
        assert stop.stopped_at is not None and agent.env_steps < 5000
        assert np.mean(list(agent.recent_returns)[-10:]) >= 5


def test_eval_callback_saves_the_best(tmp_path):
    means = iter([10.0, 30.0, 20.0, 40.0, 5.0])
    saved = []

    class Spy(EvalCallback):
        def __call__(self, agent, info):
            real = info["evaluate"]
            info["evaluate"] = lambda n: {**real(n), "mean": next(means)}
            return super().__call__(agent, info)

    cb = Spy(eval_every=128, n_episodes=1)
    with small_ppo() as agent:
        orig = agent.save_model
        agent.save_model = lambda p: saved.append((agent.env_steps, str(p))) or orig(p)
        agent.learn(640, callback=cb, run_dir=tmp_path / "run")
    best = tmp_path / "run" / "best" / "agent.safetensors"
    assert best.is_file() and cb.best_mean == 40.0 and cb.best_step == 512
    assert [s for s, p in saved if p == str(best)] == [128, 256, 512]
    assert len(agent.evaluations) == 5  # recorded like learn()'s own
    loaded = critic.load(best)  # a model: what acting needs
    assert loaded.env_steps == 512 and not loaded.for_training
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert float(rows[-1]["eval/best_mean_return"]) == 40.0


def test_eval_callback_reuses_learns_evaluation():
    cb = EvalCallback(eval_every=256, n_episodes=1)
    with small_ppo() as agent:
        agent.learn(512, callback=cb, eval_every=256, eval_episodes=1)
        assert [e["env_steps"] for e in agent.evaluations] == [256, 512]  # not evaluated twice
        assert cb.best_step in (256, 512)


def test_checkpoint_callback_keeps_the_last_k(tmp_path):
    cb = CheckpointCallback(save_every=128, keep=2)
    with small_ppo() as agent:
        agent.learn(640, callback=cb, run_dir=tmp_path / "run")
    kept = CheckpointCallback.saved(tmp_path / "run" / "checkpoints")
    assert [p.name for p in kept] == ["step_512.safetensors", "step_640.safetensors"]
    assert (tmp_path / "run" / "checkpoints" / "agent.safetensors").is_file()  # --resume's file stays
    assert critic.load(kept[0]).env_steps == 512
    with pytest.raises(ConfigError, match="needs a folder"):
        with small_ppo() as agent:
            agent.learn(128, callback=CheckpointCallback(64))
    with pytest.raises(ConfigError, match="'keep'"):
        CheckpointCallback(100, keep=0)


class FakeTracker:
    def __init__(self):
        self.metrics, self.evals, self.closed = [], [], []

    def log_metrics(self, row):
        self.metrics.append(row)

    def log_eval(self, row):
        self.evals.append(row)

    def close(self, run_dir, exit_code=0):
        self.closed.append((run_dir, exit_code))


def test_a_tracker_gets_the_run_directorys_rows(tmp_path):
    tracker = FakeTracker()
    with small_ppo() as agent:
        agent.learn(256, callback=lambda a, i: i["log"]("mine", 1.5), run_dir=tmp_path / "run", eval_every=128,
                    eval_episodes=1, tracker=tracker)
    assert [r["env_steps"] for r in tracker.evals] == [128, 256]
    assert tracker.metrics and all(r["mine"] == 1.5 for r in tracker.metrics)
    assert tracker.closed == [(tmp_path / "run", 0)]  # after summary.json and curve.png are written
    with pytest.raises(ConfigError, match="run directory"):
        with small_ppo() as agent:
            agent.learn(64, tracker=FakeTracker())


def test_a_failed_run_closes_its_tracker_as_failed(tmp_path):
    tracker = FakeTracker()

    def boom(agent, info):
        raise RuntimeError("user callback failed")

    with small_ppo() as agent, pytest.raises(RuntimeError, match="user callback"):
        agent.learn(256, callback=boom, run_dir=tmp_path / "run", tracker=tracker)
    assert tracker.closed == [(tmp_path / "run", 1)]
