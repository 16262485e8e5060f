"""SAC (continuous): the agent face, action bounds, gradient isolation, targets, save/load."""

import numpy as np
import pytest
import torch

import critic
from critic.algos.sac import update


def small(**kw):
    return critic.SAC("Pendulum-v1", hidden_sizes=(32, 32), learning_starts=50, batch_size=32, **kw)


def test_learn_predict_in_bounds_and_warmup_actions_in_policy_range():
    agent = small()
    agent.learn(120, progress_bar=False)
    assert agent.updates == 70 and len(agent.replay) == 120
    stored = agent.replay.actions[:120, 0]
    assert stored.abs().max() <= 1.0  # warm-up actions were stored in the policy's [-1, 1]
    a = agent.predict(np.zeros(3, np.float32))
    assert a.shape == (1,) and -2.0 <= a[0] <= 2.0
    assert agent.evaluate(1)["lengths"] == [200]


def test_gradient_isolation_and_frozen_targets():
    agent = small()
    agent.learn(100, progress_bar=False)
    nets = agent.nets
    assert all(not p.requires_grad for p in nets.critic_target.parameters())
    in_optim = {id(p) for o in agent.optims.values() for g in o.param_groups for p in g["params"]}
    assert not any(id(p) in in_optim for p in nets.critic_target.parameters())
    batch = agent.replay.sample(16)
    before = [p.detach().clone() for p in nets.critic.parameters()]
    tgt_before = [p.detach().clone() for p in nets.critic_target.parameters()]
    actor_before = [p.detach().clone() for p in nets.actor_head.parameters()]
    # the actor step must not write critic gradients: check by zeroing them, running only the
    # actor part of the update through a critic-free optimizer set, and looking at the grads
    for p in nets.critic.parameters():
        p.grad.zero_()
    nets.critic.requires_grad_(False)
    a_pi, logp = nets.dist(batch["obs"]).rsample_with_log_prob()
    (0.1 * logp - nets.critic(batch["obs"], a_pi).min(0).values).mean().backward()
    nets.critic.requires_grad_(True)
    assert all(torch.count_nonzero(p.grad) == 0 for p in nets.critic.parameters())
    assert any(torch.count_nonzero(p.grad) > 0 for p in nets.actor_head.parameters())
    # one full update: critics and actor move, targets move by exactly tau towards the critics
    update(nets, agent.optims, batch, agent.cfg, agent.target_entropy)
    after = list(nets.critic.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))
    assert any(not torch.equal(b, a) for b, a in zip(actor_before, nets.actor_head.parameters()))
    tau = agent.cfg.tau
    for t0, t1, c in zip(tgt_before, nets.critic_target.parameters(), after):
        assert torch.allclose(t1, (1 - tau) * t0 + tau * c.detach(), atol=1e-6)


def test_critic_loss_leaves_actor_gradients_empty():
    agent = small()
    agent.learn(60, progress_bar=False)
    nets = agent.nets
    for p in nets.parameters():
        p.grad = None
    b = agent.replay.sample(16)
    q = nets.critic(b["obs"], b["actions"])
    (q - 1.0).square().mean().backward()
    assert all(p.grad is None for p in [*nets.actor_body.parameters(), *nets.actor_head.parameters()])


def test_save_load_restores_replay_and_continues(tmp_path):
    agent = small()
    agent.learn(100, progress_bar=False)
    path = agent.save(tmp_path / "sac.safetensors")
    loaded = critic.load(path)
    assert len(loaded.replay) == len(agent.replay) and loaded.replay.pos == agent.replay.pos
    assert torch.equal(loaded.replay.obs[:100], agent.replay.obs[:100])
    assert torch.equal(loaded.nets.log_alpha, agent.nets.log_alpha)
    for p, q in zip(agent.nets.critic_target.parameters(), loaded.nets.critic_target.parameters()):
        assert torch.equal(p, q)
    loaded.learn(20, progress_bar=False)
    assert loaded.env_steps == 120


def test_determinism():
    def run(seed):
        a = small(seed=seed)
        a.learn(120, progress_bar=False)
        return torch.cat([p.detach().flatten() for p in a.nets.parameters()])

    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))


def test_discrete_action_space_refused_for_now():
    with pytest.raises(critic.EnvError, match="this algorithm supports: Box"):
        critic.SAC("CartPole-v1")
    with pytest.raises(critic.ConfigError, match="'tau'"):
        critic.SAC("Pendulum-v1", tau=0.0)
