"""``Agent``: everything algorithms share and none of their math.

Env construction and checks, seeding and threads, the collection loop for the algorithm's
storage kind, logging, evaluation, checkpoints, ``predict``, ``save`` / ``load``. An algorithm
subclasses it once and provides ``_build`` (networks and optimizers) and ``_update``.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import signal
import threading
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Callable, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from critic import checkpoint as ckpt
from critic.buffers.replay import ReplayBuffer
from critic.buffers.rollout import RolloutBuffer
from critic.config import Config, ConfigError
from critic.envs.check import check_env_or_raise
from critic.envs.make import EnvError, EnvSpec, check_spaces, make_env, make_vec_env
from critic.envs.spaces import same_space, space_from_dict, space_to_dict
from critic.envs.step import EnvStepper
from critic.modules.actions import BoxScaler
from critic.logger import Clock, Progress, RunLogger, solved_points, to_float, write_json
from critic.nn import cpu_has_native_bf16, is_image_space, set_cpu_threads
from critic.normalize import ObsNormalizer, RewardNormalizer
from critic.seeding import rng_state, seed_everything, set_rng_state

Callback = Callable[["Agent", dict[str, Any]], bool | None]


class NonFiniteError(RuntimeError):
    """A loss or metric became NaN/inf: training stops, the last good checkpoint is kept."""


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name``, or a ConfigError when this machine does not have it (before
    any network is built, rather than a raw error at the first ``.to()``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"invalid value for 'device': {name!r} ({str(e).splitlines()[0]}; "
                          "allowed: 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto')") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"invalid value for 'device': {name!r} (CUDA is not available on this machine; "
                              "use 'cpu')")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"invalid value for 'device': {name!r} (this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s): cuda:0 to "
                              f"cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"invalid value for 'device': {name!r} (Apple's MPS backend is not available on "
                              "this machine; use 'cpu')")
    elif dev.type != "cpu":
        raise ConfigError(f"invalid value for 'device': {name!r} (allowed: 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto')")
    return dev


def build_config(config_cls: type[Config], config: Config | dict | None, overrides: dict[str, Any]) -> Config:
    if config is None:
        data: dict[str, Any] = {}
    elif isinstance(config, Config):
        data = config.to_dict()
    elif isinstance(config, dict):
        data = dict(config)
    else:
        raise ConfigError(f"config must be a {config_cls.__name__}, a dict or None, got {type(config).__name__}")
    data.update(overrides)
    return config_cls.from_dict(data)


class Agent:
    algo: ClassVar[str] = ""
    config_cls: ClassVar[type[Config]] = Config
    storage: ClassVar[str] = "rollout"
    allowed_actions: ClassVar[tuple[type, ...]] = (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.Box)

    nets: nn.Module
    optims: dict[str, torch.optim.Optimizer]

    def __init__(self, env: EnvSpec | None, config: Config | dict | None = None, *,
                 allow_import: tuple[str, ...] = (), spaces: tuple[gym.Space, gym.Space] | None = None,
                 **hparams: Any):
        self.cfg = build_config(self.config_cls, config, hparams)
        cfg = self.cfg
        self.device = resolve_device(cfg.device)
        self.allow_import = tuple(allow_import)
        self.env_id = env if isinstance(env, str) else None
        self._env_spec = env
        self.np_rng = seed_everything(cfg.seed)
        self.venv: gym.vector.VectorEnv | None = None
        self.stepper: EnvStepper | None = None
        self._eval_env: gym.Env | None = None
        self.env_steps = 0
        if env is not None:
            # spaces, API and a 2-step probe (about 1 ms; an Atari reset 0.1 s) before N envs are built
            check_env_or_raise(env, probe_steps=2, allow_import=self.allow_import, seed=cfg.seed,
                               allowed_actions=self.allowed_actions)
            self.venv = make_vec_env(env, cfg.num_envs, cfg.seed, cfg.vectorization, self.allow_import)
            obs_space, act_space = self.venv.single_observation_space, self.venv.single_action_space
            if spaces is not None and not (same_space(obs_space, spaces[0]) and same_space(act_space, spaces[1])):
                self.venv.close()
                raise EnvError(f"the environment's spaces ({obs_space}, {act_space}) differ from the model's "
                               f"({spaces[0]}, {spaces[1]})")
            self.stepper = EnvStepper(self.venv)
        elif spaces is not None:
            obs_space, act_space = spaces
        else:
            raise EnvError("an environment is required (a Gymnasium id, a gymnasium.Env or a callable)")
        try:
            check_spaces(obs_space, act_space, self.allowed_actions)
        except EnvError:
            self.close()
            raise
        self.obs_space, self.act_space = obs_space, act_space
        self._image = is_image_space(obs_space)
        if cfg.normalize_obs and self._image:
            raise ConfigError("invalid value for 'normalize_obs': True (image observations are scaled to [0, 1] "
                              "instead; allowed: false for image spaces)")
        self._set_threads()
        self.obs_norm = ObsNormalizer(obs_space.shape) if cfg.normalize_obs else None
        self.rew_norm = RewardNormalizer(cfg.num_envs, cfg.gamma) if cfg.normalize_reward else None
        self.updates = 0
        self.episodes = 0
        self.resets = 0
        self._obs: np.ndarray | None = None
        self._recent_returns: deque[float] = deque(maxlen=100)
        self._finished: list[float] = []
        self._run: dict[str, Any] = {"evals": [], "wall": 0.0, "train": 0.0}
        self._build()
        if cfg.compile:
            self._compile()
        self._sampler: Any = None
        if self.storage == "rollout":
            self.buffer = RolloutBuffer(self._rollout_len(), cfg.num_envs * self._samplers(), obs_space, act_space,
                                        self.device)
        elif self.storage == "replay":  # policies act in [-1, 1] on Box spaces; replay stores that range
            self.replay = ReplayBuffer(cfg.buffer_size, cfg.num_envs, obs_space, act_space, cfg.gamma,
                                       cfg.bootstrap_n, self.device, optimize_memory=cfg.optimize_memory)
            self._updates_from = 0  # a resume without saved replay refills before updating
            self._sample_gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
            self.scaler = BoxScaler(act_space) if isinstance(act_space, gym.spaces.Box) else None
            self._bf16 = cfg.precision == "bf16"
            if self._bf16 and self.device.type == "cpu" and cpu_has_native_bf16() is False:
                warnings.warn("precision='bf16' on a CPU without AVX-512 BF16 or AMX: bfloat16 products are "
                              "emulated there and usually slower than float32", RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------------ algorithm hooks
    def _build(self) -> None:
        raise NotImplementedError

    def _update(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _rollout_len(self) -> int:
        return self.cfg.n_steps  # type: ignore[attr-defined]

    def _learn_begin(self, target: int) -> None:
        """Called by ``learn`` before its first iteration (``target``: the env step to reach)."""

    def _learn_end(self) -> None:
        """Called by ``learn`` when it stops for any reason (target, callback, Ctrl-C, error)."""

    def _episodic(self) -> bool:
        return False

    def _policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions for a batch of (normalised) observations, in the policy's own space."""
        return self.nets.act(obs, deterministic)[0]

    def _env_action(self, a: np.ndarray) -> np.ndarray:
        """Policy action -> what the env receives: on-policy Gaussian actions clipped to the
        Box, off-policy [-1, 1] actions rescaled to it."""
        if isinstance(self.act_space, gym.spaces.Box):
            if self.storage == "replay":
                return self.scaler.scale(a)
            return np.clip(a, self.act_space.low, self.act_space.high)
        return a

    def _compile(self) -> None:
        """torch.compile each network's forward in place (parameters and state_dict keys are
        untouched, so checkpoints stay interchangeable with eager runs)."""
        for m in self.nets.modules():
            if m is not self.nets and type(m).forward is not nn.Module.forward and not isinstance(
                    m, (nn.Linear, nn.ReLU, nn.Tanh)) and any(True for _ in m.parameters()):
                if not getattr(m, "_critic_compiled", False):
                    m.forward = torch.compile(m.forward)
                    m._critic_compiled = True

    # ------------------------------------------------------------------ set-up helpers
    def _set_threads(self) -> None:
        set_cpu_threads(self.device, self.cfg.torch_threads, wide=self._image or max(self.cfg.hidden_sizes) >= 256)

    def _norm_obs(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        """What the networks see: normalised (when asked) float32 vectors, or raw images."""
        if self.obs_norm is not None:
            return self.obs_norm(obs, update=update)
        if not self._image and obs.dtype != np.float32:
            return obs.astype(np.float32)
        return obs

    def learning_reward(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """The rewards the algorithm learns from: scaled by ``reward_scale``, then normalised
        when ``normalize_reward`` (episode returns are recorded from the env's own rewards)."""
        if self.cfg.reward_scale != 1.0:
            reward = reward * np.float32(self.cfg.reward_scale)
        return self.rew_norm(reward, done) if self.rew_norm is not None else reward

    def _require_env(self) -> EnvStepper:
        if self.stepper is None:
            raise EnvError("this agent has no environment (it was loaded without one); "
                           "pass env= to critic.load or call agent.set_env(env)")
        return self.stepper

    def set_env(self, env: EnvSpec) -> None:
        """Attach (or replace) the training environment; its spaces must match the model's."""
        venv = make_vec_env(env, self.cfg.num_envs, self.cfg.seed, self.cfg.vectorization, self.allow_import)
        if not (same_space(venv.single_observation_space, self.obs_space)
                and same_space(venv.single_action_space, self.act_space)):
            venv.close()
            raise EnvError("the new environment's spaces differ from the model's")
        if self.venv is not None:
            self.venv.close()
        self.venv, self.stepper, self._obs = venv, EnvStepper(venv), None
        self.env_id = env if isinstance(env, str) else None
        self._env_spec = env
        self._eval_env = None

    # ------------------------------------------------------------------ training
    def learn(self, total_steps: int, callback: Callback | None = None, *, progress_bar: bool | None = None,
              run_dir: str | os.PathLike | None = None, eval_every: int = 0, eval_episodes: int = 10,
              checkpoint_every: int = 0, threshold: float | None = None) -> "Agent":
        """Train for ``total_steps`` more environment steps.

        ``callback(agent, info)`` runs after every iteration; returning ``False`` stops training.
        With ``run_dir`` the run directory described in benchmarks/README.md is written (metrics, evaluations,
        checkpoints, final model, summary, curve). Ctrl-C stops at the end of the current
        iteration, writes a checkpoint to ``run_dir`` and raises ``KeyboardInterrupt``.
        """
        if not isinstance(total_steps, (int, np.integer)) or total_steps < 0:
            raise ConfigError(f"invalid value for 'total_steps': {total_steps!r} (allowed: an integer >= 0)")
        if eval_every < 0 or eval_episodes < 1:
            raise ConfigError(f"invalid evaluation settings eval_every={eval_every}, eval_episodes={eval_episodes} "
                              "(allowed: eval_every >= 0, eval_episodes >= 1)")
        stepper = self._require_env()
        start, target = self.env_steps, self.env_steps + int(total_steps)
        # Schedules (linear learning-rate decay) run over the learn() call; a loaded checkpoint of
        # an unfinished call continues that call's schedule when asked for the same end step.
        span, self._resume_span = getattr(self, "_resume_span", None), None
        self._learn_span = (span[0], span[1]) if span and span[0] <= start < span[1] == target else (start, target)
        if threshold is None:
            threshold = self._default_threshold()
        run = RunLogger(run_dir) if run_dir is not None else None
        clock = Clock(self._run["wall"], self._run["train"])
        progress = Progress(target, start, progress_bar, desc=f"{self.algo} {self.env_id or ''}".strip())
        interrupted = threading.Event()
        old_handler = self._install_sigint(interrupted)
        if self._obs is None:
            self._obs = self._norm_obs(stepper.reset(seed=self.cfg.seed + 1000 * self.resets), update=True)
            self.resets += 1
        next_log = start + self.cfg.log_every
        next_eval = start + eval_every if eval_every else math.inf
        next_ckpt = start + checkpoint_every if checkpoint_every else math.inf
        last_log_t, last_log_steps = clock.train, start
        pending: list[float] = []
        metrics: dict[str, torch.Tensor] = {}
        try:
            self._learn_begin(target)
            while self.env_steps < target and not interrupted.is_set():
                try:
                    metrics = self._iteration(target)
                except Exception as e:
                    # Diverged weights surface as NaN actions (an env that rejects them, a sampler
                    # that raises): report the parameter, not the symptom.
                    self._check_finite(f"training stopped ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
                    raise
                new_eps = self._take_finished_returns()
                pending.extend(new_eps)
                if self.env_steps >= next_log or self.env_steps >= target:
                    now = clock.train
                    sps = (self.env_steps - last_log_steps) / max(now - last_log_t, 1e-9)
                    row = self._log_row(metrics, pending, sps, clock)
                    if run is not None:
                        run.log_metrics(row)
                    progress.update(self.env_steps, float(np.mean(self._recent_returns)) if self._recent_returns else None, sps)
                    pending = []
                    last_log_t, last_log_steps = now, self.env_steps
                    while next_log <= self.env_steps:
                        next_log += self.cfg.log_every
                if self.env_steps >= next_eval or (eval_every and self.env_steps >= target):
                    t0 = time.perf_counter()
                    res = self.evaluate(eval_episodes)
                    clock.eval_time += time.perf_counter() - t0
                    row = {"env_steps": self.env_steps, "wall_seconds": round(clock.wall, 3),
                           "train_seconds": round(clock.train, 3), "mean": res["mean"], "std": res["std"],
                           "episodes": eval_episodes}
                    self._run["evals"].append(row)
                    if run is not None:
                        run.log_eval(row)
                    while next_eval <= self.env_steps:
                        next_eval += eval_every
                if run is not None and self.env_steps >= next_ckpt:
                    self._save_run_checkpoint(run_dir, clock)
                    while next_ckpt <= self.env_steps:
                        next_ckpt += checkpoint_every
                if callback is not None:
                    info = {"env_steps": self.env_steps, "updates": self.updates, "metrics": metrics,
                            "episode_returns": new_eps}
                    if callback(self, info) is False:
                        break
        finally:
            try:
                self._learn_end()
            finally:
                progress.close()
                self._restore_sigint(old_handler)
            self._run["wall"], self._run["train"] = clock.wall, clock.train
        if run is not None:
            self._save_run_checkpoint(run_dir, clock)
            if not interrupted.is_set():
                self.save(Path(run_dir) / "model" / ckpt.FILENAME)
            self._write_summary(Path(run_dir), clock, threshold)
            run.close()
        if interrupted.is_set():
            raise KeyboardInterrupt(f"training interrupted at env step {self.env_steps}"
                                    + (f"; checkpoint written to {run_dir}" if run_dir else ""))
        return self

    def _install_sigint(self, flag: threading.Event):
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if flag.is_set():  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            flag.set()

        try:
            return signal.signal(signal.SIGINT, handler)
        except ValueError:  # pragma: no cover
            return None

    @staticmethod
    def _restore_sigint(old) -> None:
        if old is not None:
            signal.signal(signal.SIGINT, old)

    def _default_threshold(self) -> float | None:
        if isinstance(self._env_spec, str):
            try:
                return gym.spec(self._env_spec).reward_threshold
            except Exception:
                return None
        return None

    def _iteration(self, target: int) -> dict[str, torch.Tensor]:
        if self.storage == "rollout":
            self._collect_rollout()
            metrics = self._update()
            self.updates += 1
            return metrics
        return self._replay_step()

    # ------------------------------------------------------------------ off-policy collection
    def _replay_step(self) -> dict[str, torch.Tensor]:
        """One vector env step into replay, then ``gradient_steps`` updates every ``train_freq``."""
        cfg, stepper, dev = self.cfg, self.stepper, self.device
        assert stepper is not None and self._obs is not None
        obs = self._obs
        if self.env_steps < cfg.learning_starts:
            a_env = self.venv.action_space.sample()
            a_pol = self._policy_action_of(a_env)
        else:
            with torch.inference_mode():
                a_pol = self._explore(torch.as_tensor(obs, device=dev)).cpu().numpy()
            a_env = self._env_action(a_pol)
        step = stepper.step(a_env)
        self.env_steps += stepper.num_envs
        reward = self.learning_reward(step.reward, step.done)
        self.replay.add(obs, a_pol, reward, self._norm_obs(step.next_obs), step.terminated, step.truncated)
        if step.episode_returns:
            self._record_episodes(step.episode_returns)
        self._on_episode_end(step.done)
        self._obs = self._norm_obs(step.obs, update=True)
        metrics: dict[str, torch.Tensor] = {}
        if (self.env_steps > max(cfg.learning_starts, self._updates_from)
                and (self.env_steps // stepper.num_envs) % cfg.train_freq == 0):
            with self._update_precision():
                for _ in range(cfg.gradient_steps):
                    metrics = self._update()
                    self.updates += 1
        return metrics

    def _update_precision(self):
        """The updates' autocast context: bfloat16 matrix products with ``precision='bf16'``."""
        if self._bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _explore(self, obs: torch.Tensor) -> torch.Tensor:
        """Exploration actions in the policy's own space (off-policy algorithms)."""
        raise NotImplementedError

    def _policy_action_of(self, a_env: np.ndarray) -> np.ndarray:
        """An env action expressed in the policy's own space (warm-up actions go to replay so)."""
        return self.scaler.unscale(a_env) if self.scaler is not None else a_env

    def _sample(self) -> dict[str, torch.Tensor]:
        """A replay batch of ``batch_size`` from the agent's own (checkpointed) generator."""
        return self.replay.sample(self.cfg.batch_size, self._sample_gen)

    def _on_episode_end(self, done: np.ndarray) -> None:
        pass

    def _take_finished_returns(self) -> list[float]:
        out, self._finished = self._finished, []
        return out

    def _record_episodes(self, returns: list[float]) -> None:
        if returns:
            self.episodes += len(returns)
            self._recent_returns.extend(returns)
            self._finished.extend(returns)

    def _log_row(self, metrics: dict[str, torch.Tensor], episode_returns: list[float], sps: float,
                 clock: Clock) -> dict[str, Any]:
        row: dict[str, Any] = {"env_steps": self.env_steps, "wall_seconds": round(clock.wall, 3),
                               "train_seconds": round(clock.train, 3), "updates": self.updates,
                               "episodes": self.episodes}
        row["env/episodic_return"] = float(np.mean(episode_returns)) if episode_returns else ""
        row["perf/sps"] = round(sps, 1)
        for k, v in metrics.items():
            f = to_float(v)
            if not math.isfinite(f):
                raise NonFiniteError(f"{k} became {f} at env step {self.env_steps} (update {self.updates}); "
                                     "training stopped, the last good checkpoint is kept")
            row[k] = f
        self._check_finite("training stopped")
        return row

    def _check_finite(self, what: str) -> None:
        """Raise :class:`NonFiniteError` naming the first parameter or buffer that is NaN/inf
        (one fused reduction when all are finite)."""
        named = [(k, v) for k, v in self.nets.state_dict().items() if v.is_floating_point()]
        if not named:
            return
        if bool(torch.isfinite(torch.stack(torch._foreach_norm([v.float() for _, v in named]))).all()):
            return
        bad = next(k for k, v in named if not bool(torch.isfinite(v).all()))
        raise NonFiniteError(f"parameter {bad} became non-finite at env step {self.env_steps} (update "
                             f"{self.updates}); {what}, the last good checkpoint is kept")

    # ------------------------------------------------------------------ on-policy collection
    def _samplers(self) -> int:
        """Ray sampling workers (backend='ray' for on-policy algorithms), else 1 (this process)."""
        return self.cfg.workers if getattr(self.cfg, "backend", "local") == "ray" and self.storage == "rollout" else 1

    def _collect_remote(self) -> None:
        """One rollout from every Ray sampling worker, with the current weights, side by side."""
        if self._sampler is None:
            from critic.runners.ray import RaySampler, SamplerFactory
            self._sampler = RaySampler(SamplerFactory(type(self), self._env_spec, self.cfg, self.allow_import),
                                       self.cfg)
        flat = self.optims["main"].param_groups[0]["params"][0]
        parts, returns = self._sampler.collect(flat.detach().cpu().numpy())
        self.buffer.load_parts(parts)
        self.env_steps += self.buffer.t * self.buffer.N
        self._record_episodes(returns)

    def _collect_rollout(self) -> None:
        if self._samplers() > 1 or getattr(self.cfg, "backend", "local") == "ray":
            return self._collect_remote()
        buf, nets, stepper, dev = self.buffer, self.nets, self.stepper, self.device
        assert stepper is not None and self._obs is not None
        episodic = self._episodic()
        buf.reset()
        while True:
            obs = self._obs
            with torch.inference_mode():
                a, logp, v = nets.act(torch.as_tensor(obs, device=dev))
            a, logp, v = a.cpu().numpy(), logp.cpu().numpy(), v.cpu().numpy()
            step = stepper.step(self._env_action(a))
            self.env_steps += stepper.num_envs
            reward = self.learning_reward(step.reward, step.done)
            if buf.full:
                buf.grow()
            buf.add(obs, a, logp, v, reward, step.terminated, step.truncated)
            if step.truncated.any():
                idx = np.flatnonzero(step.truncated)
                final = torch.as_tensor(self._norm_obs(step.next_obs[idx]), device=dev)
                with torch.inference_mode():
                    buf.set_truncation_values(idx, nets.value(final).cpu())
            if step.episode_returns:
                self._record_episodes(step.episode_returns)
            self._obs = self._norm_obs(step.obs, update=True)
            if (episodic and step.done[0]) or (not episodic and buf.full):
                break
        with torch.inference_mode():
            buf.finish(nets.value(torch.as_tensor(self._obs, device=dev)).cpu())

    # ------------------------------------------------------------------ acting and evaluation
    def predict(self, obs: Any, deterministic: bool = False) -> np.ndarray:
        """Action(s) for one observation or a batch ``[B, *obs_shape]``, as the env expects them."""
        x = np.asarray(obs)
        shape = self.obs_space.shape
        single = x.shape == shape
        if single:
            x = x[None]
        elif x.shape[1:] != shape:
            raise ValueError(f"observation of shape {x.shape} matches neither the observation space {shape} "
                             f"nor a batch [B, *{shape}]")
        if not self._image:
            x = x.astype(np.float32, copy=False)
        x = self._norm_obs(x)
        with torch.inference_mode():
            a = self._policy(torch.as_tensor(x, device=self.device), deterministic)
        a = self._env_action(a.cpu().numpy())
        return a[0] if single else a

    def _make_eval_env(self, render_mode: str | None = None) -> gym.Env:
        if self._env_spec is None:
            raise EnvError("this agent has no environment to evaluate on; pass env= to critic.load")
        spec = self._env_spec
        if isinstance(spec, gym.vector.VectorEnv):
            raise EnvError("cannot build an evaluation env from a vector env instance; pass an id or a callable")
        if isinstance(spec, gym.Env):
            return spec
        # Atari ids: whole games with raw rewards (no episodic life, no clipping) for evaluation.
        return make_env(spec, render_mode=render_mode, allow_import=self.allow_import, atari_eval=True)

    def evaluate(self, n_episodes: int = 10, deterministic: bool = True, env: gym.Env | None = None,
                 seed: int | None = None) -> dict[str, Any]:
        """Play ``n_episodes`` full episodes; ``{mean, std, returns, lengths}`` of raw returns."""
        if n_episodes < 1:
            raise ConfigError(f"invalid value for 'n_episodes': {n_episodes} (allowed: an integer >= 1)")
        if env is None:
            if self._eval_env is None:
                self._eval_env = self._make_eval_env()
                self._eval_seed = self.cfg.seed + 100_003
            env = self._eval_env
            first_seed = self._eval_seed if seed is None else seed
            self._eval_seed = None
        else:
            first_seed = seed
        returns, lengths = [], []
        for ep in range(n_episodes):
            obs, _ = env.reset(seed=first_seed if ep == 0 else None)
            total, n, done = 0.0, 0, False
            while not done:
                obs, r, term, trunc, _ = env.step(self.predict(obs, deterministic))
                total += float(r)
                n += 1
                done = term or trunc
            returns.append(total)
            lengths.append(n)
        return {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "returns": returns,
                "lengths": lengths}

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"nets/{k}": v for k, v in self.nets.state_dict().items()}
        optim_meta = {}
        for name, opt in self.optims.items():
            t, m = ckpt.optimizer_state(name, opt)
            tensors.update(t)
            optim_meta[name] = m
        if self.obs_norm is not None:
            tensors.update(self.obs_norm.rms.state_dict("obs_norm"))
        if self.rew_norm is not None:
            tensors.update(self.rew_norm.rms.state_dict("rew_norm"))
            tensors["rew_norm/ret"] = torch.from_numpy(self.rew_norm.ret.copy())
        rng_meta, rng_tensors = rng_state(self.np_rng)
        tensors.update(rng_tensors)
        extra_t, extra_m = self._extra_state()
        tensors.update(extra_t)
        if self.storage == "replay":
            tensors["replay/sample_generator"] = self._sample_gen.get_state()
            if self.cfg.save_replay:
                replay_t, replay_m = self.replay.state_dict()
                tensors.update(replay_t)
                extra_m = {**extra_m, "replay": replay_m}
        from critic import __version__
        meta = {
            "algo": self.algo, "critic_version": __version__, "env_id": self.env_id,
            "config": self.cfg.to_dict(),
            "spaces": {"observation": space_to_dict(self.obs_space), "action": space_to_dict(self.act_space)},
            "counters": {"env_steps": self.env_steps, "updates": self.updates, "episodes": self.episodes,
                         "resets": self.resets, "learn_span": list(getattr(self, "_learn_span", ())) or None,
                         "recent_returns": list(self._recent_returns),
                         "updates_from": getattr(self, "_updates_from", 0)},
            "env": self._env_state(),
            "optimizers": optim_meta, "rng": rng_meta, "run": self._run, "extra": extra_m,
            "allow_import": list(self.allow_import),
        }
        return tensors, meta

    def _extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {}, {}

    def _env_state(self) -> dict[str, Any] | None:
        """The training envs mid-episode (``envs/state.py``), the observation the policy acts on
        next and the episode accumulators, plus the evaluation env; None before any reset."""
        from critic.envs.state import _encode, capture

        if self.stepper is None or self._obs is None or self.storage == "workers":
            return None  # (A3C: the envs live in its workers, which restart with new seeds)
        if self._samplers() > 1 or getattr(self.cfg, "backend", "local") == "ray":
            venv, why = None, "the envs live in Ray sampling workers"
        else:
            venv, why = capture(self.venv)
        out: dict[str, Any] = {"venv": venv, "why": why}
        if venv is not None:
            st = self.stepper
            out.update(obs=_encode(self._obs, "obs"), ep_ret=_encode(st._ep_ret, "ep_ret"),
                       ep_len=_encode(st._ep_len, "ep_len"), stepper_steps=st.env_steps)
        if self._eval_env is not None and self._eval_env is not self._env_spec:
            out["eval_env"], _ = capture(self._eval_env)
            out["eval_seed"] = getattr(self, "_eval_seed", None)
        return out

    def _load_env_state(self, env_meta: dict[str, Any] | None, path: str) -> None:
        import warnings

        from critic.envs.state import NotRestorable, _decode, restore_env

        if env_meta is None or self.stepper is None:
            return
        if env_meta.get("venv") is None:
            warnings.warn(f"{path}: the training envs' state was not saved ({env_meta.get('why')}); training "
                          "continues from freshly reset episodes, so it will not repeat a straight run exactly",
                          RuntimeWarning, stacklevel=3)
            return
        try:
            restore_env(self.venv, env_meta["venv"])
            obs = _decode(env_meta["obs"])
            if obs.shape != (self.cfg.num_envs, *self.obs_space.shape):
                raise NotRestorable(f"saved observations of shape {obs.shape}")
        except (NotRestorable, KeyError, ValueError, TypeError) as e:
            self._obs = None  # learn() resets the envs with fresh seeds
            warnings.warn(f"{path}: could not restore the training envs' state into this env ({e}); training "
                          "continues from freshly reset episodes", RuntimeWarning, stacklevel=3)
            return
        self._obs = obs
        self.stepper._ep_ret[:] = _decode(env_meta["ep_ret"])
        self.stepper._ep_len[:] = _decode(env_meta["ep_len"])
        self.stepper.env_steps = int(env_meta["stepper_steps"])
        if env_meta.get("eval_env") is not None:
            try:
                ev = self._make_eval_env()
                restore_env(ev, env_meta["eval_env"])
                self._eval_env, self._eval_seed = ev, env_meta.get("eval_seed")
            except (NotRestorable, EnvError):
                self._eval_env = None

    def _load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        pass

    def _load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: str) -> None:
        try:
            nets_sd = {k[len("nets/"):]: v for k, v in tensors.items() if k.startswith("nets/")}
            self.nets.load_state_dict(nets_sd, strict=True)
            for name, opt in self.optims.items():
                ckpt.load_optimizer_state(name, opt, tensors, meta["optimizers"][name])
            if self.obs_norm is not None:
                self.obs_norm.rms.load_state_dict(tensors, "obs_norm")
            if self.rew_norm is not None:
                self.rew_norm.rms.load_state_dict(tensors, "rew_norm")
                self.rew_norm.ret = tensors["rew_norm/ret"].numpy().copy()
            set_rng_state(meta["rng"], tensors, self.np_rng)
            c = meta["counters"]
            self.env_steps, self.updates, self.episodes, self.resets = (
                int(c["env_steps"]), int(c["updates"]), int(c["episodes"]), int(c.get("resets", 0)))
            self._run = meta.get("run", self._run)
            span = c.get("learn_span")
            self._resume_span = (int(span[0]), int(span[1])) if span else None
            self._recent_returns.extend(float(x) for x in c.get("recent_returns", ()))
            extra = meta.get("extra", {})
            if self.storage == "replay":
                self._sample_gen.set_state(tensors["replay/sample_generator"])
                if "replay" in extra:
                    self.replay.load_state_dict(tensors, extra["replay"])
                    self._updates_from = int(c.get("updates_from", 0))
                else:  # saved without its replay: collect learning_starts steps before updating
                    self._updates_from = self.env_steps + self.cfg.learning_starts
            self._load_extra_state(tensors, extra)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise ckpt.CheckpointError(f"{path}: checkpoint does not match this {self.algo} agent "
                                       f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
        self._load_env_state(meta.get("env"), path)

    def save(self, path: str | os.PathLike) -> Path:
        """Write a full checkpoint (weights, optimizers, normalisers, counters, RNG states, envs).

        Refuses (:class:`NonFiniteError`) to write non-finite weights, so an existing checkpoint
        at ``path`` stays the last good one."""
        self._check_finite("nothing was written")
        tensors, meta = self._state()
        path = Path(path)
        if path.suffix == "" or path.is_dir():
            path = path / ckpt.FILENAME
        return ckpt.write(path, tensors, meta)

    def _save_run_checkpoint(self, run_dir, clock: Clock) -> None:
        self._run["wall"], self._run["train"] = clock.wall, clock.train
        self.save(Path(run_dir) / "checkpoints" / ckpt.FILENAME)

    @classmethod
    def load(cls, path: str | os.PathLike, env: EnvSpec | None = None, **overrides: Any) -> "Agent":
        """Load a checkpoint of this algorithm (``critic.SAC.load``), or of any algorithm through
        the base class (``critic.Agent.load``, the same as ``critic.load``). Another algorithm's
        file is refused with a :class:`~critic.checkpoint.CheckpointError` naming both."""
        return load(path, env=env, _expect=None if cls is Agent else cls, **overrides)

    def _write_summary(self, run_dir: Path, clock: Clock, threshold: float | None) -> None:
        evals = self._run["evals"]
        first, stable = solved_points(evals, threshold)
        last = evals[-1] if evals else None
        summary = {
            "algo": self.algo, "env_id": self.env_id, "seed": self.cfg.seed, "env_steps": self.env_steps,
            "updates": self.updates, "wall_seconds": round(clock.wall, 3), "train_seconds": round(clock.train, 3),
            "steps_per_second": round(self.env_steps / max(clock.train, 1e-9), 1),
            "updates_per_second": round(self.updates / max(clock.train, 1e-9), 2),
            "final_eval": ({"mean": last["mean"], "std": last["std"], "episodes": last["episodes"]}
                           if last else None),
            "threshold": threshold, "solved_at": first, "stable_solved_at": stable,
            "versions": _versions(),
        }
        write_json(run_dir / "summary.json", summary)
        try:
            from critic.plotting import plot_runs
            plot_runs([run_dir], run_dir / "curve.png")
        except Exception as e:  # a plot must never cost the run
            print(f"critic: could not draw the learning curve: {e}")

    def close(self) -> None:
        if getattr(self, "_sampler", None) is not None:
            self._sampler.close()
            self._sampler = None
        if self.venv is not None:
            self.venv.close()
        if self._eval_env is not None and self._eval_env is not self._env_spec:
            self._eval_env.close()

    def __enter__(self):
        """``with critic.A3C(...) as agent:`` closes envs, worker processes and samplers on exit."""
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.env_id!r}, env_steps={self.env_steps})"


def _versions() -> dict[str, str]:
    from critic import __version__
    return {"critic": __version__, "torch": torch.__version__, "gymnasium": gym.__version__,
            "python": platform.python_version()}


def load(path: str | os.PathLike, env: EnvSpec | None = None, *, _expect: type[Agent] | None = None,
         **overrides: Any) -> Agent:
    """Load any saved agent: weights, optimizers, normalisers, counters and RNG states.

    ``env`` defaults to the env id stored in the checkpoint (None if it was built from a
    callable: the agent can still ``predict``). ``overrides`` replace config fields (e.g. device).
    """
    from critic.algos.registry import get_algo
    tensors, meta = ckpt.read(path)
    if isinstance(meta, dict) and meta.get("kind") == "components":
        raise ckpt.CheckpointError(f"{path}: a components checkpoint ({meta.get('architecture', {}).get('class')}), "
                                   "not an agent: build the same objects and call their .load(path)")
    if _expect is not None and isinstance(meta, dict) and meta.get("algo") != _expect.algo:
        raise ckpt.CheckpointError(f"{path}: a {meta.get('algo')} checkpoint, not a {_expect.algo} one; load it "
                                   f"with critic.load(path) or the {str(meta.get('algo')).upper()} class")
    try:
        cls = get_algo(meta["algo"])
        cfg = cls.config_cls.from_dict({**meta["config"], **overrides})
        spaces = (space_from_dict(meta["spaces"]["observation"]), space_from_dict(meta["spaces"]["action"]))
    except (KeyError, ValueError, TypeError) as e:
        raise ckpt.CheckpointError(f"{path}: invalid checkpoint metadata ({type(e).__name__}: {e})") from None
    env_spec = env if env is not None else meta.get("env_id")
    try:
        agent = cls(env_spec, cfg, spaces=spaces, allow_import=tuple(meta.get("allow_import", ())))
    except EnvError as e:
        if env is None and env_spec is not None:  # the stored id no longer resolves: predict-only
            agent = cls(None, cfg, spaces=spaces)
        elif "differ from the model" in str(e):
            raise ckpt.CheckpointError(f"{path}: {e}") from None
        else:
            raise
    agent._load_state(tensors, meta, str(path))
    return agent
