"""keras-gym's function approximators in PyTorch, after its documentation: a
``FunctionApproximator`` holds the body (features of the observation, shared by every head
built on it) and the optimizer settings; heads add the output layer and keep their own target
copy.

    func = FunctionApproximator(env, lr=1e-3)          # MLP body; body=my_module to override
    pi = SoftmaxPolicy(func, update_strategy="ppo")    # Discrete
    v = V(func, gamma=0.99, bootstrap_n=3)
    ac = ActorCritic(pi, v)

Every head takes one observation (-> one value / action) or a batch ``[B, *obs_shape]``.
Distributions, losses and target updates are the agents' own (``critic.distributions``,
``critic.losses``, ``critic.modules.target``).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

import critic.components.checkpointing as checkpointing
from critic.components.caches import NStepCache
from critic.components.checkpointing import HeadParts, Parts, Slot
from critic.distributions import LOG_STD_MAX, LOG_STD_MIN, Categorical, DiagGaussian, TanhGaussian
from critic.envs.make import make_env
from critic.envs.spaces import space_to_dict
from critic.losses.pg import UPDATE_STRATEGIES, entropy_loss, policy_loss, value_loss
from critic.modules.actions import BoxScaler
from critic.modules.target import freeze, polyak_update
from critic.nn import encoder_for, is_image_space, mlp, set_cpu_threads

# constructor settings a checkpoint records for reference (where a head has them)
_SETTINGS = ("gamma", "bootstrap_n", "bootstrap_with_target_model", "loss", "update_strategy", "ppo_clip_eps",
             "entropy_beta")


def _spaces_of(env) -> tuple[gym.Space, gym.Space]:
    if isinstance(env, str):
        e = make_env(env)
        spaces = (e.observation_space, e.action_space)
        e.close()
        return spaces
    if isinstance(env, gym.Env):
        return env.observation_space, env.action_space
    if isinstance(env, tuple) and len(env) == 2:
        return env
    raise TypeError(f"env must be a gymnasium.Env, an env id or an (observation_space, action_space) pair, "
                    f"got {type(env).__name__}")


class FunctionApproximator:
    """The shared body and optimizer settings.

    ``body`` is any ``nn.Module`` mapping a float batch ``[B, *obs_shape]`` to features
    ``[B, F]``; by default an MLP (``hidden_sizes``, ``activation``) for vector observations
    (one-hot encoded first for a Discrete observation space) and the Nature CNN for images.
    Heads built on one approximator share its body's parameters.

    keras-gym's way works too: subclass and override ``body(self, S)`` with PyTorch code. Layers
    it uses must be attributes set before ``super().__init__`` runs (``self.fc = nn.Linear(...)``);
    they become the body's parameters, are trained, copied into target models and checkpointed::

        class OneHot(critic.FunctionApproximator):
            def body(self, S):
                return torch.nn.functional.one_hot(S.long(), 16).float()
    """

    def __init__(self, env, lr: float = 1e-3, body: nn.Module | None = None,
                 hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh", optimizer: str = "adam",
                 device: str | torch.device = "cpu", torch_threads: int = 0):
        if not lr > 0:
            raise ValueError(f"invalid value for 'lr': {lr!r} (allowed: a number > 0)")
        if optimizer not in ("adam", "rmsprop", "sgd"):
            raise ValueError(f"invalid value for 'optimizer': {optimizer!r} (allowed: adam, rmsprop, sgd)")
        self.env = env if isinstance(env, gym.Env) else None
        self.observation_space, self.action_space = _spaces_of(env)
        self.lr, self.optimizer_name, self.device = float(lr), optimizer, torch.device(device)
        if not isinstance(torch_threads, (int, np.integer)) or torch_threads < 0:
            raise ValueError(f"invalid value for 'torch_threads': {torch_threads!r} (allowed: an integer >= 0, 0 = auto)")
        # the agents' rule: one thread for narrow MLPs, several for 256-wide ones and images
        set_cpu_threads(self.device, int(torch_threads), wide=is_image_space(self.observation_space)
                        or (body is None and max(hidden_sizes) >= 256))
        method = getattr(type(self), "body", None)
        if method is not None:  # keras-gym style: a subclass overrides body(self, S)
            if body is not None:
                raise ValueError("give either body=<module> or override body(self, S) in a subclass, not both")
            body = _MethodBody(self, method)
        elif body is None:
            space = self.observation_space
            if is_image_space(space):
                body = encoder_for(space)
            elif isinstance(space, gym.spaces.Discrete):  # a state index: one-hot, then the MLP
                body = nn.Sequential(_OneHot(int(space.n), int(space.start)), mlp(int(space.n), hidden_sizes, None,
                                                                                  activation))
            else:
                enc = encoder_for(space)
                body = nn.Sequential(enc, mlp(enc.out_dim, hidden_sizes, None, activation))
        self.body = body.to(self.device)  # an instance attribute: shadows an overriding body method
        with torch.no_grad():
            x = torch.zeros((1, *self.observation_space.shape), device=self.device)
            try:
                feats = self.body(x)
            except AttributeError as e:
                if method is None:
                    raise
                raise AttributeError(f"{e}: layers used by {type(self).__name__}.body must be set before "
                                     "super().__init__() runs") from e
        if feats.dim() != 2:
            raise ValueError(f"the body must return features [B, F], it returned shape {tuple(feats.shape)}")
        self.feature_dim = int(feats.shape[1])

    def make_optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if self.optimizer_name == "adam":  # fused: one kernel over all tensors (CPU and CUDA)
            return torch.optim.Adam(params, lr=self.lr, fused=self.device.type in ("cpu", "cuda"))
        if self.optimizer_name == "rmsprop":
            return torch.optim.RMSprop(params, lr=self.lr, alpha=0.99, eps=1e-5)
        return torch.optim.SGD(params, lr=self.lr)

    def to_tensor(self, S: Any) -> tuple[Tensor, bool]:
        """Observation(s) -> float batch on the device, and whether a single one was given."""
        x = torch.as_tensor(np.asarray(S), device=self.device)
        single = tuple(x.shape) == tuple(self.observation_space.shape)
        if single:
            x = x.unsqueeze(0)
        elif tuple(x.shape[1:]) != tuple(self.observation_space.shape):
            raise ValueError(f"observation of shape {tuple(x.shape)} matches neither the observation space "
                             f"{self.observation_space.shape} nor a batch of it")
        return (x if is_image_space(self.observation_space) else x.float()), single


class _OneHot(nn.Module):
    def __init__(self, n: int, start: int = 0):
        super().__init__()
        self.n, self.start = n, start

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.one_hot(x.reshape(-1).long() - self.start, self.n).float()


class _MethodBody(nn.Module):
    """A subclass's ``body(self, S)`` as a module. The modules and parameters the approximator
    holds when it is built become submodules here (trained, copied into target models,
    checkpointed); inside ``body``, ``self.<name>`` resolves to this module's copy, so a target
    model's copy runs the same code on the target weights."""

    def __init__(self, owner: FunctionApproximator, fn: Callable):
        super().__init__()
        self.layers = nn.ModuleDict({k: v for k, v in vars(owner).items() if isinstance(v, nn.Module)})
        self.params = nn.ParameterDict({k: v for k, v in vars(owner).items() if isinstance(v, nn.Parameter)})
        # plain attributes, shared (not copied) by __deepcopy__: the approximator holds the env
        self.__dict__["_fn"], self.__dict__["_owner"] = fn, owner

    def forward(self, S: Tensor) -> Tensor:
        return self._fn(_BodyView(self._owner, self.layers, self.params), S)

    def __deepcopy__(self, memo):
        new = _MethodBody.__new__(_MethodBody)
        nn.Module.__init__(new)
        new.layers, new.params = copy.deepcopy(self.layers, memo), copy.deepcopy(self.params, memo)
        new.__dict__["_fn"], new.__dict__["_owner"] = self._fn, self._owner
        new.train(self.training)
        return new


