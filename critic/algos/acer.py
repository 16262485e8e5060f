"""ACER: actor-critic with experience replay (Wang et al. 2016, arXiv:1611.01224), discrete actions.

One network with a shared body, a softmax policy head pi(.|s) and a Q head (one value per
action); V(s) = sum_a pi(a|s) Q(s, a). Each iteration collects a segment of ``n_steps`` from
every env with the current policy (keeping the behaviour probabilities mu(.|s)), makes one
on-policy update on it, stores it, and once ``replay_start`` transitions are stored makes
``replay_ratio`` off-policy updates on segments drawn from replay. Per update (as Coach's ACER
documentation describes it):

* Retrace targets ``Q_ret`` (``returns.retrace``, the paper's Algorithm 2), whose traces carry
  the ratios truncated at 1, c_bar = min(1, pi/mu) (``retrace_c``), cut at terminations and
  bootstrapped at truncations and at the segment end;
* policy gradient with importance weights truncated at c (``truncation_c``, 10) plus the
  bias-correction term over all actions, and an entropy bonus (``losses.acer``), taken with respect to the distribution
  parameters f = pi(.|s) and, with ``trust_region``, projected so that its component along
  k = d KL(pi_avg || pi) / d f stays below delta, pi_avg being an exponential moving average of
  the network (``avg_decay``);
* ``q_coef`` * 1/2 (Q_ret - Q(s, a))^2 for the Q head.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from critic.agent import Agent
from critic.algos.common import apply_lr_schedule, make_optimizer, user_encoder
from critic.buffers.sequence import SequenceReplay
from critic.collect import SequenceCollector
from critic.config import Config, ConfigError, check, check_choice
from critic.losses.acer import EPS, acer_policy_objective, kl_grad, trust_region_project
from critic.losses.q import q_regression_loss
from critic.modules.target import freeze, polyak_update
from critic.nn import encoder_for, init_layer, is_image_space, mask_field, mask_logits, mlp, read_mask
from critic.optim import backward_step
from critic.returns import retrace


@dataclass(kw_only=True)
class ACERConfig(Config):
    learning_rate: float = 7e-4
    """Optimizer learning rate."""
    activation: str = "relu"
    """Hidden activation: any elementwise torch.nn activation by name (see Config.activation)."""
    n_steps: int = 20
    """Segment length per env: steps collected between on-policy updates (and replayed together)."""
    replay_ratio: float = 4.0
    """Off-policy updates per on-policy update (an integer, or the Poisson mean with replay_poisson)."""
    replay_poisson: bool = False
    """Draw the number of off-policy updates per iteration from Poisson(replay_ratio)."""
    replay_start: int = 10_000
    """Transitions stored before off-policy updates begin."""
    buffer_size: int = 50_000
    """Replay capacity in transitions (rounded down to whole segments of n_steps x num_envs)."""
    truncation_c: float = 10.0
    """Importance-weight truncation c of the policy gradient: rho_bar = min(c, pi/mu) (also the
    bias-correction threshold)."""
    retrace_c: float = 1.0
    """Truncation of the importance weights in the Retrace traces: min(retrace_c, pi/mu). The
    paper's Algorithm 2 uses 1; larger values let Q_ret's variance grow with the segment."""
    q_coef: float = 0.5
    """Weight of the Q-head loss."""
    ent_coef: float = 0.01
    """Weight of the entropy bonus."""
    trust_region: bool = True
    """Project the policy gradient onto the trust region around the average policy."""
    trust_region_delta: float = 1.0
    """Trust-region bound delta on k^T g."""
    avg_decay: float = 0.99
    """Decay alpha of the average policy network: avg <- alpha avg + (1 - alpha) theta."""
    max_grad_norm: float | None = 10.0
    """Clip the global gradient norm to this value (none = no clipping)."""
    optimizer: str = "rmsprop"
    """Optimizer: 'adam' or 'rmsprop'."""
    rmsprop_alpha: float = 0.99
    """RMSprop smoothing constant (used when optimizer='rmsprop')."""
    optim_eps: float = 1e-5
    """Optimizer epsilon."""
    lr_schedule: str = "constant"
    """Learning-rate schedule: 'constant' or 'linear' (annealed to 0 over the learn() call)."""
    ortho_init: bool = True
    """Orthogonal initialisation (policy head gain 0.01, Q head gain 1)."""
    save_replay: bool = True
    """Write the replay contents into checkpoints (exact --resume); false keeps checkpoints small,
    and a resumed run refills replay_start transitions before replaying again."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.n_steps >= 1, "n_steps", self.n_steps, "an integer >= 1")
        check(math.isfinite(self.replay_ratio) and self.replay_ratio >= 0, "replay_ratio", self.replay_ratio,
              "a number >= 0")
        check(self.replay_poisson or float(self.replay_ratio).is_integer(), "replay_ratio", self.replay_ratio,
              "an integer (or any number >= 0 with replay_poisson=true)")
        check(self.replay_start >= 0, "replay_start", self.replay_start, "an integer >= 0")
        check(self.buffer_size >= self.n_steps * self.num_envs, "buffer_size", self.buffer_size,
              f"an integer >= n_steps x num_envs = {self.n_steps * self.num_envs} (one segment)")
        check(math.isfinite(self.truncation_c) and self.truncation_c > 0, "truncation_c", self.truncation_c,
              "a number > 0")
        check(math.isfinite(self.retrace_c) and self.retrace_c > 0, "retrace_c", self.retrace_c, "a number > 0")
        check(math.isfinite(self.q_coef) and self.q_coef >= 0, "q_coef", self.q_coef, "a number >= 0")
        check(math.isfinite(self.ent_coef) and self.ent_coef >= 0, "ent_coef", self.ent_coef, "a number >= 0")
        check(math.isfinite(self.trust_region_delta) and self.trust_region_delta > 0, "trust_region_delta",
              self.trust_region_delta, "a number > 0")
        check(0.0 <= self.avg_decay < 1.0, "avg_decay", self.avg_decay, "a number in [0, 1)")
        check(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm", self.max_grad_norm,
              "a number > 0 or none")
        check_choice("optimizer", self.optimizer, ("adam", "rmsprop"))
        check(0 < self.rmsprop_alpha < 1, "rmsprop_alpha", self.rmsprop_alpha, "a number in (0, 1)")
        check(self.optim_eps > 0, "optim_eps", self.optim_eps, "a number > 0")
        check_choice("lr_schedule", self.lr_schedule, ("constant", "linear"))


