"""Small pieces the algorithm files share: optimizer construction, the LR schedule, the on-policy
collector, and the set-up of the deterministic-actor agents (DDPG, TD3)."""

from __future__ import annotations

import torch
from torch import Tensor

from critic.buffers.replay import ReplayBuffer
from critic.buffers.rollout import RolloutBuffer
from critic.collect import Collector, ReplayCollector, RolloutCollector
from critic.config import Config, OnPolicyConfig
from critic.losses.actor import deterministic_actor_loss
from critic.losses.q import q_regression_loss, td_target
from critic.modules.deterministic import (DeterministicExploration, DeterministicNets, StackedDeterministic,
                                          stackable_deterministic)
from critic.modules.members import run_members
from critic.modules.target import polyak_members
from critic.nn import flat_dim
from critic.optim import ACTING, ParamsOnly, flatten_


def user_encoder(agent, cfg: Config):
    """A fresh instance of the user's encoder (``cfg.encoder``), or None: each network that
    encodes observations gets its own (SAC's and TD3's actor and critics, as with images)."""
    if cfg.encoder is None:
        return None
    from critic.nn import build_encoder

    return build_encoder(agent.obs_space, cfg.encoder, agent.allow_import)


def actor_critic_net(agent, cfg: OnPolicyConfig):
    """A2C's, A3C's and PPO's network from their config: widths per side, activation, layer norm,
    shared body or not, and the user's encoder in front when given."""
    from critic.config import ConfigError
    from critic.modules.policies import ActorCriticNet

    try:
        return ActorCriticNet(agent.obs_space, agent.act_space, cfg.hidden_sizes, cfg.activation, cfg.shared_body,
                              cfg.ortho_init, cfg.log_std_init, actor_sizes=cfg.sizes_of("actor"),
                              critic_sizes=cfg.sizes_of("critic"), layer_norm=cfg.layer_norm,
                              encoder=user_encoder(agent, cfg), action_masks=cfg.action_masks)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"invalid value for 'shared_body': True ({e}; allowed: false, or equal actor and "
                          "critic widths)") from None


def make_optimizer(module: torch.nn.Module, cfg: OnPolicyConfig) -> torch.optim.Optimizer:
    """Adam (fused) or RMSprop over the module's parameters, flattened into one tensor."""
    return optimizer_for([flatten_(module.parameters())], cfg)


