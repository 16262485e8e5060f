"""A batched PPO update of two members equals two solo updates of the same members (to float32
rounding), and mixing the members' data up breaks that (negative control)."""

import gymnasium as gym
import numpy as np
import torch

from critic.algos.common import make_optimizer
from critic.algos.ppo import PPOConfig, minibatch_loss, minibatch_step
from critic.modules.members import Members
from critic.modules.policies import ActorCriticNet
from critic.optim import MemberAdam

OBS = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
CFG = PPOConfig(learning_rate=3e-3, max_grad_norm=0.5, ent_coef=0.01, n_steps=16, batch_size=16)


def _net(seed, act_space):
    torch.manual_seed(seed)
    return ActorCriticNet(OBS, act_space, (16, 16), "tanh")


def _minibatch(seed, act_space, B=16):
    g = torch.Generator().manual_seed(100 + seed)
    if isinstance(act_space, gym.spaces.Discrete):
        actions = torch.randint(0, act_space.n, (B,), generator=g)
    else:
        actions = torch.randn(B, act_space.shape[0], generator=g)
    return {"obs": torch.randn(B, 4, generator=g), "actions": actions, "logp": -torch.rand(B, generator=g),
            "values": torch.randn(B, generator=g), "adv": torch.randn(B, generator=g),
            "ret": torch.randn(B, generator=g)}


def _stack(mbs):
    return {k: torch.stack([mb[k] for mb in mbs]) for k in mbs[0]}


def _run(act_space, swap=False, steps=4):
    nets = [_net(s, act_space) for s in (0, 1)]
    members = Members([_net(s, act_space) for s in (0, 1)])
    opts = [make_optimizer(n, CFG) for n in nets]
    opt = MemberAdam(members.parameters(), CFG.learning_rate, 2, betas=tuple(CFG.adam_betas), eps=CFG.optim_eps)
    loss_fn = members.vmap(lambda net, mb: minibatch_loss(net, mb, CFG, True, True, CFG.clip_eps))
    for step in range(steps):
        mbs = [_minibatch(10 * step + k, act_space) for k in (0, 1)]
        for net, o, mb in zip(nets, opts, mbs):
            minibatch_step(net, o, mb, CFG, True, True, CFG.clip_eps)
        losses, metrics = loss_fn(_stack(mbs[::-1] if swap else mbs))
        assert losses.shape == (2,) and metrics["loss/actor"].shape == (2,)
        opt.zero_grad()
        losses.sum().backward()
        opt.clip_(CFG.max_grad_norm)
        opt.step()
    return nets, members


def test_batched_update_equals_solo_updates_discrete_and_box():
    for space in (gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,), np.float32)):
        nets, members = _run(space)
        for k, net in enumerate(nets):
            mine = members.member(k).state_dict()
            for name, p in net.state_dict().items():
                torch.testing.assert_close(mine[name], p, rtol=1e-4, atol=1e-5, msg=f"{space} member {k} {name}")


def test_mixed_up_members_differ_negative_control():
    nets, members = _run(gym.spaces.Discrete(3), swap=True)
    diffs = [max((members.member(k).state_dict()[n] - p).abs().max().item() for n, p in net.state_dict().items())
             for k, net in enumerate(nets)]
    assert min(diffs) > 1e-3, diffs


def _rollout(net, seed, T=8, N=4):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(T, N, 4, generator=g)
    with torch.no_grad():
        params, v = net(obs.reshape(T * N, 4))
        d = net.dist(params)
        a = d.sample()
        logp = d.log_prob(a)
    term = torch.rand(T, N, generator=g) < 0.1
    trunc = (torch.rand(T, N, generator=g) < 0.05) & ~term
    return {"obs": obs, "actions": a.reshape(T, N), "logp": logp.reshape(T, N), "values": v.reshape(T, N),
            "rewards": torch.randn(T, N, generator=g), "next_values": torch.randn(T, N, generator=g),
            "terminated": term, "truncated": trunc}


