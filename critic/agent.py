"""``Agent``: everything algorithms share and none of their math.

Environment and config set-up, seeding and threads, ``learn`` (the loop over the algorithm's
collector: collect, then update on each batch it hands out; logging, evaluation, checkpoints),
``predict`` / ``evaluate``, ``save`` / ``load``. An algorithm subclasses it once and provides
``_build`` (networks, optimizers and its collector, from ``critic.collect``) and
``_update(batch)``; it may override ``_policy`` (acting) and ``_iteration`` (A3C, whose workers
collect and update).
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from critic import checkpoint as ckpt
from critic.checkpoint import NonFiniteError
from critic.collect import Collector, EnvStream, Preprocess
from critic.config import Config, ConfigError, build_config, resolve_device, short_repr
from critic.envs.episodes import EvalEnv, eval_env_for, open_training_env, play_episodes, reward_threshold
from critic.envs.make import EnvError, EnvSpec, make_vec_env
from critic.envs.spaces import same_space, space_from_dict, space_to_dict
from critic.logger import Clock, Every, Progress, RunLogger, metrics_row, sigint_flag, write_summary
from critic.modules.actions import box_clipper
from critic.nn import compile_forwards, has_images, is_image_space, is_packed_space, set_cpu_threads
from critic.optim import ACTING
from critic.seeding import rng_state, seed_everything, set_rng_state
from critic.version import __version__

Callback = Callable[["Agent", dict[str, Any]], bool | None]
MODEL_TENSORS = ("nets/", "obs_norm")
"""The tensors acting needs (name prefixes): a model file holds these, and loading to act reads
only these out of a full checkpoint."""

__all__ = ["Agent", "Callback", "NonFiniteError", "load"]


class Agent:
    algo: ClassVar[str] = ""
    config_cls: ClassVar[type[Config]] = Config
    allowed_actions: ClassVar[tuple[type, ...]] = (gym.spaces.Discrete, gym.spaces.MultiDiscrete,
                                                   gym.spaces.MultiBinary, gym.spaces.Box)
    _algorithms: ClassVar[dict[str, type["Agent"]]] = {}  # algo name -> class, filled by subclassing

    nets: nn.Module
    optims: dict[str, torch.optim.Optimizer]
    collector: Collector | None = None  # set by _build

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.algo:
            Agent._algorithms[cls.algo] = cls

    def __new__(cls, env: EnvSpec | None = None, config: Config | dict | None = None, *args: Any,
                seeds: Any = None, **kwargs: Any):
        """``seeds=[...]`` (and/or ``sweep={field: [values]}``): agents of this algorithm, one per
        seed and swept value, trained as one batched run (the algorithm's ``_batch``); otherwise
        an ordinary agent."""
        if seeds is None and kwargs.get("sweep") is None:
            return super().__new__(cls)
        if seeds is None:  # a sweep of one seed each
            seeds = [kwargs.pop("seed", 0)]
        return cls._batch(env, config, *args, seeds=seeds, **kwargs)

    @classmethod
    def _load_batch(cls, run_dir: str | os.PathLike, env: EnvSpec | None = None, allow_import: tuple[str, ...] = ()):
        raise ckpt.CheckpointError(f"{run_dir}: {cls.algo} has no batched runs to load")

    @classmethod
    def _batch(cls, env: EnvSpec | None, config: Config | dict | None, *args: Any, seeds: Any, **kwargs: Any):
        batched = sorted(n for n, c in Agent._algorithms.items() if c._batch.__func__ is not Agent._batch.__func__)
        raise ConfigError(f"invalid value for 'seeds': {seeds!r} (many seeds in one batched run are available for "
                          f"{', '.join(batched)}, not {cls.algo}; train one agent per seed)")

    def __init__(self, env: EnvSpec | None, config: Config | dict | None = None, *,
                 allow_import: tuple[str, ...] = (), spaces: tuple[gym.Space, gym.Space] | None = None,
                 seeds: None = None, for_training: bool = True, mask_source: str | None = None, **hparams: Any):
        given = hparams.get("encoder", getattr(config, "encoder", None) if not isinstance(config, dict)
                            else config.get("encoder"))
        self.cfg = build_config(self.config_cls, config, hparams)
        cfg = self.cfg
        self.device = resolve_device(cfg.device)
        self.allow_import = tuple(allow_import)
        if callable(given) and cfg.encoder is not None:  # handed over as an object: its module is allowed
            self.allow_import = (*self.allow_import, cfg.encoder.partition(":")[0])
        self.env_id = env if isinstance(env, str) else None
        self.env_spec = env
        """What the agent was built with: a Gymnasium id, a callable or an env instance (None: predict only)."""
        self.np_rng = seed_everything(cfg.seed)
        self.for_training = for_training
        """False for an agent loaded to act (``critic.load(path)``): no training envs, no replay,
        no optimizer state; ``predict``, ``evaluate`` and export work, ``learn`` refuses."""
        if for_training:
            env = self.build_spec = self._with_masks(env)
        else:  # nothing built: the evaluation env (lazy) gets the mask wrapper training had
            if spaces is None:
                raise ConfigError("an agent built for inference (for_training=False) needs the model's spaces")
            self.mask_source = mask_source
            from critic.envs.masking import MaskedEnv

            env = self.build_spec = MaskedEnv(env, mask_source, self.allow_import) \
                if env is not None and mask_source in ("info", "method") else env
        self.eval_env = EvalEnv(env, self.allow_import, seed=cfg.seed + 100_003)
        self.env_steps = 0
        self.venv, obs_space, act_space = open_training_env(
            env if for_training else None, num_envs=cfg.num_envs, seed=cfg.seed, vectorization=cfg.vectorization,
            allow_import=self.allow_import, allowed_actions=self.allowed_actions, spaces=spaces)
        self.obs_space, self.act_space = obs_space, act_space
        self._check_masks()
        self.image = is_image_space(obs_space)
        if cfg.normalize_obs and self.image:
            raise ConfigError("invalid value for 'normalize_obs': True (image observations are scaled to [0, 1] "
                              "instead; allowed: false for image spaces)")
        self._wide = has_images(obs_space) or max(cfg.hidden_sizes) >= 256
        set_cpu_threads(self.device, cfg.torch_threads, wide=self._wide)
        self.prep = Preprocess(obs_space, self.image, cfg.num_envs, cfg.gamma, cfg.normalize_obs,
                               cfg.normalize_reward, cfg.reward_scale)
        self.stream = EnvStream(self.venv, self.prep) if self.venv is not None else None
        self.env_action = box_clipper(act_space)  # policy action -> env action; replay algorithms rescale instead
        self.updates = 0
        self.episodes = 0
        self.resets = 0
        self.recent_returns: deque[float] = deque(maxlen=100)
        """Returns of the last 100 finished training episodes (raw env rewards)."""
        self._finished: list[float] = []
        self._run: dict[str, Any] = {"evals": [], "wall": 0.0, "train": 0.0}
        self._learn_span: tuple[int, int] | None = None  # (first, last env step) of the current learn()
        self._resume_span: tuple[int, int] | None = None
        acting = ACTING.set(not for_training)
        try:
            self._build()
        finally:
            ACTING.reset(acting)
        if cfg.compile:
            compile_forwards(self.nets)

    def _with_masks(self, env: EnvSpec | None) -> EnvSpec | None:
        """``env``, or (when it gives action masks in its infos or by an ``action_masks()``
        method, and ``action_masks`` is on) a spec whose envs carry the mask in the observation
        (``envs/masking.py``). A Dict key ``action_mask`` needs nothing: it is packed as it is."""
        from critic.envs.masking import MaskedEnv, detect

        self.mask_source = detect(env, self.allow_import, self.cfg.seed) if self.cfg.action_masks else None
        if self.mask_source in ("info", "method"):
            return MaskedEnv(env, self.mask_source, self.allow_import)
        return env

    def _check_masks(self) -> None:
        from critic.envs.masking import mask_size
        from critic.nn import mask_field

        field = mask_field(self.obs_space) if self.cfg.action_masks else None
        if field is None:
            return
        if not isinstance(self.act_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete)):
            raise EnvError(f"the env gives action masks, but its action space {self.act_space} takes none (masks "
                           "apply to Discrete and MultiDiscrete actions); pass action_masks=False to ignore them")
        if field[1] != mask_size(self.act_space):
            raise EnvError(f"the action mask has {field[1]} flags, but the action space {self.act_space} needs "
                           f"{mask_size(self.act_space)} (one per action, sub-actions side by side)")

    # ------------------------------------------------------------------ algorithm hooks
    def _build(self) -> None:
        """Networks (``self.nets``), optimizers (``self.optims``) and ``self.collector``."""
        raise NotImplementedError

    def _update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One update on one batch; returns detached metric tensors."""
        raise NotImplementedError

    def _policy(self, obs: torch.Tensor, deterministic: bool) -> torch.Tensor:
        """Actions for a batch of (preprocessed) observations, in the policy's own space."""
        return self.nets.act(obs, deterministic)[0]

    def _iteration(self) -> dict[str, torch.Tensor]:
        """One collection, then an update on each batch the collector hands out."""
        self.collect()
        metrics: dict[str, torch.Tensor] = {}
        with self.collector.precision():
            for batch in self.collector.batches(self.env_steps):
                metrics = self._update(batch)
                self.updates += 1
        return metrics

    def _learn_begin(self, target: int) -> None:
        """Called by ``learn`` before its first iteration (``target``: the env step to reach)."""

    def _learn_end(self) -> None:
        """Called by ``learn`` when it stops for any reason (target, callback, Ctrl-C, error)."""

    def _extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The algorithm's own checkpoint part beyond networks, optimizers and collector."""
        return {}, {}

    def _load_extra_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        pass

    def _env_state(self) -> dict[str, Any] | None:
        """The training envs' checkpoint part, plus the evaluation env; None before any reset."""
        if self.stream is None or self.stream.obs is None:
            return None
        where = self.collector.envs_elsewhere
        out = {"venv": None, "why": where} if where else self.stream.state()
        return {**out, **self.eval_env.state()}

    # ------------------------------------------------------------------ public training API
    def collect(self, actions: Any = None) -> None:
        """One collection into the agent's storage (counted in ``env_steps``; finished episodes
        recorded), without updating: ``learn`` does it each iteration, a batched run for each
        member. ``actions``: this step's exploring actions computed elsewhere (a batch acting for
        its members at once; replay collectors only)."""
        steps, returns = self.collector.collect(self.stream, self.env_steps, *([] if actions is None else [actions]))
        self.collected(steps, returns)

    def collected(self, steps: int, returns: list[float]) -> None:
        """Count a collection of ``steps`` env steps that finished episodes with ``returns``
        (``collect`` does; a batch stepping its members' rollouts side by side, too)."""
        self.env_steps += steps
        self._record_episodes(returns)

    def update(self) -> dict[str, torch.Tensor]:
        """One update on a batch from the agent's storage (a replay sample, or the last rollout),
        whether or not one is due; counts as an update (benchmarks and tests time it)."""
        with self.collector.precision():
            metrics = self._update(self.collector.sample())
        self.updates += 1
        return metrics

    @property
    def stepper(self):
        """The training envs' stepper (``envs/step.EnvStepper``), or None without envs."""
        return self.stream.stepper if self.stream is not None else None

    @property
    def obs_norm(self):
        """The observation normaliser (``normalize_obs``), or None."""
        return self.prep.obs_norm

    @property
    def rew_norm(self):
        """The reward normaliser (``normalize_reward``), or None."""
        return self.prep.rew_norm

    @property
    def evaluations(self) -> list[dict[str, Any]]:
        """Every evaluation so far: env_steps, wall_seconds, train_seconds, mean, std, episodes."""
        return self._run["evals"]

    @property
    def train_seconds(self) -> float:
        """Training time so far (wall time minus evaluation time), over every learn() call."""
        return float(self._run["train"])

    def storage_capacity(self, smallest: int) -> int:
        """Rows of the replay an algorithm allocates: ``buffer_size``, or ``smallest`` (what the
        buffer's shape needs) for an agent loaded to act, which stores nothing."""
        return self.cfg.buffer_size if self.for_training else smallest

    def _require_training(self, what: str) -> None:
        if not self.for_training:
            raise EnvError(f"cannot {what}: this agent was loaded to act (critic.load(path) builds no envs, replay or "
                           "optimizer state); to train on, load the run's training checkpoint with "
                           "critic.load(RUN/checkpoints/agent.safetensors, for_training=True), or "
                           "critic train --resume RUN")

    def _require_env(self) -> EnvStream:
        self._require_training("train")
        if self.stream is None:
            raise EnvError("this agent has no environment (it was loaded without one); "
                           "pass env= to critic.load or call agent.set_env(env)")
        return self.stream

    def set_env(self, env: EnvSpec) -> None:
        """Attach (or replace) the training environment; its spaces must match the model's.

        An agent loaded to act out of a full checkpoint (``critic.load(ckpt)``) is loaded again
        from it for training on ``env`` (Stable-Baselines3's ``load`` then ``set_env`` habit)."""
        source = getattr(self, "_source", None)
        if not self.for_training and source is not None:
            path, kwargs = source
            full = load(path, env=env, for_training=True, **kwargs)
            self.close()
            self.__dict__.update(full.__dict__)
            return
        self._require_training("attach a training env")
        spec = env
        env = self.build_spec = self._with_masks(env)
        venv = make_vec_env(env, self.cfg.num_envs, self.cfg.seed, self.cfg.vectorization, self.allow_import)
        if not (same_space(venv.single_observation_space, self.obs_space)
                and same_space(venv.single_action_space, self.act_space)):
            venv.close()
            raise EnvError("the new environment's spaces differ from the model's")
        if self.venv is not None:
            self.venv.close()
        self.venv, self.stream = venv, EnvStream(venv, self.prep)
        self.env_id = spec if isinstance(spec, str) else None
        self.env_spec = spec
        self.eval_env.close()
        self.eval_env = EvalEnv(env, self.allow_import, seed=self.cfg.seed + 100_003)

    # ------------------------------------------------------------------ training
    def learn(self, total_steps: int | float | None = None, callback: Callback | None = None, *,
              progress_bar: bool | None = None, run_dir: str | os.PathLike | None = None, eval_every: int = 0,
              eval_episodes: int = 10, checkpoint_every: int = 0, threshold: float | None = None,
              total_timesteps: int | float | None = None, tracker: Any = None) -> "Agent":
        """Train for ``total_steps`` more environment steps (``total_timesteps=`` is the same, as
        Stable-Baselines3 names it; an integral float such as ``1e5`` is taken).

        ``callback(agent, info)`` (or a list of them) runs after every iteration; returning
        ``False`` stops training. ``info`` carries the counters, the finished episodes' returns and
        infos, the latest evaluation, ``log(name, value)`` and ``evaluate(n)``: see
        ``critic.callbacks``, which has the ready-made ones (``EvalCallback`` with best-model
        saving, ``CheckpointCallback`` keeping the last K, ``StopOnReward``).
        With ``run_dir`` the run directory described in benchmarks/README.md is written (metrics, evaluations,
        checkpoints, final model, summary, curve). Ctrl-C stops at the end of the current
        iteration, writes a checkpoint to ``run_dir`` and raises ``KeyboardInterrupt``.
        ``tracker``: an experiment tracker fed the run directory's rows (``critic.track``;
        ``critic train --track`` makes a Weights & Biases one).
        """
        total_steps = steps_argument(total_steps, total_timesteps)
        if self.cfg.torch_threads == 0:  # chosen again: the machine may be busier (or idler) than at construction
            set_cpu_threads(self.device, 0, wide=self._wide)
        session = TrainingSession(self, total_steps, callback, progress_bar=progress_bar, run_dir=run_dir,
                                  eval_every=eval_every, eval_episodes=eval_episodes,
                                  checkpoint_every=checkpoint_every, threshold=threshold, tracker=tracker)
        with sigint_flag() as interrupted:
            try:
                self._learn_begin(session.target)
                while not session.done(interrupted.is_set()):
                    try:
                        metrics = self._iteration()
                    except Exception as e:
                        session.diverged_or(e)
                        raise
                    session.record(metrics)
            except BaseException:
                if session.run is not None:
                    session.run.close(exit_code=1)
                raise
            finally:
                try:
                    self._learn_end()
                finally:
                    session.close()
        session.finish(interrupted.is_set())
        return self

    def _record_episodes(self, returns: list[float]) -> None:
        if returns:
            self.episodes += len(returns)
            self.recent_returns.extend(returns)
            self._finished.extend(returns)

    def check_finite(self, what: str) -> None:
        """Raise :class:`NonFiniteError` naming the first parameter or buffer that is NaN/inf
        (one fused reduction when all are finite); ``what`` says what happens next."""
        named = [(k, v) for k, v in self.nets.state_dict().items() if v.is_floating_point()]
        if not named:
            return
        if bool(torch.isfinite(torch.stack(torch._foreach_norm([v.float() for _, v in named]))).all()):
            return
        bad = next(k for k, v in named if not bool(torch.isfinite(v).all()))
        raise NonFiniteError(f"parameter {bad} became non-finite at env step {self.env_steps} (update "
                             f"{self.updates}); {what}, the last good checkpoint is kept")

    # ------------------------------------------------------------------ acting and evaluation
    def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False, *,
                action_mask: Any = None, action_masks: Any = None) -> tuple[np.ndarray, None]:
        """``(action, state)`` for one observation or a batch ``[B, *obs_shape]``, actions as the
        env expects them, as Stable-Baselines3 returns them: ``action, _ = agent.predict(obs)``.
        critic's policies keep no recurrent state: ``state`` is always returned None and must be
        None when given (``episode_start`` is accepted and ignored).
        ``action_mask`` (or sb3-contrib's ``action_masks``): the valid actions (one 0/1 flag per
        action, ``[B, n]`` for a batch) of an agent trained with masks; without one, every action
        counts as valid (or the observation's own ``action_mask`` key, for a Dict observation)."""
        if state is not None:
            raise ValueError(f"predict(obs, state={short_repr(state)}): critic's policies keep no recurrent state, so "
                             "state must be None; pass deterministic=... by name (predict(obs, deterministic=True))")
        if action_masks is not None:
            if action_mask is not None:
                raise ValueError("give the mask once: action_mask or action_masks, not both")
            action_mask = action_masks
        return self._act(obs, deterministic, action_mask), None

    def _act(self, obs: Any, deterministic: bool = False, action_mask: Any = None) -> np.ndarray:
        """``predict``'s action alone (evaluation and the CLI use it)."""
        packed = is_packed_space(self.obs_space)
        layout = self.obs_space.layout if packed else None
        wrapped = layout is not None and isinstance(layout.space, gym.spaces.Dict) \
            and set(layout.space.spaces) == {"obs", "action_mask"}  # envs/masking.py's observation
        if action_mask is not None and (layout is None or layout.mask is None):
            raise ValueError("action_mask given, but this agent was trained without action masks")
        rows = isinstance(obs, np.ndarray) and obs.dtype == np.uint8 and obs.shape[-1:] == self.obs_space.shape
        if wrapped and not rows and not (isinstance(obs, dict) and "action_mask" in obs):  # (rows: packed already)
            n = layout.mask.size
            lead = () if _is_single(obs, layout.space["obs"]) else (len(_first_leaf(obs)),)
            obs = {"obs": obs, "action_mask": np.ones((*lead, n), np.float32) if action_mask is None else action_mask}
        elif action_mask is not None:
            if not isinstance(obs, dict):
                raise ValueError("action_mask given with observations that are packed already (or not a dict): "
                                 "give the env's own observation")
            obs = {**obs, "action_mask": action_mask}
        if packed and isinstance(obs, (dict, tuple, list)):  # a Dict/Tuple observation (or a batch of them)
            obs = layout.pack(obs)
        x = np.asarray(obs)
        shape = self.obs_space.shape
        single = x.shape == shape
        if single:
            x = x[None]
        elif x.shape[1:] != shape:
            what = (f"Dict/Tuple observations of {self.obs_space.layout.space} (packed {shape})" if packed
                    else f"the observation space {shape}")
            raise ValueError(f"observation of shape {x.shape} matches neither {what} nor a batch [B, *{shape}]")
        if packed:
            x = x.astype(np.uint8, copy=False)
        elif not self.image:
            x = x.astype(np.float32, copy=False)
        x = self.prep.obs(x)
        with torch.inference_mode():
            a = self._policy(torch.as_tensor(x, device=self.device), deterministic)
        a = self.env_action(a.cpu().numpy())
        return a[0] if single else a

    def make_eval_env(self, render_mode: str | None = None) -> gym.Env:
        """A single env to evaluate (or render) on: Atari games whole, with raw rewards."""
        return eval_env_for(self.build_spec, render_mode, self.allow_import)

    def evaluate(self, n_episodes: int = 10, deterministic: bool = True, env: gym.Env | None = None,
                 seed: int | None = None) -> dict[str, Any]:
        """Play ``n_episodes`` full episodes; ``{mean, std, returns, lengths}`` of raw returns."""
        if n_episodes < 1:
            raise ConfigError(f"invalid value for 'n_episodes': {n_episodes} (allowed: an integer >= 1)")
        first_seed = seed
        if env is None:
            env, next_seed = self.eval_env.take()
            first_seed = next_seed if seed is None else seed
        returns, lengths = play_episodes(env, lambda obs: self._act(obs, deterministic), n_episodes, first_seed)
        return {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "returns": returns,
                "lengths": lengths}

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, optim_meta = ckpt.training_state(self.nets, self.optims)
        tensors.update(self.prep.state())
        rng_meta, rng_tensors = rng_state(self.np_rng)
        tensors.update(rng_tensors)
        extra_t, extra_m = self._extra_state()
        coll_t, coll_m = self.collector.state()
        tensors.update(extra_t)
        tensors.update(coll_t)
        meta = {
            "algo": self.algo, "critic_version": __version__, "env_id": self.env_id,
            "config": self.cfg.to_dict(),
            "spaces": {"observation": space_to_dict(self.obs_space), "action": space_to_dict(self.act_space)},
            "counters": {"env_steps": self.env_steps, "updates": self.updates, "episodes": self.episodes,
                         "resets": self.resets, "learn_span": list(self._learn_span) if self._learn_span else None,
                         "recent_returns": list(self.recent_returns)},
            "env": self._env_state(),
            "optimizers": optim_meta, "rng": rng_meta, "run": self._run, "extra": {**extra_m, **coll_m},
            "allow_import": list(self.allow_import), "mask_source": self.mask_source,
        }
        return tensors, meta

    def _load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: str) -> None:
        try:
            ckpt.load_training_state(self.nets, self.optims, tensors, meta["optimizers"])
            self.prep.load_state(tensors)
            set_rng_state(meta["rng"], tensors, self.np_rng)
            c = meta["counters"]
            self.env_steps, self.updates, self.episodes, self.resets = (
                int(c["env_steps"]), int(c["updates"]), int(c["episodes"]), int(c.get("resets", 0)))
            self._run = meta.get("run", self._run)
            span = c.get("learn_span")
            self._resume_span = (int(span[0]), int(span[1])) if span else None
            self.recent_returns.extend(float(x) for x in c.get("recent_returns", ()))
            extra = meta.get("extra", {})
            self.collector.load_state(tensors, extra)
            self._load_extra_state(tensors, extra)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise ckpt.CheckpointError(f"{path}: checkpoint does not match this {self.algo} agent "
                                       f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
        env_meta = meta.get("env")
        if env_meta is None or self.stream is None:
            return
        self.stream.load_state(env_meta, path, self.obs_space.shape)
        if self.stream.obs is not None:
            self.eval_env.restore(env_meta)

    def save(self, path: str | os.PathLike) -> Path:
        """Write a full checkpoint (weights, optimizers, normalisers, counters, RNG states, envs).

        Refuses (:class:`NonFiniteError`) to write non-finite weights, so an existing checkpoint
        at ``path`` stays the last good one. :meth:`save_model` writes what acting needs only."""
        if not self.for_training:
            raise ckpt.CheckpointError("this agent was loaded to act and holds no training state to checkpoint; "
                                       "save_model(path) writes its policy")
        self.check_finite("nothing was written")
        tensors, meta = self._state()
        return ckpt.write(ckpt.save_path(path), tensors, meta)

    def save_model(self, path: str | os.PathLike) -> Path:
        """Write what acting needs: the networks' weights, the observation normaliser, config,
        spaces and counters; no optimizer state, replay, envs or RNG states (a run's ``model/``
        holds this; ``critic.load`` of it builds no env). Continue training from a full
        checkpoint (:meth:`save`) instead."""
        self.check_finite("nothing was written")
        tensors = {f"nets/{k}": v for k, v in self.nets.state_dict().items()}
        tensors.update({k: v for k, v in self.prep.state().items() if k.startswith(MODEL_TENSORS)})
        meta = {
            "kind": "model", "algo": self.algo, "critic_version": __version__, "env_id": self.env_id,
            "config": self.cfg.to_dict(),
            "spaces": {"observation": space_to_dict(self.obs_space), "action": space_to_dict(self.act_space)},
            "counters": {"env_steps": self.env_steps, "updates": self.updates, "episodes": self.episodes},
            "mask_source": self.mask_source, "run": self._run, "allow_import": list(self.allow_import),
        }
        return ckpt.write(ckpt.save_path(path), tensors, meta)

    def _load_model(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: str) -> None:
        """What :meth:`save_model` wrote (or the same part of a full checkpoint)."""
        try:
            self.nets.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("nets/")}, strict=True)
            if self.prep.obs_norm is not None:
                self.prep.obs_norm.rms.load_state_dict(tensors, "obs_norm")
            c = meta["counters"]
            self.env_steps, self.updates, self.episodes = int(c["env_steps"]), int(c["updates"]), int(c["episodes"])
            self._run = meta.get("run", self._run)
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise ckpt.CheckpointError(f"{path}: model does not match this {self.algo} agent "
                                       f"({type(e).__name__}: {str(e).splitlines()[0]})") from None

    def _save_run_checkpoint(self, run_dir, clock: Clock) -> None:
        self._run["wall"], self._run["train"] = clock.wall, clock.train
        self.save(Path(run_dir) / "checkpoints" / ckpt.FILENAME)

    @classmethod
    def load(cls, path: str | os.PathLike, env: EnvSpec | None = None, **overrides: Any) -> "Agent":
        """Load a checkpoint of this algorithm (``critic.SAC.load``), or of any algorithm through
        the base class (``critic.Agent.load``, the same as ``critic.load``). Another algorithm's
        file is refused with a :class:`~critic.checkpoint.CheckpointError` naming both."""
        return load(path, env=env, _expect=None if cls is Agent else cls, **overrides)

    def close(self) -> None:
        if self.collector is not None:
            self.collector.close()
        if self.venv is not None:
            self.venv.close()
        self.eval_env.close()

    def __enter__(self):
        """``with critic.A3C(...) as agent:`` closes envs, worker processes and samplers on exit."""
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.env_id!r}, env_steps={self.env_steps})"