class ACERNet(nn.Module):
    """Shared body (MLP, or the Nature CNN for images), softmax policy head and Q head."""

    def __init__(self, obs_space: gym.Space, n_actions: int, hidden_sizes=(64, 64), activation: str = "relu",
                 ortho_init: bool = True, layer_norm: bool = False, encoder: nn.Module | None = None,
                 action_masks: bool = False):
        super().__init__()
        self.n_actions = n_actions
        self._mask = mask_field(obs_space) if action_masks else None  # (envs/masking.py)
        self.encoder = encoder if encoder is not None else encoder_for(obs_space)  # a user's feeds the MLP
        d = self.encoder.out_dim
        if is_image_space(obs_space) and encoder is None:
            self.body: nn.Module = nn.Identity()
        else:
            self.body = mlp(d, hidden_sizes, None, activation, ortho_init, layer_norm=layer_norm)
            d = hidden_sizes[-1]
        self.pi_head, self.q_head = nn.Linear(d, n_actions), nn.Linear(d, n_actions)
        if ortho_init:
            init_layer(self.pi_head, 0.01)
            init_layer(self.q_head, 1.0)

    def _logits(self, obs: Tensor, h: Tensor) -> Tensor:
        logits = self.pi_head(h)
        return logits if self._mask is None else mask_logits(logits, read_mask(obs, self._mask))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Policy logits (invalid actions masked) and Q-values, both ``[B, A]``."""
        h = self.body(self.encoder(obs))
        return self._logits(obs, h), self.q_head(h)

    def probs(self, obs: Tensor) -> Tensor:
        h = self.body(self.encoder(obs))
        return torch.softmax(self._logits(obs, h), -1)


class ACERNets(nn.Module):
    """The trained network and its exponential-moving-average copy (the trust region's anchor)."""

    def __init__(self, online: ACERNet):
        super().__init__()
        self.online = online
        self.average = freeze(copy.deepcopy(online))


def q_retrace(batch: dict[str, Tensor], f_all: Tensor, q_all: Tensor, v_all: Tensor, retrace_c: float,
              gamma: float) -> Tensor:
    """Retrace targets ``[T * N]`` of one segment from the network's outputs on its rows.

    ``f_all``/``q_all`` ``[B + N + K, A]`` and ``v_all`` ``[B + N + K]`` hold pi, Q and V on the
    segment's B = T * N observations, then the N bootstrap observations s_T, then the K true
    final observations of truncated steps (``batch["final_idx"]``). The traces use
    min(retrace_c, pi(a|s) / mu(a|s)).
    """
    actions, mu = batch["actions"], batch["mu"]
    T, N = actions.shape
    B = T * N
    a = actions.reshape(B, 1)
    trunc_v = torch.zeros(T, N, device=v_all.device)
    if batch["final_obs"].shape[0]:
        idx = batch["final_idx"]
        trunc_v[idx[:, 0], idx[:, 1]] = v_all[B + N:]
    rho_a = f_all[:B].gather(1, a).squeeze(1) / (mu.reshape(B, -1).gather(1, a).squeeze(1) + EPS)
    q_a = q_all[:B].gather(1, a).squeeze(1)
    return retrace(batch["rewards"], q_a.view(T, N), v_all[:B].view(T, N), v_all[B:B + N],
                   rho_a.clamp(max=retrace_c).view(T, N), batch["terminated"], batch["truncated"],
                   trunc_v, gamma).reshape(B)


def update(nets: ACERNets, opt: torch.optim.Optimizer, batch: dict[str, Tensor], cfg: ACERConfig) -> dict[str, Tensor]:
    """One ACER update on one segment ``[T, N]`` (on-policy or replayed)."""
    actions, mu = batch["actions"], batch["mu"]
    T, N = actions.shape
    A, B = mu.shape[-1], T * N
    obs = batch["obs"]
    x = obs.flatten(0, 1)  # rows t * N + n; the last N rows are the bootstrap observations s_T
    K = batch["final_obs"].shape[0]
    if K:
        x = torch.cat([x, batch["final_obs"]])
    logits, q_all = nets.online(x)
    f_all = torch.softmax(logits, -1)
    f, q = f_all[:B], q_all[:B]
    a = actions.reshape(B)
    mu = mu.reshape(B, A)
    with torch.no_grad():
        v_all = (f_all * q_all).sum(-1)
        v = v_all[:B]
        q_ret = q_retrace(batch, f_all, q_all, v_all, cfg.retrace_c, cfg.gamma)
    f_leaf = f.detach().requires_grad_(True)
    objective, metrics = acer_policy_objective(f_leaf, a, mu, q.detach(), v, q_ret, cfg.truncation_c, cfg.ent_coef)
    (g,) = torch.autograd.grad(objective.sum(), f_leaf)  # per-row gradient of the objective
    if cfg.trust_region:
        with torch.no_grad():
            f_avg = nets.average.probs(obs[:T].flatten(0, 1))
            g, scale = trust_region_project(g, kl_grad(f_avg, f.detach()), cfg.trust_region_delta)
            metrics["acer/kl_avg"] = (f_avg * (torch.log(f_avg.clamp(min=EPS)) - torch.log(f.detach().clamp(min=EPS)))).sum(-1).mean()
            metrics["acer/trust_region_active"] = (scale > 0).float().mean()
    policy_surrogate = -(f * g).sum() / B  # d/df = -g'/B: back-propagates the projected gradient
    q_loss = q_regression_loss(q.gather(1, a[:, None]).squeeze(1)[None], q_ret)
    backward_step(opt, policy_surrogate + cfg.q_coef * q_loss, cfg.max_grad_norm)
    polyak_update(nets.online, nets.average, 1.0 - cfg.avg_decay)
    metrics.update({"loss/actor": -objective.detach().mean(), "loss/critic": q_loss.detach()})
    return metrics


class ACER(Agent):
    """``critic.ACER(env, **hparams)``: ACER with Retrace, bias correction and the trust region."""

    algo = "acer"
    config_cls = ACERConfig
    allowed_actions = (gym.spaces.Discrete,)

    def _build(self) -> None:
        cfg = self.cfg
        n_actions = int(self.act_space.n)
        sizes = cfg.sizes_of("actor")
        if cfg.sizes_of("critic") != sizes:
            raise ConfigError(f"invalid value for 'critic_hidden_sizes': {list(cfg.sizes_of('critic'))} (ACER's "
                              f"policy and Q heads share one body, here {list(sizes)}; allowed: the actor's widths, "
                              "or none)")
        online = ACERNet(self.obs_space, n_actions, sizes, cfg.activation, cfg.ortho_init, layer_norm=cfg.layer_norm,
                         encoder=user_encoder(self, cfg), action_masks=cfg.action_masks)
        self.nets = ACERNets(online).to(self.device)
        self.optims = {"main": make_optimizer(self.nets.online, cfg)}
        obs_dtype = torch.uint8 if self.obs_space.dtype == np.uint8 else torch.float32
        replay = SequenceReplay(self.storage_capacity(cfg.n_steps * cfg.num_envs), cfg.n_steps, cfg.num_envs, self.obs_space.shape, obs_dtype,
                                n_actions, self.device)
        self.replay = replay
        self.collector = SequenceCollector(replay, self.nets.online.probs, n_actions, self.device, seed=cfg.seed,
                                           replay_ratio=cfg.replay_ratio, replay_start=cfg.replay_start,
                                           replay_poisson=cfg.replay_poisson, save_replay=cfg.save_replay,
                                           np_rng=self.np_rng)

    def _policy(self, obs: Tensor, deterministic: bool) -> Tensor:
        p = self.nets.online.probs(obs)
        return p.argmax(-1) if deterministic else torch.multinomial(p, 1).squeeze(1)

    def _update(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One update on a segment: the one just collected (on-policy), then replayed ones."""
        opt = self.optims["main"]
        apply_lr_schedule(opt, self.cfg, self.env_steps, self._learn_span)
        return update(self.nets, opt, batch, self.cfg)