class _BodyView:
    """``self`` inside an overriding ``body``: the wrapping module's layers first, then the approximator."""

    def __init__(self, owner, layers: nn.ModuleDict, params: nn.ParameterDict):
        self.__dict__.update(_owner=owner, _layers=layers, _params=params)

    def __getattr__(self, name: str):
        if name in self._layers:
            return self._layers[name]
        if name in self._params:
            return self._params[name]
        return getattr(self._owner, name)


class _Head(nn.Module):
    """Body (shared) + output layer, with a frozen target copy of both."""

    def __init__(self, func: FunctionApproximator, out_dim: int, extra_in: int = 0, gamma: float = 0.9,
                 bootstrap_n: int = 1, bootstrap_with_target_model: bool = False, hidden: int = 0):
        super().__init__()
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"invalid value for 'gamma': {gamma!r} (allowed: a number in [0, 1])")
        if not isinstance(bootstrap_n, (int, np.integer)) or bootstrap_n < 1:
            raise ValueError(f"invalid value for 'bootstrap_n': {bootstrap_n!r} (allowed: an integer >= 1)")
        self.func = func
        self.gamma, self.bootstrap_n = float(gamma), int(bootstrap_n)
        self.bootstrap_with_target_model = bool(bootstrap_with_target_model)
        self.body = func.body
        d = func.feature_dim + extra_in
        # hidden > 0: one hidden ReLU layer mixes the state features with the action input
        self.head = (nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)) if hidden
                     else nn.Linear(d, out_dim)).to(func.device)
        self.target_model = freeze(copy.deepcopy(nn.ModuleDict({"body": self.body, "head": self.head})))
        self._optimizer: torch.optim.Optimizer | None = None

    def online_parameters(self) -> list[nn.Parameter]:
        return [*self.body.parameters(), *self.head.parameters()]

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            self._optimizer = self.func.make_optimizer(self.online_parameters())
        return self._optimizer

    def features(self, x: Tensor, target: bool = False) -> Tensor:
        return (self.target_model["body"] if target else self.body)(x)

    def out(self, feats: Tensor, target: bool = False) -> Tensor:
        return (self.target_model["head"] if target else self.head)(feats)

    def sync_target_model(self, tau: float = 1.0) -> None:
        """w_target <- (1 - tau) w_target + tau w_primary (body and head)."""
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"invalid value for 'tau': {tau!r} (allowed: a number in [0, 1])")
        polyak_update(nn.ModuleDict({"body": self.body, "head": self.head}), self.target_model, tau)

    def _step(self, loss: Tensor) -> None:
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()

    def save(self, path, np_rng: np.random.Generator | None = None):
        """Write this head alone (online and target weights, its own optimizer if built, sampling
        generator, cache, RNG states; ``np_rng`` too if given) to a checkpoint file; returns its path.
        See :mod:`critic.components.checkpointing`."""
        return checkpointing.save(self._checkpoint_parts(), path, np_rng)

    def load(self, path, np_rng: np.random.Generator | None = None) -> None:
        """Restore :meth:`save`'s checkpoint into this head, built the same way; raises
        :class:`critic.CheckpointError` (and changes nothing) on any mismatch."""
        checkpointing.load(self._checkpoint_parts(), path, np_rng)

    # what a checkpoint holds of this head (see critic.components.checkpointing)
    def _checkpoint_description(self) -> dict[str, Any]:
        """What a checkpoint must match to load into this head (with its tensors' shapes and dtypes)."""
        spaces = {"observation": _space_description(self.func.observation_space),
                  "action": _space_description(self.func.action_space)}
        return {"class": type(self).__name__, "optimizer": self.func.optimizer_name, "spaces": spaces}

    def _checkpoint_head(self) -> HeadParts:
        settings = {k: vars(self)[k] for k in _SETTINGS if k in vars(self)}
        return HeadParts(module=self, body=self.body, description=self._checkpoint_description(),
                         settings={**settings, "lr": self.func.lr},
                         optimizer=Slot(self, "_optimizer", lambda: self.func.make_optimizer(self.online_parameters())))

    def _checkpoint_parts(self) -> Parts:
        """This head saved on its own."""
        return Parts(type(self).__name__, {checkpointing.SINGLE: self._checkpoint_head()})


