"""Checkpoints of the components face: save -> fresh objects -> load continues bit-identically
(weights, target copies, Adam moments, sampling generators, n-step caches, global RNGs);
mismatched objects, tampered files, agent checkpoints and pickles are refused with a
CheckpointError naming the file, and the object is left exactly as it was."""

import os
import pickle
import random

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic
from critic import checkpoint as ckpt
from critic.checkpoint import CheckpointError

CART = gym.make("CartPole-v1")
PEND = gym.make("Pendulum-v1")


def _func(env, **kw):
    return critic.FunctionApproximator(env, lr=1e-2, hidden_sizes=kw.pop("hidden_sizes", (16,)), **kw)


BUILDERS = {
    "ac-discrete": lambda seed: critic.ActorCritic.from_func(
        _func(CART), gamma=0.9, bootstrap_n=2, bootstrap_with_target_model=True, update_strategy="ppo",
        random_seed=seed),
    "ac-continuous": lambda seed: critic.ActorCritic.from_func(_func(PEND), gamma=0.9, bootstrap_n=2,
                                                               random_seed=seed),
    "sac-discrete": lambda seed: critic.SoftActorCritic.from_func(_func(CART), gamma=0.9, bootstrap_n=2,
                                                                  random_seed=seed),
    "sac-continuous": lambda seed: critic.SoftActorCritic.from_func(_func(PEND), gamma=0.9, bootstrap_n=2,
                                                                    random_seed=seed),
    "sac-continuous-unsquashed": lambda seed: _unsquashed_sac(seed),  # keras-gym's policy
    "ac-overridden-body": lambda seed: _overridden_body_ac(seed),
}


def _unsquashed_sac(seed):
    torch.manual_seed(seed)
    func = _func(PEND)
    return critic.SoftActorCritic(critic.GaussianPolicy(func, entropy_beta=0.1, random_seed=seed),
                                  critic.V(func, 0.9, 2, bootstrap_with_target_model=True),
                                  critic.QTypeI(func, 0.9, 2), critic.QTypeI(func, 0.9, 2))


class _KerasGymFunc(critic.FunctionApproximator):
    def __init__(self, env):
        self.fc = torch.nn.Linear(4, 16)
        super().__init__(env, lr=1e-2)

    def body(self, S):  # keras-gym style: the body overridden in a subclass
        return torch.tanh(self.fc(S))


def _overridden_body_ac(seed):
    torch.manual_seed(seed)
    func = _KerasGymFunc(CART)
    return critic.ActorCritic(critic.SoftmaxPolicy(func, update_strategy="ppo", random_seed=seed),
                              critic.V(func, 0.9, 2, bootstrap_with_target_model=True))


def _env_of(obj):
    return obj.policy.func.observation_space


def _advance(obj, steps, start):
    """Batch updates on fixed data with freshly sampled actions, a target sync, and per-step
    updates through the n-step cache (which ends each round mid-window)."""
    shape = _env_of(obj).shape
    for i in range(start, start + steps):
        rng = np.random.default_rng(1000 + i)
        S, S_next = rng.normal(size=(2, 6, *shape)).astype(np.float32)
        A, _ = obj.batch_eval(S)
        obj.batch_update(S, A, rng.normal(size=6), np.full(6, 0.81), S_next)
        obj.sync_target_model(tau=0.5)
        for s in rng.normal(size=(3, *shape)).astype(np.float32):
            a, _ = obj(s)
            obj.update(s, a, float(rng.normal()), False)


def _snapshot(obj):
    """Everything that must survive a save/load, read straight off the objects."""
    out = {}
    heads = {r: getattr(obj, r) for r in ("policy", "v_func", "q_func1", "q_func2", "model") if hasattr(obj, r)}
    if isinstance(obj, torch.nn.Module):
        heads = {"model": obj}
    for r, h in heads.items():
        out.update({f"{r}/{k}": v.clone() for k, v in h.state_dict().items()})
        if hasattr(h, "generator"):
            out[f"{r}/generator"] = h.generator.get_state()
        if h._optimizer is not None:
            for i, st in h._optimizer.state_dict()["state"].items():
                out.update({f"{r}/opt/{i}/{k}": torch.as_tensor(v).clone() for k, v in st.items()})
        if getattr(h, "_cache", None) is not None:
            out[f"{r}/cache"] = torch.tensor(h._cache._r + [len(h._cache._s)], dtype=torch.float64)
    opt = getattr(obj, "optimizer", None)
    if not isinstance(obj, torch.nn.Module) and opt is not None:
        for i, st in opt.state_dict()["state"].items():
            out.update({f"opt/{i}/{k}": torch.as_tensor(v).clone() for k, v in st.items()})
        out["opt/lr"] = torch.tensor([g["lr"] for g in opt.param_groups])
    if hasattr(obj, "cache"):
        out["cache"] = torch.tensor(obj.cache._r + [len(obj.cache._s)], dtype=torch.float64)
        out.update({f"cache/s{i}": torch.from_numpy(s) for i, s in enumerate(obj.cache._s)})
        out.update({f"cache/a{i}": torch.as_tensor(a) for i, a in enumerate(obj.cache._a)})
    out["rng/torch"] = torch.get_rng_state()
    out["rng/python"] = torch.tensor(random.getstate()[1], dtype=torch.int64)
    out["rng/numpy"] = torch.from_numpy(np.random.get_state()[1].astype(np.int64))
    return out


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- exactness

