"""A3C's gradient is A2C's; the shared optimizer statistics are one set for all workers."""

from __future__ import annotations

import functools

import pytest
import torch

from critic.algos import a2c
from critic.algos.a2c import A2C
from critic.algos.a3c import A3C, A3CConfig, A3CWorker
from critic.algos.common import optimizer_for
from critic.runners.local import attach_state, share_optimizer_state_


def _flat(agent) -> torch.Tensor:
    return agent.optims["main"].param_groups[0]["params"][0]


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_a3c_gradient_and_step_equal_a2c_on_the_same_batch(optimizer):
    cfg = A3CConfig(n_steps=8, num_envs=2, ent_coef=0.01, max_grad_norm=0.5, optimizer=optimizer, seed=3)
    learner = A3C("CartPole-v1", cfg)
    worker = A3CWorker("CartPole-v1", cfg, worker_id=0, generation=0)
    with torch.no_grad():  # make the learner's parameters differ from the worker's initial ones
        _flat(learner).add_(0.01 * torch.randn_like(_flat(learner)))
    global_before = _flat(learner).detach().clone()

    grad, metrics, _ = worker.rollout_gradient(_flat(learner))
    batch = {k: v.clone() for k, v in worker.agent.buffer.view().items()}
    assert torch.equal(_flat(worker.agent), global_before)  # the worker pulled the global weights

    # A2C on the same batch from the same weights, with its own fresh optimizer
    ref = A2C("CartPole-v1", {k: v for k, v in cfg.worker_config(0, 0).items()}, seed=3)
    with torch.no_grad():
        _flat(ref).copy_(global_before)
    a2c.update(ref.nets, ref.optims["main"], batch, ref.cfg)
    torch.testing.assert_close(grad, _flat(ref).grad, rtol=0, atol=0)

    # the worker's gradient applied through the (shared) optimizer gives A2C's new parameters
    opt = learner.optims["main"]
    _flat(learner).grad = grad
    opt.step()
    torch.testing.assert_close(_flat(learner).detach(), _flat(ref).detach(), rtol=0, atol=0)
    assert set(metrics) >= {"loss/actor", "loss/critic"}


def test_shared_optimizer_state_is_created_without_moving_parameters_and_is_shared():
    cfg = A3CConfig(optimizer="rmsprop")
    agent = A3C("CartPole-v1", cfg)
    opt = agent.optims["main"]
    before = _flat(agent).detach().clone()
    share_optimizer_state_(opt)
    assert torch.equal(_flat(agent).detach(), before)
    (state,) = opt.state.values()
    assert float(state["step"]) == 0 and not state["square_avg"].any()
    assert _flat(agent).is_shared() and all(v.is_shared() for v in state.values() if torch.is_tensor(v))

    # a second optimizer built the way workers build theirs, with the state attached, updates
    # the same statistics and parameters (what every worker process does)
    other = optimizer_for([_flat(agent)], cfg)
    attach_state(other, list(opt.state.values()))
    _flat(agent).grad = torch.ones_like(_flat(agent))
    other.step()
    assert float(state["step"]) == 1 and state["square_avg"].gt(0).all()
    assert not torch.equal(_flat(agent).detach(), before)


def test_worker_seeds_differ_per_worker_and_per_restart():
    cfg = A3CConfig(seed=5)
    seeds = {cfg.worker_config(w, g)["seed"] for w in range(4) for g in range(4)}
    assert len(seeds) == 16
    assert all(cfg.worker_config(w, g)["torch_threads"] == 1 for w in range(2) for g in range(2))


def test_worker_factory_pickles():
    import pickle

    from critic.algos.a3c import WorkerFactory
    from critic.envs.fake import failing_env

    f = WorkerFactory(functools.partial(failing_env, after=10), A3CConfig())
    assert pickle.loads(pickle.dumps(f)).cfg == f.cfg


@pytest.mark.parametrize("episodic", [False, True])
def test_a_worker_reports_the_env_steps_its_rollout_really_took(episodic):
    """Episodic rollouts run to the end of the episode: the learner must count its real length,
    not n_steps x num_envs (the bug: 5 counted steps per finished CartPole episode)."""
    cfg = A3CConfig(n_steps=5, num_envs=1, episodic=episodic, seed=1)
    worker = A3CWorker("CartPole-v1", cfg, worker_id=0, generation=0)
    for _ in range(3):
        _, _, rets = worker.rollout_gradient(_flat(A3C("CartPole-v1", cfg)))
        length = worker.agent.buffer.t * worker.agent.buffer.N
        assert worker.rollout_steps == length
        if episodic:
            assert len(rets) == 1 and worker.rollout_steps == rets[0] > 5  # CartPole: return = length
        else:
            assert worker.rollout_steps == 5


def test_episodic_a3c_counts_every_env_step_of_its_episodes():
    agent = A3C("CartPole-v1", workers=1, episodic=True, n_steps=5, seed=0)
    try:
        agent.learn(400)
        # one worker, one env: one update per finished CartPole episode, and its return is its length
        assert agent.updates == agent.episodes <= 100
        assert agent.env_steps == sum(agent.recent_returns) >= 400
    finally:
        agent.close()
