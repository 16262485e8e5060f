"""Ready-made callbacks for ``learn``: the three everyone writes, as Stable-Baselines3 users know them.

A callback is any ``callback(agent, info) -> bool | None`` run after every iteration (returning
``False`` stops training). ``info`` holds:

* ``env_steps``, ``updates``; ``start`` and ``target``: the env steps this ``learn`` call began
  at and ends at;
* ``metrics``: the last update's losses (tensors);
* ``episode_returns`` and ``episode_infos``: the episodes finished in this iteration, their raw
  returns and the last step's info of each (the env's own keys, plus ``episode``:
  ``{"r": return, "l": length}``);
* ``eval``: the latest evaluation (``env_steps``, ``mean``, ``std``, ``episodes``, ...) or None,
  and ``evaluated``: whether it was made in this iteration;
* ``log(name, value)``: a scalar of your own, written to metrics.csv (and TensorBoard, and Weights
  & Biases with ``--track``) in the next metrics row;
* ``evaluate(n_episodes)``: an evaluation now, timed as evaluation and recorded in evals.csv;
* ``run_dir``: the run directory, or None.

``learn(callback=[a, b])`` runs several in order (every one runs; training stops when any says so).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

__all__ = ["CheckpointCallback", "EvalCallback", "StopOnReward"]


def _positive(name: str, value: Any) -> int:
    from critic.config import ConfigError

    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"invalid value for '{name}': {value!r} (allowed: an integer >= 1)")
    return value


class EvalCallback:
    """Evaluate every ``eval_every`` env steps (reusing the evaluation ``learn(eval_every=...)``
    made at that step, if any) and save the best model so far (``agent.save_model``: what
    acting needs, loaded by ``critic.load``).

    ``best_model_path``: the model file (default ``RUN_DIR/best/model.safetensors``; without a
    run directory, no file is written and ``best_mean`` / ``best_step`` are still kept)."""

    def __init__(self, eval_every: int, n_episodes: int = 10, best_model_path: str | os.PathLike | None = None,
                 verbose: bool = False):
        self.eval_every = _positive("eval_every", eval_every)
        self.n_episodes = _positive("n_episodes", n_episodes)
        self.best_model_path = best_model_path
        self.verbose = verbose
        self.best_mean, self.best_step = -math.inf, None
        self._next: int | None = None

    def __call__(self, agent: Any, info: dict[str, Any]) -> None:
        steps = info["env_steps"]
        if self._next is None:
            self._next = (info["start"] // self.eval_every + 1) * self.eval_every
        if info["evaluated"]:
            res = info["eval"]
        elif steps >= self._next or steps >= info["target"]:
            res = info["evaluate"](self.n_episodes)
        else:
            return
        self._next = (steps // self.eval_every + 1) * self.eval_every
        if res["mean"] > self.best_mean:
            self.best_mean, self.best_step = float(res["mean"]), steps
            path = self._path(info)
            if path is not None:
                agent.save_model(path)
            if self.verbose:
                print(f"critic: new best mean return {res['mean']:.2f} at env step {steps:,}"
                      + (f", saved to {path}" if path else ""))
        info["log"]("eval/best_mean_return", self.best_mean)

    def _path(self, info: dict[str, Any]) -> Path | None:
        if self.best_model_path is not None:
            return Path(self.best_model_path)
        from critic.checkpoint import FILENAME

        return Path(info["run_dir"]) / "best" / FILENAME if info["run_dir"] is not None else None


class CheckpointCallback:
    """A full checkpoint every ``save_every`` env steps, as ``DIR/step_<env_steps>.safetensors``,
    keeping the last ``keep`` of them (None: all). ``DIR`` defaults to ``RUN_DIR/checkpoints``.
    Each one can be loaded (``critic.load``) or resumed from; the run's own
    ``checkpoints/agent.safetensors`` (what ``--resume`` reads) is kept as before."""

    def __init__(self, save_every: int, keep: int | None = None, path: str | os.PathLike | None = None):
        self.save_every = _positive("save_every", save_every)
        self.keep = None if keep is None else _positive("keep", keep)
        self.path = path
        self._next: int | None = None

    def __call__(self, agent: Any, info: dict[str, Any]) -> None:
        steps = info["env_steps"]
        if self._next is None:
            self._next = (info["start"] // self.save_every + 1) * self.save_every
        if steps < self._next and steps < info["target"]:
            return
        self._next = (steps // self.save_every + 1) * self.save_every
        folder = Path(self.path) if self.path is not None else (
            Path(info["run_dir"]) / "checkpoints" if info["run_dir"] is not None else None)
        if folder is None:
            from critic.config import ConfigError

            raise ConfigError("CheckpointCallback needs a folder: give path=... or learn(run_dir=...)")
        agent.save(folder / f"step_{steps}.safetensors")
        if self.keep is not None:
            for old in self.saved(folder)[:-self.keep]:
                old.unlink(missing_ok=True)

    @staticmethod
    def saved(folder: str | os.PathLike) -> list[Path]:
        """The step checkpoints in ``folder``, oldest first."""
        found = []
        for p in Path(folder).glob("step_*.safetensors"):
            tail = p.stem.removeprefix("step_")
            if tail.isdigit():
                found.append((int(tail), p))
        return [p for _, p in sorted(found)]


class StopOnReward:
    """Stop training once the latest evaluation's mean return reaches ``threshold`` (evaluations
    come from ``learn(eval_every=...)`` or an :class:`EvalCallback` listed before this one).
    ``on="train"`` reads the mean of the last ``window`` finished training episodes instead."""

    def __init__(self, threshold: float, on: str = "eval", window: int = 100, verbose: bool = True):
        from critic.config import ConfigError

        if on not in ("eval", "train"):
            raise ConfigError(f"invalid value for 'on': {on!r} (allowed: 'eval', 'train')")
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold):
            raise ConfigError(f"invalid value for 'threshold': {threshold!r} (allowed: a finite number)")
        self.threshold, self.on, self.window, self.verbose = float(threshold), on, _positive("window", window), verbose
        self.stopped_at: int | None = None

    def __call__(self, agent: Any, info: dict[str, Any]) -> bool | None:
        if self.on == "eval":
            if not info["evaluated"]:
                return None
            value = info["eval"]["mean"]
        else:
            recent = list(agent.recent_returns)[-self.window:]
            if len(recent) < min(self.window, 10):
                return None
            value = sum(recent) / len(recent)
        if value >= self.threshold:
            self.stopped_at = info["env_steps"]
            if self.verbose:
                what = "evaluation" if self.on == "eval" else f"last {len(recent)} training episodes"
                print(f"critic: stopping at env step {info['env_steps']:,}: mean return {value:.2f} "
                      f"({what}) reached {self.threshold:g}")
            return False
        return None


class CallbackList:
    """Several callbacks run in order; training stops when any returns ``False``."""

    def __init__(self, callbacks: list[Any]):
        for c in callbacks:
            if not callable(c):
                from critic.config import ConfigError

                raise ConfigError(f"invalid callback {c!r}: a callback is a callable (agent, info) -> bool | None")
        self.callbacks = list(callbacks)

    def __call__(self, agent: Any, info: dict[str, Any]) -> bool | None:
        stop = False
        for c in self.callbacks:
            stop |= c(agent, info) is False
        return False if stop else None
