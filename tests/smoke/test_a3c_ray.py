"""A3C on the Ray runner (one local Ray for the module, loopback only): the agent face, a killed
actor, a raising env, the restart budget, checkpoints, and where Ray listens."""

from __future__ import annotations

import functools
import os
import subprocess

import pytest
import torch

import critic
from critic.algos.a3c import A3C
from critic.envs.fake import failing_env
from critic.runners.local import WorkerError

import ray  # noqa: E402  (the test extra installs it: a missing Ray fails here, loudly)

SMALL = dict(workers=2, n_steps=5, hidden_sizes=(16,), log_every=200, seed=0, backend="ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    from critic.runners.ray import init_ray

    started = init_ray(None, num_cpus=2)
    yield
    if started:
        ray.shutdown()


def _consistent(agent, n_steps=5, num_envs=1) -> bool:
    return agent.env_steps == agent.updates * n_steps * num_envs


def _listening_sockets() -> list[tuple[str, str]]:
    """(local address, process) of every listening TCP socket that belongs to Ray or to us."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split()
        users = " ".join(parts[5:])
        if any(name in users for name in ("raylet", "gcs_server", "ray::", f"pid={os.getpid()},")):
            rows.append((parts[3], users))
    return rows


def test_ray_binds_to_loopback_only():
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    rows = _listening_sockets()
    assert rows, "found no listening sockets of Ray's processes"
    exposed = [r for r in rows if not (r[0].startswith("127.0.0.1:") or r[0].startswith("[::ffff:127.0.0.1]:"))]
    assert not exposed, f"Ray listens beyond loopback: {exposed}"


def test_face_learn_evaluate_save_load(tmp_path):
    agent = A3C("CartPole-v1", **SMALL)
    before = agent.optims["main"].param_groups[0]["params"][0].detach().clone()
    agent.learn(1500, progress_bar=False)
    assert agent.env_steps >= 1500 and _consistent(agent) and agent.episodes > 0
    flat = agent.optims["main"].param_groups[0]["params"][0]
    assert not torch.equal(flat.detach(), before)  # the parameter server's weights came back
    (state,) = agent.optims["main"].state.values()
    assert float(state["step"]) == agent.updates  # the server's optimizer statistics came back too
    assert agent.evaluate(2)["mean"] > 0
    path = agent.save(tmp_path / "a3c.safetensors")
    agent.close()
    loaded = critic.load(path, for_training=True)
    assert loaded.cfg.backend == "ray" and loaded.env_steps == agent.env_steps
    loaded.learn(500, progress_bar=False)
    assert loaded.env_steps >= agent.env_steps + 500 and _consistent(loaded)
    loaded.close()
    assert ray.is_initialized()  # the runner did not start this Ray, so it leaves it running


def test_killed_actor_is_restarted_and_training_completes():
    agent = A3C("CartPole-v1", **SMALL)
    killed = []

    def kill_once(a, info):
        if not killed and a.env_steps > 300:
            ray.kill(a.runner.actors[0], no_restart=True)
            killed.append(True)

    with pytest.warns(RuntimeWarning, match="worker 0 failed .*restarted"):
        agent.learn(4000, callback=kill_once, progress_bar=False)
    assert killed and agent.env_steps >= 4000 and _consistent(agent)
    assert agent.worker_restarts == [1, 0]
    agent.close()


def test_raising_env_actor_is_restarted(tmp_path):
    env = functools.partial(failing_env, after=120, mode="raise", marker=str(tmp_path / "once"))
    agent = A3C(env, **SMALL)
    with pytest.warns(RuntimeWarning, match="RuntimeError: environment exploded at step 120"):
        agent.learn(3000, progress_bar=False)
    assert agent.env_steps >= 3000 and _consistent(agent) and sum(agent.worker_restarts) == 1
    agent.close()


def test_hung_actor_is_killed_after_the_timeout_and_restarted(tmp_path):
    env = functools.partial(failing_env, after=100, mode="hang", marker=str(tmp_path / "once"))
    agent = A3C(env, **SMALL, worker_timeout=2.0)
    with pytest.warns(RuntimeWarning, match=r"worker \d failed \(no progress for 2 s \(hung\); killed\)"):
        agent.learn(20_000, progress_bar=False)
    assert agent.env_steps >= 20_000 and _consistent(agent) and sum(agent.worker_restarts) == 1
    agent.close()


def test_restart_budget_exhausted_names_worker_and_cause():
    env = functools.partial(failing_env, after=30, mode="raise")
    agent = A3C(env, **{**SMALL, "workers": 1}, max_restarts=1)
    with pytest.warns(RuntimeWarning):
        with pytest.raises(WorkerError, match=r"worker 0 failed 2 times.*max_restarts=1.*"
                                              r"RuntimeError: environment exploded at step 30"):
            agent.learn(5000, progress_bar=False)
    agent.close()
