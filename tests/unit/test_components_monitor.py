"""keras-gym's TrainMonitor and enable_logging: counters over scripted episodes, the episode log
lines (caplog), record_losses' running means in them, TensorBoard events read back, the
pip line when TensorBoard is missing."""

import io
import logging
import math
import sys

import gymnasium as gym
import numpy as np
import pytest

import critic
from critic.wrappers import TrainMonitor, enable_logging

LOGGER = "critic.wrappers.TrainMonitor"


class Scripted(gym.Env):
    """Episodes of fixed lengths and rewards; the last step of each terminates or truncates."""

    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def __init__(self, episodes):  # [(rewards, "terminated" | "truncated"), ...]
        self.episodes, self.i, self.k = episodes, -1, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.i, self.k = self.i + 1, 0
        return np.zeros(1, np.float32), {"from": "env"}

    def step(self, a):
        rewards, end = self.episodes[self.i]
        r, self.k = rewards[self.k], self.k + 1
        last = self.k == len(rewards)
        return np.zeros(1, np.float32), r, last and end == "terminated", last and end == "truncated", {"k": self.k}


EPISODES = [([1.0, 2.0, 3.0], "terminated"), ([-1.0, 0.5], "truncated"), ([4.0], "terminated")]


def run(env, losses_per_step=None):
    infos = []
    for _ in EPISODES:
        env.reset()
        done = False
        while not done:
            _, _, term, trunc, info = env.step(0)
            infos.append(info)
            if losses_per_step is not None:
                env.record_losses(losses_per_step.pop(0))
            done = term or trunc
    return infos


def test_counters_over_scripted_episodes():
    env = TrainMonitor(Scripted(EPISODES), smoothing=2)
    assert (env.T, env.ep, env.t, env.G, env.avg_G) == (0, 0, 0, 0.0, 0.0)
    assert math.isnan(env.avg_r) and math.isnan(env.dt_ms)
    s, info = env.reset()
    assert (env.ep, env.T, env.t) == (1, 0, 0) and info == {"from": "env"}
    env.step(0)
    env.step(0)
    assert (env.T, env.t, env.G, env.avg_r) == (2, 2, 3.0, 1.5) and env.dt_ms >= 0
    env.step(0)  # terminated: 6
    assert env.avg_G == 6.0
    env.reset()
    assert (env.ep, env.T, env.t, env.G) == (2, 3, 0, 0.0)  # T and ep carry over, t and G restart
    env.step(0)
    _, _, term, trunc, info = env.step(0)  # truncated: -0.5
    assert trunc and not term and info == {"k": 2, "monitor": {"T": 5, "ep": 2}}
    assert env.avg_G == pytest.approx(2.75)  # mean of 6 and -0.5
    env.reset()
    env.step(0)  # 4: smoothing=2 caps the running mean's count at 2
    assert env.avg_G == pytest.approx(2.75 + (4.0 - 2.75) / 2)
    assert (env.T, env.ep, env.t, env.G) == (6, 3, 1, 4.0)
    env.reset_global()
    assert (env.T, env.ep, env.t, env.G, env.avg_G) == (0, 0, 0, 0.0, 0.0) and env.losses == {}
    with pytest.raises(ValueError, match="'smoothing'"):
        TrainMonitor(Scripted(EPISODES), smoothing=0)


def test_one_log_line_per_episode(caplog):
    env = TrainMonitor(Scripted(EPISODES))
    with caplog.at_level(logging.INFO, logger="critic"):
        run(env)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 3
    assert lines[0].startswith("ep: 1, T: 3, G: 6, avg_G: 6, t: 3, dt: ") and lines[0].endswith("ms")
    assert lines[1].startswith("ep: 2, T: 5, G: -0.5, avg_G: 2.75, t: 2, dt: ")
    assert lines[2].startswith("ep: 3, T: 6, G: 4, avg_G: 3.17, t: 1, dt: ")  # (6 - 0.5 + 4) / 3
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == LOGGER)
    caplog.clear()
    quiet = TrainMonitor(Scripted(EPISODES), quiet=True)
    with caplog.at_level(logging.INFO, logger="critic"):
        run(quiet)
    assert not [r for r in caplog.records if r.name == LOGGER] and quiet.ep == 3


