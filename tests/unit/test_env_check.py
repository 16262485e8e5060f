"""critic.envs.check (check_env, check_env_or_raise) and `critic check-env`: every broken env
is reported naming the field, healthy envs pass, the CLI prints one line per finding and one
`critic: error:` line, and `module:EnvId` ids import nothing unless allowed."""

from __future__ import annotations

import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest

from critic.cli import main
from critic.envs.check import EnvCheckError, EnvCheckWarning, check_env, check_env_or_raise
from critic.envs.fake import BrokenEnv, IdentityEnv, OldGymEnv
from critic.envs.make import EnvError, make_vec_env


def only(findings, level=None):
    return [f for f in findings if level is None or f.level == level]


# (defect, level, field, words the message must contain)
CASES = [
    ("dict_obs", "error", "observation_space", ["observation subspace 'y': Text", "nested one level at most"]),
    ("tuple_obs", "error", "observation_space", ["observation subspace '1': Sequence", "Box"]),
    ("nested_obs", "error", "observation_space", ["'inner.1' is nested two levels deep"]),
    ("discrete_obs", "error", "observation_space", ["observation space Discrete", "FlattenObservation"]),
    ("dict_action", "error", "action_space", ["action space Dict", "Discrete, MultiDiscrete, MultiBinary, Box"]),
    ("tuple_action", "error", "action_space", ["action space Tuple", "Discrete, MultiDiscrete, MultiBinary, Box"]),
    ("unbounded_action", "error", "action_space", ["unbounded", "-inf", "finite bounds"]),
    ("inverted_action", "error", "action_space", ["inverted", "low > high at index 1"]),
    ("flat_action", "error", "action_space", ["flat", "low == high == 0.5 at index 1"]),
    ("unsampleable_action", "error", "action_space", ["action_space.sample() raised RuntimeError"]),
    ("old_step", "error", "step", ["4-tuple (obs, reward, done, info)", "old Gym step API"]),
    ("old_reset", "error", "reset", ["not (obs, info)", "old Gym reset API"]),
    ("reset_info_list", "error", "reset", ["info must be a dict"]),
    ("obs_shape", "error", "observation", ["step 3", "shape (2,)", "observation_space has shape (3,)"]),
    ("obs_dtype", "error", "observation", ["dtype float64", "observation_space has dtype float32"]),
    ("obs_list", "error", "observation", ["is a list", "numpy array of shape (3,)"]),
    ("obs_bounds", "warning", "observation", ["outside observation_space at index 1", "5.0 not in [-1.0, 1.0]"]),
    ("obs_nan", "error", "observation", ["step 3", "nan at index 2"]),
    ("reward_nan", "error", "reward", ["step 3", "is nan"]),
    ("reward_inf", "error", "reward", ["is inf"]),
    ("reward_array", "error", "reward", ["array of shape (1,)", "scalar"]),
    ("reward_str", "error", "reward", ["str '0.5'", "must be a number"]),
    ("reward_none", "error", "reward", ["NoneType", "must be a number"]),
    ("terminated_int", "warning", "terminated", ["int 0", "return a bool"]),
    ("terminated_array", "error", "terminated", ["array of shape (1,)", "must be a bool"]),
    ("truncated_none", "error", "truncated", ["NoneType None", "must be a bool"]),
    ("info_none", "error", "info", ["NoneType", "must be a dict"]),
    ("step_raises", "error", "step", ["raised RuntimeError", "sampled action", "step is broken"]),
]


@pytest.mark.parametrize("defect, level, field, words", CASES, ids=[c[0] for c in CASES])
def test_each_defect_is_reported_once_naming_the_field(defect, level, field, words):
    findings = check_env(lambda: BrokenEnv(defect), probe_steps=40)
    assert len(findings) == 1, findings  # one finding, not one per step or a cascade
    f = findings[0]
    assert (f.level, f.field) == (level, field), f
    for w in words:
        assert w in f.message, (w, f.message)
    assert "\n" not in f.message and str(f).startswith(f"{level}: {field}: ")


def test_every_defect_has_a_case():
    assert {c[0] for c in CASES} == set(BrokenEnv.DEFECTS) - {"none"}


@pytest.mark.parametrize("spec", ["CartPole-v1", "Pendulum-v1", "MountainCarContinuous-v0",
                                  lambda: BrokenEnv("none", length=7), lambda: IdentityEnv(3, continuous=True)])
def test_healthy_envs_give_no_findings(spec):
    assert check_env(spec, probe_steps=300) == []


