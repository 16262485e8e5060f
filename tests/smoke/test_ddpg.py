"""DDPG: the agent face, one critic, targets updated every step from the online networks."""

import numpy as np
import torch

import critic
from critic.algos.ddpg import update


def small(**kw):
    return critic.DDPG("Pendulum-v1", hidden_sizes=(32, 32), learning_starts=50, batch_size=32, **kw)


def test_learn_predict_save_load(tmp_path):
    agent = small(noise_type="ou")
    assert agent.nets.critic.E == 1
    last = agent.nets.actor[-1]
    assert last.weight.abs().max() <= 3e-3
    agent.learn(120, progress_bar=False)
    assert agent.updates == 70
    a = agent.predict(np.zeros(3, np.float32), deterministic=True)[0]
    assert a.shape == (1,) and -2.0 <= a[0] <= 2.0
    loaded = critic.load(agent.save(tmp_path / "ddpg.safetensors"), for_training=True)
    assert type(loaded) is critic.DDPG and loaded.updates == 70
    assert np.allclose(loaded.noise.x, agent.noise.x)
    for p, q in zip(agent.nets.parameters(), loaded.nets.parameters()):
        assert torch.equal(p, q)


def test_every_update_moves_actor_and_both_targets_by_tau():
    agent = small()
    agent.learn(80, progress_bar=False)
    nets, tau = agent.nets, agent.cfg.tau
    snap = lambda m: [p.detach().clone() for p in m.parameters()]  # noqa: E731
    at0, ct0, a0 = snap(nets.actor_target), snap(nets.critic_target), snap(nets.actor)
    for p in nets.critic.parameters():
        p.grad.zero_()
    agent.update()
    assert any(not torch.equal(a, b) for a, b in zip(a0, nets.actor.parameters()))
    for tgt0, tgt, src in ((at0, nets.actor_target, nets.actor), (ct0, nets.critic_target, nets.critic)):
        for t0, t1, s in zip(tgt0, tgt.parameters(), src.parameters()):
            assert torch.allclose(t1, (1 - tau) * t0 + tau * s.detach(), atol=1e-6)


def test_critic_target_masks_terminations():
    """y = r + discount * Q'(s', mu'(s')), with discount 0 at a termination (the Keras DDPG example's bug)."""
    agent = small()
    agent.learn(60, progress_bar=False)
    nets = agent.nets
    b = agent.replay.sample(4)
    b["discount"] = torch.tensor([0.0, 0.99, 0.0, 0.99])
    with torch.no_grad():
        q_next = nets.critic_target.member(0, b["next_obs"], nets.mu(b["next_obs"], target=True))
        y = b["rewards"] + b["discount"] * q_next
        expected = 0.5 * (nets.critic.member(0, b["obs"], b["actions"]) - y).square().mean()
    m = update(nets, agent.optims, b)
    assert torch.allclose(m["loss/critic"], expected, atol=1e-6)
    assert y[0] == b["rewards"][0] and y[2] == b["rewards"][2]
