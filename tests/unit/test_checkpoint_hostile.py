"""Hostile and broken checkpoint files, for every algorithm: truncated, flipped byte, empty,
wrong version, mismatched spaces -> CheckpointError naming the path and the reason, and
nothing loaded; a writer SIGKILLed mid-save leaves the previous checkpoint loadable and nothing
partial at the final path; a corrupted checkpoint given to ``critic train --resume`` is a
one-line error that leaves the run directory untouched."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

import critic
from critic import checkpoint as ckpt
from critic.algos.registry import get_algo
from critic.checkpoint import CheckpointError

TINY = {"hidden_sizes": (8,), "log_every": 10**9}
ALGOS = {
    # algo: (env, other env with different spaces, hparams, steps)
    "a2c": ("CartPole-v1", "Acrobot-v1", {"n_steps": 8}, 16),
    "ppo": ("CartPole-v1", "Acrobot-v1", {"n_steps": 8, "batch_size": 8}, 16),
    "a3c": ("CartPole-v1", "Acrobot-v1", {"workers": 1}, 0),
    "acer": ("CartPole-v1", "Acrobot-v1", {"n_steps": 8, "replay_start": 8, "buffer_size": 100}, 16),
    "ddpg": ("Pendulum-v1", "MountainCarContinuous-v0", {"learning_starts": 8, "batch_size": 8, "buffer_size": 100}, 16),
    "td3": ("Pendulum-v1", "MountainCarContinuous-v0", {"learning_starts": 8, "batch_size": 8, "buffer_size": 100}, 16),
    "sac": ("Pendulum-v1", "MountainCarContinuous-v0", {"learning_starts": 8, "batch_size": 8, "buffer_size": 100}, 16),
}


@pytest.fixture(scope="module", params=list(ALGOS))
def saved(request, tmp_path_factory):
    algo = request.param
    env, other, hp, steps = ALGOS[algo]
    agent = get_algo(algo)(env, **TINY, **hp)
    if steps:
        agent.learn(steps, progress_bar=False)
    path = agent.save(tmp_path_factory.mktemp(algo) / ckpt.FILENAME)
    agent.close()
    return algo, other, path


def _error(path) -> str:
    with pytest.raises(CheckpointError) as e:
        critic.load(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    return str(e.value)


def _write(tmp_path, blob: bytes):
    p = tmp_path / ckpt.FILENAME
    p.write_bytes(blob)
    return p


def test_corrupted_files_name_path_and_reason(saved, tmp_path):
    algo, other, path = saved
    blob = path.read_bytes()
    (n,) = struct.unpack("<Q", blob[:8])
    assert "checksum" in _error(_write(tmp_path, blob[:-64]))
    assert "truncated" in _error(_write(tmp_path, blob[: 8 + n // 2]))
    flipped = bytearray(blob)
    flipped[8 + n + (len(blob) - 8 - n) // 3] ^= 0x40
    assert "checksum" in _error(_write(tmp_path, bytes(flipped)))
    assert "empty" in _error(_write(tmp_path, b""))
    header = json.loads(blob[8:8 + n])
    header["__metadata__"]["version"] = str(ckpt.VERSION + 1)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    msg = _error(_write(tmp_path, struct.pack("<Q", len(h)) + h + blob[8 + n:]))
    assert f"version {ckpt.VERSION + 1}" in msg and "newer" in msg
    header["__metadata__"]["meta"] = "{not json"
    header["__metadata__"]["version"] = str(ckpt.VERSION)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    assert "corrupted" in _error(_write(tmp_path, struct.pack("<Q", len(h)) + h + blob[8 + n:]))
    # negative control: the untouched bytes load
    critic.load(_write(tmp_path, blob)).close()


def test_mismatched_spaces_are_refused(saved):
    algo, other, path = saved
    with pytest.raises(CheckpointError) as e:
        critic.load(path, env=other)
    assert str(path) in str(e.value) and "differ" in str(e.value)


_WRITER = textwrap.dedent("""
    import sys, critic
    agent = critic.SAC("Pendulum-v1", learning_starts=1_990, batch_size=64, hidden_sizes=(256, 256),
                       buffer_size=20_000, log_every=10**9)
    agent.learn(2_000, progress_bar=False)   # weights, Adam moments, replay: a checkpoint of a few MB
    path = sys.argv[1]
    agent.save(path)
    print("ready", flush=True)
    while True:
        agent.save(path)
""")


def test_writer_killed_mid_save_leaves_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "ck" / ckpt.FILENAME
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        for delay in (0.05, 0.13, 0.31):  # kill at a few points of the save loop
            time.sleep(delay)
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                tensors, meta = ckpt.read(path)  # whatever is at the final path is complete
                assert meta["algo"] == "sac" and meta["counters"]["env_steps"] == 2_000
            finally:
                os.kill(proc.pid, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    loaded = critic.load(path, for_training=True)
    assert loaded.env_steps == 2_000 and len(loaded.replay) == 2_000
    loaded.close()
    leftovers = [p.name for p in path.parent.iterdir() if p.name != ckpt.FILENAME]
    assert all(name.startswith(f".{ckpt.FILENAME}.") and name.endswith(".tmp") for name in leftovers)


def test_resume_from_corrupted_checkpoint_is_one_line_and_touches_nothing(tmp_path, capsys):
    from critic.cli import main

    run = tmp_path / "run"
    assert main(["train", "a2c", "CartPole-v1", "--steps", "64", "--set", "n_steps=8", "--eval-every", "32",
                 "--eval-episodes", "1", "--out", str(run), "--no-progress"]) == 0
    ck = run / "checkpoints" / ckpt.FILENAME
    blob = bytearray(ck.read_bytes())
    blob[-3] ^= 0xFF
    ck.write_bytes(bytes(blob))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "128", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("critic: error:") and "checksum" in err[0]
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