def test_old_gym_env_is_reported_completely_and_behind_gymnasium_wrappers():
    """reset(self) without keywords, reset returning only obs, and the 4-tuple step; Gymnasium's
    own checker (which gym.make adds) stays silent and its flags are restored afterwards."""
    expected = [("reset", "seed/options keywords"), ("reset", "not (obs, info)"), ("step", "4-tuple")]
    checker = gym.wrappers.PassiveEnvChecker(OldGymEnv())
    wrapped = gym.wrappers.TimeLimit(gym.wrappers.OrderEnforcing(checker), 50)  # what gym.make builds
    for spec in (OldGymEnv, wrapped):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no Gymnasium warning leaks through
            findings = check_env(spec)
        assert [(f.field, next(w for fld, w in expected if fld == f.field and w in f.message))
                for f in findings] == expected, findings
        assert all(f.level == "error" for f in findings)
    assert (checker.checked_reset, checker.checked_step) == (False, False)


def test_old_step_behind_time_limit_names_the_api_not_the_unpacking_error():
    env = gym.make("critic/OldStepAPI-v0")  # registered by critic.envs.fake; TimeLimit would fail to unpack
    (f,) = check_env(env, probe_steps=5)
    assert f.field == "step" and "BrokenEnv.step returned a 4-tuple" in f.message and "old Gym step API" in f.message


def test_agent_construction_messages_still_match():
    # The classes and patterns of tests/smoke/test_agents.py::test_unsupported_spaces_fail_at_construction.
    class DictObs(gym.Env):
        observation_space = gym.spaces.Dict({"x": gym.spaces.Box(0, 1, (2,)), "t": gym.spaces.Text(4)})
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return self.observation_space.sample(), {}

    class TupleAct(gym.Env):
        observation_space = gym.spaces.Box(0, 1, (2,))
        action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2)))

        def reset(self, *, seed=None, options=None):
            return self.observation_space.sample(), {}

    with pytest.raises(EnvError, match="observation subspace 't': Text"):
        check_env_or_raise(DictObs, probe_steps=2)
    with pytest.raises(EnvError, match="action space Tuple.*Discrete, MultiDiscrete, MultiBinary, Box"):
        check_env_or_raise(TupleAct, probe_steps=2)
    # an algorithm's narrower action classes
    (f,) = check_env(lambda: BrokenEnv("none"), probe_steps=0, allowed_actions=(gym.spaces.Box,))
    assert f.field == "action_space" and "this algorithm supports: Box" in f.message