class TrainingSession:
    """The bookkeeping of one ``learn`` call around the iterations that drive it: the step budget,
    schedules' span, metrics rows, progress bar, evaluations, run-directory checkpoints and
    callback (``record`` after each iteration), then the final checkpoint, model and summary
    (``finish``). ``Agent.learn`` drives one; a batched run drives one per member."""

    def __init__(self, agent: Agent, total_steps: int, callback: Callback | None = None, *,
                 progress_bar: bool | None = None, run_dir: str | os.PathLike | None = None, eval_every: int = 0,
                 eval_episodes: int = 10, checkpoint_every: int = 0, threshold: float | None = None,
                 before_save: Callable[[], None] | None = None, tracker: Any = None):
        if not isinstance(total_steps, (int, np.integer)) or total_steps < 0:
            raise ConfigError(f"invalid value for 'total_steps': {total_steps!r} (allowed: an integer >= 0)")
        if eval_every < 0 or eval_episodes < 1:
            raise ConfigError(f"invalid evaluation settings eval_every={eval_every}, eval_episodes={eval_episodes} "
                              "(allowed: eval_every >= 0, eval_episodes >= 1)")
        a = self.agent = agent
        stream = a._require_env()
        self.start, self.target = a.env_steps, a.env_steps + int(total_steps)
        # Schedules (linear learning-rate decay) run over the learn() call; a loaded checkpoint of
        # an unfinished call continues that call's schedule when asked for the same end step.
        span, a._resume_span = a._resume_span, None
        a._learn_span = (span[0], span[1]) if span and span[0] <= self.start < span[1] == self.target \
            else (self.start, self.target)
        self.threshold = reward_threshold(a.env_spec) if threshold is None else threshold
        self.callback, self.run_dir, self.eval_every, self.eval_episodes = callback, run_dir, eval_every, eval_episodes
        if tracker is not None and run_dir is None:
            raise ConfigError("a tracker needs a run directory: learn(..., run_dir=..., tracker=...)")
        self.run = RunLogger(run_dir, tracker=tracker) if run_dir is not None else None
        if run_dir is not None:
            write_run_config(Path(run_dir), a, self.target, eval_every, eval_episodes)
        self.clock = Clock(a._run["wall"], a._run["train"])
        self.progress = Progress(self.target, self.start, progress_bar, desc=f"{a.algo} {a.env_id or ''}".strip())
        if stream.obs is None:
            stream.reset(seed=a.cfg.seed + 1000 * a.resets)
            a.resets += 1
        self.log, self.evals = Every(self.start, a.cfg.log_every), Every(self.start, eval_every)
        self.ckpts = Every(self.start, checkpoint_every)
        self.last_log_t, self.last_log_steps = self.clock.train, self.start
        self.pending: list[float] = []
        self.custom: dict[str, float] = {}  # scalars logged by callbacks, for the next metrics row
        if isinstance(callback, (list, tuple)):
            from critic.callbacks import CallbackList

            callback = self.callback = CallbackList(list(callback))
        elif callback is not None and not callable(callback):
            raise ConfigError(f"invalid callback {short_repr(callback)}: a callable (agent, info) -> bool | None, "
                              "or a list of them")
        if callback is not None and stream.stepper is not None:
            stream.stepper.finished_infos.clear()  # only this call's episodes
        self.stopped = False  # by the callback
        self.before_save = before_save  # (a batched run hands each member its optimizer state)

    def done(self, interrupted: bool = False) -> bool:
        return interrupted or self.stopped or self.agent.env_steps >= self.target

    def diverged_or(self, e: Exception) -> None:
        """An iteration raised: diverged weights surface as NaN actions (an env that rejects
        them, a sampler that raises), so report the parameter, not the symptom."""
        self.agent.check_finite(f"training stopped ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")

    def record(self, metrics: dict[str, torch.Tensor]) -> None:
        """After an iteration: the evaluation, callback, metrics row, progress and checkpoint that are due."""
        a, clock, run = self.agent, self.clock, self.run
        new_eps, a._finished = a._finished, []
        self.pending.extend(new_eps)
        log_due = self.log.due(a.env_steps) or a.env_steps >= self.target
        if log_due:
            a.check_finite("training stopped")
        info: dict[str, Any] = {"evaluated": False, "eval": a._run["evals"][-1] if a._run["evals"] else None}
        if self.evals.due(a.env_steps) or (self.eval_every and a.env_steps >= self.target):
            self.evaluate(self.eval_episodes, info)
            self.evals.advance(a.env_steps)
        if self.callback is not None:
            stepper = a.stepper
            infos = list(stepper.finished_infos) if stepper is not None else []
            if stepper is not None:
                stepper.finished_infos.clear()
            info.update(env_steps=a.env_steps, updates=a.updates, start=self.start, target=self.target,
                        metrics=metrics, episode_returns=new_eps, episode_infos=infos, log=self.log_value,
                        evaluate=lambda n_episodes=self.eval_episodes: self.evaluate(n_episodes, info),
                        run_dir=self.run_dir)
            if self.callback(a, info) is False:
                self.stopped = True
        if log_due:
            sps = (a.env_steps - self.last_log_steps) / max(clock.train - self.last_log_t, 1e-9)
            row = metrics_row({"env_steps": a.env_steps, "updates": a.updates, "episodes": a.episodes}, metrics,
                              self.pending, sps, clock)
            row.update(self.custom)
            self.custom = {}
            if run is not None:
                run.log_metrics(row)
            self.progress.update(a.env_steps, float(np.mean(a.recent_returns)) if a.recent_returns else None, sps)
            self.pending, self.last_log_t, self.last_log_steps = [], clock.train, a.env_steps
            self.log.advance(a.env_steps)
        if run is not None and self.ckpts.due(a.env_steps):
            if self.before_save is not None:
                self.before_save()
            a._save_run_checkpoint(self.run_dir, clock)
            self.ckpts.advance(a.env_steps)

    def evaluate(self, n_episodes: int, info: dict[str, Any] | None = None) -> dict[str, Any]:
        """An evaluation now: timed apart from training, recorded (``agent.evaluations``,
        evals.csv, TensorBoard); ``info`` (a callback's) gets it as ``eval``."""
        a, clock = self.agent, self.clock
        t0 = time.perf_counter()
        res = a.evaluate(n_episodes)
        clock.eval_time += time.perf_counter() - t0
        row = {"env_steps": a.env_steps, "wall_seconds": round(clock.wall, 3), "train_seconds": round(clock.train, 3),
               "mean": res["mean"], "std": res["std"], "episodes": n_episodes}
        a._run["evals"].append(row)
        if self.run is not None:
            self.run.log_eval(row)
        if info is not None:
            info.update(eval=row, evaluated=True)
        return row

    def log_value(self, name: str, value: Any) -> None:
        """A callback's own scalar, written in the next metrics row (metrics.csv, TensorBoard)."""
        if not isinstance(name, str) or not name or name in ("env_steps", "updates", "episodes"):
            raise ConfigError(f"invalid name for log(): {name!r} (allowed: a non-empty string other than env_steps, "
                              "updates, episodes)")
        try:
            self.custom[name] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"invalid value for log({name!r}, ...): {short_repr(value)} (allowed: a number)") from None

    def close(self) -> None:
        self.progress.close()
        self.agent._run["wall"], self.agent._run["train"] = self.clock.wall, self.clock.train

    def finish(self, interrupted: bool) -> None:
        """The run directory's last checkpoint, model and summary; Ctrl-C raises KeyboardInterrupt."""
        a, run_dir = self.agent, self.run_dir
        if self.run is not None:
            if self.before_save is not None:
                self.before_save()
            a._save_run_checkpoint(run_dir, self.clock)
            if not interrupted:
                a.save_model(Path(run_dir) / "model" / ckpt.FILENAME)
            write_summary(Path(run_dir), {"algo": a.algo, "env_id": a.env_id, "seed": a.cfg.seed,
                                          "config": a.cfg.to_dict()},
                          a._run["evals"], a.env_steps, a.updates, self.clock, self.threshold)
            self.run.close(exit_code=1 if interrupted else 0)
        if interrupted:
            raise KeyboardInterrupt(f"training interrupted at env step {a.env_steps}"
                                    + (f"; checkpoint written to {run_dir}" if run_dir else ""))


