"""Property-based tests of the typed configs and of ``--set`` parsing (hypothesis).

Every value, valid or hostile, given to ``Config.from_dict`` either yields a config of the
declared field types that round-trips, or raises a one-line :class:`ConfigError` naming the
field; the CLI turns every bad ``--set`` item into one ``critic: error: ...`` line and exit
status 2, never a traceback. No test here trains or builds an environment.
"""

from __future__ import annotations

import json
import math
import re
import types
import typing
from dataclasses import fields

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from critic.algos import registry
from critic.config import ConfigError, dump_yaml, parse_set, short_repr

ALGO_NAMES = sorted(registry.ALGOS)
CONFIGS = {name: registry.get_algo(name).config_cls for name in ALGO_NAMES}
HINTS = {cls: typing.get_type_hints(cls) for cls in CONFIGS.values()}

# critic.nn.set_threads turns on torch.set_flush_denormal for the whole process, so a test that
# built an agent earlier in the same worker leaves subnormal floats unrepresentable (even parsing
# "5e-324" gives 0.0): the strategies draw no subnormals, and the sweep alone has one (no parsing).
SUBNORMAL = 5e-324
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLI = settings(max_examples=150, deadline=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# The string choices the configs know (their check_choice sets) plus near misses.
CHOICES = ["sync", "async", "cpu", "cuda", "cuda:0", "cuda:1", "mps", "auto", "tanh", "relu", "elu", "gelu",
           "adam", "rmsprop", "constant", "linear", "mse", "huber", "local", "ray", "gaussian", "ou",
           "spawn", "forkserver", "fork", "auto:6379", "cudax", "cuda:", "cuda:-1", "cuda:abc", "CPU", "cpu ",
           "cuda:99999999999999999999", "cuda:01", "Tanh", "sgd"]
HOSTILE_STRINGS = ["", " ", "1e999", "-1e999", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "0x10", "0b1",
                   "0o7", " 3 ", "3.", ".5", "1_000", "_1", "1__0", "True", "true", "False", "none", "None",
                   "null", "~", "[]", "()", "[1, 2]", "{}", "{'a': 1}", "1,2", ",", "64,x", "1e3", "1e-3",
                   "-1", "-0", "0", "1", "2", "1.5", "-0.0", "9" * 30, "1" + "0" * 400, "1" + "0" * 5000,
                   "12345678901234567891", "18446744073709551616", "ü", "日本語", "\u00a0", "\n", "a\nb",
                   "'", '"', "\\", "\x00", "😀", "１２", "٣", "3\u200b", "=", "a=b"]
HOSTILE_NUMBERS = [math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 1e-300, 10**400, -10**400, 2**63,
                   2**64, 2**64 - 1, 2**32, -1, 0, 1, 2, 10**30, 10**5000, -10**5000]  # 5000 digits: no str()
ODD_VALUES = [None, True, False, [], (), {}, [None], [1.5], ["64"], [True], {"a": 1}, [[64]], object,
              [64, 10**5000], [math.nan], [math.inf, 1]]


def scalars() -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(HOSTILE_STRINGS + HOSTILE_NUMBERS + CHOICES + ODD_VALUES[:3]),
        st.none(), st.booleans(), st.integers(), st.floats(allow_subnormal=False), st.text(max_size=12),
    )


def hostile() -> st.SearchStrategy:
    """Anything a YAML/JSON file or a careless caller could pass: scalars, lists, dicts."""
    return st.one_of(
        scalars(),
        st.sampled_from(ODD_VALUES),
        st.lists(scalars(), max_size=4),
        st.dictionaries(st.text(max_size=4), scalars(), max_size=3),
    )


