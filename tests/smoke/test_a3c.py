"""A3C on the local runner: the agent face, worker failures (killed, raising, hung, budget
exhausted), checkpoints and resume, bad input, CLI."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import critic
from critic.algos.a3c import A3C
from critic.config import ConfigError
from critic.envs.fake import failing_env
from critic.runners.local import WorkerError, worker_pids

SMALL = dict(workers=2, n_steps=5, hidden_sizes=(16,), log_every=200, seed=0)


def _flat(agent) -> torch.Tensor:
    return agent.optims["main"].param_groups[0]["params"][0]


def _consistent(agent, n_steps=5, num_envs=1) -> bool:
    # steps are counted only with the update they fed: no samples from a dead worker's rollout
    return agent.env_steps == agent.updates * n_steps * num_envs


def test_face_learn_predict_evaluate_save_load(tmp_path):
    agent = A3C("CartPole-v1", **SMALL)
    before = _flat(agent).detach().clone()
    agent.learn(1500, progress_bar=False)
    assert 1500 <= agent.env_steps <= 1500 + 2 * 5
    assert _consistent(agent) and agent.updates > 0 and agent.episodes > 0
    assert not torch.equal(_flat(agent).detach(), before)  # workers updated the learner's weights
    (state,) = agent.optims["main"].state.values()
    assert float(state["step"]) > 0 and state["square_avg"].gt(0).any()  # shared statistics moved
    a = agent.predict(np.zeros(4, np.float32), deterministic=True)[0]
    assert a.shape == () and agent.evaluate(2)["mean"] > 0
    path = agent.save(tmp_path / "a3c.safetensors")
    agent.close()
    loaded = critic.load(path, for_training=True)
    assert isinstance(loaded, A3C) and loaded.env_steps == agent.env_steps
    torch.testing.assert_close(_flat(loaded), _flat(agent))
    loaded.learn(500, progress_bar=False)  # continues: statistics re-shared with new workers
    assert loaded.env_steps >= agent.env_steps + 500 and _consistent(loaded)
    loaded.close()


def test_run_dir_checkpoints_and_resume(tmp_path):
    run = tmp_path / "run"
    agent = A3C("CartPole-v1", **SMALL)
    agent.learn(1000, progress_bar=False, run_dir=run, eval_every=500, eval_episodes=2, checkpoint_every=500)
    agent.close()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["algo"] == "a3c" and summary["env_steps"] == agent.env_steps
    ck = critic.load(run / "checkpoints", for_training=True)
    assert ck.env_steps == agent.env_steps and ck.updates == agent.updates
    ck.learn(500, progress_bar=False)
    assert ck.env_steps >= agent.env_steps + 500
    ck.close()


def test_sigkilled_worker_is_restarted_and_training_completes():
    agent = A3C("CartPole-v1", **SMALL)
    killed = []

    def kill_once(a, info):
        if not killed and a.env_steps > 300:
            pid = worker_pids(a.runner)[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    with pytest.warns(RuntimeWarning, match="worker 0 failed .*SIGKILL.*restarted"):
        agent.learn(3000, callback=kill_once, progress_bar=False)
    assert killed and agent.env_steps >= 3000 and _consistent(agent)
    assert agent.worker_restarts == [1, 0]
    assert agent.worker_failures[0][1] == "killed by signal SIGKILL"
    agent.close()


def test_raising_env_worker_is_restarted(tmp_path):
    env = functools.partial(failing_env, after=120, mode="raise", marker=str(tmp_path / "once"))
    agent = A3C(env, **SMALL)
    with pytest.warns(RuntimeWarning, match="RuntimeError: environment exploded at step 120"):
        agent.learn(3000, progress_bar=False)
    assert agent.env_steps >= 3000 and _consistent(agent) and sum(agent.worker_restarts) == 1
    agent.close()


def test_hung_worker_is_killed_after_the_timeout_and_restarted(tmp_path):
    env = functools.partial(failing_env, after=100, mode="hang", marker=str(tmp_path / "once"))
    agent = A3C(env, **SMALL, worker_timeout=1.0)
    with pytest.warns(RuntimeWarning, match=r"worker \d failed \(no progress for 1 s \(hung\); killed\)"):
        agent.learn(10_000, progress_bar=False)
    assert agent.env_steps >= 10_000 and _consistent(agent) and sum(agent.worker_restarts) == 1
    agent.close()


def test_restart_budget_exhausted_names_worker_and_cause():
    env = functools.partial(failing_env, after=30, mode="raise")  # every generation fails
    agent = A3C(env, **{**SMALL, "workers": 1}, max_restarts=1)
    with pytest.warns(RuntimeWarning):
        with pytest.raises(WorkerError, match=r"worker 0 failed 2 times.*max_restarts=1.*"
                                              r"RuntimeError: environment exploded at step 30"):
            agent.learn(5000, progress_bar=False)
    assert agent.runner.procs == [None]  # everything stopped
    agent.close()


def test_worker_exiting_is_reported_with_its_exit_code(tmp_path):
    env = functools.partial(failing_env, after=50, mode="exit", marker=str(tmp_path / "once"))
    agent = A3C(env, **SMALL)
    with pytest.warns(RuntimeWarning, match="exited with code 3"):
        agent.learn(1000, progress_bar=False)
    assert agent.env_steps >= 1000 and _consistent(agent)
    agent.close()


@pytest.mark.parametrize("bad, field", [
    ({"workers": 0}, "workers"), ({"backend": "mpi"}, "backend"), ({"max_restarts": -1}, "max_restarts"),
    ({"worker_timeout": 0}, "worker_timeout"), ({"normalize_obs": True, "backend": "ray"}, "normalize_obs"), ({"normalize_reward": True}, "normalize_reward"),
    ({"start_method": "thread"}, "start_method"),
])
def test_bad_config_names_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        A3C("CartPole-v1", **bad)


def test_env_instance_and_unpicklable_callable_are_refused():
    import gymnasium as gym

    with pytest.raises(ConfigError, match="Gymnasium id or a picklable callable"):
        A3C(gym.make("CartPole-v1"))
    with pytest.raises(ConfigError, match="picklable"):
        A3C(lambda: gym.make("CartPole-v1"))


def test_cli_train_workers(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "critic.cli", "train", "a3c", "CartPole-v1", "--workers", "2",
                        "--steps", "1000", "--eval-every", "1000", "--eval-episodes", "2", "--no-progress",
                        "--set", "hidden_sizes=[16]", "--out", str(out)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["env_steps"] >= 1000
    r = subprocess.run([sys.executable, "-m", "critic.cli", "train", "--resume", str(out), "--steps", "2000",
                        "--no-progress"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "resuming a3c" in r.stderr and json.loads((out / "summary.json").read_text())["env_steps"] >= 2000
    r = subprocess.run([sys.executable, "-m", "critic.cli", "train", "sac", "Pendulum-v1", "--workers", "2"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--workers is not an option of sac" in r.stderr


def test_script_without_main_guard_gets_a_clear_error(tmp_path):
    script = tmp_path / "train.py"
    script.write_text("import critic\nagent = critic.A3C('CartPole-v1', workers=1)\n"
                      "agent.learn(1000, progress_bar=False)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "WorkerError: worker 0 failed while its process was starting" in r.stderr
    assert "if __name__ == '__main__':" in r.stderr
