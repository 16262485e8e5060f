"""keras-gym's training monitor and logging switch, for Gymnasium environments.

    env = critic.wrappers.TrainMonitor(gym.make("FrozenLake-v1"))
    critic.enable_logging()                       # show the monitor's episode lines
    s, _ = env.reset()
    ...
    losses = actor_critic.update(s, a, r, terminated, truncated, s_next)
    env.record_losses(losses)                     # averaged into the episode lines
    if env.T % 20 == 0: ...                       # global step counter

At the end of every episode (terminated or truncated) the monitor logs one line through
Python's ``logging`` (logger ``critic.wrappers.TrainMonitor``, a child of ``critic``)::

    ep: 12, T: 1,034, G: 1, avg_G: 0.417, t: 6, dt: 0.412ms, policy/loss: -0.0132, value/loss: 0.0211

and, with ``tensorboard_dir``, writes the same numbers (and a histogram of the episode's
actions) as TensorBoard events under ``TrainMonitor/`` (TensorBoard is an optional extra,
imported only then).
"""

from __future__ import annotations

import logging
import math
import time
from typing import IO, Any, Mapping

import gymnasium as gym
import numpy as np

__all__ = ["TrainMonitor", "enable_logging"]

LOGGER_NAME = "critic"
_HANDLER_FLAG = "_critic_enable_logging"


def enable_logging(level: int = logging.INFO, stream: IO[str] | None = None) -> logging.Logger:
    """Show critic's log lines (the TrainMonitor's episode lines among them) on stderr.

    keras-gym's ``enable_logging`` called ``logging.basicConfig(level=logging.INFO)``; this one
    gives the ``critic`` logger one stream handler with the same format (``INFO:name:message``)
    and sets its level, so other libraries' loggers stay as they are. Calling it again changes
    the level (and the stream, if given) without adding a second handler. Returns the logger.
    """
    logger = logging.getLogger(LOGGER_NAME)
    handler = next((h for h in logger.handlers if getattr(h, _HANDLER_FLAG, False)), None)
    if handler is None:
        handler = logging.StreamHandler(stream)
        setattr(handler, _HANDLER_FLAG, True)
        handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
        logger.addHandler(handler)
    elif stream is not None:
        handler.setStream(stream)
    handler.setLevel(level)
    logger.setLevel(level)
    return logger


def _summary_writer(logdir: Any):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError("TrainMonitor(tensorboard_dir=...) needs TensorBoard: pip install 'critic[tensorboard]'"
                          ) from None
    return SummaryWriter(str(logdir), flush_secs=10)