def _non_none(tp):
    return [a for a in typing.get_args(tp) if a is not type(None)]


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def valid_looking(tp, default) -> st.SearchStrategy:
    """Plausible values for a field of type ``tp``: native values and their --set spellings."""
    if _is_union(tp):
        inner = _non_none(tp)[0]
        return st.one_of(st.none(), st.sampled_from(["none", "None", "null", "NULL"]), valid_looking(inner, None))
    if typing.get_origin(tp) is tuple:
        sizes = st.lists(st.integers(1, 512), min_size=1, max_size=3)
        return st.one_of(sizes, sizes.map(tuple), sizes.map(lambda xs: ",".join(map(str, xs))),
                         sizes.map(lambda xs: str(list(xs))), sizes.map(lambda xs: " , ".join(map(str, xs))))
    if tp is bool:
        return st.one_of(st.booleans(), st.sampled_from([0, 1, "true", "False", "yes", "no", "on", "OFF", "1",
                                                         "0", "TRUE"]))
    if tp is int:
        n = st.integers(0, 10**7) | st.integers(-10, 10) | st.integers(2**62, 2**66)
        return st.one_of(n, n.map(str), n.map(lambda x: f" {x} "), n.map(lambda x: f"{x}.0"),
                         n.map(lambda x: f"{x:_}"), n.map(float), st.sampled_from(["1e3", "2e6"]))
    if tp is float:
        x = st.one_of(st.floats(0, 1, allow_subnormal=False), st.floats(1e-8, 100),
                      st.floats(-10, 10, allow_subnormal=False), st.just(default if default is not None else 0.5))
        return st.one_of(x, x.map(repr), x.map(lambda v: f"{v:e}"), st.integers(-5, 100),
                         st.sampled_from(["1e-3", "3e-4", "0.5", ".5", "1", " 0.99 "]))
    if tp is str:
        return st.one_of(st.sampled_from(CHOICES + ([default] if default else [])), st.text(max_size=8))
    return st.nothing()  # pragma: no cover - every field type is handled above


