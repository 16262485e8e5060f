"""Environment state for exact resume: capture an env (or vector env) mid-episode as JSON, and
put it back into a freshly built env of the same construction.

Gymnasium has no state API, so this walks the wrapper chain (``env``, ``env.env``, ... down to
the unwrapped env) and records each layer's instance attributes: NumPy arrays and scalars,
plain Python values, containers of them, NumPy ``Generator`` states (the env's ``np_random``)
and the RNG state of every space (``action_space.sample()`` draws from it). MuJoCo's ``MjData``
is recorded through MuJoCo's own full integration state (``mj_getState``) plus its arrays; the
``MjModel`` is constant. The Atari emulator is recorded with the ALE's own serialised state
(RNG included). Rendering objects and callables are constants.

An env holding anything else (a Box2D world, a socket, a simulator handle,
a subprocess of ``AsyncVectorEnv``) is *not restorable*: :func:`capture` returns ``None`` and
the reason, and a resumed run starts fresh episodes there (documented in docs/reliability.md).
An env may also define ``get_state() -> dict`` and ``set_state(dict)`` (JSON-safe values) on
its unwrapped class; then those are used for that layer instead of the attribute walk.

Nothing here ever unpickles or imports: decoding only builds NumPy arrays, scalars, lists,
tuples, deques and dicts, and restores states into objects that already exist.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

_RENDER_ATTRS = frozenset({"screen", "clock", "surf", "viewer", "renderer", "mujoco_renderer", "window",
                           "_viewers", "isopen", "render_mode", "metadata", "spec", "_cached_spec",
                           "_action_set"})  # (ALE: the constant list of the game's actions)
def _constant_types() -> tuple[type, ...]:
    from critic.envs.packing import Layout

    return (gym.envs.registration.EnvSpec, Layout)


_CONSTANT_TYPES: tuple[type, ...] = _constant_types()


class NotRestorable(Exception):
    """The env holds state this module cannot capture (the message says which attribute)."""


# ----------------------------------------------------------------------------- values

def encode_value(v: Any, where: str) -> Any:
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float):
        return {"t": "float", "v": v.hex()}  # exact, and NaN / inf survive JSON
    if isinstance(v, np.ndarray):
        if v.dtype == object or v.dtype.fields is not None:
            raise NotRestorable(f"{where} is an array of dtype {v.dtype}")
        return {"t": "nd", "dtype": v.dtype.str, "shape": list(v.shape), "hex": v.tobytes().hex()}
    if isinstance(v, np.generic):
        return {"t": "np", "dtype": v.dtype.str, "hex": v.tobytes().hex()}
    if isinstance(v, np.random.Generator):
        return {"t": "gen", "state": encode_value(v.bit_generator.state, where)}
    if isinstance(v, np.random.RandomState):
        return {"t": "rs", "state": encode_value(v.get_state(legacy=False), where)}
    if isinstance(v, gym.Space):
        rng = v._np_random  # None until first used
        return {"t": "space", "rng": None if rng is None else encode_value(rng.bit_generator.state, where)}
    if isinstance(v, deque):
        return {"t": "deque", "maxlen": v.maxlen, "items": [encode_value(x, where) for x in v]}
    if isinstance(v, tuple):
        return {"t": "tuple", "items": [encode_value(x, where) for x in v]}
    if isinstance(v, list):
        return {"t": "list", "items": [encode_value(x, where) for x in v]}
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            raise NotRestorable(f"{where} is a dict with non-string keys")
        return {"t": "dict", "items": {k: encode_value(x, f"{where}[{k!r}]") for k, x in v.items()}}
    raise NotRestorable(f"{where} is a {type(v).__module__}.{type(v).__qualname__}")


def decode_value(d: Any, current: Any = None) -> Any:
    """A value from its encoding; Generators and spaces are restored *into* ``current``."""
    if d is None or isinstance(d, (bool, str, int)):
        return d
    t = d["t"]
    if t == "float":
        return float.fromhex(d["v"])
    if t == "nd":
        return np.frombuffer(bytes.fromhex(d["hex"]), dtype=_plain_dtype(d["dtype"])).reshape(d["shape"]).copy()
    if t == "np":
        return np.frombuffer(bytes.fromhex(d["hex"]), dtype=_plain_dtype(d["dtype"]))[0]
    if t == "gen":
        state = decode_value(d["state"])
        gen = current if isinstance(current, np.random.Generator) else _new_generator(state["bit_generator"])
        gen.bit_generator.state = state
        return gen
    if t == "rs":
        rs = current if isinstance(current, np.random.RandomState) else np.random.RandomState()
        rs.set_state(decode_value(d["state"]))
        return rs
    if t == "space":
        if not isinstance(current, gym.Space):
            raise NotRestorable("a space in the checkpoint is not a space in this env")
        if d["rng"] is not None:
            state = decode_value(d["rng"])
            current.np_random.bit_generator.state = state
        return current
    if t == "deque":
        return deque((decode_value(x) for x in d["items"]), maxlen=d["maxlen"])
    if t == "tuple":
        return tuple(decode_value(x) for x in d["items"])
    if t == "list":
        return [decode_value(x) for x in d["items"]]
    if t == "dict":
        return {k: decode_value(x) for k, x in d["items"].items()}
    raise NotRestorable(f"unknown value tag {t!r}")


def _plain_dtype(name: str) -> np.dtype:
    dt = np.dtype(name)
    if dt.kind not in "biufcSU" or dt.fields is not None:  # never object arrays from a file
        raise NotRestorable(f"refusing an array of dtype {name!r}")
    return dt


def _new_generator(name: str) -> np.random.Generator:
    bitgens = {"PCG64": np.random.PCG64, "PCG64DXSM": np.random.PCG64DXSM, "MT19937": np.random.MT19937,
               "Philox": np.random.Philox, "SFC64": np.random.SFC64}
    if name not in bitgens:
        raise NotRestorable(f"unknown bit generator {name!r}")
    return np.random.Generator(bitgens[name]())


# ----------------------------------------------------------------------------- layers

def _is_constant(name: str, v: Any) -> bool:
    if name in _RENDER_ATTRS or isinstance(v, _CONSTANT_TYPES):
        return True
    if callable(v) and not isinstance(v, (gym.Env, gym.Space, np.ndarray, np.random.Generator)):
        return True  # functions, methods, classes: code, not state
    mod = type(v).__module__ or ""
    return mod.startswith("mujoco") and type(v).__name__ == "MjModel" or mod.startswith("pygame")


def _mujoco_arrays(data: Any) -> dict[str, np.ndarray]:
    out = {}
    for k in dir(data):
        if k.startswith("_"):
            continue
        try:
            v = getattr(data, k)
        except Exception:  # pragma: no cover - some accessors need a model option
            continue
        if isinstance(v, np.ndarray) and v.dtype != object:
            out[k] = v
    return out


def _mujoco_state(data: Any, model: Any) -> dict:
    """MuJoCo's full integration state plus every array of ``MjData``: envs read derived
    quantities left over from the last step (Ant's reward uses ``xpos`` of the previous
    forward pass), so recomputing them with ``mj_forward`` would not continue bit-identically."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    buf = np.empty(mujoco.mj_stateSize(model, spec), dtype=np.float64)
    mujoco.mj_getState(model, data, buf, spec)
    return {"t": "mjdata", "state": encode_value(buf, "MjData"),
            "arrays": {k: encode_value(v, f"MjData.{k}") for k, v in _mujoco_arrays(data).items()}}


