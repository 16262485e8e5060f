"""SAC (continuous and discrete): the agent face, action bounds, gradient isolation, targets, save/load."""

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
    a = agent.predict(np.zeros(3, np.float32))[0]
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
    loaded = critic.load(path, for_training=True)
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


def test_bad_spaces_and_values_refused():
    with pytest.raises(critic.EnvError, match="this algorithm supports: Box, Discrete"):
        critic.SAC(lambda: _multidiscrete_env())
    with pytest.raises(critic.ConfigError, match="'tau'"):
        critic.SAC("Pendulum-v1", tau=0.0)
    with pytest.raises(critic.ConfigError, match="'target_entropy_ratio'"):
        critic.SAC("CartPole-v1", target_entropy_ratio=1.5)


def _multidiscrete_env():
    import gymnasium as gym

    from critic.envs.fake import IdentityEnv
    env = IdentityEnv(3)
    env.action_space = gym.spaces.MultiDiscrete([2, 2])
    return env


def discrete(**kw):
    return critic.SAC("CartPole-v1", hidden_sizes=(32, 32), learning_starts=50, batch_size=32, **kw)


def test_discrete_learn_predict_and_shapes():
    agent = discrete()
    agent.learn(120, progress_bar=False)
    assert agent.updates == 70
    assert agent.replay.actions.dtype == torch.long and set(agent.replay.actions[:120, 0].tolist()) <= {0, 1}
    q = agent.nets.critic(agent.replay.sample(8)["obs"])
    assert q.shape == (2, 8, 2)
    a = agent.predict(np.zeros(4, np.float32), deterministic=True)[0]
    assert a.shape == () and int(a) in (0, 1)
    assert abs(agent.target_entropy - 0.7 * np.log(2)) < 1e-9


def test_discrete_update_matches_brute_force():
    """Critic target, actor loss and alpha loss of discrete SAC against a per-sample loop."""
    agent = discrete()
    agent.learn(60, progress_bar=False)
    nets, cfg = agent.nets, agent.cfg
    b = agent.replay.sample(8)
    b["discount"][:3] = 0.0  # some terminal samples
    with torch.no_grad():
        alpha = nets.log_alpha.exp()
        exp_critic, exp_actor, neg_ent = 0.0, 0.0, 0.0
        for i in range(8):
            s, s2 = b["obs"][i:i + 1], b["next_obs"][i:i + 1]
            p2 = torch.softmax(nets.actor_head(nets.actor_body(s2)), -1)[0]
            qt = torch.minimum(*[nets.critic_target.member(e, s2)[0] for e in range(2)])
            v = sum(p2[a] * (qt[a] - alpha * torch.log(p2[a])) for a in range(2))
            y = b["rewards"][i] + b["discount"][i] * v
            for e in range(2):
                exp_critic += 0.5 * (nets.critic.member(e, s)[0, b["actions"][i]] - y) ** 2 / 8
            p = torch.softmax(nets.actor_head(nets.actor_body(s)), -1)[0]
            q = torch.minimum(*[nets.critic.member(e, s)[0] for e in range(2)])
            exp_actor += sum(p[a] * (alpha * torch.log(p[a]) - q[a]) for a in range(2)) / 8
            neg_ent += sum(p[a] * torch.log(p[a]) for a in range(2)) / 8
    log_alpha = nets.log_alpha.detach().clone()
    m = update(nets, agent.optims, b, cfg, agent.target_entropy)
    assert torch.allclose(m["loss/alpha"], -log_alpha * (neg_ent + agent.target_entropy), atol=1e-6)
    assert torch.allclose(m["loss/critic"], exp_critic, atol=1e-5)
    assert torch.allclose(m["loss/actor"], exp_actor, atol=1e-5)
    assert torch.allclose(m["train/entropy"], -neg_ent, atol=1e-5)


def test_alpha_moves_towards_the_entropy_target():
    # a policy above the entropy target lowers alpha, one below it (the target exceeds the
    # maximum entropy log 2) raises it
    for target, direction in ((0.0, -1), (5.0, +1)):
        agent = discrete(target_entropy=target, learning_rate=1e-2)
        a0 = float(agent.nets.log_alpha.detach())
        agent.learn(80, progress_bar=False)
        ent = float(agent.update()["train/entropy"])
        moved = float(agent.nets.log_alpha.detach()) - a0
        assert (ent > agent.target_entropy) == (direction < 0)
        assert moved * direction > 0


def test_checkpoint_without_replay_refills_before_updating(tmp_path):
    agent = small(save_replay=False, optimize_memory=True)
    agent.learn(100, progress_bar=False)
    path = agent.save(tmp_path / "lean.safetensors")
    from critic import checkpoint as ckpt
    tensors, _ = ckpt.read(path)
    assert not any(k.startswith("replay/") and k != "replay/sample_generator" for k in tensors)
    loaded = critic.load(path, for_training=True)
    assert len(loaded.replay) == 0 and loaded.updates == 50
    loaded.learn(40, progress_bar=False)  # refilling: learning_starts (50) steps without updates
    assert loaded.updates == 50 and len(loaded.replay) == 40
    loaded.learn(20, progress_bar=False)
    assert loaded.updates == 60


@pytest.mark.slow
def test_compile_option_runs_and_checkpoints_like_eager(tmp_path):
    agent = small(compile=True)
    agent.learn(70, progress_bar=False)
    assert agent.updates == 20
    loaded = critic.load(agent.save(tmp_path / "c.safetensors"), compile=False, for_training=True)
    obs = torch.zeros(4, 3)
    with torch.no_grad():
        assert torch.allclose(agent.nets.dist(obs).mode(), loaded.nets.dist(obs).mode(), atol=1e-5)


def test_alpha_step_equals_the_autograd_adam_step():
    """The temperature's gradient is set directly (-gap); the step equals Adam on the loss
    -E[log_alpha * (log pi + target_entropy)] through autograd, over several steps."""
    from critic.algos.sac import _alpha_step

    agent = small()
    nets, opt = agent.nets, agent.optims["alpha"]
    ref = torch.nn.Parameter(nets.log_alpha.detach().clone())
    ref_opt = torch.optim.Adam([ref], lr=opt.param_groups[0]["lr"])
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        logp = torch.randn(32, generator=gen) - 1.0
        loss = _alpha_step(nets, opt, logp.mean() + agent.target_entropy)
        ref_loss = -(ref * (logp + agent.target_entropy)).mean()
        ref_opt.zero_grad()
        ref_loss.backward()
        ref_opt.step()
        assert torch.allclose(loss, ref_loss.detach(), atol=1e-6)
        assert torch.allclose(nets.log_alpha.detach(), ref.detach(), atol=1e-7)
    assert abs(float(ref.detach())) > 1e-4  # it moved from log(1) = 0
