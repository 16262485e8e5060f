"""PyBullet ids (the 'bullet' extra): lazy import, no --allow-import, one-line errors that say the fix.

pybullet_envs_gymnasium is in the test extra (CI runs Python 3.11): these tests fail, not skip,
when it is missing. A missing package is simulated with ``sys.modules[name] = None`` (the import
then raises ImportError) and the registry entries removed for the duration of a test.
"""

import re
import sys

import gymnasium as gym
import numpy as np
import pytest

from critic.cli import main
from critic.envs.make import (BULLET_IDS, BULLET_PACKAGE, EnvError, check_env_id, is_bullet_id, make_env,
                              make_vec_env)


@pytest.fixture
def unregistered(monkeypatch):
    """As in a fresh interpreter: the port not imported, its ids not registered (restored afterwards)."""
    for env_id in BULLET_IDS:
        monkeypatch.delitem(gym.registry, env_id, raising=False)
    monkeypatch.delitem(sys.modules, BULLET_PACKAGE, raising=False)
    assert "AntBulletEnv-v0" not in gym.registry


@pytest.fixture
def missing(monkeypatch, unregistered):
    monkeypatch.setitem(sys.modules, BULLET_PACKAGE, None)  # `import pybullet_envs_gymnasium` raises


def test_ids_resolve_without_allow_import(unregistered):
    check_env_id("AntBulletEnv-v0", allow_import=())  # no 'module:' prefix, nothing to allow
    assert BULLET_PACKAGE in sys.modules
    assert all(env_id in gym.registry for env_id in BULLET_IDS)


def test_the_id_list_is_what_the_package_registers():
    import pybullet_envs_gymnasium  # noqa: F401
    registered = {k for k, spec in gym.registry.items() if str(spec.entry_point).startswith(BULLET_PACKAGE + ".")}
    assert registered == set(BULLET_IDS)
    assert all(is_bullet_id(i) for i in BULLET_IDS)
    assert not any(is_bullet_id(i) for i in ("HalfCheetah-v5", "Ant-v5", "ALE/Pong-v5", "CartPole-v1"))


def test_make_env_and_vector_env_from_an_id(unregistered):
    env = make_env("InvertedPendulumBulletEnv-v0", seed=0)
    assert env.observation_space.shape == (5,) and env.action_space.shape == (1,)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5,) and np.all(np.isfinite(obs))
    env.close()
    venv = make_vec_env("HalfCheetahBulletEnv-v0", num_envs=2, seed=0)
    obs, _ = venv.reset(seed=0)
    obs, rew, term, trunc, _ = venv.step(venv.action_space.sample())
    assert obs.shape == (2, 26) and rew.shape == (2,) and np.all(np.isfinite(obs))
    venv.close()


def test_missing_package_names_the_pip_line(missing):
    with pytest.raises(EnvError) as e:
        make_env("AntBulletEnv-v0")
    msg = str(e.value)
    assert "\n" not in msg
    assert "pip install 'critic[bullet]'" in msg and 'pip install -e ".[bullet]"' in msg
    assert "'AntBulletEnv-v0' is a PyBullet task" in msg and f"'{BULLET_PACKAGE}'" in msg


def test_missing_pybullet_itself_names_the_pip_line(monkeypatch, unregistered):
    monkeypatch.setitem(sys.modules, "pybullet", None)  # the port installed, its engine not
    with pytest.raises(EnvError, match=re.escape("pip install 'critic[bullet]'")) as e:
        make_vec_env("HopperBulletEnv-v0")
    assert "module 'pybullet' not found" in str(e.value)


def test_newer_python_says_the_wheels_stop_at_3_11(monkeypatch, missing):
    monkeypatch.setattr(sys, "version_info", (3, 13, 1, "final", 0))
    with pytest.raises(EnvError) as e:
        check_env_id("HalfCheetahBulletEnv-v0")
    msg = str(e.value)
    assert "\n" not in msg
    assert "this is Python 3.13" in msg and "Python <= 3.11" in msg


def test_newer_python_with_the_package_importable_just_works(monkeypatch, unregistered):
    monkeypatch.setattr(sys, "version_info", (3, 12, 0, "final", 0))  # e.g. pybullet built from source
    check_env_id("ReacherBulletEnv-v0")
    assert "ReacherBulletEnv-v0" in gym.registry


def test_unknown_bullet_id_suggests_bullet_ids_not_mujoco():
    with pytest.raises(EnvError) as e:
        check_env_id("HalfCheetahBulletEnv-v1")
    msg = str(e.value)
    assert "did you mean HalfCheetahBulletEnv-v0" in msg and "AntBulletEnv-v0" in msg
    assert "mujoco" not in msg.lower()


def test_cli_error_is_one_line(missing, capsys):
    assert main(["train", "td3", "AntBulletEnv-v0", "--preset", "bullet", "--steps", "10"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("critic: error: 'AntBulletEnv-v0' is a PyBullet task")
    assert len(err.strip().splitlines()) == 1 and "pip install 'critic[bullet]'" in err
    assert main(["check-env", "AntBulletEnv-v0"]) == 2
    assert "pip install 'critic[bullet]'" in capsys.readouterr().err