def _set_mujoco_state(data: Any, model: Any, enc: dict) -> None:
    import mujoco

    buf = decode_value(enc["state"])
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    if buf.size != mujoco.mj_stateSize(model, spec):
        raise NotRestorable("the MuJoCo state size differs (another model)")
    arrays = _mujoco_arrays(data)
    saved = {k: decode_value(v) for k, v in enc["arrays"].items()}
    mujoco.mj_setState(model, data, buf, spec)
    for k, v in saved.items():
        # Arrays sized by the model are restored; those sized by the last step's contacts and
        # constraints (efc_*, island_*, ...) are scratch that the next mj_step rebuilds.
        if k in arrays and arrays[k].shape == v.shape:
            arrays[k][...] = v


def _layer_state(layer: Any, name: str) -> dict:
    if hasattr(type(layer), "get_state") and hasattr(type(layer), "set_state") and not isinstance(layer, gym.Wrapper):
        return {"class": type(layer).__qualname__, "custom": encode_value(layer.get_state(), f"{name}.get_state()")}
    attrs = {}
    try:
        items = list(vars(layer).items())
    except TypeError:
        raise NotRestorable(f"{name} has no instance dict") from None
    for k, v in items:
        if k == "env" and isinstance(layer, (gym.Wrapper, gym.vector.VectorWrapper)):
            continue  # the next layer of the chain
        if k == "envs" and isinstance(v, (list, tuple)) and all(isinstance(e, gym.Env) for e in v):
            attrs[k] = {"t": "envs", "items": [capture_env(e) for e in v]}
            continue
        if _is_constant(k, v):
            continue
        if type(v).__name__ == "MjData" and (type(v).__module__ or "").startswith("mujoco"):
            attrs[k] = _mujoco_state(v, layer.model)
            continue
        if type(v).__name__ == "ALEInterface":  # the Atari emulator, RNG included (sticky actions)
            attrs[k] = {"t": "ale", "hex": v.cloneState(include_rng=True).serialize().hex()}
            continue
        attrs[k] = encode_value(v, f"{name}.{k}")
    return {"class": type(layer).__qualname__, "attrs": attrs}