def run_config(algo: str, env_id: str | None, cfg: Config, steps: int, eval_every: int, eval_episodes: int,
               allow_import: tuple[str, ...] | list[str] = (), preset: str | os.PathLike | None = None) -> dict[str, Any]:
    """A run directory's ``config.yaml`` (what ``critic train --resume`` reads): algorithm, env id,
    seed, step budget, evaluation settings, preset, allowed imports and every config field."""
    return {"algo": algo, "env_id": env_id, "seed": cfg.seed, "steps": int(steps), "eval_every": int(eval_every),
            "eval_episodes": int(eval_episodes), "preset": str(preset) if preset else None,
            "allow_import": list(allow_import), "hparams": cfg.to_dict()}


def write_run_config(run_dir: Path, agent: Agent, target: int, eval_every: int, eval_episodes: int) -> None:
    """``config.yaml`` of a run directory made by ``learn(run_dir=...)``, as ``critic train``
    writes it, so ``critic train --resume RUN`` continues it (to ``target`` env steps). One that
    ``critic train`` wrote is left as it is; one that ``learn`` wrote gets the new step target."""
    from critic.config import dump_yaml, load_yaml

    path = run_dir / "config.yaml"
    if path.is_file():
        try:
            old = load_yaml(path)
        except Exception:
            old = None
        if not (isinstance(old, dict) and old.get("written_by") == "learn"):
            return
    run_cfg = {**run_config(agent.algo, agent.env_id, agent.cfg, target, eval_every, eval_episodes,
                            agent.allow_import), "written_by": "learn"}
    if agent.env_id is None:
        run_cfg["note"] = ("trained on an env given as an object or callable: critic train --resume needs a "
                           "Gymnasium id; resume from Python with critic.load(RUN, env=..., for_training=True)")
    path.write_text(dump_yaml(run_cfg))


