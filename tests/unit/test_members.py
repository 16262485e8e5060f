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
