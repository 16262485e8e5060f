"""Build vector envs from a Gymnasium id, a callable, or an env instance.

critic always builds Gymnasium vector envs with ``autoreset_mode=SAME_STEP``: a sub-env that
ends is reset inside the same ``step`` call and its true final observation comes back in
``info["final_obs"]``. The step helper (``envs/step.py``) is the only place that reads it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import re
import sys
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from critic.envs.errors import EnvError  # noqa: F401  (re-exported: critic.envs.make.EnvError)
from critic.envs.atari import is_atari_id


EnvSpec = str | Callable[[], gym.Env] | gym.Env | gym.vector.VectorEnv




# PyBullet locomotion and control tasks, from the maintained Gymnasium port of pybullet's envs
# (``pybullet_envs_gymnasium``, the ``bullet`` extra). The package registers these ids when it is
# imported; critic imports it the first time a Bullet id is asked for, so the ids work in
# ``critic train`` without ``--allow-import``.
BULLET_PACKAGE = "pybullet_envs_gymnasium"
BULLET_IDS = (
    "InvertedPendulumBulletEnv-v0", "InvertedDoublePendulumBulletEnv-v0", "InvertedPendulumSwingupBulletEnv-v0",
    "ReacherBulletEnv-v0", "PusherBulletEnv-v0", "ThrowerBulletEnv-v0",
    "HalfCheetahBulletEnv-v0", "AntBulletEnv-v0", "HopperBulletEnv-v0", "Walker2DBulletEnv-v0",
    "HumanoidBulletEnv-v0", "HumanoidFlagrunBulletEnv-v0", "HumanoidFlagrunHarderBulletEnv-v0",
)
_BULLET_SUFFIX = re.compile(r"BulletEnv-v\d+$")
BULLET_MAX_PYTHON = (3, 11)  # the newest Python with pybullet wheels on PyPI


def is_bullet_id(env_id: str) -> bool:
    """An id of the PyBullet port (all of them end in ``BulletEnv-vN``, as in old ``pybullet_envs``)."""
    return env_id in BULLET_IDS or bool(_BULLET_SUFFIX.search(env_id))


def check_env_id(env_id: str, allow_import: tuple[str, ...] = ()) -> None:
    """Fail with close suggestions for an unknown id; refuse ``module:Env`` imports."""
    if ":" in env_id:
        module = env_id.split(":", 1)[0]
        if module not in allow_import:
            raise EnvError(f"env id '{env_id}' would import the Python module '{module}'; "
                           f"refused unless explicitly allowed (allow_import=('{module}',) or --allow-import {module})")
        return
    if env_id in gym.registry:
        return
    _maybe_register_extras(env_id)
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    extra = ""
    if is_bullet_id(env_id):
        extra = f" (the PyBullet ids are: {', '.join(BULLET_IDS)})"
    elif is_atari_id(env_id):
        extra = " (Atari ids need: pip install 'critic[atari]')"
    elif any(env_id.startswith(p) for p in ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid", "Swimmer")):
        extra = " (MuJoCo ids need: pip install 'critic[mujoco]')"
    raise EnvError(f"unknown environment id '{env_id}'{hint}{extra}")


def _maybe_register_extras(env_id: str) -> None:
    if is_bullet_id(env_id):
        _import_bullet(env_id)
    elif is_atari_id(env_id):
        try:
            import ale_py  # noqa: F401  (registers ALE/ ids)
            gym.register_envs(ale_py)
        except ImportError:
            pass


def _import_bullet(env_id: str) -> None:
    """Import the PyBullet port (which registers its ids), or fail with the line that fixes it."""
    try:
        missing = None if importlib.util.find_spec("pybullet") is not None else "pybullet"
        if missing is None:
            importlib.import_module(BULLET_PACKAGE)
    except ImportError as e:
        missing = e.name or BULLET_PACKAGE
    if missing is None:
        return
    v = sys.version_info
    if (v[0], v[1]) > BULLET_MAX_PYTHON:
        raise EnvError(f"'{env_id}' is a PyBullet task, and pybullet has wheels only for Python <= "
                       f"{BULLET_MAX_PYTHON[0]}.{BULLET_MAX_PYTHON[1]}; this is Python {v[0]}.{v[1]}, so the "
                       f"'bullet' extra installs nothing here: use a Python 3.11 environment and run "
                       f"pip install 'critic[bullet]' (module '{missing}' not found)")
    raise EnvError(f"'{env_id}' is a PyBullet task and needs the 'bullet' extra: pip install 'critic[bullet]' "
                   f"(from a checkout: pip install -e \".[bullet]\"; module '{missing}' not found)")


def make_env(spec: EnvSpec, seed: int | None = None, render_mode: str | None = None,
             allow_import: tuple[str, ...] = (), atari_eval: bool = False, pack: bool = True,
             **kwargs: Any) -> gym.Env:
    """One (non-vector) env from an id or a callable; checks the result is a gymnasium.Env.

    Dict/Tuple observations are packed into one uint8 row (``envs/packing.py``) unless
    ``pack=False``. Atari ids get DeepMind preprocessing (``envs/atari.py``): the training variant (clipped
    rewards, a life loss ends the learner's episode) by default, whole games with raw rewards
    when ``atari_eval=True``. ``atari_eval`` is ignored for other envs.
    """
    if isinstance(spec, str):
        check_env_id(spec, allow_import)
        if is_atari_id(spec):
            from critic.envs.atari import make_atari
            env = make_atari(spec, clip_reward=not atari_eval, episodic_life=not atari_eval,
                             render_mode=render_mode, **kwargs)
        else:
            env = gym.make(spec, render_mode=render_mode, **kwargs) if render_mode else gym.make(spec, **kwargs)
    elif isinstance(spec, gym.Env):
        env = spec
    elif callable(spec):
        env = spec(render_mode=render_mode) if render_mode and getattr(spec, "takes_render_mode", False) else spec()
    else:
        raise EnvError(_not_env_message(spec))
    if not isinstance(env, gym.Env):
        raise EnvError(_not_env_message(env))
    from critic.envs.packing import PackObservation, packable

    if pack and packable(getattr(env, "observation_space", None)):
        try:
            env = PackObservation(env)  # Dict/Tuple observations: one row of bytes (envs/packing.py)
        except EnvError:
            pass  # a subspace critic cannot take: left as it is, for the space checks to name it
    if seed is not None:
        env.action_space.seed(seed)
    return env


def short_spec(spec: Any) -> str:
    return repr(spec) if isinstance(spec, str) else f"{type(spec).__module__}.{type(spec).__qualname__}"


def _not_env_message(obj: Any) -> str:
    return (f"expected a Gymnasium env id (str), a gymnasium.Env, or a callable returning one; "
            f"got {type(obj).__module__}.{type(obj).__qualname__}")


# 'auto' steps Gymnasium's vectorised implementation from this many sub-envs on. Measured
# (CartPole-v1, one step of every sub-env): its NumPy arrays cost about 50 us a step whatever
# the count, separate envs about 8 us per sub-env; the whole training run gained nothing at 8
# sub-envs (a2c_cartpole: 0.97x) and lost at 1-4 (per-step A2C 0.82x, ACER 0.93x), while 16
# sub-envs step 2.4x faster.
NATIVE_FROM = 16


def make_vec_env(spec: EnvSpec, num_envs: int = 1, seed: int = 0, vectorization: str = "auto",
                 allow_import: tuple[str, ...] = ()) -> gym.vector.VectorEnv:
    """A Gymnasium vector env with same-step autoreset.

    ``vectorization``: 'auto' uses Gymnasium's own vectorised implementation of an env id where
    critic has one (CartPole: one NumPy generator for all sub-envs, seeded ``seed``) for
    ``NATIVE_FROM`` sub-envs or more, and otherwise steps separate envs in one process, sub-env
    ``i`` seeded ``seed + i`` (as 'sync' always does); 'async' runs them in subprocesses;
    'native' insists on the vectorised implementation."""
    if isinstance(spec, gym.vector.VectorEnv):
        mode = spec.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if AutoresetMode(mode) != AutoresetMode.SAME_STEP:
            raise EnvError("critic needs vector envs with autoreset_mode=SAME_STEP (got "
                           f"{AutoresetMode(mode).value}); build it with "
                           "vector_kwargs={'autoreset_mode': gymnasium.vector.AutoresetMode.SAME_STEP}, "
                           "or pass the env id / a callable and let critic build it")
        if spec.num_envs != num_envs:
            raise EnvError(f"the vector env has {spec.num_envs} sub-envs but num_envs={num_envs}")
        return spec
    if isinstance(spec, gym.Env):
        if num_envs != 1:
            raise EnvError("a gymnasium.Env instance can back only num_envs=1; pass an env id or a callable "
                           "for several envs")
        env = spec
        fns = [lambda: env]
    else:
        if isinstance(spec, str):
            check_env_id(spec, allow_import)
        elif not callable(spec):
            raise EnvError(_not_env_message(spec))
        fns = [(lambda: make_env(spec, allow_import=allow_import)) for _ in range(num_envs)]
    native = None
    if (vectorization == "native" or (vectorization == "auto" and num_envs >= NATIVE_FROM)) and isinstance(spec, str):
        from critic.envs.vector import native_vector_env
        native = native_vector_env(spec, num_envs)
    if vectorization == "native" and native is None:
        raise EnvError(f"vectorization='native' needs an env with a vectorised implementation critic can "
                       f"step with same-step autoreset (CartPole-v0/v1 with default kwargs); {short_spec(spec)} "
                       "has none: use 'auto' (native where there is one, else sync), 'sync' or 'async'")
    if native is not None:
        venv = native
        venv.reset(seed=seed)  # seeds the one generator of every sub-env
    elif vectorization == "async":
        venv = gym.vector.AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    else:
        from critic.envs.vector import LeanSyncVectorEnv
        venv = LeanSyncVectorEnv(fns)
    # Every space's RNG is seeded (sub-env i with seed + i): an unseeded space draws its RNG from
    # OS entropy the first time anything touches it, which makes runs (and resumes) differ.
    for i, env in enumerate(getattr(venv, "envs", ())):
        env.action_space.seed(seed + i)
        env.observation_space.seed(seed + i)
    venv.single_observation_space.seed(seed)
    venv.single_action_space.seed(seed)
    venv.observation_space.seed(seed)
    venv.action_space.seed(seed)
    return venv


SUPPORTED_OBS = ("Box (vectors, or images as (C,H,W)/(H,W,C) uint8), and Dict/Tuple of Box, Discrete, MultiBinary "
                 "and MultiDiscrete nested one level at most")
SUPPORTED_ACT = "Discrete, MultiDiscrete, MultiBinary, Box"
# Which algorithms take each action space, for the error that refuses one.
ALGOS_FOR_ACTIONS = {
    "Discrete": "A2C, A3C, ACER, PPO and SAC (discrete)",
    "MultiDiscrete": "A2C, A3C and PPO",
    "MultiBinary": "A2C, A3C and PPO",
    "Box": "A2C, A3C, PPO, DDPG, TD3 and SAC",
}


def check_spaces(obs_space: gym.Space, act_space: gym.Space, allowed_actions: tuple[type, ...] | None = None) -> None:
    """Fail at construction for spaces critic cannot handle, naming the space and what works."""
    if isinstance(obs_space, (gym.spaces.Dict, gym.spaces.Tuple)):
        from critic.envs.packing import Layout

        Layout(obs_space)  # raises for the subspaces critic cannot take
        return check_spaces(gym.spaces.Box(0, 255, (1,), np.uint8), act_space, allowed_actions)
    if not isinstance(obs_space, gym.spaces.Box):
        raise EnvError(f"unsupported observation space {obs_space!r}; supported: {SUPPORTED_OBS}")
    if len(obs_space.shape) == 0 or len(obs_space.shape) > 3:
        raise EnvError(f"unsupported observation shape {obs_space.shape}; supported: {SUPPORTED_OBS}")
    allowed = allowed_actions or (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary,
                                  gym.spaces.Box)
    if not isinstance(act_space, allowed):
        names = ", ".join(a.__name__ for a in allowed)
        kind = type(act_space).__name__
        who = (f"; {kind} actions are taken by {ALGOS_FOR_ACTIONS[kind]}" if kind in ALGOS_FOR_ACTIONS
               else f"; critic's algorithms take {SUPPORTED_ACT}")
        raise EnvError(f"unsupported action space {act_space!r}; this algorithm supports: {names}{who}")
    if isinstance(act_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)) and np.any(np.asarray(act_space.start) != 0):
        # Categorical policies emit actions 0..n-1; a shifted space would receive invalid actions.
        raise EnvError(f"unsupported action space {act_space!r}: a non-zero start is not supported "
                       "(critic's policies emit actions from 0); wrap the env to shift its actions")
    if isinstance(act_space, gym.spaces.Box):
        if len(act_space.shape) != 1:
            raise EnvError(f"unsupported action space {act_space!r}: Box actions must be 1-D")
        if not (np.all(np.isfinite(act_space.low)) and np.all(np.isfinite(act_space.high))):
            raise EnvError(f"action space {act_space!r} is unbounded; critic needs finite low/high bounds")
        if np.any(act_space.low >= act_space.high):
            raise EnvError(f"action space {act_space!r} has low >= high in some dimension")
