"""Dict and Tuple observations: packed into one row of bytes with each key in its own dtype
(images stay uint8), encoded one encoder per key, normalised per vector key, and taken by
every algorithm, batches of seeds, predict and checkpoints."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import critic
from critic.envs.fake import MixedDictEnv, PointGoalEnv
from critic.envs.packing import Layout, PackedNormalizer, PackedObs
from critic.envs.spaces import space_from_dict, space_to_dict
from critic.nn import DictEncoder, NatureCNN

# one torch thread: image keys would otherwise take two per test process, and two processes of
# pytest -n 2 on two cores then wait on each other's spinning threads
OFF = dict(learning_starts=50, batch_size=16, buffer_size=2000, torch_threads=1)


def test_a_row_holds_every_key_in_its_own_dtype_vectors_first():
    env = MixedDictEnv()
    layout = Layout(env.observation_space)
    # (Gymnasium's Dict sorts its keys; within a kind the fields keep that order)
    assert [(f.key, f.kind, f.dtype.name) for f in layout.fields] == [
        ("more.0", "vector", "float32"), ("more.1", "vector", "float32"), ("vec", "vector", "float32"),
        ("cue", "discrete", "int64"), ("image", "image", "uint8")]
    assert layout.nbytes == 4 * (4 + 2 + 3) + 8 + 36 * 36 * 3  # the image stays bytes: 4x less than float32
    obs, _ = env.reset(seed=0)
    row = layout.pack(obs)
    assert row.dtype == np.uint8 and row.shape == (layout.nbytes,)
    back = layout.unpack(row)
    np.testing.assert_array_equal(back["image"], obs["image"])
    assert back["cue"] == obs["cue"]
    np.testing.assert_array_equal(back["vec"], obs["vec"])
    np.testing.assert_array_equal(back["more.0"], obs["more"][0].astype(np.float32))
    np.testing.assert_array_equal(back["more.1"], obs["more"][1].astype(np.float32))
    batch = layout.pack({"image": np.stack([obs["image"]] * 3), "cue": np.array([0, 1, 2]),
                         "vec": np.zeros((3, 4)), "more": (np.ones((3, 2)), np.zeros((3, 3), np.int8))})
    assert batch.shape == (3, layout.nbytes) and layout.unpack(batch)["cue"].tolist() == [0, 1, 2]


def test_the_packed_space_saves_as_the_envs_own_space():
    space = PackedObs(MixedDictEnv().observation_space)
    d = space_to_dict(space)
    assert d["type"] == "Packed" and d["space"]["type"] == "Dict"
    assert space_from_dict(d) == space
    tup = PackedObs(gym.spaces.Tuple((gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(4, start=1))))
    assert space_from_dict(space_to_dict(tup)) == tup and tup != space


def test_the_dict_encoder_is_each_keys_encoder_side_by_side():
    env = MixedDictEnv()
    layout = Layout(env.observation_space)
    enc = DictEncoder(layout)
    assert isinstance(enc.images[0], nn.Module) and enc.out_dim == 9 + 3 + enc.images[0].out_dim
    rows = np.stack([layout.pack(env.reset(seed=s)[0]) for s in range(4)])
    x = torch.as_tensor(rows)
    out = enc(x[1:])  # a slice at an unaligned offset, as a minibatch is
    parts = layout.unpack(rows[1:])
    vec = np.concatenate([parts["more.0"], parts["more.1"], parts["vec"]], -1)
    torch.testing.assert_close(out[:, :9], torch.as_tensor(vec))
    torch.testing.assert_close(out[:, 9:12], torch.nn.functional.one_hot(torch.as_tensor(parts["cue"]), 3).float())
    img = torch.as_tensor(parts["image"])
    torch.testing.assert_close(out[:, 12:], enc.images[0](img))
    assert any(isinstance(m, NatureCNN) for m in enc.modules())


def test_normalisation_touches_the_vectors_only():
    env = MixedDictEnv()
    layout = Layout(env.observation_space)
    norm = PackedNormalizer(layout)
    rows = np.stack([layout.pack(env.reset(seed=s)[0]) for s in range(50)])
    out = norm(rows, update=True)
    assert norm.rms.mean.shape == (9,)
    np.testing.assert_array_equal(out[:, 36:], rows[:, 36:])  # the Discrete key and the image: untouched
    vec = layout.unpack(out)["vec"]
    assert abs(vec.mean()) < 0.2 and 0.7 < vec.std() < 1.3


@pytest.mark.parametrize("algo, env, hp", [("PPO", MixedDictEnv, dict(n_steps=16, batch_size=16, torch_threads=1)),
                                           ("A2C", PointGoalEnv, dict(normalize_obs=True)),
                                           ("ACER", MixedDictEnv, dict(replay_start=50, torch_threads=1)),
                                           ("SAC", MixedDictEnv, OFF),
                                           ("SAC", PointGoalEnv, dict(OFF, optimize_memory=True, bootstrap_n=3)),
                                           ("TD3", PointGoalEnv, OFF)])
def test_every_algorithm_trains_predicts_saves_and_loads_on_dict_observations(algo, env, hp, tmp_path):
    agent = getattr(critic, algo)(env, seed=0, **hp)
    agent.learn(100, progress_bar=False)
    probe = env()
    obs, _ = probe.reset(seed=3)
    a = agent.predict(obs, deterministic=True)[0]
    assert probe.action_space.contains(np.asarray(a, probe.action_space.dtype)
                                       if isinstance(probe.action_space, gym.spaces.Box) else int(a))
    batch = {k: np.stack([obs[k]] * 2) for k in obs if k != "more"}
    if "more" in obs:
        batch["more"] = tuple(np.stack([v] * 2) for v in obs["more"])
    assert np.allclose(agent.predict(batch, deterministic=True)[0], np.stack([a, a]))
    loaded = critic.load(agent.save(tmp_path / "m"), env=env)
    assert isinstance(loaded.obs_space, PackedObs) and loaded.obs_space == agent.obs_space
    assert np.allclose(loaded.predict(obs, deterministic=True)[0], a)
    with pytest.raises(ValueError, match="Dict/Tuple observations of"):
        agent.predict(np.zeros(5, np.uint8))[0]


def test_replay_keeps_images_as_bytes_and_optimize_memory_still_halves_them():
    full = critic.SAC(MixedDictEnv, **OFF)
    half = critic.SAC(MixedDictEnv, optimize_memory=True, **OFF)
    row = full.obs_space.shape[0]
    assert full.replay.obs.dtype == torch.uint8 and row < 36 * 36 * 3 + 100
    assert half.replay.nbytes < 0.55 * full.replay.nbytes


def test_a_batch_of_seeds_trains_on_dict_observations():
    batch = critic.SAC(PointGoalEnv, seeds=[0, 1], **OFF)
    batch.learn(100, progress_bar=False)
    assert [m.env_steps for m in batch.agents] == [100, 100]
    ppo = critic.PPO(MixedDictEnv, seeds=[0, 1], n_steps=16, batch_size=16, torch_threads=1)
    ppo.learn(64, progress_bar=False)
    assert [m.updates for m in ppo.agents] == [m.updates for m in ppo.agents[:1]] * 2