def test_record_losses_running_means_join_the_episode_lines(caplog):
    env = TrainMonitor(Scripted(EPISODES), smoothing=4)
    records = [{"policy/loss": 1.0, "value/loss": 10.0}, {"policy/loss": 3.0, "value/loss": 20.0}, None,
               {"policy/loss": 5.0, "value/loss": 30.0}, {"policy/loss": 7.0, "value/loss": 40.0},
               {"policy/loss": np.float32(9.0), "value/loss": 50.0}]
    with caplog.at_level(logging.INFO, logger="critic"):
        run(env, list(records))
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    # each line is logged by the episode's last step, before that step's losses are recorded
    assert lines[0].endswith("policy/loss: 2, value/loss: 15")  # records 1, 3 (then None: ignored)
    assert lines[1].endswith("policy/loss: 3, value/loss: 20")  # 1, 3, 5: running means, not per episode
    assert lines[2].endswith("policy/loss: 4, value/loss: 25")  # 1, 3, 5, 7
    # smoothing=4: the count stops at 4, so the 5th record moves the mean by a quarter
    assert env.losses == {"policy/loss": pytest.approx(4 + (9 - 4) / 4), "value/loss": pytest.approx(25 + 25 / 4)}
    with pytest.raises(TypeError, match="dict"):
        env.record_losses([1.0])


@pytest.fixture()
def clean_critic_logger():
    logger = logging.getLogger("critic")
    yield logger
    for h in list(logger.handlers):
        if getattr(h, "_critic_enable_logging", False):
            logger.removeHandler(h)
    logger.setLevel(logging.NOTSET)


def test_enable_logging_shows_the_episode_lines_once(clean_critic_logger):
    stream = io.StringIO()
    assert critic.enable_logging(stream=stream) is clean_critic_logger
    critic.enable_logging()  # again: no second handler
    assert sum(getattr(h, "_critic_enable_logging", False) for h in clean_critic_logger.handlers) == 1
    run(TrainMonitor(Scripted(EPISODES)))
    out = stream.getvalue().splitlines()
    assert len(out) == 3 and out[0].startswith(f"INFO:{LOGGER}:ep: 1, T: 3, G: 6")  # basicConfig's format
    enable_logging(level=logging.WARNING)
    run(TrainMonitor(Scripted(EPISODES)))
    assert len(stream.getvalue().splitlines()) == 3  # INFO lines now filtered


def test_tensorboard_events(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    env = TrainMonitor(Scripted(EPISODES), tensorboard_dir=tmp_path / "tb")
    run(env, [{"loss": float(i)} for i in range(6)])
    env.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    scalars = acc.Tags()["scalars"]

    def series(tag):
        return [(e.step, e.value) for e in acc.Scalars(tag)]

    assert series("TrainMonitor/ep_return") == [(3, 6.0), (5, -0.5), (6, 4.0)]  # global step = T
    assert series("TrainMonitor/ep_steps") == [(3, 3.0), (5, 2.0), (6, 1.0)]
    # each episode's own mean of the losses recorded before its last step: records 0, 1 | 3 | none
    assert series("TrainMonitor/loss") == [(3, 0.5), (5, 3.0)]
    assert {"TrainMonitor/avg_G", "TrainMonitor/ep_avg_reward", "TrainMonitor/avg_step_duration_ms"} <= set(scalars)
    assert "TrainMonitor/actions" in acc.Tags()["histograms"]


def test_missing_tensorboard_names_the_pip_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'critic\[tensorboard\]'"):
        TrainMonitor(Scripted(EPISODES), tensorboard_dir=tmp_path)
    assert TrainMonitor(Scripted(EPISODES)).tensorboard is None  # without a dir nothing is imported


def test_exported_the_keras_gym_way():
    assert critic.wrappers.TrainMonitor is TrainMonitor and critic.TrainMonitor is TrainMonitor
    assert critic.enable_logging is enable_logging
    assert {"TrainMonitor", "enable_logging"} <= set(critic.__all__)