def test_or_raise_lists_every_error_on_one_line_and_warns_for_warnings():
    class TwoDefects(BrokenEnv):
        def step(self, action):
            obs, _, term, trunc, info = super().step(action)
            return obs, float("nan"), term, trunc, None

    with pytest.raises(EnvCheckError) as e:
        check_env_or_raise(lambda: TwoDefects("none"))
    msg = str(e.value)
    assert isinstance(e.value, EnvError) and "\n" not in msg
    assert "env from " in msg and "failed 2 checks" in msg and "reward: " in msg and "info: " in msg
    assert [f.field for f in e.value.findings] == ["reward", "info"]

    with pytest.warns(EnvCheckWarning, match="observation: .*outside observation_space"):
        findings = check_env_or_raise(BrokenEnv("obs_bounds", at=1), probe_steps=2)
    assert [f.level for f in findings] == ["warning"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_env_or_raise("CartPole-v1", probe_steps=2) == []


def test_probe_steps_resets_and_what_it_leaves_untouched():
    class Counting(BrokenEnv):
        resets = steps = 0

        def reset(self, **kw):
            Counting.resets += 1
            return super().reset(**kw)

        def step(self, action):
            Counting.steps += 1
            return super().step(action)

    assert check_env(lambda: Counting("none", length=4), probe_steps=0) == []
    assert (Counting.resets, Counting.steps) == (1, 0)
    assert check_env(lambda: Counting("none", length=4), probe_steps=10) == []
    assert (Counting.resets, Counting.steps) == (1 + 1 + 2, 10)  # resets at steps 4 and 8
    # defects only seen while stepping need steps; at=0 shows one at reset
    assert check_env(lambda: BrokenEnv("reward_nan", at=1), probe_steps=0) == []
    assert only(check_env(lambda: BrokenEnv("reward_nan", at=1), probe_steps=1), "error")
    (f,) = check_env(lambda: BrokenEnv("obs_shape", at=0), probe_steps=0)
    assert "from reset" in f.message

    class SecondResetNaN(BrokenEnv):  # a defect that first shows after an episode end is found too
        def reset(self, **kw):
            self.n = getattr(self, "n", 0) + 1
            obs, info = super().reset(**kw)
            if self.n == 2:
                obs[0] = np.inf
            return obs, info

    (f,) = check_env(lambda: SecondResetNaN("none", length=5), probe_steps=10)
    assert f.field == "observation" and "from the reset after step 5 holds inf at index 0" in f.message

    # an instance: its action space RNG is not advanced, Gymnasium's checker flags are restored
    env = gym.make("CartPole-v1")
    state = env.action_space.np_random.bit_generator.state
    assert check_env(env, probe_steps=20) == []
    assert env.action_space.np_random.bit_generator.state == state
    checker = next(e for e in (env, env.env, env.env.env) if isinstance(e, gym.wrappers.PassiveEnvChecker))
    assert (checker.checked_reset, checker.checked_step) == (False, False)
    env.close()
    with pytest.raises(ValueError, match="probe_steps"):
        check_env("CartPole-v1", probe_steps=-1)


def test_vector_env_probes_its_first_sub_env():
    venv = make_vec_env(lambda: BrokenEnv("reward_inf", at=1), num_envs=2)
    (f,) = check_env(venv, probe_steps=3)
    assert f.field == "reward" and "inf" in f.message
    venv.close()


def test_build_failures_raise_env_error_with_one_line():
    with pytest.raises(EnvError, match="unknown environment id 'CartPole-v2'; did you mean CartPole-v1"):
        check_env("CartPole-v2")
    with pytest.raises(EnvError, match="refused unless explicitly allowed"):
        check_env("no_such_module_xyz:Env-v0")
    assert "no_such_module_xyz" not in sys.modules

    def boom():
        raise KeyError("missing asset")

    with pytest.raises(EnvError, match="could not build env from .*boom: the constructor raised KeyError"):
        check_env(boom)
    with pytest.raises(EnvError, match="registers with gymnasium.register, not a class name"):
        check_env("critic.envs.fake:IdentityEnv", allow_import=("critic.envs.fake",))
    with pytest.raises(EnvError, match="No module named 'no_such_module_xyz'"):
        check_env("no_such_module_xyz:Env-v0", allow_import=("no_such_module_xyz",))


# ----------------------------------------------------------------------------- CLI

@pytest.fixture
def registered():
    ids = []

    def register(env_id, **kwargs):
        gym.register(env_id, entry_point=BrokenEnv, kwargs=kwargs, max_episode_steps=30)
        ids.append(env_id)
        return env_id

    yield register
    for env_id in ids:
        del gym.registry[env_id]


def cli(capsys, *args):
    rc = main(["check-env", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def test_cli_ok_and_warnings(capsys, registered):
    rc, out, err = cli(capsys, "CartPole-v1", "--steps", "50", "--seed", "3")
    assert rc == 0 and err == ""
    assert out.strip() == "ok: CartPole-v1 passed (probed: spaces, reset and 50 random steps, seed 3)"
    env_id = registered("critic-test/Bounds-v0", defect="obs_bounds")
    rc, out, err = cli(capsys, env_id, "--steps", "10")
    lines = out.strip().splitlines()
    assert rc == 0 and err == "" and len(lines) == 2
    assert lines[0].startswith("warning: observation: ") and lines[1].startswith(f"ok: {env_id} passed with 1 warning")


def test_cli_errors_print_each_finding_and_one_error_line(capsys, registered):
    registered("critic-test/Broken-v0", defect="info_none")
    rc, out, err = cli(capsys, "critic-test/Broken-v0", "--steps", "10")
    assert rc == 2 and out.startswith("error: info: step returned info of type NoneType")
    assert err.strip().splitlines() == ["critic: error: critic-test/Broken-v0 failed 1 check "
                                        "(probed: spaces, reset and 10 random steps, seed 0)"]


@pytest.mark.parametrize("args, message", [
    (["CartPole-v2"], "unknown environment id 'CartPole-v2'; did you mean CartPole-v1"),
    (["CartPole-v1", "--steps", "-1"], "invalid value for '--steps': -1"),
    (["critic.envs.fake:critic/Identity-v0"], "would import the Python module 'critic.envs.fake'; refused"),
    (["critic.envs.fake:critic/Identity-v0", "--allow-import", "other.module"], "refused unless explicitly"),
    (["critic.envs.fake:IdentityEnv", "--allow-import", "critic.envs.fake"], "not a class name"),
    (["no_such_module_xyz:Env-v0", "--allow-import", "no_such_module_xyz"], "No module named"),
    (["critic-test/Raises-v0"], "could not build env 'critic-test/Raises-v0': the constructor raised ValueError"),
])
def test_cli_user_errors_are_one_line(capsys, registered, args, message):
    registered("critic-test/Raises-v0", defect="no such defect")
    rc, out, err = cli(capsys, *args)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("critic: error: ") and message in err, err


def test_cli_module_ids_only_with_allow_import(capsys):
    """Gymnasium 1.x reads 'module:EnvId' as: import module, then look EnvId up in the registry
    (critic.envs.fake registers critic/Identity-v0 and critic/OldStepAPI-v0 when imported)."""
    rc, out, err = cli(capsys, "critic.envs.fake:critic/Identity-v0", "--allow-import", "critic.envs.fake",
                       "--steps", "20")
    assert rc == 0 and out.startswith("ok: critic.envs.fake:critic/Identity-v0 passed"), err
    rc, out, err = cli(capsys, "critic.envs.fake:critic/OldStepAPI-v0", "--allow-import", "critic.envs.fake")
    assert rc == 2 and "error: step: BrokenEnv.step returned a 4-tuple (obs, reward, done, info)" in out
    assert len(err.strip().splitlines()) == 1 and "failed 1 check" in err
