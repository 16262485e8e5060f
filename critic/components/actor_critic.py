"""keras-gym's ``ActorCritic`` and ``SoftActorCritic``, as its documentation describes them, on
critic's functional core.

ActorCritic.batch_update(S, A, Rn, In, S_next)::

    G   = Rn + In * v(S_next)                 (v's target model with bootstrap_with_target_model)
    Adv = G - v(S)                            (a constant for the policy)
    loss = policy_loss(strategy, Adv) - entropy_beta * H(pi) + value_loss_weight * (v(S) - G)^2

SoftActorCritic.batch_update (Haarnoja et al. 2018, arXiv:1801.01290, with a state-value critic)::

    G    = Rn + In * v_target(S_next)                          -> both Q functions regress on G
    v(S) <- E_{a~pi}[min(q1, q2)(S, a) - alpha log pi(a|S)]   (alpha = entropy_beta)
    policy: minimise E_{a~pi}[alpha log pi(a|S) - min(q1, q2)(S, a)]
              (reparameterised for Box actions, an exact sum over actions for Discrete)

For Box actions the policy is squashed (tanh, exact log pi) or, as keras-gym's, an unsquashed
Gaussian: log pi is then the plain Gaussian's at the sample u, and the Q functions see
clip(u, low, high), the action the env executes. The clipped distribution has point masses on
the bounds that log pi ignores, which biases the entropy term and v's target
(docs/components.md measures it); squash=True has no such bias.

The policy term differentiates through the action only: the Q functions enter it with
detached features and weights, so their parameters (and a body they share with the policy)
get no gradient from it. One optimizer steps every parameter once per batch.
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

import critic.components.checkpointing as checkpointing
from critic.components.approximators import (FunctionApproximator, GaussianPolicy, QTypeI, QTypeII,
                                             SoftmaxPolicy, V, _Policy, _QFunction)
from critic.components.caches import NStepCache
from critic.components.checkpointing import Parts, Slot
from critic.losses.actor import soft_actor_loss, soft_value
from critic.losses.pg import value_loss
from critic.losses.q import q_regression_loss


def _unique_params(*heads) -> list[nn.Parameter]:
    seen, out = set(), []
    for h in heads:
        for p in h.online_parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def _default_policy(func: FunctionApproximator, squash: bool, **kw) -> _Policy:
    if isinstance(func.action_space, gym.spaces.Discrete):
        return SoftmaxPolicy(func, **kw)
    if isinstance(func.action_space, gym.spaces.Box):
        return GaussianPolicy(func, squash=squash, **kw)
    raise ValueError(f"unsupported action space {func.action_space} (allowed: Discrete, Box)")


class _ActorCriticBase:
    """What ActorCritic and SoftActorCritic share: heads trained together by one optimizer, an
    n-step cache for per-step updates, target syncs and checkpoints."""

    policy: _Policy
    v_func: V

    def _init_joint_update(self, heads: dict[str, _Policy | V | _QFunction], value_loss_weight: float) -> None:
        """``heads``: role (the attribute naming the head) -> head."""
        if not value_loss_weight >= 0:
            raise ValueError(f"invalid value for 'value_loss_weight': {value_loss_weight!r} (allowed: >= 0)")
        self.value_loss_weight = float(value_loss_weight)
        self._heads = heads
        self.optimizer = self.policy.func.make_optimizer(_unique_params(*heads.values()))
        self.cache = NStepCache(None, self.v_func.bootstrap_n, self.v_func.gamma)

    def __call__(self, s):
        """Sample ``a ~ pi(.|s)`` and ``v(s)``."""
        return self.policy(s), self.v_func(s)

    def greedy(self, s):
        return self.policy.greedy(s), self.v_func(s)

    def dist_params(self, s):
        return self.policy.dist_params(s), self.v_func(s)

    def batch_eval(self, S, use_target_model: bool = False):
        """Sampled actions ``A`` and state values ``V`` for a batch."""
        return self.policy(S, use_target_model), self.v_func.batch_eval(S, use_target_model)

    def update(self, s, a, r: float, done: bool, truncated: bool = False, s_next=None) -> dict[str, float] | None:
        """One step through the n-step cache (``bootstrap_n`` and ``gamma`` of ``v_func``); updates on
        every transition whose window is complete. ``done`` is Gymnasium's ``terminated``; at a
        time-limit truncation pass ``truncated=True`` and the final observation ``s_next``."""
        self.cache.add(s, a, r, done, truncated, s_next)
        out = None
        while self.cache:
            out = self.batch_update(*self.cache.pop())
        return out

    def sync_target_model(self, tau: float = 1.0) -> None:
        for h in self._heads.values():
            h.sync_target_model(tau)

    def _step(self, loss: Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def save(self, path, np_rng: np.random.Generator | None = None):
        """Atomically write a checkpoint: every head's online and target weights, every optimizer's
        state, the policy's sampling generator, the n-step caches' pending transitions, the torch /
        Python / NumPy RNG states (and ``np_rng``'s, if given). A folder gets ``agent.safetensors``.
        Returns the file's path. See :mod:`critic.components.checkpointing`."""
        return checkpointing.save(self._checkpoint_parts(), path, np_rng)

    def load(self, path, np_rng: np.random.Generator | None = None) -> None:
        """Restore :meth:`save`'s checkpoint into this object, built the same way (same classes,
        shapes, shared bodies, optimizer). Checks everything first: on any mismatch it raises
        :class:`critic.CheckpointError` naming the file and the difference and changes nothing."""
        checkpointing.load(self._checkpoint_parts(), path, np_rng)

    def _checkpoint_parts(self) -> Parts:
        """Every head by role, the joint optimizer, the n-step cache (see critic.components.checkpointing)."""
        return Parts(type(self).__name__, {role: h._checkpoint_head() for role, h in self._heads.items()},
                     optimizers={"optimizer": Slot(self, "optimizer")}, caches={"cache": Slot(self, "cache")},
                     settings={"value_loss_weight": self.value_loss_weight})


class ActorCritic(_ActorCriticBase):
    """``ActorCritic(policy, v_func, value_loss_weight=1.0)``: an updateable policy and a state
    value function trained together (the observation batch goes through each head once)."""

    def __init__(self, policy: _Policy, v_func: V, value_loss_weight: float = 1.0):
        if not isinstance(policy, _Policy):
            raise TypeError(f"policy must be a SoftmaxPolicy or GaussianPolicy, got {type(policy).__name__}")
        if not isinstance(v_func, V):
            raise TypeError(f"v_func must be a V, got {type(v_func).__name__}")
        self.policy, self.v_func = policy, v_func
        self._init_joint_update({"policy": policy, "v_func": v_func}, value_loss_weight)

    @classmethod
    def from_func(cls, function_approximator: FunctionApproximator, gamma: float = 0.9, bootstrap_n: int = 1,
                  bootstrap_with_target_model: bool = False, entropy_beta: float = 0.01,
                  update_strategy: str | Callable = "vanilla", random_seed: int | None = None) -> "ActorCritic":
        if random_seed is not None:
            torch.manual_seed(random_seed)
        policy = _default_policy(function_approximator, False, update_strategy=update_strategy,
                                 entropy_beta=entropy_beta, random_seed=random_seed)
        v = V(function_approximator, gamma, bootstrap_n, bootstrap_with_target_model)
        return cls(policy, v)

    def batch_update(self, S, A, Rn, In, S_next, A_next=None) -> dict[str, float]:
        """Update actor and critic on ``G = Rn + In * v(S_next)``; returns the losses."""
        x, _ = self.policy.func.to_tensor(S)
        G = self.v_func.bootstrap_target(Rn, In, S_next)
        v = self.v_func.forward(x)
        adv = (G - v).detach()
        pl, metrics = self.policy.loss(x, self.policy.policy_actions(A, x.shape[0]), adv)
        vl, _ = value_loss(v, G, self.v_func.loss)
        loss = pl + self.value_loss_weight * vl
        self._step(loss)
        return {**{k: t.item() for k, t in metrics.items()}, "value/loss": vl.item(), "loss/critic": vl.item(),
                "loss": loss.item()}


class SoftActorCritic(_ActorCriticBase):
    """``SoftActorCritic(policy, v_func, q_func1, q_func2, value_loss_weight=1.0)``: SAC with a
    state-value critic; ``policy.entropy_beta`` is the temperature alpha."""

    def __init__(self, policy: _Policy, v_func: V, q_func1: _QFunction, q_func2: _QFunction,
                 value_loss_weight: float = 1.0):
        if not isinstance(policy, _Policy):
            raise TypeError(f"policy must be a SoftmaxPolicy or GaussianPolicy, got {type(policy).__name__}")
        if not isinstance(v_func, V):
            raise TypeError(f"v_func must be a V, got {type(v_func).__name__}")
        for name, q in (("q_func1", q_func1), ("q_func2", q_func2)):
            if not isinstance(q, _QFunction):
                raise TypeError(f"{name} must be a QTypeI or QTypeII, got {type(q).__name__}")
            if isinstance(policy, GaussianPolicy) and not isinstance(q, QTypeI):
                raise ValueError(f"{name}: continuous actions need type-I Q functions")
        self.policy, self.v_func, self.q_func1, self.q_func2 = policy, v_func, q_func1, q_func2
        self._init_joint_update({"policy": policy, "v_func": v_func, "q_func1": q_func1, "q_func2": q_func2},
                                value_loss_weight)
        if isinstance(policy, GaussianPolicy) and not policy.squash:  # the Box, to clip sampled actions
            space, dev = policy.func.action_space, policy.func.device
            self._low, self._high = (torch.as_tensor(np.asarray(b, np.float32).reshape(-1), device=dev)
                                     for b in (space.low, space.high))

    @classmethod
    def from_func(cls, function_approximator: FunctionApproximator, gamma: float = 0.9, bootstrap_n: int = 1,
                  q_type: int | None = None, entropy_beta: float = 0.01,
                  random_seed: int | None = None) -> "SoftActorCritic":
        """Policy, v (bootstrapped from its target model) and two Q functions on one approximator.
        ``q_type`` defaults to 2 for Discrete actions and 1 otherwise. For Box actions the policy
        is a squashed GaussianPolicy (``squash=True``); build it yourself for keras-gym's unsquashed one."""
        func = function_approximator
        discrete = isinstance(func.action_space, gym.spaces.Discrete)
        q_type = q_type if q_type is not None else (2 if discrete else 1)
        if q_type not in (1, 2):
            raise ValueError(f"invalid value for 'q_type': {q_type!r} (allowed: 1, 2 or None)")
        if q_type == 2 and not discrete:
            raise ValueError("q_type=2 needs a Discrete action space")
        if random_seed is not None:
            torch.manual_seed(random_seed)
        policy = _default_policy(func, True, entropy_beta=entropy_beta, random_seed=random_seed)
        v = V(func, gamma, bootstrap_n, bootstrap_with_target_model=True)
        Q = QTypeII if q_type == 2 else QTypeI
        return cls(policy, v, Q(func, gamma, bootstrap_n), Q(func, gamma, bootstrap_n))

    def batch_update(self, S, A, Rn, In, S_next, A_next=None) -> dict[str, float]:
        pol, q1, q2 = self.policy, self.q_func1, self.q_func2
        alpha = pol.entropy_beta
        x, _ = pol.func.to_tensor(S)
        B = x.shape[0]
        G = self.v_func.bootstrap_target(Rn, In, S_next)
        a = pol.policy_actions(A, B)
        q1_loss = q_regression_loss(q1.forward(x, a)[None], G, q1.loss)  # each Q with its own loss kind
        q2_loss = q_regression_loss(q2.forward(x, a)[None], G, q2.loss)
        if isinstance(pol, GaussianPolicy):
            if pol.squash:
                a_pi, logp = pol.dist(x).rsample_with_log_prob()
            else:  # keras-gym's: the plain Gaussian's log pi; the Q functions see the executed (clipped) action
                d = pol.dist(x)
                u = d.rsample()
                a_pi, logp = torch.clamp(u, self._low, self._high), d.log_prob(u)
            q_pi = torch.minimum(_frozen_q(q1, x, a_pi), _frozen_q(q2, x, a_pi))
            policy_loss = soft_actor_loss(alpha, logp, q_pi)
            v_target = soft_value(alpha, logp, q_pi).detach()
            entropy = -logp.detach().mean()
        else:  # exact expectations over the discrete actions
            d = pol.dist(x)
            probs, logp = d.probs, d.logits
            with torch.no_grad():
                q_min = torch.minimum(q1.forward(x), q2.forward(x))  # [B, n] for either Q type
            policy_loss = soft_actor_loss(alpha, logp, q_min, probs)
            v_target = soft_value(alpha, logp, q_min, probs).detach()
            entropy = -(probs * logp).sum(-1).detach().mean()
        v_loss, _ = value_loss(self.v_func.forward(x), v_target, self.v_func.loss)
        loss = policy_loss + self.value_loss_weight * (v_loss + q1_loss + q2_loss)
        self._step(loss)
        # keras-gym's metric names, and the agents' beside them (loss/critic: every critic's loss)
        return {"policy/loss": policy_loss.item(), "policy/entropy": entropy.item(), "value/loss": v_loss.item(),
                "q1/loss": q1_loss.item(), "q2/loss": q2_loss.item(), "loss": loss.item(),
                "loss/actor": policy_loss.item(), "loss/critic": (v_loss + q1_loss + q2_loss).item(),
                "train/entropy": entropy.item()}


def _frozen_q(q: QTypeI, x: Tensor, a: Tensor) -> Tensor:
    """Q(s, a) differentiable in ``a`` only: features and head weights enter detached."""
    with torch.no_grad():
        feats = q.features(x)
    frozen = {k: v.detach() for k, v in q.head.named_parameters()}
    return torch.func.functional_call(q.head, frozen, (torch.cat([feats, a], -1),)).squeeze(-1)