def _space_description(space: gym.Space) -> Any:
    try:
        return space_to_dict(space)
    except TypeError:
        return repr(space)


# ----------------------------------------------------------------------------- value functions

class V(_Head):
    """State value v(s): ``v(s)`` -> float, ``batch_eval(S)`` -> ``[B]``; ``update(s, r, done)`` and
    ``batch_update(S, Rn, In, S_next)`` regress on ``Rn + In * v(S_next)``."""

    def __init__(self, func: FunctionApproximator, gamma: float = 0.9, bootstrap_n: int = 1,
                 bootstrap_with_target_model: bool = False, loss: str = "mse"):
        super().__init__(func, 1, 0, gamma, bootstrap_n, bootstrap_with_target_model)
        if loss not in ("mse", "huber"):
            raise ValueError(f"invalid value for 'loss': {loss!r} (allowed: mse, huber)")
        self.loss = loss
        self._cache = None

    def forward(self, x: Tensor, target: bool = False) -> Tensor:
        return self.out(self.features(x, target), target).squeeze(-1)

    def __call__(self, s, use_target_model: bool = False):  # type: ignore[override]
        if isinstance(s, Tensor) and s.dim() == len(self.func.observation_space.shape) + 1:
            return self.forward(s, use_target_model)
        x, single = self.func.to_tensor(s)
        with torch.no_grad():
            v = self.forward(x, use_target_model).cpu().numpy()
        return float(v[0]) if single else v

    def batch_eval(self, S, use_target_model: bool = False) -> np.ndarray:
        x, _ = self.func.to_tensor(S)
        with torch.no_grad():
            return self.forward(x, use_target_model).cpu().numpy()

    def bootstrap_target(self, Rn, In, S_next) -> Tensor:
        """``Rn + In * v(S_next)`` (target model when ``bootstrap_with_target_model``), no gradient."""
        x_next, _ = self.func.to_tensor(S_next)
        with torch.no_grad():
            v_next = self.forward(x_next, self.bootstrap_with_target_model)
        dev = v_next.device
        return torch.as_tensor(np.asarray(Rn), dtype=torch.float32, device=dev) + \
            torch.as_tensor(np.asarray(In), dtype=torch.float32, device=dev) * v_next

    def batch_update(self, S, Rn, In, S_next) -> dict[str, float]:
        x, _ = self.func.to_tensor(S)
        G = self.bootstrap_target(Rn, In, S_next)
        loss, _ = value_loss(self.forward(x), G, self.loss)
        self._step(loss)
        return {"value/loss": loss.item(), "loss/critic": loss.item()}

    def update(self, s, r: float, done: bool, truncated: bool = False, s_next=None) -> dict[str, float] | None:
        if self._cache is None:
            self._cache = self._new_cache()
        self._cache.add(s, 0, r, done, truncated, s_next)
        out = None
        while self._cache:
            S, _, Rn, In, S_next = self._cache.pop()
            out = self.batch_update(S, Rn, In, S_next)
        return out

    def _new_cache(self) -> NStepCache:
        return NStepCache(None, self.bootstrap_n, self.gamma)

    def _checkpoint_head(self) -> HeadParts:
        return dataclasses.replace(super()._checkpoint_head(), cache=Slot(self, "_cache", self._new_cache))