def test_batched_ppo_update_with_epochs_minibatches_and_kl_stop_equals_solo_updates():
    from critic.algos.ppo import update, update_members

    space = gym.spaces.Discrete(3)
    # target_kl small enough that the members stop after different numbers of epochs
    cfg = PPOConfig(learning_rate=1e-2, max_grad_norm=0.5, n_steps=8, num_envs=4, batch_size=8, n_epochs=6,
                    target_kl=0.004, normalize_advantage=True)
    seeds = (0, 1)
    nets = [_net(s, space) for s in seeds]
    members = Members([_net(s, space) for s in seeds])
    batches = [_rollout(n, 50 + k) for k, n in enumerate(nets)]
    solo_metrics, epochs_run = [], []
    for k, (net, b) in enumerate(zip(nets, batches)):
        opt = make_optimizer(net, cfg)
        torch.manual_seed(1000 + k)  # the solo update shuffles with the global generator
        solo_metrics.append(update(net, opt, b, cfg))
        epochs_run.append(int(opt.state[opt.param_groups[0]["params"][0]]["step"]) // 4)
    assert epochs_run[0] != epochs_run[1] and max(epochs_run) < cfg.n_epochs, epochs_run  # the KL stop acted, differently
    gens = [torch.Generator().manual_seed(1000 + k) for k in range(2)]
    opt = MemberAdam(members.parameters(), cfg.learning_rate, 2, betas=tuple(cfg.adam_betas), eps=cfg.optim_eps)
    metrics = update_members(members, opt, {k: torch.stack([b[k] for b in batches]) for k in batches[0]}, cfg, gens)
    assert [int(x) for x in opt.steps] == [4 * e for e in epochs_run]
    for k, net in enumerate(nets):
        mine = members.member(k).state_dict()
        for name, p in net.state_dict().items():
            torch.testing.assert_close(mine[name], p, rtol=1e-4, atol=1e-5, msg=f"member {k} {name}")
        torch.testing.assert_close(metrics["loss/actor"][k], solo_metrics[k]["loss/actor"], rtol=1e-4, atol=1e-5)


def test_per_member_gamma_and_lambda_equal_solo_updates_with_them():
    from critic.algos.ppo import update, update_members

    space = gym.spaces.Discrete(3)
    settings = [(0.9, 0.8), (0.99, 0.95)]
    cfgs = [PPOConfig(learning_rate=1e-2, n_steps=8, num_envs=4, batch_size=32, n_epochs=2, gamma=g, gae_lambda=lam)
            for g, lam in settings]
    nets = [_net(s, space) for s in (0, 1)]
    members = Members([_net(s, space) for s in (0, 1)])
    batches = [_rollout(n, 70 + k) for k, n in enumerate(nets)]
    for net, b, cfg in zip(nets, batches, cfgs):
        update(net, make_optimizer(net, cfg), b, cfg)
    opt = MemberAdam(members.parameters(), 1e-2, 2, betas=tuple(cfgs[0].adam_betas), eps=cfgs[0].optim_eps)
    update_members(members, opt, {k: torch.stack([b[k] for b in batches]) for k in batches[0]}, cfgs[0],
                   [torch.Generator().manual_seed(k) for k in range(2)], gammas=[0.9, 0.99], lambdas=[0.8, 0.95])
    for k, net in enumerate(nets):
        mine = members.member(k).state_dict()
        for name, p in net.state_dict().items():
            torch.testing.assert_close(mine[name], p, rtol=1e-4, atol=1e-5, msg=f"member {k} {name}")


def test_per_member_coefficients_equal_solo_updates_with_them():
    """A sweep of clip_eps, vf_coef, ent_coef, max_grad_norm and target_kl: each member's own."""
    from critic.algos.ppo import update, update_members

    space = gym.spaces.Discrete(3)
    settings = [dict(clip_eps=0.1, vf_coef=0.5, ent_coef=0.0, max_grad_norm=0.5, target_kl=None),
                dict(clip_eps=0.3, vf_coef=1.0, ent_coef=0.05, max_grad_norm=None, target_kl=0.004)]
    cfgs = [PPOConfig(learning_rate=1e-2, n_steps=8, num_envs=4, batch_size=8, n_epochs=4, **s) for s in settings]
    nets = [_net(s, space) for s in (0, 1)]
    members = Members([_net(s, space) for s in (0, 1)])
    batches = [_rollout(n, 90 + k) for k, n in enumerate(nets)]
    for k, (net, b, cfg) in enumerate(zip(nets, batches, cfgs)):
        torch.manual_seed(500 + k)
        update(net, make_optimizer(net, cfg), b, cfg)
    coefs = {k: torch.tensor([float("inf") if s[k] is None else s[k] for s in settings])
             for k in ("clip_eps", "vf_coef", "ent_coef", "max_grad_norm", "target_kl")}
    opt = MemberAdam(members.parameters(), 1e-2, 2, betas=tuple(cfgs[0].adam_betas), eps=cfgs[0].optim_eps)
    update_members(members, opt, {k: torch.stack([b[k] for b in batches]) for k in batches[0]}, cfgs[0],
                   [torch.Generator().manual_seed(500 + k) for k in range(2)], coefs=coefs)
    for k, net in enumerate(nets):
        mine = members.member(k).state_dict()
        for name, p in net.state_dict().items():
            torch.testing.assert_close(mine[name], p, rtol=1e-4, atol=1e-5, msg=f"member {k} {name}")
    # negative control: the coefficients swapped between the members
    members2 = Members([_net(s, space) for s in (0, 1)])
    opt2 = MemberAdam(members2.parameters(), 1e-2, 2, betas=tuple(cfgs[0].adam_betas), eps=cfgs[0].optim_eps)
    update_members(members2, opt2, {k: torch.stack([b[k] for b in batches]) for k in batches[0]}, cfgs[0],
                   [torch.Generator().manual_seed(500 + k) for k in range(2)],
                   coefs={k: v.flip(0) for k, v in coefs.items()})
    assert not torch.allclose(members2.member(1).state_dict()["pi_head.weight"], nets[1].state_dict()["pi_head.weight"])


def test_image_members_take_the_vmapped_path_and_equal_solo_updates():
    """A Nature-CNN encoder is not stacked: the same PPO loss vmapped over the members."""
    from critic.algos.ppo import update, update_members
    from critic.envs.fake import TinyImageEnv
    from critic.modules.policies import StackedActorCritic

    env = TinyImageEnv(continuous=False, hwc=False)
    space, act_space = env.observation_space, env.action_space

    def net(seed):
        torch.manual_seed(seed)
        return ActorCriticNet(space, act_space, (16,), "tanh")

    assert not StackedActorCritic.stackable(net(0))
    cfg = PPOConfig(learning_rate=1e-3, n_steps=4, num_envs=2, batch_size=8, n_epochs=2)
    nets, members = [net(s) for s in (0, 1)], Members([net(s) for s in (0, 1)])
    g = torch.Generator().manual_seed(3)
    batches = []
    for n in nets:
        obs = torch.randint(0, 255, (4, 2, *space.shape), generator=g, dtype=torch.uint8)
        with torch.no_grad():
            params, v = n(obs.reshape(8, *space.shape))
            d = n.dist(params)
            a = d.sample()
        batches.append({"obs": obs, "actions": a.reshape(4, 2), "logp": d.log_prob(a).reshape(4, 2),
                        "values": v.reshape(4, 2), "rewards": torch.randn(4, 2, generator=g),
                        "next_values": torch.randn(4, 2, generator=g), "terminated": torch.zeros(4, 2, dtype=torch.bool),
                        "truncated": torch.zeros(4, 2, dtype=torch.bool)})
    for n, b in zip(nets, batches):
        update(n, make_optimizer(n, cfg), b, cfg)
    opt = MemberAdam(members.parameters(), 1e-3, 2, betas=tuple(cfg.adam_betas), eps=cfg.optim_eps)
    update_members(members, opt, {k: torch.stack([b[k] for b in batches]) for k in batches[0]}, cfg,
                   [torch.Generator().manual_seed(k) for k in range(2)])
    for k, n in enumerate(nets):
        mine = members.member(k).state_dict()
        for name, p in n.state_dict().items():
            torch.testing.assert_close(mine[name], p, rtol=1e-4, atol=1e-4, msg=f"member {k} {name}")
