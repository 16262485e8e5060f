"""Loading to act (the default of ``critic.load``): no training envs, no replay, no optimizer
state; a run's ``model/`` holds only what acting needs. Loading to train on is asked for."""

import numpy as np
import pytest

import critic
from critic import checkpoint as ckpt
from critic.envs.fake import MaskedChoiceEnv

SAC_HP = dict(seed=0, learning_starts=200, buffer_size=20_000, batch_size=64, hidden_sizes=[32, 32],
              torch_threads=1)


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("sac") / "run"
    agent = critic.SAC("Pendulum-v1", normalize_obs=True, **SAC_HP)
    agent.learn(400, run_dir=run, progress_bar=False)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    want, _ = agent.predict(obs, deterministic=True)
    agent.close()
    return run, obs, want


def test_model_dir_is_small_and_loads_without_envs_or_replay(sac_run):
    run, obs, want = sac_run
    model, full = run / "model" / ckpt.FILENAME, run / "checkpoints" / ckpt.FILENAME
    assert model.stat().st_size < full.stat().st_size / 2  # no replay rows, no optimizer moments
    tensors, meta = ckpt.read(model)
    assert meta["kind"] == "model" and not any(k.startswith(("optim/", "replay", "collector")) for k in tensors)
    agent = critic.load(run)  # resolves to model/
    assert not agent.for_training and agent.venv is None and agent.stream is None
    assert agent.replay.C * agent.replay.N <= agent.cfg.num_envs  # nothing allocated for a million rows
    assert agent.env_steps == 400 and agent.obs_norm is not None
    got, state = agent.predict(obs, deterministic=True)
    assert state is None and np.array_equal(got, want)
    res = agent.evaluate(1)  # the stored env id, built at the first evaluation
    assert np.isfinite(res["mean"])


def test_acting_out_of_a_full_checkpoint_reads_only_the_networks(sac_run):
    run, obs, want = sac_run
    full = run / "checkpoints" / ckpt.FILENAME
    tensors, _ = ckpt.read(full, lambda k: k.startswith(("nets/", "obs_norm")))
    everything, _ = ckpt.read(full)
    assert set(tensors) < set(everything) and all(torch_equal(tensors[k], everything[k]) for k in tensors)
    agent = critic.load(full)
    assert not agent.for_training and np.array_equal(agent.predict(obs, deterministic=True)[0], want)
    # a config change that would not fit the replay is fine when nothing is trained
    assert critic.load(run, buffer_size=1000).cfg.buffer_size == 1000


def torch_equal(a, b):
    import torch
    return torch.equal(a, b)


def test_an_acting_agent_refuses_to_train_and_says_how(sac_run):
    run, _, _ = sac_run
    agent = critic.load(run)
    with pytest.raises(critic.EnvError, match="for_training=True"):
        agent.learn(10)
    with pytest.raises(critic.CheckpointError, match="save_model"):
        agent.save(run.parent / "x.safetensors")
    again = critic.load(agent.save_model(run.parent / "copy"))  # an acting agent re-saves its model
    assert again.env_steps == agent.env_steps
    with pytest.raises(critic.CheckpointError, match="model file.*holds no training state"):
        critic.load(run / "model", for_training=True)
    with pytest.raises(critic.ConfigError, match="for_training"):
        critic.load(run, for_training="yes")


def test_training_on_is_asked_for(sac_run):
    run, _, _ = sac_run
    full = run / "checkpoints" / ckpt.FILENAME
    agent = critic.load(full, for_training=True)
    assert agent.for_training and len(agent.replay) == 400 and agent.venv is not None
    agent.learn(100, progress_bar=False)
    assert agent.env_steps == 500
    agent.close()
    with_env = critic.load(full, env="Pendulum-v1")  # an env means training on
    assert with_env.for_training
    with_env.close()


def test_set_env_on_an_acting_agent_loads_the_checkpoint_for_training(sac_run):
    """Stable-Baselines3's habit: load, set_env, learn."""
    run, obs, want = sac_run
    agent = critic.load(run / "checkpoints")
    agent.set_env("Pendulum-v1")
    assert agent.for_training and len(agent.replay) == 400
    agent.learn(64, progress_bar=False)
    assert agent.env_steps == 464
    agent.close()
    model_only = critic.load(run / "model")
    with pytest.raises(critic.EnvError, match="loaded to act"):
        model_only.set_env("Pendulum-v1")


def test_masked_model_evaluates_with_its_masks(tmp_path):
    agent = critic.PPO(MaskedChoiceEnv, seed=0, num_envs=2, n_steps=16, batch_size=32, torch_threads=1)
    agent.learn(64, run_dir=tmp_path / "run", progress_bar=False)
    agent.close()
    acting = critic.load(tmp_path / "run", env=MaskedChoiceEnv, for_training=False)
    assert not acting.for_training and acting.mask_source == "info"
    res = acting.evaluate(2)  # the evaluation env reads the masks as training did: no invalid action
    assert min(res["returns"]) > -10