class TrainMonitor(gym.Wrapper):
    """Counters and per-episode diagnostics of a training run (keras-gym's ``TrainMonitor``).

    Attributes: ``T`` steps over all episodes, ``ep`` episodes started (both kept across
    ``reset``; ``reset_global()`` zeroes them), ``t`` steps and ``G`` return of the current
    episode, ``avg_G`` a running mean of the returns (their plain mean over the first
    ``smoothing`` episodes, after that each new return moves it by ``1 / smoothing``, as
    keras-gym's), ``avg_r = G / t`` and ``dt_ms``, the mean wall time of a step of this
    episode. ``quiet = True`` silences the episode lines. ``step`` adds
    ``info["monitor"] = {"T": T, "ep": ep}``. Unlike keras-gym's, ``T`` counts steps only (not resets).
    """

    def __init__(self, env: gym.Env, tensorboard_dir: Any = None, smoothing: int = 100, quiet: bool = False):
        super().__init__(env)
        if not isinstance(smoothing, (int, np.integer)) or isinstance(smoothing, bool) or smoothing < 1:
            raise ValueError(f"invalid value for 'smoothing': {smoothing!r} (allowed: an integer >= 1)")
        self.smoothing, self.quiet = int(smoothing), bool(quiet)
        self.logger = logging.getLogger(f"{LOGGER_NAME}.wrappers.{type(self).__name__}")
        self.tensorboard_dir = tensorboard_dir
        self.tensorboard = _summary_writer(tensorboard_dir) if tensorboard_dir is not None else None
        self.reset_global()

    def reset_global(self) -> None:
        """Zero every counter, the global ones too, and forget the recorded losses."""
        self.T, self.ep, self.t, self.G, self.avg_G = 0, 0, 0, 0.0, 0.0
        self._n_avg_G = 0
        self._losses: dict[str, float] = {}   # running means over the last `smoothing` records
        self._n_losses: dict[str, int] = {}
        self._start_episode()

    def _start_episode(self) -> None:
        self.t, self.G = 0, 0.0
        self._ep_start = time.perf_counter()
        self._ep_losses: dict[str, list[float]] = {}  # name -> [sum, count] within this episode
        self._ep_actions: list[Any] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.ep += 1
        self._start_episode()
        return self.env.reset(seed=seed, options=options)

    @property
    def avg_r(self) -> float:
        return self.G / self.t if self.t > 0 else math.nan

    @property
    def dt_ms(self) -> float:
        return 1000.0 * (time.perf_counter() - self._ep_start) / self.t if self.t > 0 else math.nan

    def step(self, a):
        s_next, r, terminated, truncated, info = self.env.step(a)
        self.t += 1
        self.T += 1
        self.G += float(r)
        if self.tensorboard is not None:
            self._ep_actions.append(a)
        info = {**info, "monitor": {"T": self.T, "ep": self.ep}}
        if terminated or truncated:
            self._n_avg_G = min(self._n_avg_G + 1, self.smoothing)
            self.avg_G += (self.G - self.avg_G) / self._n_avg_G
            self._end_episode()
        return s_next, r, terminated, truncated, info

    def record_losses(self, losses: Mapping[str, Any] | None) -> None:
        """Record a ``{name: value}`` dict of losses/metrics (what ``batch_update`` returns);
        each name's running mean (like ``avg_G``'s) joins the episode lines.
        ``None`` (an ``update`` that had nothing to update on yet) is ignored."""
        if losses is None:
            return
        if not isinstance(losses, Mapping):
            raise TypeError(f"losses must be a dict of {{name: value}}, got {type(losses).__name__}")
        for k, v in losses.items():
            v = float(v)
            n = self._n_losses[k] = min(self._n_losses.get(k, 0) + 1, self.smoothing)
            self._losses[k] = v if n == 1 else self._losses[k] + (v - self._losses[k]) / n
            acc = self._ep_losses.setdefault(k, [0.0, 0])
            acc[0] += v
            acc[1] += 1

    @property
    def losses(self) -> dict[str, float]:
        """The running means that the episode lines show."""
        return dict(self._losses)

    def _end_episode(self) -> None:
        if not self.quiet:
            line = (f"ep: {self.ep:d}, T: {self.T:,d}, G: {self.G:.3g}, avg_G: {self.avg_G:.3g}, t: {self.t:d}, "
                    f"dt: {self.dt_ms:.3f}ms")
            line += "".join(f", {k}: {v:.3g}" for k, v in self._losses.items())
            self.logger.info(line)
        if self.tensorboard is not None:
            tb, tag = self.tensorboard, "TrainMonitor/"
            scalars = {"ep_return": self.G, "avg_G": self.avg_G, "ep_avg_reward": self.avg_r, "ep_steps": self.t,
                       "avg_step_duration_ms": self.dt_ms}
            scalars.update({k: s / n for k, (s, n) in self._ep_losses.items()})  # this episode's means
            for k, v in scalars.items():
                tb.add_scalar(tag + k, float(v), global_step=self.T)
            if self._ep_actions:
                tb.add_histogram(tag + "actions", np.asarray(self._ep_actions, dtype=np.float64), global_step=self.T)
            tb.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        super().close()