def conforms(value, tp) -> bool:
    """``value`` has the declared type ``tp`` exactly (bool is not an int, floats are finite)."""
    if _is_union(tp):
        return any(conforms(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if typing.get_origin(tp) is tuple:
        return type(value) is tuple and all(conforms(v, typing.get_args(tp)[0]) for v in value)
    if tp is float:
        return type(value) is float and math.isfinite(value)
    return type(value) is tp


def names_field(msg: str, name: str) -> bool:
    return f"'{name}'" in msg or re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", msg) is not None


def check_outcome(cls, data: dict, files: bool = True) -> None:
    """The property of ``cls.from_dict(data)`` (see the module docstring); ``files``: also
    round-trip through JSON and YAML text."""
    hints = HINTS[cls]
    try:
        cfg = cls.from_dict(data)
    except ConfigError as e:
        msg = str(e)
        assert msg and len(msg.splitlines()) == 1 and "\r" not in msg, f"not one line: {msg!r}"
        assert any(names_field(msg, str(k)) or repr(str(k)) in msg for k in data), \
            f"{msg!r} names none of {list(data)}"
        return
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        assert conforms(v, hints[f.name]), f"{f.name} = {v!r} is not a {hints[f.name]}"
    if cfg.device != "auto":
        torch.device(cfg.device)  # an accepted device string is one torch parses
    d = cfg.to_dict()
    assert cls.from_dict(d) == cfg
    if files:
        assert cls.from_dict(json.loads(json.dumps(d, allow_nan=False))) == cfg
        assert cls.from_dict(yaml.safe_load(dump_yaml(d))) == cfg


# ----------------------------------------------------------------------------- from_dict

@pytest.mark.parametrize("algo", ALGO_NAMES)
@FAST
@given(data=st.data())
def test_one_field_any_value(algo, data):
    cls = CONFIGS[algo]
    hints = HINTS[cls]
    f = data.draw(st.sampled_from(fields(cls)), label="field")
    value = data.draw(st.one_of(valid_looking(hints[f.name], f.default), hostile()), label="value")
    check_outcome(cls, {f.name: value})


@pytest.mark.parametrize("algo", ALGO_NAMES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_several_fields_and_unknown_keys(algo, data):
    """Combinations reach the cross-field checks (rollout vs batch size, buffer vs num_envs...)."""
    cls = CONFIGS[algo]
    hints = HINTS[cls]
    by_name = {f.name: f for f in fields(cls)}
    keys = st.one_of(st.sampled_from(sorted(by_name)), st.text(max_size=10),
                     st.sampled_from(sorted(by_name)).map(lambda n: n[:-1] or "x"))
    chosen = data.draw(st.lists(keys, min_size=1, max_size=5, unique=True), label="keys")
    d = {}
    for k in chosen:
        tp = hints.get(k)
        strat = hostile() if tp is None else st.one_of(valid_looking(tp, None), valid_looking(tp, None), hostile())
        d[k] = data.draw(strat, label=k)
    check_outcome(cls, d)


@pytest.mark.parametrize("algo", ALGO_NAMES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_numeric_set_strings_are_converted_exactly(algo, data):
    """A --set integer is that integer (no float rounding); a float is that float, finite."""
    cls = CONFIGS[algo]
    hints = HINTS[cls]
    numeric = [f.name for f in fields(cls) if hints[f.name] in (int, float)]
    name = data.draw(st.sampled_from(numeric), label="field")
    if hints[name] is int:
        n = data.draw(st.integers(0, 2**80), label="n")
        text = data.draw(st.sampled_from([str(n), f"{n:_}", f" {n} "]), label="spelling")
        try:
            cfg = cls.from_dict({name: text})
        except ConfigError as e:  # beyond 64 bits, or out of the field's range
            assert names_field(str(e), name) and len(str(e).splitlines()) == 1
            return
        assert getattr(cfg, name) == n
    else:
        x = data.draw(st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False), label="x")
        try:
            cfg = cls.from_dict({name: repr(x)})
        except ConfigError as e:
            assert len(str(e).splitlines()) == 1
            return
        assert math.isfinite(x), f"{name} accepted the non-finite {x!r}"
        assert getattr(cfg, name) == x


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_every_field_with_every_hostile_constant(algo):
    """Exhaustive companion of the random search: each field of each config with each constant."""
    cls = CONFIGS[algo]
    for f in fields(cls):
        for value in HOSTILE_STRINGS + HOSTILE_NUMBERS + CHOICES + ODD_VALUES + [SUBNORMAL]:
            check_outcome(cls, {f.name: value}, files=False)


@pytest.mark.parametrize("algo", ALGO_NAMES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "nan", "inf", "-inf", "1e999", "-1e999", 10**400],
                         ids=["nan", "inf", "-inf", "'nan'", "'inf'", "'-inf'", "'1e999'", "'-1e999'", "10**400"])
def test_non_finite_numbers_are_refused_everywhere(algo, bad):
    """No float hyper-parameter accepts NaN or an infinity (none of them has a meaning for it)."""
    cls = CONFIGS[algo]
    hints = HINTS[cls]
    for name, tp in hints.items():
        if typing.ClassVar in (tp, typing.get_origin(tp)):
            continue
        if tp is float or (_is_union(tp) and float in typing.get_args(tp)):
            with pytest.raises(ConfigError) as e:
                cls.from_dict({name: bad})
            assert f"'{name}'" in str(e.value) and len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("algo", ALGO_NAMES)
@pytest.mark.parametrize("field, value, allowed", [
    ("seed", 2**64, "64 bits"), ("seed", "18446744073709551616", "64 bits"), ("seed", -10**5000, "64 bits"),
    ("hidden_sizes", [64, 10**30], "64 bits"), ("hidden_sizes", [64, 10**5000], "too long to print"),
    ("learning_rate", [10**5000], "a number"), ("device", "cudax", "'cuda:N'"), ("device", "cuda:01", "'cuda:N'"),
    ("device", "cuda:99999999999999999999", "'cuda:N'"), ("learning_rate", 10**400, "a number"),
], ids=lambda v: f"int{v.bit_length()}bits" if type(v) is int and abs(v) > 10**20 else None)
def test_values_that_used_to_crash_later(algo, field, value, allowed):
    """Accepted by the config before, then a traceback from torch (or Python) at train time."""
    with pytest.raises(ConfigError) as e:
        CONFIGS[algo].from_dict({field: value})
    msg = str(e.value)
    assert f"'{field}'" in msg and allowed in msg and len(msg.splitlines()) == 1 and len(msg) < 300


def test_seed_and_device_limits_still_accept_real_values():
    cls = CONFIGS["ppo"]
    assert cls.from_dict({"seed": str(2**63 - 1)}).seed == 2**63 - 1  # exact, not rounded through a float
    for dev in ("cpu", "cuda", "cuda:0", "cuda:12", "mps", "auto"):
        assert cls.from_dict({"device": dev}).device == dev


def test_presets_still_validate():
    """The generic checks keep every shipped preset valid."""
    from critic.presets import list_presets, read_preset

    for p in list_presets():
        d = read_preset(p)
        CONFIGS[d["algo"]].from_dict(d.get("hparams") or {})


# ----------------------------------------------------------------------------- parse_set

KEY = st.from_regex(r"[a-z_]+", fullmatch=True)
VALUE = st.text(max_size=20).filter(lambda v: v == v.strip())


@settings(max_examples=200, deadline=None)
@given(k=KEY, v=VALUE, extra=st.dictionaries(KEY, VALUE, max_size=4))
def test_parse_set_round_trips(k, v, extra):
    assert parse_set([f"{k}={v}"]) == {k: v}
    assert parse_set([f"{k}={v}={v}"]) == {k: f"{v}={v}"}  # only the first '=' splits
    assert parse_set([f" {k} = {v} "]) == {k: v}
    assert parse_set([f"{a}={b}" for a, b in extra.items()]) == extra


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.text(max_size=15), max_size=4))
def test_parse_set_errors_are_one_line_config_errors(items):
    try:
        out = parse_set(items)
    except ConfigError as e:
        assert len(str(e).splitlines()) == 1 and any(short_repr(i) in str(e) for i in items)
        return
    assert all("=" in i and i.split("=", 1)[0].strip() for i in items)
    assert set(out) == {i.split("=", 1)[0].strip() for i in items}