@pytest.mark.parametrize("kind", BUILDERS)
def test_save_load_continues_bit_identically(tmp_path, kind):
    build = BUILDERS[kind]
    ref = build(0)
    _advance(ref, 3, 0)
    assert len(ref.cache._r) > 0  # saved mid-window: the cache's pending transitions matter
    steps = [st["step"] for st in ref.optimizer.state_dict()["state"].values()]
    assert steps and all(float(s) >= 6 for s in steps)  # Adam moments after several steps
    path = ref.save(tmp_path / "ac.safetensors")
    at_save = _snapshot(ref)
    _advance(ref, 3, 3)
    expected = _snapshot(ref)
    a_ref = ref.batch_eval(np.zeros((4, *_env_of(ref).shape), np.float32))[0]

    torch.manual_seed(123)  # disturb every RNG the load must restore
    random.seed(5)
    np.random.seed(5)
    new = build(1)  # other initial weights and generator seed
    assert not torch.equal(new.policy.head.weight, ref.policy.head.weight)
    new.load(path)
    _assert_same(_snapshot(new), at_save)
    _advance(new, 3, 3)
    _assert_same(_snapshot(new), expected)
    np.testing.assert_array_equal(new.batch_eval(np.zeros((4, *_env_of(new).shape), np.float32))[0], a_ref)


def test_heads_save_and_load_alone(tmp_path):
    func = _func(CART)
    v, pi = critic.V(func, bootstrap_n=3), critic.SoftmaxPolicy(func, random_seed=0)
    S = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)

    def run(v, pi, rounds):
        for i in rounds:
            v.update(S[i % 5], 1.0, False)  # through V's own cache and optimizer
            pi.batch_update(S, pi(S), np.arange(5.0) - 2)
            pi.sync_target_model(0.3)

    run(v, pi, range(4))
    pv, pp = v.save(tmp_path / "v"), pi.save(tmp_path / "pi.safetensors")
    assert pv == tmp_path / "v" / ckpt.FILENAME  # a folder gets the library's file name
    run(v, pi, range(4, 8))
    func2 = _func(CART)
    v2, pi2 = critic.V(func2, bootstrap_n=3), critic.SoftmaxPolicy(func2, random_seed=7)
    v2.load(tmp_path / "v")
    pi2.load(pp)
    run(v2, pi2, range(4, 8))
    _assert_same(_snapshot(v2), _snapshot(v))
    _assert_same(_snapshot(pi2), _snapshot(pi))
    with pytest.raises(CheckpointError, match="'V', this object 'QTypeII'"):
        critic.QTypeII(func2).load(pv)


def test_optimizer_not_built_when_saved_is_dropped_on_load(tmp_path):
    path = critic.V(_func(CART)).save(tmp_path / "v.safetensors")
    v = critic.V(_func(CART))
    v.batch_update(np.zeros((2, 4)), np.ones(2), np.zeros(2), np.zeros((2, 4)))  # builds v's optimizer
    v.load(path)
    assert v._optimizer is None


def test_ended_episode_waiting_in_the_cache(tmp_path):
    """A truncated episode not yet popped: its final observation and flags come back."""
    ac = BUILDERS["ac-discrete"](0)
    S = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    ac.cache.add(S[0], 1, 0.5, False)
    ac.cache.add(S[1], 0, 1.5, False, truncated=True, s_next=S[2])
    path = ac.save(tmp_path / "ac.safetensors")
    new = BUILDERS["ac-discrete"](1)
    new.load(path)
    with pytest.raises(RuntimeError, match="pop"):
        new.cache.add(S[0], 0, 0.0, False)  # the restored cache knows its episode ended
    for x, y in zip(new.cache.pop(), ac.cache.pop()):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    assert not new.cache and not ac.cache


