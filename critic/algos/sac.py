"""Soft Actor-Critic (Haarnoja et al. 2018, arXiv:1801.01290; automatic entropy tuning from
arXiv:1812.05905) for continuous actions, and its discrete-action form (Christodoulou 2019,
arXiv:1910.07207) in the same class.

Critic targets (twin critics, clipped double-Q, per-sample discount from replay):
    y = r + discount * (min_e Q'_e(s', a') - alpha * log pi(a'|s')),   a' ~ pi(.|s')
    L_Q = 1/2 sum_e E[(Q_e(s, a) - y)^2]
Actor (one reparameterised sample, reused for the temperature):
    L_pi = E[alpha * log pi(a|s) - min_e Q_e(s, a)],   a = tanh(mu + sigma * eps)
Temperature (target entropy -|A|):
    L_alpha = -E[log_alpha * (log pi(a|s) + target_entropy)]
Targets follow the critics by Polyak averaging with rate ``tau``.

Discrete actions: the critics output one value per action (type II) and every expectation
over the policy is exact, a sum over actions weighted by pi(.|s):
    y    = r + discount * sum_a pi(a|s') (min_e Q'_e(s', a) - alpha * log pi(a|s'))
    L_pi = E_s sum_a pi(a|s) (alpha * log pi(a|s) - min_e Q_e(s, a))
    L_alpha = -E_s[log_alpha * (sum_a pi(a|s) log pi(a|s) + target_entropy)]
with target entropy ``target_entropy_ratio * log|A|`` (a fraction of the maximum entropy).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import gymnasium as gym
import torch
from torch import Tensor, nn

from critic.agent import Agent
from critic.algos.batch import Batched, SeedBatch
from critic.algos.common import adam, user_encoder
from critic.buffers.replay import ReplayBuffer
from critic.collect import ReplayCollector
from critic.config import ConfigError, OffPolicyConfig, check
from critic.distributions import LOG_STD_MAX, LOG_STD_MIN, Categorical, TanhGaussian
from critic.losses.actor import soft_actor_loss, soft_value, temperature_loss
from critic.losses.q import q_regression_loss, td_target
from critic.modules.critics import QEnsemble
from critic.modules.members import Members, run_members, stackable, stacked_linear, stacked_sequential
from critic.modules.target import freeze, frozen, polyak_members, polyak_update
from critic.nn import encoder_for, flat_dim, mask_field, mask_logits, mlp, needs_encoder, read_mask
from critic.optim import backward_step, flatten_, step_


@dataclass(kw_only=True)
class SACConfig(OffPolicyConfig):
    learning_rate: float = 3e-4
    """Optimizer learning rate (actor, critics and entropy coefficient)."""
    ent_coef: float | None = None
    """Fixed entropy coefficient alpha; none tunes it automatically towards target_entropy."""
    ent_coef_init: float = 1.0
    """Initial alpha when it is tuned automatically."""
    target_entropy: float | None = None
    """Entropy target of the automatic tuning; none means -dim(A) for Box actions and
    target_entropy_ratio * log(n) for n discrete actions."""
    target_entropy_ratio: float = 0.7
    """Discrete actions: default target entropy as a fraction of the maximum, log(n) (with action
    masks: of each state's own maximum, log of its number of valid actions)."""
    n_critics: int = 2
    """Critics in the ensemble (the target takes their minimum)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.ent_coef is None or self.ent_coef >= 0, "ent_coef", self.ent_coef, "a number >= 0 or none")
        check(self.ent_coef_init > 0, "ent_coef_init", self.ent_coef_init, "a number > 0")
        check(0 < self.target_entropy_ratio < 1, "target_entropy_ratio", self.target_entropy_ratio,
              "a number in (0, 1)")
        check(self.n_critics >= 1, "n_critics", self.n_critics, "an integer >= 1")


class SACNets(nn.Module):
    """Actor, Q ensemble and its target, log alpha. ``n_actions`` > 0 selects the discrete form
    (softmax actor, critics with one output per action)."""

    def __init__(self, obs_space: gym.Space, act_dim: int, cfg: SACConfig, n_actions: int = 0,
                 make_encoder=None):
        super().__init__()
        self.discrete = n_actions > 0
        # Images: a Nature-CNN for the actor and one shared by the critics (uint8 scaled inside);
        # a user encoder (``make_encoder()``, a fresh one per call) takes the same two places.
        if make_encoder is None and needs_encoder(obs_space):
            make_encoder = lambda: encoder_for(obs_space)  # noqa: E731
        self.actor_encoder = make_encoder() if make_encoder is not None else None
        obs_dim = self.actor_encoder.out_dim if self.actor_encoder is not None else flat_dim(obs_space)
        actor_sizes = cfg.sizes_of("actor")
        self.actor_body = mlp(obs_dim, actor_sizes, None, cfg.activation, ortho_init=False,
                              layer_norm=cfg.layer_norm)
        # discrete: logits; continuous: mean and log-std
        self.actor_head = nn.Linear(actor_sizes[-1], n_actions if self.discrete else 2 * act_dim)
        enc = make_encoder() if self.actor_encoder is not None else None
        self.critic = QEnsemble(obs_dim, 0 if self.discrete else act_dim, cfg.sizes_of("critic"), cfg.n_critics,
                                cfg.activation, n_outputs=max(n_actions, 1), encoder=enc, layer_norm=cfg.layer_norm)
        self.critic_target = freeze(copy.deepcopy(self.critic))
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.ent_coef_init)))
        # discrete actions: the action masks stored in the observation rows (envs/masking.py)
        self._mask = mask_field(obs_space) if cfg.action_masks and self.discrete else None

    def actor_parameters(self) -> list[nn.Parameter]:
        enc = list(self.actor_encoder.parameters()) if self.actor_encoder is not None else []
        return [*enc, *self.actor_body.parameters(), *self.actor_head.parameters()]

    def dist(self, obs: Tensor) -> TanhGaussian | Categorical:
        x = self.actor_encoder(obs) if self.actor_encoder is not None else obs.reshape(obs.shape[0], -1)
        out = self.actor_head(self.actor_body(x))
        if self._mask is not None:
            out = mask_logits(out.float(), read_mask(obs, self._mask))
        return self._dist(out)

    def _dist(self, out: Tensor) -> TanhGaussian | Categorical:
        out = out.float()  # float32 under autocast
        if self.discrete:
            return Categorical(out)
        mean, log_std = out.chunk(2, -1)
        return TanhGaussian(mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX))

    def stackable(self) -> bool:
        """Whether :class:`Stacked` runs these networks (vector observations, MLP bodies)."""
        return self.actor_encoder is None and stackable(self.actor_body)


class Stacked:
    """M members' :class:`SACNets` at once, from their weights stacked ``[M, ...]``
    (``SeedBatch.members().params``): the interface the losses below call (``dist``, ``critic``,
    ``critic_target``, ``discrete``), on inputs ``[M, B, ...]``, one batched product per layer.
    Critic outputs are ``[M, E, B]``; the losses reduce over the last axes only."""

    def __init__(self, nets: SACNets, params: dict[str, Tensor]):
        self.nets, self.params, self.discrete = nets, params, nets.discrete

    def dist(self, obs: Tensor) -> TanhGaussian | Categorical:
        p = self.params
        h = stacked_sequential(self.nets.actor_body, p, "actor_body", obs.reshape(*obs.shape[:2], -1))
        return self.nets._dist(stacked_linear(h, p["actor_head.weight"], p["actor_head.bias"]))

    def critic(self, obs: Tensor, act: Tensor | None = None) -> Tensor:
        return self.nets.critic.stacked(self.params, "critic", obs, act)

    def critic_target(self, obs: Tensor, act: Tensor | None = None) -> Tensor:
        return self.nets.critic_target.stacked(self.params, "critic_target", obs, act)


def soft_target(nets: SACNets, next_obs: Tensor, rew: Tensor, disc: Tensor, alpha: Tensor,
                noise: Tensor | None = None) -> Tensor:
    """The critics' regression target y (no gradient wanted: call under ``no_grad``); ``noise``:
    the next action's standard normal draw (continuous actions), drawn here unless given."""
    if nets.discrete:
        d2 = nets.dist(next_obs)
        q2 = nets.critic_target(next_obs).min(-3).values
        return td_target(rew, disc, soft_value(_per_row(alpha, q2), d2.logits, q2, d2.probs))
    a2, logp2 = nets.dist(next_obs).rsample_with_log_prob(noise)
    return td_target(rew, disc, soft_value(_per_row(alpha, logp2), logp2, nets.critic_target(next_obs, a2).min(-2).values))


def _per_row(alpha: Tensor, like: Tensor) -> Tensor:
    """alpha as a scalar (one agent) or ``[M]`` (members) broadcast over ``like``'s trailing axes."""
    return alpha if alpha.dim() == 0 else alpha.view(-1, *[1] * (like.dim() - 1))


def soft_actor(nets: SACNets, obs: Tensor, alpha: Tensor, noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Continuous actions: the actor loss at one reparameterised sample, and its log-probabilities
    (the temperature's gap). The critic must not take this gradient (``frozen`` or detached)."""
    a_pi, logp = nets.dist(obs).rsample_with_log_prob(noise)
    return soft_actor_loss(_per_row(alpha, logp), logp, nets.critic(obs, a_pi).min(-2).values), logp


def discrete_losses(nets: SACNets, obs: Tensor, act: Tensor, y: Tensor, alpha: Tensor
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """Discrete actions: the critic loss, the actor loss and E_pi[log pi] per state, from one
    critic pass (the actor reads Q's values only, before this step's critic update, as in the
    simultaneous updates of the original)."""
    q_all = nets.critic(obs)  # [E, B, |A|] ([M, E, B, |A|] for members)
    q = q_all.gather(-1, act.long().unsqueeze(-1).unsqueeze(-3).expand(*q_all.shape[:-1], 1)).squeeze(-1)
    critic_loss = q_regression_loss(q, y)
    d = nets.dist(obs)
    probs, logp = d.probs, d.logits
    actor_loss = soft_actor_loss(_per_row(alpha, logp), logp, q_all.detach().min(-3).values, probs)
    return critic_loss, actor_loss, (probs * logp).sum(-1).detach()


def update(nets: SACNets, opts: dict[str, torch.optim.Optimizer], batch: dict[str, Tensor], cfg: SACConfig,
           target_entropy: float, noise: tuple[Tensor, Tensor] | None = None) -> dict[str, Tensor]:
    """One SAC update. ``noise``: the standard normal draws of the next and the current actions
    (continuous actions; drawn from torch's global generator unless given)."""
    obs, act, rew, next_obs, disc = (batch[k] for k in ("obs", "actions", "rewards", "next_obs", "discount"))
    alpha = nets.log_alpha.exp().detach() if cfg.ent_coef is None else torch.tensor(cfg.ent_coef)
    n2, n1 = noise if noise is not None else (None, None)
    with torch.no_grad():
        y = soft_target(nets, next_obs, rew, disc, alpha, n2)
    if nets.discrete:
        critic_loss, actor_loss, neg_entropy = discrete_losses(nets, obs, act, y, alpha)
        backward_step(opts["critic"], critic_loss, None)
        backward_step(opts["actor"], actor_loss, None)
        gap = neg_entropy.mean()
    else:
        critic_loss = q_regression_loss(nets.critic(obs, act), y)
        backward_step(opts["critic"], critic_loss, None)
        with frozen(nets.critic):  # the actor's gradient reaches the actions, not the critic's weights
            actor_loss, logp = soft_actor(nets, obs, alpha, n1)
            backward_step(opts["actor"], actor_loss, None)
        gap = logp.detach().mean()
    metrics = {"loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach(), "train/alpha": alpha}
    if nets.discrete:
        metrics["train/entropy"] = -gap
    if cfg.ent_coef is None:
        gap_to_target = gap + target_entropy
        if nets.discrete and nets._mask is not None and cfg.target_entropy is None:
            gap_to_target = gap_to_target + masked_target_shift(nets, obs, cfg.target_entropy_ratio).mean()
        metrics["loss/alpha"] = _alpha_step(nets, opts["alpha"], gap_to_target)
    polyak_update(nets.critic, nets.critic_target, cfg.tau)
    return metrics


def masked_target_shift(nets: SACNets, obs: Tensor, ratio: float) -> Tensor:
    """With action masks, the default target entropy of each state is ``ratio * log`` of its
    number of valid actions (rather than of all n actions: an entropy that states with few valid
    actions cannot reach, so the temperature would grow without bound). This is its offset from
    ``ratio * log(n)`` per state: exactly 0 where every action is valid."""
    valid = read_mask(obs, nets._mask)
    return ratio * (torch.log(valid.sum(-1).to(torch.float32)) - math.log(valid.shape[-1]))


def _alpha_step(nets: SACNets, opt: torch.optim.Optimizer, gap: Tensor) -> Tensor:
    """One step on the temperature loss, its gradient set by hand (``losses.actor.temperature_loss``)."""
    loss, nets.log_alpha.grad = temperature_loss(nets.log_alpha, gap)
    step_(opt)
    return loss


def update_members(batch: SeedBatch, data: dict[str, Tensor], active: Tensor) -> dict[str, Tensor]:
    """:func:`update` for every member of a batch at once (``data``: each member's replay batch
    stacked ``[M, B, ...]``): the same losses vmapped over the stacked weights, each member's
    noise from its own generator, its own temperature (or fixed ``ent_coef``), target entropy
    and ``tau``; members where ``active`` is false move nothing. Metrics are ``[M]``."""
    agents, M = batch.agents, batch.M
    nets0 = agents[0].nets
    obs, act, rew, next_obs, disc = (data[k] for k in ("obs", "actions", "rewards", "next_obs", "discount"))
    log_alpha = batch.group("log_alpha")  # [M, 1 + padding]: column 0
    auto = batch.constant("sac/auto", lambda: torch.tensor([a.cfg.ent_coef is None for a in agents]))
    fixed = batch.constant("sac/fixed", lambda: torch.tensor([a.cfg.ent_coef or 0.0 for a in agents]))
    alpha = torch.where(auto, log_alpha.detach()[:, 0].exp(), fixed)
    opts = batch.opts
    stacked = nets0.stackable()  # one batched product per layer; image encoders: the same functions vmapped

    def members(detach: tuple[str, ...] = ()) -> "Stacked | Members":
        m = batch.members(detach)
        return Stacked(nets0, m.params) if stacked else m

    nets = members()
    n2 = n1 = None
    if not nets0.discrete:
        # each member's generator: the next actions' draws, then the current actions'
        n2 = batch.noise(batch.generators, act.shape[1:], device=act.device)
        n1 = batch.noise(batch.generators, act.shape[1:], device=act.device)
    with torch.no_grad():
        y = run_members(nets, soft_target, next_obs, rew, disc, alpha, *([] if nets0.discrete else [n2]))
    for o in opts.values():
        o.zero_grad()
    if nets0.discrete:
        critic_loss, actor_loss, neg_entropy = run_members(nets, discrete_losses, obs, act, y, alpha)
        (critic_loss.sum() + actor_loss.sum()).backward()  # disjoint weights: each loss reaches its own
        gap = neg_entropy.mean(-1)
    else:
        critic_loss = run_members(nets, lambda net, o, a, t: q_regression_loss(net.critic(o, a), t), obs, act, y)
        critic_loss.sum().backward()
    opts["critic"].step(active)
    if not nets0.discrete:  # the actor through the stepped critic, whose weights take no gradient
        actor_loss, logp = run_members(members(detach=("critic.",)), soft_actor, obs, alpha, n1)
        actor_loss.sum().backward()
        gap = logp.detach().mean(-1)
    opts["actor"].step(active)
    metrics = {"loss/critic": critic_loss.detach(), "loss/actor": actor_loss.detach(), "train/alpha": alpha}
    if nets0.discrete:
        metrics["train/entropy"] = -gap
    if bool(auto.any()):
        target_entropy = batch.constant("sac/target_entropy",
                                        lambda: torch.tensor([a.target_entropy for a in agents], dtype=gap.dtype))
        gap_to_target = gap + target_entropy
        if nets0.discrete and nets0._mask is not None:  # per-state targets where a member keeps the default
            default = batch.constant("sac/masked_default",
                                     lambda: torch.tensor([a.cfg.target_entropy is None for a in agents]))
            shift = masked_target_shift(nets0, obs, agents[0].cfg.target_entropy_ratio).mean(-1)
            gap_to_target = torch.where(default, gap_to_target + shift, gap_to_target)
        loss, grad = temperature_loss(log_alpha.detach()[:, 0], gap_to_target)
        log_alpha.grad = torch.zeros_like(log_alpha)
        log_alpha.grad[:, 0] = grad
        opts["alpha"].step(active & auto)
        metrics["loss/alpha"] = torch.where(auto, loss, torch.zeros_like(loss))
    tau = batch.constant("tau", lambda: torch.tensor([a.cfg.tau for a in agents]).view(M, 1))
    polyak_members(batch.group("critic."), batch.group("critic_target."), tau, active)
    return metrics


class SAC(Batched, Agent):
    """``critic.SAC(env, **hparams)``: Soft Actor-Critic for Box and Discrete action spaces;
    ``critic.SAC(env, seeds=[...])`` trains a batch of them."""

    algo = "sac"
    config_cls = SACConfig
    allowed_actions = (gym.spaces.Box, gym.spaces.Discrete)
    sweepable = ("learning_rate", "actor_learning_rate", "critic_learning_rate", "gamma", "tau", "ent_coef",
                 "target_entropy")

    @classmethod
    def batch_update(cls, batch, data, active):
        return update_members(batch, data, active)

    @classmethod
    def batch_act(cls, batch):
        """Past the warm-up, every member's exploring action from one stacked forward."""
        agents, nets0 = batch.agents, batch.agents[0].nets
        if not nets0.stackable() or any(a.env_steps < a.collector.learning_starts for a in agents):
            return None
        with torch.inference_mode():
            d = Stacked(nets0, batch.members().params).dist(batch.acting_obs())
            like = d.logits if nets0.discrete else d.base.mean
            return d.sample(batch.noise(batch.act_generators, like.shape[1:], nets0.discrete, like.device)).cpu().numpy()

    def _build(self) -> None:
        cfg = self.cfg
        if isinstance(self.act_space, gym.spaces.Discrete):
            n = int(self.act_space.n)
            if n < 2:
                raise ConfigError(f"SAC needs at least 2 discrete actions, the action space has {n}")
            act_dim, default_target = 0, cfg.target_entropy_ratio * math.log(n)
        else:
            n, act_dim = 0, flat_dim(self.act_space)
            default_target = -act_dim
        self.target_entropy = float(cfg.target_entropy if cfg.target_entropy is not None else default_target)
        make_encoder = (lambda: user_encoder(self, cfg)) if cfg.encoder is not None else None  # noqa: E731
        self.nets = SACNets(self.obs_space, act_dim, cfg, n_actions=n, make_encoder=make_encoder).to(self.device)
        self.optims = {
            "actor": adam([flatten_(self.nets.actor_parameters())], cfg.lr_of("actor"), cfg, cfg.optim_eps),
            "critic": adam([flatten_(self.nets.critic.parameters())], cfg.lr_of("critic"), cfg, cfg.optim_eps),
            "alpha": adam([self.nets.log_alpha], cfg.learning_rate, cfg, cfg.optim_eps),
        }
        flatten_(self.nets.critic_target.parameters(), grads=False)  # Polyak in one operation
        replay = ReplayBuffer(self.storage_capacity(cfg.num_envs), cfg.num_envs, self.obs_space, self.act_space, cfg.gamma,
                              cfg.bootstrap_n, self.device, optimize_memory=cfg.optimize_memory)
        self.collector = ReplayCollector(replay, cfg, self.act_space, self.device, self._explore)
        self.replay, self.scaler, self.env_action = replay, self.collector.scaler, self.collector.to_env

    def _update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return update(self.nets, self.optims, batch, self.cfg, self.target_entropy)

    def _explore(self, obs: Tensor) -> Tensor:
        return self.nets.dist(obs).sample()

    def _policy(self, obs: Tensor, deterministic: bool) -> Tensor:
        d = self.nets.dist(obs)
        return d.mode() if deterministic else d.sample()