# ----------------------------------------------------------------------------- the CLI

class _Reached(Exception):
    """Raised instead of building an agent: the CLI accepted the config."""


def _near_misses(name: str) -> st.SearchStrategy:
    return st.sampled_from([name[:-1], name + "s", name.upper(), name.replace("_", "-"), name.replace("_", ""),
                            name[1:], f" {name} ", name[:1] + name, name + "\n", "-" + name, "--" + name,
                            name[:2] + "\r" + name[2:], name[:3] + "\n" + name[3:], name + "\x1e" + name,
                            name + "\u2028", name + "'", "é" + name])


def set_items(field_names: list[str]) -> st.SearchStrategy:
    """Lists of --set items: half of them all key=value (they reach the config), half anything."""
    key = st.one_of(st.sampled_from(field_names), st.sampled_from(field_names).flatmap(_near_misses),
                    st.just(""), st.just(" "), st.text(max_size=8),
                    st.sampled_from(["steps", "algo", "env_id", "hparams", "__class__", "_local_workers"]))
    value = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.sampled_from(CHOICES), st.text(max_size=10),
                      st.integers().map(str), st.floats(allow_subnormal=False).map(repr))
    sep = st.sampled_from(["=", " = ", "==", "= "])
    pair = st.builds(lambda k, s, v: k + s + v, key, sep, value)
    return st.one_of(st.lists(pair, min_size=1, max_size=3),
                     st.lists(st.one_of(pair, st.text(max_size=12), key, value), min_size=1, max_size=3))


@CLI
@given(data=st.data())
def test_cli_set_errors_are_one_line(data, capsys, monkeypatch, tmp_path):
    from critic import cli

    monkeypatch.chdir(tmp_path)
    real_get_algo = registry.get_algo

    def stub_get_algo(name):
        real = real_get_algo(name)

        class Stub:
            algo, config_cls = real.algo, real.config_cls

            def __init__(self, *args, **kwargs):
                raise _Reached

        return Stub

    monkeypatch.setattr(registry, "get_algo", stub_get_algo)
    algo = data.draw(st.sampled_from(ALGO_NAMES), label="algo")
    cls = CONFIGS[algo]
    items = data.draw(set_items(cls.field_names()), label="items")
    argv = ["train", algo, "CartPole-v1", "--steps", "1", "--no-progress", "--out", str(tmp_path / "run")]
    for it in items:
        argv.append(f"--set={it}")  # '=' form: argparse takes values that start with '-' as they are
    capsys.readouterr()
    try:
        rc = cli.main(argv)
    except _Reached:
        # accepted: then the same items make a valid, well-typed config outside the CLI too
        check_outcome(cls, parse_set(items))
        return
    except SystemExit as e:  # pragma: no cover - argparse; not expected with the '=' form
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("critic: error: "), err
    msg = lines[0]
    keys = [i.split("=", 1)[0].strip() for i in items if "=" in i]
    # the item itself (shortened when long, as every one-line message shortens it), or its key
    assert (any(repr(i) in msg or short_repr(i) in msg for i in items)
            or any(names_field(msg, k) or repr(k) in msg for k in keys if k)), \
        f"{msg!r} names none of {items}"
    with pytest.raises(ConfigError):  # the CLI refuses exactly what the library refuses
        cls.from_dict(parse_set(items))
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