def _set_layer_state(layer: Any, st: dict, name: str) -> None:
    if st["class"] != type(layer).__qualname__:
        raise NotRestorable(f"{name} is a {type(layer).__qualname__}, the checkpoint's was a {st['class']}")
    if "custom" in st:
        layer.set_state(decode_value(st["custom"]))
        return
    for k, enc in st["attrs"].items():
        declared = getattr(type(layer), k, None)
        if k.startswith("__") or callable(declared) or isinstance(declared, property):
            raise NotRestorable(f"{name}: refusing to set {k!r} (not a data attribute)")
        current = vars(layer).get(k, getattr(type(layer), k, None))
        if isinstance(enc, dict) and enc.get("t") == "envs":
            if not isinstance(current, (list, tuple)) or len(current) != len(enc["items"]):
                raise NotRestorable(f"{name}.{k}: another number of sub-envs")
            for e, s in zip(current, enc["items"]):
                restore_env(e, s)
        elif isinstance(enc, dict) and enc.get("t") == "ale":
            import ale_py

            current.restoreState(ale_py.ALEState(bytes.fromhex(enc["hex"])))
        elif isinstance(enc, dict) and enc.get("t") == "mjdata":
            _set_mujoco_state(current, layer.model, enc)
        else:
            value = decode_value(enc, current)
            if value is not current:
                vars(layer)[k] = value  # the instance attribute itself, never a property setter


def _chain(env: Any) -> list[Any]:
    layers = [env]
    while isinstance(layers[-1], (gym.Wrapper, gym.vector.VectorWrapper)):
        layers.append(layers[-1].env)
    return layers


# ----------------------------------------------------------------------------- public

def capture_env(env: gym.Env | gym.vector.VectorEnv) -> dict:
    """The state of ``env`` and every layer under it; raises :class:`NotRestorable`."""
    if isinstance(env, gym.vector.AsyncVectorEnv):
        raise NotRestorable("AsyncVectorEnv: the sub-envs live in other processes")
    return {"layers": [_layer_state(layer, f"{type(layer).__name__}") for layer in _chain(env)]}


def restore_env(env: gym.Env | gym.vector.VectorEnv, state: dict) -> None:
    """Put a :func:`capture_env` state into ``env`` (built the same way); raises
    :class:`NotRestorable` when the structure differs (nothing is guaranteed restored then)."""
    layers = _chain(env)
    if len(layers) != len(state["layers"]):
        raise NotRestorable(f"the env has {len(layers)} wrapper layers, the checkpoint's had {len(state['layers'])}")
    for layer, st in zip(layers, state["layers"]):
        _set_layer_state(layer, st, type(layer).__name__)


def capture(env: Any) -> tuple[dict | None, str | None]:
    """``(state, None)``, or ``(None, reason)`` for an env whose state cannot be captured."""
    try:
        return capture_env(env), None
    except NotRestorable as e:
        return None, str(e)
