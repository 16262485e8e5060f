"""PPO's variants: the closed-form KL, the KL-penalised surrogate (fixed and adaptive beta, as
Coach's PPO), the unclipped surrogate, and the linear clip-range schedule."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic
from critic.algos.ppo import PPOConfig, minibatch_step
from critic.config import ConfigError
from critic.distributions import Categorical, DiagGaussian, MultiCategorical, kl_divergence
from critic.modules.policies import ActorCriticNet
from critic.optim import flatten_


def test_closed_form_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    want = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=a),
                                             torch.distributions.Categorical(logits=b))
    torch.testing.assert_close(kl_divergence(Categorical(a), Categorical(b)), want)
    m1, m2, s1, s2 = (torch.randn(5, 3, generator=g) for _ in range(4))
    want = torch.distributions.kl_divergence(torch.distributions.Normal(m1, s1.exp()),
                                             torch.distributions.Normal(m2, s2.exp())).sum(-1)
    torch.testing.assert_close(kl_divergence(DiagGaussian(m1, s1), DiagGaussian(m2, s2)), want)
    ma, mb = MultiCategorical(a, [2, 2]), MultiCategorical(b, [2, 2])
    torch.testing.assert_close(kl_divergence(ma, mb), sum(kl_divergence(x, y) for x, y in zip(ma.dists, mb.dists)))
    assert torch.all(kl_divergence(Categorical(a), Categorical(a)).abs() < 1e-6)


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,), np.float32)])
@pytest.mark.parametrize("clip", [None, 0.2])
def test_kl_penalised_minibatch_gradient_is_the_formula(space, clip):
    """The network's gradient equals autograd of -E[r A] (or the clipped surrogate) + beta KL +
    cutoff * max(0, KL - 2 target)^2 written out, with KL in closed form against pi_old."""
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    cfg = PPOConfig(clip_eps=clip, kl_penalty="fixed", kl_target=0.001, kl_cutoff_coef=50.0, vf_coef=0.0,
                    max_grad_norm=None, normalize_advantage=False)
    nets = ActorCriticNet(obs_space, space, (8,))
    old = ActorCriticNet(obs_space, space, (8,))
    with torch.no_grad():  # pi_old: another network, so that KL and ratios are away from 0 and 1
        for p, q in zip(old.parameters(), nets.parameters()):
            p.copy_(q + 0.3 * torch.randn_like(q))
    opt = torch.optim.SGD([flatten_(nets.parameters())], lr=0.0)
    B = 16
    obs = torch.randn(B, 4)
    with torch.no_grad():
        old_params, _ = old(obs)
        d_old = old.dist(old_params)
        actions = d_old.sample()
        old_logp = d_old.log_prob(actions)
    mb = {"obs": obs, "actions": actions, "logp": old_logp, "values": torch.zeros(B), "ret": torch.zeros(B),
          "adv": torch.randn(B), "old_params": old_params}
    beta = torch.tensor(0.7)
    old_log_std = old.log_std.detach().clone() if old.log_std is not None else None
    metrics = minibatch_step(nets, opt, mb, cfg, False, True, clip, beta, old_log_std)
    got = [p.grad.clone() for p in nets.parameters()]
    ref = ActorCriticNet(obs_space, space, (8,))
    ref.load_state_dict(nets.state_dict())
    params, _ = ref(obs)
    d = ref.dist(params)
    ratio = (d.log_prob(actions) - old_logp).exp()
    adv = mb["adv"]
    surr = -(ratio * adv).mean() if clip is None else -torch.min(ratio * adv, ratio.clamp(0.8, 1.2) * adv).mean()
    kl = kl_divergence(old.dist(old_params), d).mean()
    assert kl.item() > 0.002  # the cutoff term is active too
    (surr + beta * kl + 50.0 * (kl - 0.002).clamp(min=0).square()).backward()
    for g, p in zip(got, ref.parameters()):
        torch.testing.assert_close(g, p.grad if p.grad is not None else torch.zeros_like(g), atol=1e-5, rtol=1e-4)
    assert float(metrics["train/kl"]) == pytest.approx(kl.item(), rel=1e-5)


def test_adaptive_beta_follows_coachs_rule_and_is_checkpointed(tmp_path, monkeypatch):
    agent = critic.PPO("CartPole-v1", clip_eps=None, kl_penalty="adaptive", kl_coef=2.0, kl_target=0.01,
                       n_steps=32, batch_size=32, n_epochs=1)
    kls = iter([0.02, 0.02, 0.005, 0.01])  # > 1.3 target: x1.5, x1.5; < 0.7 target: /1.5; inside: kept
    import critic.algos.ppo as ppo
    monkeypatch.setattr(ppo, "update", lambda *a, **k: {"train/kl": torch.tensor(next(kls))})
    seen = []
    agent.learn(128, lambda a, i: seen.append(float(a.kl_coef)), progress_bar=False)
    assert seen == pytest.approx([3.0, 4.5, 3.0, 3.0])
    agent.save(tmp_path / "m")
    assert float(critic.load(tmp_path / "m", for_training=True).kl_coef) == pytest.approx(3.0)


def test_no_penalty_keeps_beta_out():
    agent = critic.PPO("CartPole-v1", n_steps=32, batch_size=32)
    assert agent.kl_coef is None
    agent.learn(64, progress_bar=False)


def test_linear_clip_schedule():
    agent = critic.PPO("CartPole-v1", clip_eps=0.2, clip_schedule="linear", clip_schedule_steps=1000,
                       n_steps=32, batch_size=32, n_epochs=1)
    for steps, want in ((0, 0.2), (500, 0.1), (1000, 0.0), (5000, 0.0)):
        agent.env_steps = steps
        assert agent.clip_range() == pytest.approx(want)
    # 0 steps: over the learn() call, as the learning-rate schedule
    agent = critic.PPO("CartPole-v1", clip_schedule="linear", n_steps=32, batch_size=32, n_epochs=1)
    ranges = []
    agent.learn(128, lambda a, i: ranges.append(float(i["metrics"]["train/clip_range"])), progress_bar=False)
    assert ranges == pytest.approx([0.15, 0.1, 0.05, 0.0])
    assert critic.PPO("CartPole-v1").clip_range() == 0.2


@pytest.mark.parametrize("bad, field", [
    ({"clip_eps": None, "clip_schedule": "linear"}, "clip_schedule"), ({"clip_schedule": "cosine"}, "clip_schedule"),
    ({"kl_penalty": "yes"}, "kl_penalty"), ({"kl_target": 0.0}, "kl_target"), ({"kl_coef": -1.0}, "kl_coef"),
    ({"clip_schedule_steps": -1}, "clip_schedule_steps"), ({"clip_eps": 1.5}, "clip_eps"),
])
def test_invalid_settings_name_the_field(bad, field):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        PPOConfig(**bad)