class _QFunction(_Head):
    def __init__(self, func, out_dim, extra_in, gamma, bootstrap_n, bootstrap_with_target_model, loss, hidden=0):
        super().__init__(func, out_dim, extra_in, gamma, bootstrap_n, bootstrap_with_target_model, hidden)
        if loss not in ("mse", "huber"):
            raise ValueError(f"invalid value for 'loss': {loss!r} (allowed: mse, huber)")
        self.loss = loss
        space = func.action_space
        self.discrete = isinstance(space, gym.spaces.Discrete)
        self.n_actions = int(space.n) if self.discrete else 0

    def _actions(self, A, batch: int) -> Tensor:
        a = torch.as_tensor(np.asarray(A), device=self.func.device)
        if self.discrete:
            return a.reshape(batch).long()
        return a.reshape(batch, -1).float()

    def __call__(self, s, a=None, use_target_model: bool = False):  # type: ignore[override]
        x, single = self.func.to_tensor(s)
        with torch.no_grad():
            q = self.forward(x, None if a is None else self._actions(a, x.shape[0]), use_target_model)
        q = q.cpu().numpy()
        return (q[0] if q.ndim > 1 else float(q[0])) if single else q

    def batch_eval(self, S, A=None, use_target_model: bool = False) -> np.ndarray:
        x, _ = self.func.to_tensor(S)
        with torch.no_grad():
            return self.forward(x, None if A is None else self._actions(A, x.shape[0]), use_target_model).cpu().numpy()


class QTypeI(_QFunction):
    """Type-I Q(s, a) -> one value: the action (one-hot for Discrete spaces) joins the body's
    state features in a head with one hidden ReLU layer (as wide as the features), so Q can
    be non-linear in the action (a linear head would make the greedy action always a bound
    and the action's effect independent of the state). ``q(s, a)`` -> float; ``q(s)`` -> all
    actions' values (Discrete only)."""

    def __init__(self, func: FunctionApproximator, gamma: float = 0.9, bootstrap_n: int = 1,
                 bootstrap_with_target_model: bool = False, loss: str = "mse"):
        space = func.action_space
        extra = int(space.n) if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape))
        super().__init__(func, 1, extra, gamma, bootstrap_n, bootstrap_with_target_model, loss,
                         hidden=func.feature_dim)

    def forward(self, x: Tensor, a: Tensor | None = None, target: bool = False) -> Tensor:
        f = self.features(x, target)
        if a is None:
            if not self.discrete:
                raise ValueError("a type-I Q function of a continuous action space needs the action")
            B, n = f.shape[0], self.n_actions  # every action: [B, n]
            eye = torch.eye(n, device=f.device).expand(B, n, n)
            return self.out(torch.cat([f.unsqueeze(1).expand(B, n, -1), eye], -1), target).squeeze(-1)
        a_in = nn.functional.one_hot(a, self.n_actions).float() if self.discrete else a
        return self.out(torch.cat([f, a_in], -1), target).squeeze(-1)