def steps_argument(total_steps: Any, total_timesteps: Any = None) -> int:
    """``learn``'s step count from ``total_steps`` or its Stable-Baselines3 name
    ``total_timesteps``: an integer >= 0, or a float with an integral value (``1e5``)."""
    if total_steps is not None and total_timesteps is not None:
        raise ConfigError("give the number of env steps once: total_steps or total_timesteps, not both")
    n = total_steps if total_steps is not None else total_timesteps
    if n is None:
        raise ConfigError("learn() needs the number of env steps: learn(100_000) or learn(total_timesteps=100_000)")
    if isinstance(n, (float, np.floating)) and math.isfinite(n) and float(n).is_integer():
        n = int(n)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"invalid value for 'total_steps': {n!r} (allowed: an integer >= 0, or a float with an "
                          "integral value such as 1e5)")
    return int(n)


def _first_leaf(obs: Any) -> np.ndarray:
    while isinstance(obs, (dict, tuple)):
        obs = next(iter(obs.values())) if isinstance(obs, dict) else obs[0]
    return np.asarray(obs)


def _is_single(obs: Any, space: gym.Space) -> bool:
    """Whether ``obs`` is one observation of ``space`` (not a batch)."""
    while isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        if isinstance(space, gym.spaces.Dict):
            key = next(iter(space.spaces))
            space, obs = space[key], obs[key]
        else:
            space, obs = space[0], obs[0]
    return np.ndim(obs) == len(space.shape)


