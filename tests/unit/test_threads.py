"""torch_threads=0: the automatic thread count leaves the cores other processes hold."""

import subprocess
import sys
import time

import pytest

from critic import nn as cnn


def test_busy_cores_reads_the_instant_runnable_count(tmp_path):
    f = tmp_path / "loadavg"
    f.write_text("3.10 2.00 1.50 4/120 12345\n")
    assert cnn.busy_cores(samples=3, loadavg=str(f)) == 4 - max(cnn._own_running(), 1)
    f.write_text("garbage\n")
    assert cnn.busy_cores(samples=1, loadavg=str(f)) is None
    assert cnn.busy_cores(samples=1, loadavg=str(tmp_path / "missing")) is None


@pytest.mark.parametrize("cores, busy, wide, want", [(2, 0, True, 2), (2, 1, True, 1), (2, 5, True, 1),
                                                     (8, 2, True, 4), (8, 5, True, 3), (8, 0, False, 1),
                                                     (2, None, True, 2)])
def test_auto_threads(monkeypatch, cores, busy, wide, want):
    monkeypatch.setattr(cnn, "usable_cores", lambda: cores)
    monkeypatch.setattr(cnn, "busy_cores", lambda: busy)
    assert cnn.auto_threads(wide) == want


@pytest.mark.skipif(cnn.busy_cores(samples=1) is None, reason="needs /proc/loadavg (Linux)")
def test_a_spinning_process_is_seen():
    before = cnn.busy_cores()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        seen = max(cnn.busy_cores() for _ in range(5))
    finally:
        hog.kill()
        hog.wait()
    assert seen >= 1 and seen >= before - 1


def test_learn_chooses_again(monkeypatch):
    import torch

    import critic

    agent = critic.SAC("Pendulum-v1", learning_starts=10, buffer_size=100, batch_size=16, torch_threads=0)
    monkeypatch.setattr(cnn, "busy_cores", lambda: 64)  # every core taken by others
    agent.learn(20, progress_bar=False)
    assert torch.get_num_threads() == 1
    agent.close()
