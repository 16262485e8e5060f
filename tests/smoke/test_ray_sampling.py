"""PPO and A2C with backend='ray': Ray actors collect rollouts with the learner's weights, one
learner updates. Same-batch equivalence with local collection, failures, bad input."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

import critic
from critic.buffers.rollout import FIELDS
from critic.config import ConfigError
from critic.envs.fake import failing_env
from critic.runners.local import WorkerError

import ray  # noqa: E402  (installed by the test extra)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    from critic.runners.ray import init_ray

    started = init_ray(None, num_cpus=2)
    yield
    if started:
        ray.shutdown()


def _flat(agent) -> torch.Tensor:
    return agent.optims["main"].param_groups[0]["params"][0]


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_learn_with_two_samplers(algo):
    cls = critic.PPO if algo == "ppo" else critic.A2C
    hp = dict(n_steps=16, num_envs=2, hidden_sizes=(16,), log_every=64) | (dict(batch_size=64) if algo == "ppo" else {})
    # PPO's minibatch is the learner's whole batch: larger than one sampler's rollout (32)
    agent = cls("CartPole-v1", backend="ray", workers=2, **hp)
    assert agent.buffer.N == 4  # the learner's batch holds every sampler's envs
    before = _flat(agent).detach().clone()
    agent.learn(640, progress_bar=False)
    assert agent.env_steps == 640 and agent.updates == 10 and agent.episodes > 0
    assert not torch.equal(_flat(agent).detach(), before)
    nodes = agent.collector.sampler.worker_nodes()
    assert len(set(nodes)) == 2  # two separate actor processes
    agent.close()


def test_samplers_act_with_the_learners_weights_and_their_rollouts_are_side_by_side():
    # each sampler is a seeded in-process agent of the same class: its rollout equals what a
    # local agent with the same seed and the learner's weights collects
    from critic.config import worker_hparams

    agent = critic.A2C("CartPole-v1", backend="ray", workers=2, n_steps=8, num_envs=2, hidden_sizes=(16,))
    with torch.no_grad():
        _flat(agent).add_(0.05 * torch.randn_like(_flat(agent)))
    agent.collector.collect(agent.stream, 0)
    remote = {k: v.clone() for k, v in agent.buffer.view().items()}
    for w in range(2):
        local = critic.A2C("CartPole-v1", worker_hparams(agent.cfg, critic.A2CConfig, w, 0))
        with torch.no_grad():
            _flat(local).copy_(_flat(agent))
        local.stream.reset(seed=local.cfg.seed)
        local.collector.collect(local.stream, 0)
        mine = local.buffer.view()
        for k in FIELDS:
            torch.testing.assert_close(remote[k][:, 2 * w:2 * w + 2], mine[k], rtol=0, atol=0, msg=k)
        local.close()
    agent.close()


def test_dead_sampler_is_replaced_and_its_rollout_collected_again(tmp_path):
    env = functools.partial(failing_env, after=50, mode="raise", marker=str(tmp_path / "once"))
    agent = critic.PPO(env, backend="ray", workers=2, n_steps=16, num_envs=1, batch_size=16, hidden_sizes=(16,))
    with pytest.warns(RuntimeWarning, match="sampling worker \\d failed .*environment exploded"):
        agent.learn(640, progress_bar=False)
    assert agent.env_steps == 640 and sum(agent.collector.sampler.restarts) == 1
    agent.close()


def test_sampler_restart_budget_exhausted():
    env = functools.partial(failing_env, after=5, mode="raise")
    agent = critic.A2C(env, backend="ray", workers=1, n_steps=8, max_restarts=1, hidden_sizes=(16,))
    with pytest.warns(RuntimeWarning):
        with pytest.raises(WorkerError, match="sampling worker 0 failed 2 times.*environment exploded at step 5"):
            agent.learn(1000, progress_bar=False)
    agent.close()


@pytest.mark.parametrize("bad, field", [
    ({"workers": 2}, "workers"),                                     # several workers need backend='ray'
    ({"backend": "ray", "workers": 2, "normalize_obs": True}, "normalize_obs"),
    ({"backend": "ray", "workers": 0}, "workers"),
    ({"backend": "ray", "workers": 2, "n_steps": 16, "num_envs": 2, "batch_size": 65}, "batch_size"),
])
def test_bad_sampling_config_names_the_field(bad, field):
    with pytest.raises(ConfigError, match=field):
        critic.PPO("CartPole-v1", **bad)


def test_episodic_a2c_refuses_ray():
    with pytest.raises(ConfigError, match="backend"):
        critic.A2C("CartPole-v1", episodic=True, backend="ray")


def test_rollout_buffer_load_parts_checks_shapes():
    import gymnasium as gym

    from critic.buffers.rollout import RolloutBuffer
    buf = RolloutBuffer(4, 3, gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2))
    dtypes = {"actions": np.int64, "terminated": bool, "truncated": bool}
    part = {k: np.zeros((4, 1, 2) if k == "obs" else (4, 1), dtypes.get(k, np.float32)) for k in FIELDS}
    with pytest.raises(ValueError, match="do not fill"):
        buf.load_parts([part, part])
    buf.load_parts([part, part, part])
    assert buf.t == 4 and buf.view()["obs"].shape == (4, 3, 2)
