"""Checkpoints: exact round trip, corrupted files, no code execution, atomic writes, spaces."""

from __future__ import annotations

import json
import os
import pickle
import struct

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic
from critic import checkpoint as ckpt
from critic.checkpoint import CheckpointError

SMALL = dict(n_steps=16, hidden_sizes=(8,), log_every=10**9)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A PPO CartPole agent after two updates (non-empty Adam state), saved once."""
    agent = critic.PPO("CartPole-v1", batch_size=16, n_epochs=2, **SMALL)
    agent.learn(32, progress_bar=False)
    path = agent.save(tmp_path_factory.mktemp("ckpt") / "agent.safetensors")
    yield agent, path
    agent.close()


def _copy(path, dst_dir, blob=None):
    dst = dst_dir / ckpt.FILENAME
    dst.write_bytes(path.read_bytes() if blob is None else blob)
    return dst


def _assert_same_agent(a, b):
    sa, sb = a.nets.state_dict(), b.nets.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert a.optims.keys() == b.optims.keys()
    for name in a.optims:
        oa, ob = a.optims[name].state_dict(), b.optims[name].state_dict()
        assert oa["state"].keys() == ob["state"].keys() and len(oa["state"]) > 0
        for idx in oa["state"]:
            assert oa["state"][idx].keys() == ob["state"][idx].keys()
            for k, v in oa["state"][idx].items():
                w = ob["state"][idx][k]
                assert (torch.equal(v, w) if torch.is_tensor(v) else v == w), (name, idx, k)
        assert oa["param_groups"] == ob["param_groups"]
    assert (a.env_steps, a.updates, a.episodes, a.resets) == (b.env_steps, b.updates, b.episodes, b.resets)
    assert a.cfg == b.cfg and type(a) is type(b)


# ----------------------------------------------------------------------------- round trip

def test_round_trip_ppo(trained):
    agent, path = trained
    assert agent.env_steps == 32 and agent.updates == 2
    loaded = critic.load(path, for_training=True)
    _assert_same_agent(agent, loaded)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    assert np.array_equal(agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    loaded.close()


def test_round_trip_a2c_rmsprop_with_normalisers(tmp_path):
    agent = critic.A2C("CartPole-v1", normalize_obs=True, normalize_reward=True, seed=3, **SMALL)
    agent.learn(48, progress_bar=False)
    path = agent.save(tmp_path)  # a folder: agent.safetensors inside it
    assert path == tmp_path / ckpt.FILENAME
    loaded = critic.A2C.load(tmp_path, for_training=True)
    _assert_same_agent(agent, loaded)
    for attr in ("obs_norm", "rew_norm"):
        ra, rb = getattr(agent, attr).rms, getattr(loaded, attr).rms
        assert np.array_equal(ra.mean, rb.mean) and np.array_equal(ra.var, rb.var) and ra.count == rb.count
        assert ra.count > 1  # statistics were actually updated
    assert np.array_equal(agent.rew_norm.ret, loaded.rew_norm.ret)
    agent.close()
    loaded.close()


def test_load_restores_rng_states(trained, tmp_path):
    import random
    agent, _ = trained
    path = agent.save(tmp_path / ckpt.FILENAME)
    # the draws that follow the saved state, from every RNG the checkpoint captures
    expected = (torch.rand(4), np.random.rand(3), random.random())
    expected_gen = agent.np_rng.bit_generator.state
    torch.rand(10), np.random.rand(10), random.random()  # move every RNG on
    loaded = critic.load(path, for_training=True)
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
    assert loaded.np_rng.bit_generator.state == expected_gen
    loaded.close()


def test_checkpoint_write_read_round_trip(tmp_path):
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    meta = {"x": [1, 2, {"y": "z"}], "f": 0.5}
    p = ckpt.write(tmp_path / "sub" / "c.safetensors", tensors, meta)
    t2, m2 = ckpt.read(p)
    assert m2 == meta
    assert t2.keys() == tensors.keys() and all(torch.equal(t2[k], tensors[k]) for k in tensors)


# ----------------------------------------------------------------------------- corrupted files

def _load_error(path) -> str:
    with pytest.raises(CheckpointError) as e:
        critic.load(path)
    msg = str(e.value)
    assert str(path) in msg
    return msg


def test_truncated_file(trained, tmp_path):
    _, path = trained
    blob = path.read_bytes()
    p = _copy(path, tmp_path, blob[: len(blob) - 100])  # data section cut short
    assert "checksum mismatch" in _load_error(p)
    p = _copy(path, tmp_path, blob[:200])  # inside the header
    assert "truncated" in _load_error(p)
    p = _copy(path, tmp_path, blob[:5])  # not even the length prefix
    assert "truncated" in _load_error(p)


def test_flipped_byte_in_tensor_data(trained, tmp_path):
    _, path = trained
    blob = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", bytes(blob[:8]))
    for offset in (8 + n, 8 + n + (len(blob) - 8 - n) // 2, len(blob) - 1):
        bad = bytearray(blob)
        bad[offset] ^= 0x01
        p = _copy(path, tmp_path, bytes(bad))
        assert "checksum mismatch" in _load_error(p)
    # negative control: the untouched copy loads
    critic.load(_copy(path, tmp_path, bytes(blob))).close()


def test_empty_file(tmp_path):
    p = tmp_path / ckpt.FILENAME
    p.write_bytes(b"")
    assert "empty" in _load_error(p)


def _patch_version(blob: bytes, version: str) -> bytes:
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header["__metadata__"]["version"] = version
    new = json.dumps(header, separators=(",", ":")).encode()
    new += b" " * (-len(new) % 8)  # safetensors keeps the data section 8-byte aligned
    return struct.pack("<Q", len(new)) + new + blob[8 + n:]


def test_wrong_version(tmp_path):
    good = ckpt.write(tmp_path / "good.safetensors", {"w": torch.ones(3)}, {"k": 1})
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(_patch_version(good.read_bytes(), "99"))
    with pytest.raises(CheckpointError) as e:
        ckpt.read(bad)
    assert str(bad) in str(e.value) and "version 99" in str(e.value)
    # negative control: the same patching with the current version still reads
    same = tmp_path / "same.safetensors"
    same.write_bytes(_patch_version(good.read_bytes(), str(ckpt.VERSION)))
    tensors, meta = ckpt.read(same)
    assert meta == {"k": 1} and torch.equal(tensors["w"], torch.ones(3))
    for v in ("0", "abc"):
        bad.write_bytes(_patch_version(good.read_bytes(), v))
        with pytest.raises(CheckpointError, match="version"):
            ckpt.read(bad)


def test_wrong_version_through_agent_load(trained, tmp_path):
    _, path = trained
    p = _copy(path, tmp_path, _patch_version(path.read_bytes(), "99"))
    assert "version 99" in _load_error(p)


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_renamed_to_safetensors_is_refused_and_not_run(tmp_path, writer):
    marker = tmp_path / "pwned"
    p = tmp_path / ckpt.FILENAME
    obj = {"nets/w": torch.ones(2), "evil": _Payload(marker)}
    if writer == "pickle":
        p.write_bytes(pickle.dumps(obj))
    else:
        torch.save(obj, p)
    # sanity: unpickling it really would run the payload (so "not run" below means something)
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()
    _load_error(p)
    with pytest.raises(CheckpointError):
        critic.load(tmp_path)  # the run-directory form resolves to the same file
    assert not marker.exists()


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        critic.load(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- atomic write

@pytest.mark.parametrize("fail_in", ["replace", "fsync"])
def test_failed_save_keeps_previous_checkpoint(trained, tmp_path, monkeypatch, fail_in):
    agent, _ = trained
    path = agent.save(tmp_path / ckpt.FILENAME)
    before = path.read_bytes()
    original = {k: v.clone() for k, v in agent.nets.state_dict().items()}

    def boom(*a, **k):
        raise OSError("simulated crash mid-save")

    try:
        with torch.no_grad():
            for p in agent.nets.parameters():
                p.add_(1.0)
        monkeypatch.setattr(os, fail_in, boom)
        with pytest.raises(OSError, match="simulated crash"):
            agent.save(path)
        monkeypatch.undo()
        assert path.read_bytes() == before
        assert sorted(os.listdir(tmp_path)) == [ckpt.FILENAME]  # no partial/temp file left
        loaded = critic.load(path, for_training=True)
        for k, v in loaded.nets.state_dict().items():
            assert torch.equal(v, original[k]), k
        loaded.close()
    finally:
        with torch.no_grad():
            agent.nets.load_state_dict(original)


def test_save_does_not_write_final_path_before_complete(trained, tmp_path, monkeypatch):
    # A writer killed after writing the data but before the rename never exposes the new file
    # at the final path: the data goes to a temp file in the same folder first.
    agent, _ = trained
    final = tmp_path / ckpt.FILENAME
    seen = {}
    real_replace = os.replace

    def spy(src, dst):
        seen["src"], seen["dst"], seen["final_exists"] = str(src), str(dst), final.exists()
        seen["src_ok"] = ckpt.read(src) is not None  # the temp file is already complete
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    agent.save(final)
    assert seen["dst"] == str(final) and seen["src"] != str(final)
    assert os.path.dirname(seen["src"]) == str(tmp_path)
    assert seen["final_exists"] is False and seen["src_ok"]


# ----------------------------------------------------------------------------- spaces

def test_mismatched_spaces(trained):
    _, path = trained
    with pytest.raises(CheckpointError) as e:
        critic.load(path, env="Acrobot-v1")
    assert str(path) in str(e.value) and "differ" in str(e.value)


def test_load_with_matching_env_id(trained):
    _, path = trained
    loaded = critic.load(path, env="CartPole-v1")
    assert loaded.env_steps == 32
    loaded.close()


@pytest.mark.parametrize("space", [
    gym.spaces.Box(-2.0, 2.0, (1,), np.float32),
    gym.spaces.Box(np.array([0.0, -5.0], np.float32), np.array([10.0, 5.0], np.float32)),
    gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
    gym.spaces.Box(0, 255, (1, 8, 8), np.uint8),
    gym.spaces.Discrete(5),
    gym.spaces.MultiDiscrete([2, 3]),
])
def test_space_json_round_trip(space):
    import json

    from critic.envs.spaces import space_from_dict, space_to_dict
    assert space_from_dict(json.loads(json.dumps(space_to_dict(space)))) == space
