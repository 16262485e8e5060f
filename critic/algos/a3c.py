"""Asynchronous advantage actor-critic (Mnih et al. 2016, arXiv:1602.01783).

``workers`` asynchronous workers, each with its own environment(s) and a local copy of the
network. A worker repeatedly (1) pulls the global parameters into its local copy, (2) collects
an ``n_steps`` rollout, (3) computes the actor-critic gradient with A2C's loss
(``critic.algos.a2c.loss``: the same n-step returns by GAE with lambda = 1 by default, the same
policy, value and entropy terms) and clips its norm, and (4) applies it to the global
parameters through an optimizer whose statistics are shared by every worker (the paper's
shared RMSprop), with no global lock.

Each worker *is* an A2C agent with one env per ``num_envs`` (its env handling, storage and
time-limit bootstrapping are the library's shared ones); this file adds only what makes it
asynchronous. The runners orchestrate: ``backend='local'`` (``critic/runners/local.py``,
processes with parameters in shared memory) or ``backend='ray'`` (``critic/runners/ray.py``).

The learner process keeps the global network: ``predict``, ``evaluate`` and checkpoints use it
(workers pause while it evaluates or saves, so a checkpoint is one consistent state). Runs are
not bit-reproducible: the interleaving of the workers' updates depends on the OS scheduler.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import torch

from critic.agent import Agent
from critic.algos import a2c
from critic.algos.a2c import A2C, A2CConfig, ActorCriticConfig
from critic.algos.common import actor_critic_net, apply_lr_schedule, make_optimizer, optimizer_for
from critic.collect import Collector
from critic.config import ConfigError, check, check_choice, worker_hparams
from critic.modules.policies import ActorCriticNet
from critic.normalize import SharedRunningMeanStd
from critic.optim import backward_clip
from critic.runners.local import LocalRunner, WorkerError

__all__ = ["A3C", "A3CConfig", "A3CWorker", "WorkerError"]


@dataclass(kw_only=True)
class A3CConfig(ActorCriticConfig):
    workers: int = 2
    """Asynchronous workers (processes with backend='local', Ray actors with backend='ray')."""
    num_envs: int = 1
    """Environments per worker (each worker's rollout is n_steps x num_envs steps)."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    backend: str = "local"
    """'local' (processes on this machine, parameters in shared memory) or 'ray' (a Ray cluster)."""
    start_method: str = "spawn"
    """How the local backend starts worker processes: 'spawn', 'forkserver' or 'fork'."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("start_method", self.start_method, ("spawn", "forkserver", "fork"))
        # (workers > 1 on the local backend: A3C's asynchronous processes, which share one set of
        # observation statistics through this machine's memory)
        check(not self.normalize_obs or self.backend == "local", "normalize_obs", self.normalize_obs,
              "false with backend='ray' (the workers share their statistics through this machine's memory: "
              "use backend='local')")
        check(not self.normalize_reward, "normalize_reward", self.normalize_reward,
              "false for A3C (each worker would keep its own return statistics; a fixed reward_scale works)")
        check(self.device == "cpu", "device", self.device,
              "'cpu' for A3C (workers share the parameters in CPU memory)")
        check(not self.compile, "compile", self.compile, "false for A3C (every worker would recompile)")

    def worker_config(self, worker_id: int, generation: int) -> dict[str, Any]:
        """The A2C config of one worker: its own seed (new envs after each restart), one thread."""
        return worker_hparams(self, A2CConfig, worker_id, generation)


class A3CWorker:
    """One worker: an A2C agent (envs, storage, local network) that returns gradients."""

    def __init__(self, env: Any, cfg: A3CConfig, worker_id: int, generation: int,
                 allow_import: tuple[str, ...] = (), obs_stats: torch.Tensor | None = None):
        self.cfg, self.worker_id = cfg, worker_id
        self.agent = A2C(env, cfg.worker_config(worker_id, generation), allow_import=allow_import)
        if obs_stats is not None:  # normalise with (and add to) the statistics every process shares
            self.agent.obs_norm.rms = SharedRunningMeanStd(self.agent.obs_norm.rms.mean.shape, obs_stats)
        self.opt = self.agent.optims["main"]  # only for its flat gradient buffer; never stepped
        self.flat = self.opt.param_groups[0]["params"][0]
        self.rollout_steps = 0  # env steps of the last rollout (n_steps x num_envs; an episode's length if episodic)
        self.agent.stream.reset(seed=self.agent.cfg.seed)

    def rollout_gradient(self, params: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[float]]:
        """Pull ``params``, collect one rollout, return (clipped gradient, metrics, finished returns)."""
        with torch.no_grad():
            self.flat.copy_(params)
        agent = self.agent
        # the learner counts steps from what each rollout really took (an episodic rollout runs
        # to the end of its episode)
        self.rollout_steps, returns = agent.collector.collect(agent.stream, 0)
        total, metrics = a2c.loss(agent.nets, agent.collector.buffer.view(), self.cfg)
        backward_clip(self.opt, total, self.cfg.max_grad_norm)
        return self.flat.grad, metrics, returns


@dataclass
class LRSchedule:
    """``schedule(opt, env_steps, span)``: the config's learning-rate schedule, applied by whoever
    steps the shared optimizer (a worker process, or the Ray parameter server)."""

    cfg: A3CConfig

    def __call__(self, opt: torch.optim.Optimizer, env_steps: int, span: tuple[int, int]) -> None:
        apply_lr_schedule(opt, self.cfg, env_steps, span)


@dataclass
class WorkerFactory:
    """Picklable recipe for a worker (sent to each worker process or Ray actor)."""

    env: Any
    cfg: A3CConfig
    allow_import: tuple[str, ...] = ()
    obs_stats: torch.Tensor | None = None  # shared-memory observation statistics (normalize_obs)

    def __call__(self, worker_id: int, generation: int) -> A3CWorker:
        return A3CWorker(self.env, self.cfg, worker_id, generation, self.allow_import, self.obs_stats)


class A3C(Agent):
    """``critic.A3C(env, workers=2, **hparams)``: asynchronous n-step actor-critic."""

    algo = "a3c"
    config_cls = A3CConfig

    def _build(self) -> None:
        cfg = self.cfg
        spec = self.env_spec
        if isinstance(spec, (gym.Env, gym.vector.VectorEnv)):
            raise ConfigError("A3C builds each worker's envs itself: pass a Gymnasium id or a picklable callable, "
                              f"not a {type(spec).__name__} instance")
        if spec is not None and not isinstance(spec, str):
            try:
                pickle.dumps(spec)
            except Exception as e:
                raise ConfigError(f"A3C workers need a picklable env callable (a module-level function or class); "
                                  f"{spec!r} is not ({type(e).__name__})") from None
        self.nets = actor_critic_net(self, cfg).to(self.device)
        self.optims = {"main": make_optimizer(self.nets, cfg)}
        if self.obs_norm is not None:  # one set of statistics for the learner and every worker
            self.obs_norm.rms = SharedRunningMeanStd(self.obs_norm.rms.mean.shape)
        self.collector = Collector()  # the workers collect and update; the learner stores nothing
        self._runner: Any = None
        self._active = False
        self._metrics: dict[str, float] = {}
        self._base = (0, 0)

    # ------------------------------------------------------------------ runner plumbing
    def _make_runner(self):
        cfg = self.cfg
        factory = WorkerFactory(self.env_spec, cfg, self.allow_import,
                                self.obs_norm.rms.buffer if self.obs_norm is not None else None)
        make_opt = functools.partial(optimizer_for, cfg=cfg)
        schedule = LRSchedule(cfg) if cfg.lr_schedule != "constant" else None
        if cfg.backend == "ray":
            from critic.runners.ray import RayA3CRunner
            return RayA3CRunner(factory, make_opt, self.optims["main"], cfg, schedule)
        return LocalRunner(factory, make_opt, self.optims["main"], cfg.workers, schedule=schedule,
                           max_restarts=cfg.max_restarts, worker_timeout=cfg.worker_timeout,
                           start_method=cfg.start_method)

    @property
    def runner(self) -> Any:
        """The runner of the workers (local processes or Ray actors), None before the first learn()."""
        return self._runner

    @property
    def worker_restarts(self) -> list[int]:
        """Restarts so far, per worker."""
        return list(self._runner.restarts) if self._runner is not None else [0] * self.cfg.workers

    @property
    def worker_failures(self) -> list[tuple[int, str]]:
        """(worker, cause) of every failure so far."""
        return list(self._runner.failures) if self._runner is not None else []

    def _learn_begin(self, target: int) -> None:
        if self.env_spec is None:
            raise ConfigError("this A3C agent has no environment; pass env= to critic.load")
        if self._runner is None:
            self._runner = self._make_runner()
        self._base = (self.env_steps, self.updates)
        self._runner.start(self.env_steps, target)
        self._active = True

    def _sync_counters(self) -> None:
        self.env_steps = self._base[0] + self._runner.env_steps
        self.updates = self._base[1] + self._runner.num_updates

    def _iteration(self) -> dict[str, float]:
        returns, metrics = self._runner.poll()
        self._record_episodes(returns)
        if metrics:
            self._metrics = metrics
        self._sync_counters()
        return self._metrics

    def _env_state(self) -> None:
        return None  # the envs live in the workers, which restart with new seeds

    def _learn_end(self) -> None:
        if not self._active:
            return
        self._active = False
        try:
            self._runner.stop()
            returns, metrics = self._runner.poll(wait=0.0)
            self._record_episodes(returns)
            self._metrics = metrics or self._metrics
        finally:
            self._sync_counters()

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if not self._active:
            return super().evaluate(*args, **kwargs)
        self._runner.pause()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self._runner.resume()

    def save(self, path):
        if not self._active:
            return super().save(path)
        self._runner.pause()
        try:
            self._sync_counters()
            return super().save(path)
        finally:
            self._runner.resume()

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        super().close()