def test_numpy_generator_round_trip(tmp_path):
    ac = BUILDERS["ac-discrete"](0)
    rng = np.random.default_rng(3)
    rng.normal(size=4)
    path = ac.save(tmp_path / "ac.safetensors", np_rng=rng)
    want = rng.normal(size=4)
    other = np.random.default_rng(99)
    ac.load(path, np_rng=other)
    np.testing.assert_array_equal(other.normal(size=4), want)
    bare = ac.save(tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match="saved without one"):
        ac.load(bare, np_rng=other)


# ----------------------------------------------------------------------------- refusals

def _refused(obj, path, *match):
    before = _snapshot(obj)
    with pytest.raises(CheckpointError) as e:
        obj.load(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for m in match:
        assert m in msg, msg
    _assert_same(_snapshot(obj), before)  # untouched, global RNGs included
    return msg


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ac = BUILDERS["ac-discrete"](0)
    _advance(ac, 2, 0)
    return ac.save(tmp_path_factory.mktemp("ckpt") / "ac.safetensors")


def _separate_bodies():
    pol = critic.SoftmaxPolicy(_func(CART), update_strategy="ppo")
    return critic.ActorCritic(pol, critic.V(_func(CART)))


MISMATCHED = {
    "wider body": (lambda: critic.ActorCritic.from_func(_func(CART, hidden_sizes=(32,))),
                   ["parameters.body.1.0.weight", "[[16, 4], \"float32\"]", "[[32, 4], \"float32\"]"]),
    "other class": (lambda: critic.SoftActorCritic.from_func(_func(CART)),
                    ["architecture.class: checkpoint has 'ActorCritic', this object 'SoftActorCritic'"]),
    "separate bodies": (_separate_bodies, ["architecture.heads.v_func.body: checkpoint has 0, this object 1"]),
    "other optimizer": (lambda: critic.ActorCritic.from_func(_func(CART, optimizer="rmsprop")),
                        ["architecture.optimizer: checkpoint has 'Adam', this object 'RMSprop'"]),
    "other action space": (lambda: critic.ActorCritic.from_func(_func((CART.observation_space,
                                                                       gym.spaces.Discrete(3)))),
                           ["architecture.heads.policy.spaces.action.n"]),
}


@pytest.mark.parametrize("case", MISMATCHED)
def test_mismatched_object_is_refused_and_untouched(saved, case):
    build, match = MISMATCHED[case]
    obj = build()
    _advance(obj, 1, 0)  # non-empty optimizer state and cache, so "untouched" means something
    _refused(obj, saved, "does not match this", *match)


def test_squash_mismatch_is_refused(tmp_path):
    def build(squash):
        func = _func(PEND)
        return critic.ActorCritic(critic.GaussianPolicy(func, squash=squash), critic.V(func))
    path = build(True).save(tmp_path / "ac.safetensors")
    _refused(build(False), path, "squash: checkpoint has true, this object false")
    sac_path = _unsquashed_sac(0).save(tmp_path / "sac.safetensors")  # SoftActorCritic takes either now
    squashed = BUILDERS["sac-continuous"](0)
    _refused(squashed, sac_path, "squash: checkpoint has false, this object true")


def _tamper_tensors(fn):
    def tamper(tensors, meta):
        fn(tensors)
    return tamper


def _tamper_meta(fn):
    def tamper(tensors, meta):
        fn(meta)
    return tamper


def _first(tensors, prefix):
    return next(k for k in sorted(tensors) if k.startswith(prefix))


TAMPERED = {
    "missing head tensor": (_tamper_tensors(lambda t: t.pop("heads/v_func/target_model.head.bias")),
                            "'heads/v_func/target_model.head.bias' is missing"),
    "moment of the wrong shape": (_tamper_tensors(lambda t: t.update({"optim/optimizer/0/exp_avg": torch.zeros(3)})),
                                  "'optim/optimizer/0/exp_avg' has shape [3]"),
    "weight of the wrong dtype": (_tamper_tensors(lambda t: t.update({"heads/policy/head.bias":
                                                                      t["heads/policy/head.bias"].double()})),
                                  "'heads/policy/head.bias' has shape [2] float64"),
    "unexpected tensor": (_tamper_tensors(lambda t: t.update({"evil": torch.ones(1)})), "unexpected tensors ['evil']"),
    "shared body disagrees": (_tamper_tensors(lambda t: t["heads/v_func/body.1.0.bias"].add_(1)),
                              "share a body but the checkpoint holds different values"),
    "bad generator state": (_tamper_tensors(lambda t: t.update({"generators/policy": torch.zeros(3).byte()})),
                            "invalid generator state 'generators/policy'"),
    "bad torch rng": (_tamper_tensors(lambda t: t.update({"rng/torch": torch.zeros(3, dtype=torch.uint8)})),
                      "invalid RNG state"),
    "bad python rng": (_tamper_meta(lambda m: m["rng"]["python"].__setitem__(1, [1, 2])), "invalid RNG state"),
    "optimizer class": (_tamper_meta(lambda m: m["optimizers"]["optimizer"].__setitem__("class", "SGD")),
                        "optimizer 'optimizer': checkpoint has 'SGD', this object 'Adam'"),
    "optimizer param count": (_tamper_meta(lambda m: m["optimizers"]["optimizer"]["param_groups"][0]["params"].pop()),
                              "parameter list does not match"),
    "optimizer hyper-parameter": (_tamper_meta(lambda m: m["optimizers"]["optimizer"]["param_groups"][0]
                                               .__setitem__("betas", [0.9])), "hyper-parameter 'betas' is [0.9]"),
    "cache lengths": (_tamper_meta(lambda m: m["caches"]["cache"]["r"].append(1.0)), "cache 'cache': malformed"),
    "newer version": (_tamper_meta(lambda m: m.__setitem__("components_version", 99)), "upgrade critic"),
    "no kind": (_tamper_meta(lambda m: m.pop("kind")), "not a components checkpoint"),
    "no architecture": (_tamper_meta(lambda m: m.pop("architecture")), "architecture: checkpoint has null"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_tampered_checkpoint_is_refused_and_untouched(saved, tmp_path, case):
    """Valid files (checksum and all) whose content lies: each check runs before any copy."""
    tamper, match = TAMPERED[case]
    tensors, meta = ckpt.read(saved)
    tamper(tensors, meta)
    path = ckpt.write(tmp_path / "bad.safetensors", tensors, meta)
    obj = BUILDERS["ac-discrete"](1)
    _advance(obj, 1, 0)
    _refused(obj, path, match)


def test_failure_while_copying_rolls_back(saved, monkeypatch):
    """Validation makes this unreachable; if copying fails anyway the object is restored."""
    real, calls = ckpt.load_optimizer_state, []

    def fail_once(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk on fire")
        return real(*a, **k)

    monkeypatch.setattr(ckpt, "load_optimizer_state", fail_once)
    obj = BUILDERS["ac-discrete"](1)
    _advance(obj, 1, 0)
    assert "left as it was" in _refused(obj, saved, "disk on fire")


def test_corrupted_file_is_refused(saved, tmp_path):
    blob = bytearray(saved.read_bytes())
    blob[-5] ^= 0xFF
    p = tmp_path / "ac.safetensors"
    p.write_bytes(bytes(blob))
    _refused(BUILDERS["ac-discrete"](0), p, "checksum mismatch")


def test_agent_checkpoint_is_refused_by_components(tmp_path):
    agent = critic.PPO("CartPole-v1", n_steps=16, batch_size=16, hidden_sizes=(8,), log_every=10**9)
    path = agent.save(tmp_path / "agent.safetensors")
    agent.close()
    _refused(BUILDERS["ac-discrete"](0), path, "critic agent checkpoint (algo 'ppo')", "critic.load")


def test_components_checkpoint_is_refused_by_critic_load(saved):
    with pytest.raises(CheckpointError) as e:
        critic.load(saved)
    assert str(saved) in str(e.value)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_named_like_a_checkpoint_is_refused_and_not_run(tmp_path, writer):
    marker = tmp_path / "pwned"
    ac = BUILDERS["ac-discrete"](0)
    obj = {f"heads/policy/{k}": v for k, v in ac.policy.state_dict().items()}
    obj["evil"] = _Payload(marker)
    p = tmp_path / ckpt.FILENAME
    if writer == "pickle":
        p.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, p)
    probe = tmp_path / "probe"  # sanity: unpickling really would run the payload
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()
    _refused(ac, p, "not a")
    with pytest.raises(CheckpointError):
        ac.load(tmp_path)  # the folder form resolves to the same file
    with pytest.raises(CheckpointError):
        ac.policy.load(p)
    assert not marker.exists()


def test_save_refuses_non_finite_weights_and_keeps_the_previous_file(tmp_path):
    obj = BUILDERS["ac-discrete"](0)
    path = obj.save(tmp_path / "ac")
    before = path.read_bytes()
    with torch.no_grad():
        next(obj.policy.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(critic.NonFiniteError, match="nothing was written"):
        obj.save(tmp_path / "ac")
    assert path.read_bytes() == before