def load(path: str | os.PathLike, env: EnvSpec | None = None, *, allow_import: tuple[str, ...] = (),
         for_training: bool | None = None, _expect: type[Agent] | None = None, **overrides: Any) -> Agent:
    """Load a saved agent: a model file, a full checkpoint, or a run directory (its ``model/``,
    else its ``checkpoints/``).

    To act (the default without ``env``): the networks and the observation normaliser only,
    no training envs, no replay, no optimizer state, and only those tensors read from a full
    checkpoint; ``predict``, ``evaluate`` (on the stored env id, built at the first
    evaluation) and export work, ``learn`` refuses. To train on (``for_training=True``, the
    default when ``env`` is given): a full checkpoint's every part (weights, optimizers,
    normalisers, replay, counters, RNG and env states), on ``env`` or the stored env id.
    ``overrides`` replace config fields (e.g. device). A model made with your own ``encoder``
    imports the encoder's module only when ``allow_import`` names it (or its top-level package).
    """
    allow_import = tuple(allow_import)
    if for_training is None:
        for_training = env is not None
    if not isinstance(for_training, bool):
        raise ConfigError(f"invalid value for 'for_training': {for_training!r} (allowed: True, False, None)")
    if Path(path).is_dir() and (Path(path) / "batch.safetensors").is_file():  # a batched run's directory
        _, meta = ckpt.read(Path(path) / "batch.safetensors")
        cls = Agent._algorithms.get(meta.get("algo")) if isinstance(meta, dict) else None
        if cls is None or _expect not in (None, cls):
            raise ckpt.CheckpointError(f"{path}: a batched run of {meta.get('algo')!r}, which this cannot load")
        return cls._load_batch(path, env=env, allow_import=allow_import)
    acting = None if for_training else (lambda k: k.startswith(MODEL_TENSORS))
    tensors, meta = ckpt.read(path, acting)
    if isinstance(meta, dict) and meta.get("kind") == "model" and for_training:
        raise ckpt.CheckpointError(f"{ckpt.resolve(path)}: a model file (what acting needs: weights, normalisation) "
                                   "holds no training state; continue training from the run's "
                                   "checkpoints/agent.safetensors, or load this with for_training=False to act")
    if isinstance(meta, dict) and meta.get("kind") == "components":
        raise ckpt.CheckpointError(f"{path}: a components checkpoint ({meta.get('architecture', {}).get('class')}), "
                                   "not an agent: build the same objects and call their .load(path)")
    if _expect is not None and isinstance(meta, dict) and meta.get("algo") != _expect.algo:
        raise ckpt.CheckpointError(f"{path}: a {meta.get('algo')} checkpoint, not a {_expect.algo} one; load it "
                                   f"with critic.load(path) or the {str(meta.get('algo')).upper()} class")
    try:
        algo = meta["algo"]
        if algo not in Agent._algorithms:
            raise ValueError(f"unknown algorithm {algo!r} (known: {', '.join(sorted(Agent._algorithms))})")
        cls = Agent._algorithms[algo]
        cfg = cls.config_cls.from_dict({**meta["config"], **overrides})
        spaces = (space_from_dict(meta["spaces"]["observation"]), space_from_dict(meta["spaces"]["action"]))
    except (KeyError, ValueError, TypeError) as e:
        raise ckpt.CheckpointError(f"{path}: invalid checkpoint metadata ({type(e).__name__}: {e})") from None
    encoder = getattr(cfg, "encoder", None)
    if encoder is not None:
        from critic.nn import encoder_allowed

        module = encoder.partition(":")[0]
        if not encoder_allowed(encoder, allow_import):
            raise ckpt.CheckpointError(
                f"{path}: the model's encoder '{encoder}' lives in the Python module '{module}', which loading "
                f"would import; refused unless you allow it: critic.load(path, allow_import=('{module}',)) or "
                f"--allow-import {module}")
    env_spec = env if env is not None else meta.get("env_id")
    allowed = tuple(dict.fromkeys([*meta.get("allow_import", ()), *allow_import]))
    if not for_training:
        agent = cls(env_spec, cfg, spaces=spaces, allow_import=allowed, for_training=False,
                    mask_source=meta.get("mask_source"))
        agent._load_model(tensors, meta, str(path))
        if meta.get("kind") != "model":  # a full checkpoint: set_env(env) loads it for training
            agent._source = (path, {"allow_import": allow_import, **overrides})
        return agent
    try:
        agent = cls(env_spec, cfg, spaces=spaces, allow_import=allowed)
    except EnvError as e:
        if env is None and env_spec is not None:  # the stored id no longer resolves: predict-only
            agent = cls(None, cfg, spaces=spaces)
        elif "differ from the model" in str(e):
            raise ckpt.CheckpointError(f"{path}: {e}") from None
        else:
            raise
    agent._load_state(tensors, meta, str(path))
    return agent
