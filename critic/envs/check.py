"""Probe an environment for the mistakes that otherwise surface deep inside training.

:func:`check_env` builds one env (from an id, a callable or an instance, through
:func:`critic.envs.make.make_env`), checks its spaces, then resets it and takes ``probe_steps``
seeded random actions, resetting at every episode end. It returns a list of :class:`Finding`:
each has a level (``"error"``: critic cannot train on this env; ``"warning"``: it can, but
something is probably wrong), the field it concerns (``observation_space``, ``action_space``,
``reset``, ``step``, ``observation``, ``reward``, ``terminated``, ``truncated``, ``info``; ``env``
if the probe itself broke) and a one-line message. :func:`check_env_or_raise` raises :class:`EnvCheckError` (an
:class:`EnvError`) for the errors and emits :class:`EnvCheckWarning` for the warnings.

What is checked:

* spaces: observation spaces critic cannot take (Dict, Tuple, nested, Discrete: with the
  ``FlattenObservation`` fix where it applies), action spaces it cannot take (Dict, Tuple, ...),
  an action Box that is unbounded, inverted (low > high) or flat (low == high), and that
  ``action_space.sample()`` works and stays inside the space (the same rules as
  :func:`critic.envs.make.check_spaces`, which agents apply at construction);
* the API: ``reset`` returning ``(obs, info)`` and accepting ``seed=``, ``step`` returning the
  5-tuple ``(obs, reward, terminated, truncated, info)`` (an old Gym 4-tuple is recognised even
  behind Gymnasium's wrappers, whose own error would be an opaque unpacking failure), and
  ``step`` accepting sampled actions;
* values: observations of the wrong type, shape or dtype (errors) or outside the space's
  bounds (warning), NaN/inf in observations or rewards, non-scalar or non-numeric rewards
  (errors), ``terminated``/``truncated`` that are ints (warning) or not booleans at all
  (error), ``info`` that is not a dict (error).

Gymnasium's ``PassiveEnvChecker`` (added by ``gym.make``) is switched off during the probe and
its warnings are silenced, so the messages the user sees are these ones; its flags are restored
afterwards. Warnings the env itself emits during the probe are silenced too.

Cost: building the env (nothing when an instance is given), a deep copy of the action space
(the probe samples from its own seeded copy, so the env's space RNG is not advanced), one
``reset`` and ``probe_steps`` calls to ``step`` plus the resets at episode ends, each followed by
a few NumPy checks on one observation (microseconds). ``probe_steps=0`` does the space checks
and one reset only; when the action space is unusable nothing is stepped. Measured on a laptop
CPU, probing an instance with ``probe_steps=2``: CartPole-v1 0.8 ms, HalfCheetah-v5 1.2 ms,
ALE/Pong-v5 110 ms (its reset plays no-op frames); building the env from an id adds 2 ms,
100 ms and 120 ms. 300 steps of CartPole-v1, build included, take about 10 ms.

An env handed in as an instance (or the first sub-env of a vector env) is reset with ``seed``
and stepped in place: reset it before use, and note that wrappers counting steps see the
probe's. An env built here from an id or a callable is closed afterwards.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import gymnasium as gym
import numpy as np

from critic.envs.make import EnvError, EnvSpec, check_spaces, make_env

LEVELS = ("error", "warning")
DEFAULT_PROBE_STEPS = 300


@dataclass(frozen=True)
class Finding:
    level: str
    """``"error"`` (critic cannot train on the env) or ``"warning"`` (it can; probably a bug)."""
    field: str
    """What it concerns: observation_space, action_space, reset, step, observation, reward,
    terminated, truncated, info, or env (the probe itself failed)."""
    message: str
    """One line."""

    def __str__(self) -> str:
        return f"{self.level}: {self.field}: {self.message}"


class EnvCheckError(EnvError):
    """An env failed :func:`check_env`; ``findings`` holds every error (the message lists them)."""

    def __init__(self, findings: list[Finding], name: str = "the environment"):
        self.findings = list(findings)
        n = len(self.findings)
        super().__init__(f"{name} failed {n} check{'s' if n != 1 else ''}: "
                         + "; ".join(f"{f.field}: {f.message}" for f in self.findings))


class EnvCheckWarning(UserWarning):
    """Something in an env that critic can train on but that is probably a bug."""


# ----------------------------------------------------------------------------- public API

def check_env(spec: EnvSpec, *, allow_import: tuple[str, ...] = (), probe_steps: int = DEFAULT_PROBE_STEPS,
              seed: int = 0, allowed_actions: tuple[type, ...] | None = None) -> list[Finding]:
    """Build one env from ``spec`` and probe it; return what is wrong (empty: nothing found).

    ``spec`` is an env id, a callable returning a ``gymnasium.Env``, an env instance, or a vector
    env (its first sub-env is probed when it has an ``envs`` list, as critic's synchronous
    vector env does; otherwise only its spaces are checked). ``probe_steps`` random steps follow
    one reset (0: spaces and one reset only). ``allowed_actions`` narrows the action space
    classes (an algorithm's ``allowed_actions``). Raises :class:`EnvError` only when no env can
    be built (an unknown id, a refused ``module:`` import, a constructor that fails).
    """
    if probe_steps < 0:
        raise ValueError(f"probe_steps must be >= 0, got {probe_steps}")
    out = _Findings()
    env, owned = _build(spec, allow_import)
    try:
        if isinstance(env, gym.vector.VectorEnv):
            _check_spaces(out, env.single_observation_space, env.single_action_space, allowed_actions)
            return out.items
        act_ok = _check_spaces(out, getattr(env, "observation_space", None), getattr(env, "action_space", None),
                               allowed_actions)
        if act_ok and isinstance(getattr(env, "observation_space", None), gym.spaces.Space):
            with _quiet(), _passive_checker_off(env):
                try:
                    _probe(out, env, probe_steps, seed)
                except Exception as e:  # noqa: BLE001 - a report, never a traceback
                    out.error("env", f"the probe stopped on an unexpected {type(e).__name__}: {_one_line(e)}")
        return out.items
    finally:
        if owned:
            try:
                with _quiet():
                    env.close()
            except Exception:  # noqa: BLE001 - a failing close() must not hide the report
                pass


def check_env_or_raise(spec: EnvSpec, *, probe_steps: int = 2, allow_import: tuple[str, ...] = (),
                       seed: int = 0, allowed_actions: tuple[type, ...] | None = None,
                       name: str | None = None) -> list[Finding]:
    """:func:`check_env`, raising :class:`EnvCheckError` (an ``EnvError``, one line listing
    every error) if any error was found, and emitting each warning as an
    :class:`EnvCheckWarning`. Returns the findings (warnings only) otherwise.

    The default ``probe_steps=2`` is meant for agent construction: the space checks, one reset
    and two steps, which for an env already built costs about as much as three env steps.
    """
    findings = check_env(spec, allow_import=allow_import, probe_steps=probe_steps, seed=seed,
                         allowed_actions=allowed_actions)
    errors = [f for f in findings if f.level == "error"]
    if errors:
        raise EnvCheckError(errors, name or _describe(spec))
    for f in findings:
        warnings.warn(f"{_describe(spec)}: {f.field}: {f.message}", EnvCheckWarning, stacklevel=2)
    return findings


# ----------------------------------------------------------------------------- building

def _describe(spec: Any) -> str:
    if isinstance(spec, str):
        return f"env '{spec}'"
    if isinstance(spec, gym.vector.VectorEnv):
        return f"vector env {type(spec).__qualname__}"
    if isinstance(spec, gym.Env):
        return f"env {type(spec.unwrapped).__qualname__}"
    return f"env from {getattr(spec, '__qualname__', None) or type(spec).__qualname__}"


def _build(spec: EnvSpec, allow_import: tuple[str, ...]) -> tuple[Any, bool]:
    if isinstance(spec, gym.vector.VectorEnv):
        envs = getattr(spec, "envs", None)
        if envs and isinstance(envs[0], gym.Env):
            return envs[0], False
        return spec, False
    if isinstance(spec, gym.Env):
        return spec, False
    try:
        with _quiet():
            env = make_env(spec, allow_import=allow_import)
    except (EnvError, gym.error.DependencyNotInstalled):
        raise
    except ModuleNotFoundError as e:
        raise EnvError(f"could not build {_describe(spec)}: {_one_line(e)}") from e
    except gym.error.Error as e:
        msg = _one_line(e)
        if isinstance(spec, str) and ":" in spec:
            module, name = spec.split(":", 1)
            msg += (f" (module '{module}' was imported, but Gymnasium's 'module:EnvId' form then looks '{name}' "
                    f"up in the registry: it must be an id that '{module}' registers with gymnasium.register, "
                    "not a class name)")
        raise EnvError(f"could not build {_describe(spec)}: {msg}") from e
    except Exception as e:  # noqa: BLE001 - any constructor failure becomes one clear line
        raise EnvError(f"could not build {_describe(spec)}: the constructor raised {type(e).__name__}: "
                       f"{_one_line(e)}") from e
    return env, True


class _quiet:
    """Silence warnings (Gymnasium's env checker and the env's own) inside the probe."""

    def __enter__(self):
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


class _passive_checker_off:
    """Mark every PassiveEnvChecker in the wrapper chain as done (so it only passes calls on);
    restore the flags afterwards."""

    FLAGS = ("checked_reset", "checked_step", "checked_data_reuse")

    def __init__(self, env: gym.Env):
        self.saved: list[tuple[Any, dict[str, Any]]] = []
        for layer in _chain(env):
            if isinstance(layer, gym.wrappers.PassiveEnvChecker):
                self.saved.append((layer, {k: getattr(layer, k) for k in self.FLAGS if hasattr(layer, k)}))

    def __enter__(self):
        for layer, flags in self.saved:
            for k in flags:
                setattr(layer, k, True)
        return self

    def __exit__(self, *exc):
        for layer, flags in self.saved:
            for k, v in flags.items():
                setattr(layer, k, v)
        return False


def _chain(env: Any) -> Iterator[Any]:
    seen = 0
    while env is not None and seen < 100:
        yield env
        env = getattr(env, "env", None) if isinstance(env, gym.Wrapper) else None
        seen += 1


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] + ("..." if len(text) > 300 else "")


class _Findings:
    def __init__(self) -> None:
        self.items: list[Finding] = []
        self._keys: set[tuple[str, str, str]] = set()

    def add(self, level: str, field: str, message: str, key: str | None = None) -> None:
        """Record a finding once per (level, field, key): the first occurrence names its step."""
        k = (level, field, key or message)
        if k in self._keys:
            return
        self._keys.add(k)
        self.items.append(Finding(level, field, " ".join(message.split())))  # one line, even for big spaces

    def error(self, field: str, message: str, key: str | None = None) -> None:
        self.add("error", field, message, key)

    def warning(self, field: str, message: str, key: str | None = None) -> None:
        self.add("warning", field, message, key)

    @property
    def has_errors(self) -> bool:
        return any(f.level == "error" for f in self.items)


# ----------------------------------------------------------------------------- spaces

def _check_spaces(out: _Findings, obs_space: Any, act_space: Any, allowed_actions: tuple[type, ...] | None) -> bool:
    """Static checks; returns whether the probe should step the env: not when the action space
    is unusable (stepping with its samples would only add noise to the report)."""
    _check_obs_space(out, obs_space)
    before = len(out.items)
    sampleable = _check_act_space(out, act_space, allowed_actions)
    return sampleable and not any(f.level == "error" for f in out.items[before:])


def _check_obs_space(out: _Findings, space: Any) -> None:
    if not isinstance(space, gym.spaces.Space):
        out.error("observation_space", "the env defines none (set it in __init__)" if space is None else
                  f"is {type(space).__name__} {_short(space)}, not a gymnasium.spaces.Space")
        return
    if isinstance(space, gym.spaces.Box):
        try:
            check_spaces(space, gym.spaces.Discrete(2))
        except EnvError as e:
            out.error("observation_space", str(e))
            return
        low, high = np.asarray(space.low), np.asarray(space.high)
        if np.any(low > high):
            i = _first(low > high)
            out.warning("observation_space", f"{space!r} has low > high at index {i} "
                        f"({low[i]} > {high[i]}): no observation can be inside it")
        return
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        try:
            check_spaces(space, gym.spaces.Discrete(2))
        except EnvError as e:
            out.error("observation_space", str(e))
        return
    try:
        check_spaces(space, gym.spaces.Discrete(2))
        msg = f"unsupported observation space {space!r}"  # (check_spaces takes only Box; kept for safety)
    except EnvError as e:
        msg = str(e)
    if not getattr(space, "is_np_flattenable", False):
        msg += (" (it has parts of variable size, so FlattenObservation cannot help: "
                "encode it into a fixed-size Box)")
    else:
        msg += f" (FlattenObservation turns a {type(space).__name__} space into a Box)"
    out.error("observation_space", msg)


def _first(mask: np.ndarray) -> Any:
    idx = np.argwhere(mask)[0]
    return int(idx[0]) if len(idx) == 1 else tuple(int(i) for i in idx)


def _check_act_space(out: _Findings, space: Any, allowed_actions: tuple[type, ...] | None) -> bool:
    if not isinstance(space, gym.spaces.Space):
        out.error("action_space", "the env defines none (set it in __init__)" if space is None else
                  f"is {type(space).__name__} {_short(space)}, not a gymnasium.spaces.Space")
        return False
    box_bad = False
    if isinstance(space, gym.spaces.Box):
        low, high = np.asarray(space.low), np.asarray(space.high)
        if low.shape != space.shape or high.shape != space.shape:
            out.error("action_space", f"{space!r}: low/high shapes {low.shape}/{high.shape} differ from "
                      f"the space's shape {space.shape}")
            return False
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            i = _first(~(np.isfinite(low) & np.isfinite(high)))
            out.error("action_space", f"{space!r} is unbounded (low={low[i]}, high={high[i]} at index {i}); "
                      "critic squashes actions into [low, high] and needs finite bounds: give the real limits "
                      "(or -1, 1 and rescale inside the env)")
            box_bad = True
        if np.any(low > high):
            i = _first(low > high)
            out.error("action_space", f"{space!r} is inverted: low > high at index {i} ({low[i]} > {high[i]})")
            box_bad = True
        if np.any(low == high):
            i = _first(low == high)
            out.error("action_space", f"{space!r} is flat: low == high == {low[i]} at index {i}, "
                      "so that action dimension cannot vary; drop it from the space")
            box_bad = True
    try:
        check_spaces(gym.spaces.Box(0, 1, (1,), np.float32), space, allowed_actions)
    except EnvError as e:
        msg = str(e)
        if not box_bad or msg.startswith("unsupported"):  # not the bounds problems already named
            out.error("action_space", msg)
    if box_bad:
        return False  # sampling an unbounded or inverted Box fails or means nothing: no probe
    try:
        sampler = copy.deepcopy(space)
        sampler.seed(0)
        a = sampler.sample()
    except Exception as e:  # noqa: BLE001
        out.error("action_space", f"action_space.sample() raised {type(e).__name__}: {_one_line(e)}")
        return False
    try:
        inside = bool(space.contains(a))
    except Exception as e:  # noqa: BLE001
        out.error("action_space", f"action_space.contains(action_space.sample()) raised "
                  f"{type(e).__name__}: {_one_line(e)}")
        return True
    if not inside:
        out.error("action_space", f"action_space.sample() returned {a!r}, which action_space.contains() rejects")
    return True


# ----------------------------------------------------------------------------- probe

_OLD_STEP = ("returned a 4-tuple (obs, reward, done, info): the old Gym step API; return "
             "(obs, reward, terminated, truncated, info) as gymnasium.Env does")
_OLD_RESET = ("returned only an observation ({what}), not (obs, info): the old Gym reset API; "
              "return (obs, {{}}) as gymnasium.Env does")


def _probe(out: _Findings, env: gym.Env, probe_steps: int, seed: int) -> None:
    space = env.observation_space
    sampler = copy.deepcopy(env.action_space)
    sampler.seed(seed)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)

    env, legacy, obs = _first_reset(out, env, seed)
    if obs is _FAILED:
        return
    _check_obs(out, obs, space, "reset")
    for t in range(1, probe_steps + 1):
        action = sampler.sample()
        if discrete:
            action = int(action)  # what critic's vector env passes
        try:
            result = env.step(action)
        except Exception as e:  # noqa: BLE001
            _step_failed(out, env, action, e, t)
            return
        if not isinstance(result, tuple) or len(result) != 5:
            if isinstance(result, tuple) and len(result) == 4:
                out.error("step", _OLD_STEP)
            else:
                what = f"a {len(result)}-tuple" if isinstance(result, tuple) else type(result).__name__
                out.error("step", f"returned {what}, not (obs, reward, terminated, truncated, info)")
            return
        obs, reward, terminated, truncated, info = result
        where = f"step {t}"
        _check_obs(out, obs, space, where)
        _check_reward(out, reward, where)
        term = _check_flag(out, "terminated", terminated, where)
        trunc = _check_flag(out, "truncated", truncated, where)
        if not isinstance(info, dict):
            out.error("info", f"step returned info of type {type(info).__name__}; it must be a dict", key="type")
        if term is None or trunc is None:
            return  # cannot tell whether the episode ended
        if term or trunc:
            obs = _reset(out, env, None, f"reset after the episode ended at step {t}", legacy)
            if obs is _FAILED:
                return
            _check_obs(out, obs, space, f"the reset after step {t}")


_FAILED = object()


def _first_reset(out: _Findings, env: gym.Env, seed: int) -> tuple[gym.Env, bool, Any]:
    """The first reset; an old ``reset(self)`` without keywords is reported, then the probe
    goes on with the unwrapped env (Gymnasium's wrappers always pass the keywords) so that the
    rest of an old-API env is checked too."""
    try:
        return env, False, _reset(out, env, seed, "reset", legacy=False, raise_signature=True)
    except _OldResetSignature:
        out.error("reset", "does not accept the seed/options keywords (the old Gym reset API); define "
                  "reset(self, *, seed=None, options=None), call super().reset(seed=seed) and return (obs, info)")
    inner = env.unwrapped
    return inner, True, _reset(out, inner, None, "reset", legacy=True)


class _OldResetSignature(Exception):
    pass


def _reset(out: _Findings, env: gym.Env, seed: int | None, where: str, legacy: bool = False,
           raise_signature: bool = False) -> Any:
    try:
        result = env.reset() if legacy else env.reset(seed=seed)
    except TypeError as e:
        if raise_signature and "unexpected keyword argument" in str(e):
            raise _OldResetSignature() from e
        out.error("reset", f"{where} raised TypeError: {_one_line(e)}")
        return _FAILED
    except Exception as e:  # noqa: BLE001
        out.error("reset", f"{where} raised {type(e).__name__}: {_one_line(e)}")
        return _FAILED
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        return result[0]
    if isinstance(result, tuple) and len(result) == 2:
        out.error("reset", f"returned (obs, {type(result[1]).__name__}); the info must be a dict", key="info")
        return result[0]
    what = (f"an array of shape {result.shape}" if isinstance(result, np.ndarray)
            else f"type {type(result).__name__}")
    out.error("reset", _OLD_RESET.format(what=what), key="old")
    return result


def _step_failed(out: _Findings, env: gym.Env, action: Any, e: Exception, t: int) -> None:
    """``step`` raised: tell an old 4-tuple API (which Gymnasium's wrappers fail to unpack)
    apart from a plain failure."""
    inner = env.unwrapped
    if inner is not env and isinstance(e, (ValueError, TypeError)) and "unpack" in str(e):
        try:
            raw = inner.step(action)
        except Exception:  # noqa: BLE001
            raw = None
        if isinstance(raw, tuple) and len(raw) == 4:
            out.error("step", f"{type(inner).__name__}.step {_OLD_STEP} (the wrapper around it failed with "
                      f"{type(e).__name__}: {_one_line(e)})")
            return
    out.error("step", f"step {t} raised {type(e).__name__} for the sampled action {action!r}: {_one_line(e)}")


def _check_obs(out: _Findings, obs: Any, space: gym.Space, where: str) -> None:
    if not isinstance(space, gym.spaces.Box):
        try:
            ok = space.contains(obs)
        except Exception:  # noqa: BLE001
            ok = False
        if not ok:
            out.warning("observation", f"the observation from {where} is not inside observation_space {space!r}",
                        key="contains")
        return
    converted = not isinstance(obs, np.ndarray)
    if converted:
        out.error("observation", f"the observation from {where} is a {type(obs).__name__}, expected a numpy "
                  f"array of shape {space.shape} and dtype {space.dtype} (observation_space)", key="type")
        try:
            obs = np.asarray(obs)
        except Exception:  # noqa: BLE001
            return
        if obs.dtype == object:
            return
    if obs.shape != space.shape:
        out.error("observation", f"the observation from {where} has shape {obs.shape}, but observation_space "
                  f"has shape {space.shape}", key="shape")
        return
    if obs.dtype != space.dtype and not converted:  # (a list's dtype is NumPy's guess)
        if obs.dtype.kind in "biuf" and np.can_cast(obs.dtype, space.dtype, "safe"):
            out.warning("observation", f"the observation from {where} has dtype {obs.dtype}, observation_space "
                        f"has {space.dtype} (converted without loss, but return {space.dtype})", key="dtype")
        else:
            out.error("observation", f"the observation from {where} has dtype {obs.dtype}, but observation_space "
                      f"has dtype {space.dtype}", key="dtype")
            if obs.dtype.kind not in "biuf":
                return
    if obs.dtype.kind == "f" or obs.dtype.kind == "c":
        bad = ~np.isfinite(obs)
        if bad.any():
            i = _first(bad)
            out.error("observation", f"the observation from {where} holds {obs[i]} at index {i} "
                      "(NaN/inf observations break training)", key="finite")
            return
    low, high = np.asarray(space.low), np.asarray(space.high)
    outside = (obs < low) | (obs > high)
    if outside.any():
        i = _first(outside)
        out.warning("observation", f"the observation from {where} is outside observation_space at index {i}: "
                    f"{obs[i]} not in [{low[i]}, {high[i]}] (declare the true bounds, or inf)", key="bounds")


def _check_reward(out: _Findings, reward: Any, where: str) -> None:
    if isinstance(reward, (bool, np.bool_)):
        out.warning("reward", f"the reward from {where} is a bool ({reward}); return a float", key="bool")
        return
    if isinstance(reward, np.ndarray):
        if reward.ndim != 0:
            out.error("reward", f"the reward from {where} is an array of shape {reward.shape}; it must be a "
                      "scalar (a float)", key="shape")
            return
        reward = reward[()]
    if not isinstance(reward, (int, float, np.integer, np.floating)) or isinstance(reward, (bool, np.bool_)):
        out.error("reward", f"the reward from {where} is {type(reward).__name__} {_short(reward)}; it must be a "
                  "number (a float)", key="type")
        return
    if not np.isfinite(float(reward)):
        out.error("reward", f"the reward from {where} is {float(reward)} (NaN/inf rewards break training)",
                  key="finite")


def _check_flag(out: _Findings, field: str, value: Any, where: str) -> bool | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        out.warning(field, f"{field} from {where} is {type(value).__name__} {value}; return a bool", key="int")
        return bool(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype == bool:
        return bool(value)
    what = (f"an array of shape {value.shape}" if isinstance(value, np.ndarray)
            else f"{type(value).__name__} {_short(value)}")
    out.error(field, f"{field} from {where} is {what}; it must be a bool", key="type")
    return None


def _short(x: Any) -> str:
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."
