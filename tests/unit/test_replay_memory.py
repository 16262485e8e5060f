"""A replay buffer larger than the free memory is refused before anything is allocated, with a
ConfigError naming 'buffer_size', the bytes needed, the bytes available and the largest size
that fits (docs/reliability.md, "Bad input": a clear error before any work is lost)."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic
from critic.buffers import memory
from critic.buffers.replay import ReplayBuffer
from critic.buffers.sequence import SequenceReplay
from critic.config import ConfigError

IMG = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
BOX = gym.spaces.Box(-1, 1, (6,), np.float32)


def _allocated(buf) -> int:
    return sum(v.nbytes for v in vars(buf).values() if torch.is_tensor(v))


@pytest.mark.parametrize("optimize", [False, True])
def test_needed_bytes_are_what_the_buffer_allocates(monkeypatch, optimize):
    seen = []
    monkeypatch.setattr(memory, "available_bytes", lambda device: seen.append(device) or None)
    buf = ReplayBuffer(1000, 2, IMG, BOX, optimize_memory=optimize)
    need = memory.nbytes([(IMG.shape, torch.uint8), (BOX.shape, torch.float32), ((), torch.float32),
                          ((), torch.bool), ((), torch.bool)]
                         + ([((), torch.int32)] if optimize else [(IMG.shape, torch.uint8)])) * 1000
    extra = _allocated(buf) - need  # the optimize_memory side tables (one obs per env, 16 final slots)
    assert seen and 0 <= extra <= (18 * 28224 if optimize else 0), (extra, need)


def test_sequence_replay_needs_what_it_allocates(monkeypatch):
    seen = []
    monkeypatch.setattr(memory, "check_fits", lambda field, value, need, *a, **k: seen.append(need))
    monkeypatch.setattr("critic.buffers.sequence.check_fits", memory.check_fits)
    buf = SequenceReplay(2000, 20, 4, IMG.shape, torch.uint8, 6)
    assert seen == [_allocated(buf) - buf.final_obs.nbytes]  # all but the 8 final-observation slots


def test_too_large_replay_is_refused_naming_the_field(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 2 * 1024**3)  # 2 GiB free
    with pytest.raises(ConfigError, match=r"'buffer_size': 1,000,000 needs 52\.6 GiB .* 2\.0 GiB is available "
                                          r"\(allowed here: at most about 38,0\d\d; optimize_memory=true"):
        ReplayBuffer(1_000_000, 1, IMG, BOX)
    with pytest.raises(ConfigError, match=r"needs 26\.3 GiB .*at most about 7\d,\d{3}\)$"):
        ReplayBuffer(1_000_000, 1, IMG, BOX, optimize_memory=True)  # no hint left to give
    ReplayBuffer(30_000, 1, IMG, BOX)  # fits: negative control
    with pytest.raises(ConfigError, match="'buffer_size'"):
        SequenceReplay(1_000_000, 20, 16, IMG.shape, torch.uint8, 6)
    SequenceReplay(20_000, 20, 16, IMG.shape, torch.uint8, 6)


def test_agent_refuses_before_training_and_cli_says_one_line(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 64 * 1024**2)
    with pytest.raises(ConfigError, match="'buffer_size': 10,000,000 needs"):
        critic.SAC("Pendulum-v1", buffer_size=10_000_000)
    with pytest.raises(ConfigError, match="'buffer_size'"):
        critic.ACER("CartPole-v1", buffer_size=10_000_000)
    out = subprocess.run([sys.executable, "-m", "critic.cli", "train", "sac", "Pendulum-v1", "--steps", "10",
                          "--set", "buffer_size=100000000000", "--out", "/dev/null/never"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "'buffer_size': 100,000,000,000 needs" in lines[0], out.stderr
