"""TD3: the agent face, last-layer init, delayed actor/target updates, isolation, save/load."""

import numpy as np
import torch

import critic
from critic.algos.td3 import update


def small(**kw):
    return critic.TD3("Pendulum-v1", hidden_sizes=(32, 32), learning_starts=50, batch_size=32, **kw)


def test_learn_predict_and_actor_init():
    agent = small(noise_type="ou")
    last = agent.nets.actor[-1]
    assert last.weight.abs().max() <= 3e-3 and last.bias.abs().max() <= 3e-3
    agent.learn(120, progress_bar=False)
    assert agent.updates == 70
    a = agent.predict(np.zeros(3, np.float32), deterministic=True)[0]
    assert a.shape == (1,) and -2.0 <= a[0] <= 2.0
    assert agent.replay.actions[:120].abs().max() <= 1.0


def test_delayed_actor_and_target_updates_and_isolation():
    agent = small()
    agent.learn(80, progress_bar=False)
    nets, cfg = agent.nets, agent.cfg
    in_optim = {id(p) for o in agent.optims.values() for g in o.param_groups for p in g["params"]}
    for tgt in (nets.actor_target, nets.critic_target):
        assert all(not p.requires_grad and id(p) not in in_optim for p in tgt.parameters())
    snap = lambda m: [p.detach().clone() for p in m.parameters()]  # noqa: E731
    batch = agent.replay.sample(16)
    a0, at0, ct0 = snap(nets.actor), snap(nets.actor_target), snap(nets.critic_target)
    update(nets, agent.optims, batch, cfg, step=1)  # not a policy step (policy_delay=2)
    assert all(torch.equal(a, b) for a, b in zip(a0, nets.actor.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(ct0, nets.critic_target.parameters()))
    for p in nets.critic.parameters():
        p.grad.zero_()
    update(nets, agent.optims, batch, cfg, step=2)  # policy step: actor and both targets move
    assert any(not torch.equal(a, b) for a, b in zip(a0, nets.actor.parameters()))
    for t0, t1, s in zip(at0, nets.actor_target.parameters(), nets.actor.parameters()):
        assert torch.allclose(t1, (1 - cfg.tau) * t0 + cfg.tau * s.detach(), atol=1e-6)


def test_save_load_and_determinism(tmp_path):
    agent = small(seed=3)
    agent.learn(100, progress_bar=False)
    loaded = critic.load(agent.save(tmp_path / "td3.safetensors"), for_training=True)
    assert loaded.replay.pos == agent.replay.pos and loaded.updates == agent.updates
    for p, q in zip(agent.nets.parameters(), loaded.nets.parameters()):
        assert torch.equal(p, q)

    def run(seed):
        a = small(seed=seed)
        a.learn(100, progress_bar=False)
        return torch.cat([p.detach().flatten() for p in a.nets.parameters()])

    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))