class QTypeII(_QFunction):
    """Type-II Q(s) -> one value per discrete action; ``q(s, a)`` picks one."""

    def __init__(self, func: FunctionApproximator, gamma: float = 0.9, bootstrap_n: int = 1,
                 bootstrap_with_target_model: bool = False, loss: str = "mse"):
        if not isinstance(func.action_space, gym.spaces.Discrete):
            raise ValueError(f"QTypeII needs a Discrete action space, got {func.action_space}")
        super().__init__(func, int(func.action_space.n), 0, gamma, bootstrap_n, bootstrap_with_target_model, loss)

    def forward(self, x: Tensor, a: Tensor | None = None, target: bool = False) -> Tensor:
        q = self.out(self.features(x, target), target)
        return q if a is None else q.gather(-1, a.view(-1, 1)).squeeze(-1)


# ----------------------------------------------------------------------------- policies

class _Policy(_Head):
    def __init__(self, func, out_dim, update_strategy: str | Callable = "vanilla", ppo_clip_eps: float = 0.2,
                 entropy_beta: float = 0.01, random_seed: int | None = None):
        super().__init__(func, out_dim)
        if not callable(update_strategy) and update_strategy not in UPDATE_STRATEGIES:
            raise ValueError(f"invalid value for 'update_strategy': {update_strategy!r} "
                             f"(allowed: {', '.join(UPDATE_STRATEGIES)} or a callable)")
        self.update_strategy, self.ppo_clip_eps, self.entropy_beta = update_strategy, ppo_clip_eps, entropy_beta
        self.generator = torch.Generator(device=func.device)
        if random_seed is not None:
            self.generator.manual_seed(int(random_seed))

    def dist(self, x: Tensor, target: bool = False):
        return self.make_dist(self.out(self.features(x, target), target))

    def _sample(self, d) -> Tensor:
        with torch.random.fork_rng(devices=[]):  # the policy's own generator: reproducible draws
            torch.random.set_rng_state(self.generator.get_state())
            a = d.sample()
            self.generator.set_state(torch.random.get_rng_state())
        return a

    def __call__(self, s, use_target_model: bool = False):  # type: ignore[override]
        """Sample an action from pi(.|s) (env units) for one observation or a batch."""
        x, single = self.func.to_tensor(s)
        with torch.no_grad():
            a = self.env_action(self._sample(self.dist(x, use_target_model)))
        return a[0] if single else a

    def greedy(self, s):
        x, single = self.func.to_tensor(s)
        with torch.no_grad():
            a = self.env_action(self.dist(x).mode())
        return a[0] if single else a

    def dist_params(self, s):
        x, single = self.func.to_tensor(s)
        with torch.no_grad():
            p = self.params(self.out(self.features(x))).cpu().numpy()
        return p[0] if single else p

    def batch_eval(self, S, use_target_model: bool = False) -> np.ndarray:
        x, _ = self.func.to_tensor(S)
        with torch.no_grad():
            return self.params(self.out(self.features(x, use_target_model), use_target_model)).cpu().numpy()

    def loss(self, x: Tensor, A: Tensor, adv: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Policy loss of the update strategy plus ``entropy_beta`` times the entropy loss."""
        d = self.dist(x)
        old_logp = None
        if self.update_strategy == "ppo" or callable(self.update_strategy):
            with torch.no_grad():  # pi_old is the target model (sync_target_model refreshes it)
                old_logp = self.dist(x, target=True).log_prob(A)
        pl, metrics = policy_loss(self.update_strategy, d, A, adv, old_logp, self.ppo_clip_eps)
        el, em = entropy_loss(d.entropy())
        # keras-gym's metric names, and the agents' (loss/actor, train/entropy) beside them
        return pl + self.entropy_beta * el, {"policy/loss": pl.detach(), "loss/actor": pl.detach(), **metrics,
                                             "policy/entropy": em["train/entropy"], **em}

    def batch_update(self, S, A, Adv) -> dict[str, float]:
        x, _ = self.func.to_tensor(S)
        loss, metrics = self.loss(x, self.policy_actions(A, x.shape[0]), torch.as_tensor(np.asarray(Adv),
                                                                                         dtype=torch.float32))
        self._step(loss)
        return {k: float(v) for k, v in metrics.items()}

    def update(self, s, a, advantage: float) -> dict[str, float]:
        return self.batch_update(np.asarray(s)[None], np.asarray(a)[None], np.asarray([advantage]))

    def _checkpoint_head(self) -> HeadParts:
        return dataclasses.replace(super()._checkpoint_head(), generator=self.generator)


class SoftmaxPolicy(_Policy):
    """Softmax policy over a Discrete space; ``dist_params`` are the probabilities."""

    def __init__(self, func: FunctionApproximator, update_strategy: str | Callable = "vanilla",
                 ppo_clip_eps: float = 0.2, entropy_beta: float = 0.01, random_seed: int | None = None):
        if not isinstance(func.action_space, gym.spaces.Discrete):
            raise ValueError(f"SoftmaxPolicy needs a Discrete action space, got {func.action_space}")
        super().__init__(func, int(func.action_space.n), update_strategy, ppo_clip_eps, entropy_beta, random_seed)

    def make_dist(self, logits: Tensor) -> Categorical:
        return Categorical(logits)

    def params(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, -1)

    def env_action(self, a: Tensor) -> np.ndarray:
        return a.cpu().numpy()

    def policy_actions(self, A, batch: int) -> Tensor:
        a = torch.as_tensor(np.asarray(A), device=self.func.device)
        if a.is_floating_point() and a.shape == (batch, self.func.action_space.n):
            if self.update_strategy == "cross_entropy" or callable(self.update_strategy):
                return a  # behaviour probabilities, for update_strategy='cross_entropy'
            # one-hot rows (what later keras-gym versions pass) are actions; other rows are not
            if not bool(((a == 0) | (a == 1)).all() and (a.sum(-1) == 1).all()):
                raise ValueError(f"A of shape {tuple(a.shape)} holds probabilities, which only "
                                 f"update_strategy='cross_entropy' takes; pass actions (or one-hot rows) "
                                 f"for {self.update_strategy!r}")
            return a.argmax(-1)
        return a.reshape(batch).long()


class GaussianPolicy(_Policy):
    """Diagonal Gaussian over a Box space; ``dist_params`` are ``[mean, log_std]``.

    ``squash=False`` (default, keras-gym's policy): actions are clipped to the Box when handed to
    the env (the log-probability is the unclipped Gaussian's, as in A2C/PPO). ``squash=True``: a
    tanh-squashed Gaussian rescaled to the Box, with the exact log-probability correction: the
    better choice for ``SoftActorCritic``, which takes either (see docs/components.md)."""

    def __init__(self, func: FunctionApproximator, update_strategy: str | Callable = "vanilla",
                 ppo_clip_eps: float = 0.2, entropy_beta: float = 0.01, random_seed: int | None = None,
                 squash: bool = False):
        space = func.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"GaussianPolicy needs a Box action space, got {space}")
        self.act_dim = int(np.prod(space.shape))
        super().__init__(func, 2 * self.act_dim, update_strategy, ppo_clip_eps, entropy_beta, random_seed)
        self.squash = bool(squash)
        self.scaler = BoxScaler(space) if self.squash else None

    def make_dist(self, out: Tensor):
        mean, log_std = out.chunk(2, -1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        return TanhGaussian(mean, log_std) if self.squash else DiagGaussian(mean, log_std)

    def _checkpoint_description(self) -> dict[str, Any]:
        return {**super()._checkpoint_description(), "squash": self.squash}

    def params(self, out: Tensor) -> Tensor:
        mean, log_std = out.chunk(2, -1)
        return torch.cat([mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)], -1)

    def env_action(self, a: Tensor) -> np.ndarray:
        a = a.cpu().numpy()
        space = self.func.action_space
        if self.squash:
            return self.scaler.scale(a)
        return np.clip(a, space.low, space.high).astype(space.dtype)

    def policy_actions(self, A, batch: int) -> Tensor:
        a = torch.as_tensor(np.asarray(A), dtype=torch.float32, device=self.func.device).reshape(batch, -1)
        if self.squash:  # env units -> the policy's (-1, 1), kept off the tanh's infinite ends
            a = torch.as_tensor(self.scaler.unscale(a.cpu().numpy()), device=self.func.device)
            a = a.clamp(-1 + 1e-6, 1 - 1e-6)
        return a