def optimizer_for(params: list[torch.Tensor], cfg: OnPolicyConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` asks for over ``params`` (A3C workers build theirs over shared ones)."""
    if ACTING.get():
        return ParamsOnly(params, cfg.learning_rate)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.learning_rate, alpha=cfg.rmsprop_alpha, eps=cfg.optim_eps,
                                   foreach=True)
    return adam(params, cfg.learning_rate, cfg, eps=cfg.optim_eps)


def adam(params: list[torch.Tensor], lr: float, cfg: Config, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam with the config's ``adam_betas``, fused where the device has the kernel."""
    if ACTING.get():
        return ParamsOnly(params, lr)
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.adam_betas), eps=eps, fused=fused)


def apply_lr_schedule(opt: torch.optim.Optimizer, cfg: OnPolicyConfig, env_steps: int,
                      span: tuple[int, int] | None) -> None:
    """Linear annealing from learning_rate to 0 over the current learn() call (``span``; None
    outside learn(), where the rate stays as it is)."""
    if cfg.lr_schedule != "linear" or span is None:
        return
    start, end = span
    frac = 1.0 - (env_steps - start) / max(end - start, 1)
    for g in opt.param_groups:
        g["lr"] = cfg.learning_rate * max(frac, 0.0)


def on_policy_collector(agent, length: int, episodic: bool = False) -> Collector:
    """The rollout collector of an on-policy agent (A2C, PPO): in this process with its own
    envs, or, with ``backend='ray'``, ``workers`` Ray samplers whose rollouts sit side by side."""
    cfg = agent.cfg
    parts = cfg.workers if cfg.backend == "ray" else 1
    buffer = RolloutBuffer(length, cfg.num_envs * parts, agent.obs_space, agent.act_space, agent.device)
    if cfg.backend == "ray":
        from critic.runners.ray import RaySamplingCollector, SamplerFactory
        flat = agent.optims["main"].param_groups[0]["params"][0]
        return RaySamplingCollector(SamplerFactory(type(agent), agent.env_spec, cfg, agent.allow_import), cfg,
                                    buffer, params=lambda: flat)
    return RolloutCollector(buffer, agent.nets.act, agent.nets.value, agent.env_action, agent.device, episodic)


def build_deterministic(agent, n_critics: int) -> None:
    """Sets the networks, optimizers (Adam over each flattened network), exploration and replay
    collector of a deterministic-actor agent (TD3, DDPG), and the handles on them (``replay``,
    ``scaler``, ``noise``, ``env_action``)."""
    cfg, dev = agent.cfg, agent.device
    act_dim = flat_dim(agent.act_space)
    make_encoder = (lambda: user_encoder(agent, cfg)) if cfg.encoder is not None else None  # noqa: E731
    nets = DeterministicNets(agent.obs_space, act_dim, cfg.sizes_of("actor"), cfg.activation, n_critics,
                             critic_sizes=cfg.sizes_of("critic"), layer_norm=cfg.layer_norm,
                             make_encoder=make_encoder).to(dev)
    optims = {
        "actor": adam([flatten_(nets.actor.parameters())], cfg.lr_of("actor"), cfg, cfg.optim_eps),
        "critic": adam([flatten_(nets.critic.parameters())], cfg.lr_of("critic"), cfg, cfg.optim_eps),
    }
    for target in (nets.actor_target, nets.critic_target):  # Polyak in one operation each
        flatten_(target.parameters(), grads=False)
    exploration = DeterministicExploration(nets, cfg.noise_type, cfg.action_noise, cfg.num_envs, act_dim,
                                           agent.np_rng)
    replay = ReplayBuffer(agent.storage_capacity(cfg.num_envs), cfg.num_envs, agent.obs_space, agent.act_space, cfg.gamma,
                          cfg.bootstrap_n, dev, optimize_memory=cfg.optimize_memory)
    collector = ReplayCollector(replay, cfg, agent.act_space, dev, exploration.explore, exploration.episode_end)
    agent.nets, agent.optims, agent.exploration, agent.collector = nets, optims, exploration, collector
    agent.replay, agent.scaler, agent.noise, agent.env_action = replay, collector.scaler, exploration.noise, \
        collector.to_env


def deterministic_update_members(batch, data: dict[str, Tensor], active: Tensor, policy_delay: int = 1,
                                 smoothing: bool = False) -> dict[str, Tensor]:
    """One TD3 (``smoothing``, ``policy_delay``) or DDPG update of every member of a batch
    (``critic.algos.batch.SeedBatch``) at once, on each member's replay batch stacked
    ``[M, B, ...]``: the critic regression onto min_e Q'_e(s', mu'(s') [+ clipped noise from the
    member's own generator]), and on the members whose step is due the actor's ascent on Q_1
    and both targets' Polyak step at the member's own ``tau``. Members where ``active`` is
    false move nothing; metrics are ``[M]``."""
    agents, M = batch.agents, batch.M
    obs, act, rew, next_obs, disc = (data[k] for k in ("obs", "actions", "rewards", "next_obs", "discount"))
    nets0 = agents[0].nets
    stacked = stackable_deterministic(nets0)  # one batched product per layer; images: vmapped

    def members(detach: tuple[str, ...] = ()):
        m = batch.members(detach)
        return StackedDeterministic(nets0, m.params) if stacked else m

    noise = None
    if smoothing:
        sigma = batch.constant("td3/sigma", lambda: torch.tensor([a.cfg.target_noise for a in agents]).view(M, 1, 1))
        clip = batch.constant("td3/clip", lambda: torch.tensor([a.cfg.target_noise_clip for a in agents]).view(M, 1, 1))
        draws = batch.noise(batch.generators, act.shape[1:], device=act.device)
        noise = torch.maximum(torch.minimum(draws * sigma, clip), -clip)

    def target(net, next_obs, rew, disc, noise=None):
        a2 = net.mu(next_obs, target=True)
        if noise is not None:
            a2 = (a2 + noise).clamp(-1.0, 1.0)
        return td_target(rew, disc, net.critic_target(next_obs, a2).min(-2).values)

    with torch.no_grad():
        y = run_members(members(), target, next_obs, rew, disc, *([noise] if noise is not None else []))
    for o in batch.opts.values():
        o.zero_grad()
    critic_loss = run_members(members(), lambda net, o, a, t: q_regression_loss(net.critic(o, a), t), obs, act, y)
    critic_loss.sum().backward()
    batch.opts["critic"].step(active)
    metrics = {"loss/critic": critic_loss.detach()}
    due = active & torch.tensor([(a.updates + 1) % policy_delay == 0 for a in agents])
    if bool(due.any()):
        actor_loss = run_members(members(detach=("critic.",)),
                           lambda net, o: deterministic_actor_loss(net.critic.member(0, o, net.mu(o))), obs)
        actor_loss.sum().backward()
        batch.opts["actor"].step(due)
        tau = batch.constant("tau", lambda: torch.tensor([a.cfg.tau for a in agents]).view(M, 1))
        polyak_members(batch.group("critic."), batch.group("critic_target."), tau, due)
        polyak_members(batch.group("actor."), batch.group("actor_target."), tau, due)
        if bool((due == active).all()):  # in lockstep every member's actor step is due together
            metrics["loss/actor"] = actor_loss.detach()
    return metrics


def deterministic_batch_act(batch):
    """TD3's and DDPG's ``batch_act``: past the warm-up, mu(s) of every member from one stacked
    forward, then each member's own exploration noise (its NumPy generator, its OU state)."""
    agents, nets0 = batch.agents, batch.agents[0].nets
    if not stackable_deterministic(nets0) or any(a.env_steps < a.collector.learning_starts for a in agents):
        return None
    import numpy as np
    with torch.inference_mode():
        mu = StackedDeterministic(nets0, batch.members().params).mu(batch.acting_obs())
        return np.stack([a.exploration.perturb(mu[k]).cpu().numpy() for k, a in enumerate(agents)])


def on_policy_batch_policy(batch):
    """A2C's and PPO's ``batch_policy``: every member's actions, log-probabilities and values
    from one stacked forward of the members' actor-critics (vector observations; Discrete or
    Box actions), each member's sampling noise drawn from its own acting generator."""
    import gymnasium as gym

    from critic.modules.policies import StackedActorCritic

    agents, nets0 = batch.agents, batch.agents[0].nets
    space = nets0.act_space
    if not StackedActorCritic.stackable(nets0) or not isinstance(space, (gym.spaces.Discrete, gym.spaces.Box)) \
            or any(getattr(a.collector, "episodic", True) for a in agents):
        return None
    discrete = isinstance(space, gym.spaces.Discrete)
    with torch.inference_mode():
        net = StackedActorCritic(nets0, batch.members().params)
        params, v = net(batch.acting_obs())
        d = net.dist(params)
        like = d.logits if discrete else d.mean
        a = d.sample(batch.noise(batch.act_generators, like.shape[1:], discrete, like.device))
        return a.cpu().numpy(), d.log_prob(a).cpu().numpy(), v.cpu().numpy()
