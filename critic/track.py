"""Experiment tracking with Weights & Biases (``critic train --track``, as RL Zoo's ``--track``).

A :class:`WandbTracker` mirrors :class:`critic.logger.RunLogger`: ``log_metrics`` takes a
metrics.csv row, ``log_eval`` an evals.csv row, ``close(run_dir)`` uploads the run directory's
``curve.png`` and ``summary.json`` and finishes the run. Every point is logged with its
``env_steps`` as a value and ``env_steps`` is the x-axis of every chart (``define_metric``), so
a metrics row and an evaluation at the same env step do not collide on wandb's own ``_step``.

wandb is imported only here, inside functions: ``import critic`` does not need it. Tracking
never costs a run: an error from wandb prints one warning line and turns the tracker off.
"""

from __future__ import annotations

import json
import math
import numbers
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

MODES = ("online", "offline", "disabled")
HINT = 'critic: note: --track needs Weights & Biases: pip install "critic[track]"; training without tracking'


def _number(v: Any) -> float | int | None:
    """``v`` as a plain finite int or float, else None (empty CSV cells, strings, NaN)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        f = float(v)
        return f if math.isfinite(f) else None
    try:  # a 0-d tensor or array
        f = float(v.item())
    except Exception:
        return None
    return f if math.isfinite(f) else None


class WandbTracker:
    """One Weights & Biases run for one critic run directory.

    ``mode``: None leaves it to wandb (``WANDB_MODE``, else online), or ``"online"``,
    ``"offline"`` (written under ``WANDB_DIR``/wandb, upload later with ``wandb sync``),
    ``"disabled"``. ``name`` defaults to the run directory's name, and the config gets the run
    directory's path as ``run_dir``."""

    def __init__(self, run_dir: str | Path | None, config: dict[str, Any], *, project: str = "critic",
                 entity: str | None = None, name: str | None = None, group: str | None = None,
                 tags: Sequence[str] = (), mode: str | None = None):
        if mode is not None and mode not in MODES:
            raise ValueError(f"invalid wandb mode {mode!r} (allowed: {', '.join(MODES)}, or None for wandb's default)")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.run: Any = None
        self.failed = False
        self.env_steps: int | None = None  # the last one logged (the curve image is put there)
        cfg = dict(config or {})
        if self.run_dir is not None:
            cfg.setdefault("run_dir", str(self.run_dir))
            name = name or self.run_dir.name
        try:
            import wandb
            self.run = wandb.init(project=project, entity=entity, name=name, group=group,
                                  tags=list(tags) if tags else None, config=cfg, mode=mode)
            self.run.define_metric("env_steps")
            self.run.define_metric("*", step_metric="env_steps")
        except Exception as e:
            self._fail("starting the run", e)

    @property
    def active(self) -> bool:
        """Whether the run is open and logging (False after an error or ``close``)."""
        return self.run is not None

    def _fail(self, what: str, e: BaseException) -> None:
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"critic: warning: Weights & Biases error while {what} ({type(e).__name__}: {msg}); "
              "training continues without tracking", file=sys.stderr, flush=True)
        self.failed = True
        run, self.run = self.run, None
        if run is not None:
            try:
                run.finish(exit_code=1)
            except Exception:
                pass

    def _log(self, what: str, make: Callable[[], dict[str, Any] | None]) -> None:
        """Log the dict ``make()`` builds (nothing when None); any error turns the tracker off."""
        if self.run is None:
            return
        try:
            data = make()
            if data is not None:
                self.run.log(data)
                self.env_steps = data.get("env_steps", self.env_steps)
        except Exception as e:
            self._fail(what, e)

    def log_metrics(self, row: dict[str, Any]) -> None:
        """A metrics.csv row: its numeric fields (an empty ``env/episodic_return`` is left out)."""
        def make() -> dict[str, Any]:
            data = {k: n for k, n in ((k, _number(v)) for k, v in row.items()) if n is not None}
            return data | {"env_steps": int(row["env_steps"])}
        self._log("logging metrics", make)

    EVAL_NAMES = {"mean": "eval/mean_return", "std": "eval/std_return", "episodes": "eval/episodes",
                  "wall_seconds": "wall_seconds", "train_seconds": "train_seconds"}

    def log_eval(self, row: dict[str, Any]) -> None:
        """An evals.csv row (env_steps, mean, std, episodes, wall_seconds, train_seconds) as
        ``eval/mean_return``, ``eval/std_return``, ``eval/episodes`` and the two times."""
        def make() -> dict[str, Any]:
            data = {self.EVAL_NAMES[k]: n for k, n in ((k, _number(row.get(k))) for k in self.EVAL_NAMES)
                    if n is not None}
            return data | {"env_steps": int(row["env_steps"])}
        self._log("logging an evaluation", make)

    def log_scalar(self, name: str, value: Any, env_steps: int) -> None:
        """One value at ``env_steps`` (a non-finite or non-numeric value is skipped)."""
        def make() -> dict[str, Any] | None:
            v = _number(value)
            return None if v is None else {name: v, "env_steps": int(env_steps)}
        self._log(f"logging {name}", make)

    def close(self, run_dir: str | Path | None = None, exit_code: int | None = None) -> None:
        """Upload ``run_dir``'s ``curve.png`` (as ``curve``) and ``summary.json`` (into the run
        summary, without its ``config``, which is the run's config already), then finish the
        run. ``run_dir`` defaults to the one given at construction; safe to call twice."""
        if self.run is None:
            return
        d = Path(run_dir) if run_dir is not None else self.run_dir
        try:
            import wandb
            if d is not None and (d / "curve.png").is_file():
                image = {"curve": wandb.Image(str(d / "curve.png"), caption="learning curve")}
                self.run.log(image if self.env_steps is None else image | {"env_steps": self.env_steps})
            if d is not None and (d / "summary.json").is_file():
                summary = json.loads((d / "summary.json").read_text())
                summary.pop("config", None)
                self.run.summary.update(summary)
        except Exception as e:
            self._fail("uploading the summary", e)
            return
        run, self.run = self.run, None
        try:
            run.finish(exit_code=exit_code)
        except Exception as e:
            self._fail("finishing the run", e)


def make_tracker(track: bool | str, run_dir: str | Path | None, config: dict[str, Any],
                 **kw: Any) -> WandbTracker | None:
    """A :class:`WandbTracker`, or None: when ``track`` is false, when wandb is not installed
    (one line on stderr says how to install it) or when the run could not start (one warning
    line). ``track`` may name the mode (``"offline"``, ``"online"``, ``"disabled"``); ``kw``
    goes to :class:`WandbTracker` (project, entity, name, group, tags, mode)."""
    if not track:
        return None
    if isinstance(track, str):
        if kw.get("mode") not in (None, track):
            raise ValueError(f"make_tracker got two modes: track={track!r} and mode={kw['mode']!r}")
        kw["mode"] = track
    mode = kw.get("mode")
    if mode is not None and mode not in MODES:  # a bad argument is the caller's, not wandb's
        raise ValueError(f"invalid wandb mode {mode!r} (allowed: {', '.join(MODES)}, or None for wandb's default)")
    try:
        import wandb  # noqa: F401
    except ImportError:
        print(HINT, file=sys.stderr, flush=True)
        return None
    except Exception as e:  # a broken install
        print(f"critic: warning: could not import wandb ({type(e).__name__}: {e}); training without tracking",
              file=sys.stderr, flush=True)
        return None
    tracker = WandbTracker(run_dir, config, **kw)
    return tracker if tracker.active else None


def add_track_arguments(parser: Any) -> None:
    """``--track`` and the ``--wandb-*`` options on an argparse parser (``critic train``)."""
    g = parser.add_argument_group("experiment tracking (Weights & Biases)")
    g.add_argument("--track", action="store_true",
                   help="log metrics, evaluations, the learning curve and the summary to Weights & Biases "
                        '(pip install "critic[track]"; WANDB_MODE=offline logs locally for `wandb sync`)')
    g.add_argument("--wandb-project", default="critic", metavar="NAME", help="wandb project (default: critic)")
    g.add_argument("--wandb-entity", default=None, metavar="NAME", help="wandb team or user (default: yours)")
    g.add_argument("--wandb-group", default=None, metavar="NAME", help="wandb group, e.g. one per experiment")
    g.add_argument("--wandb-tags", nargs="+", default=[], metavar="TAG", help="wandb tags")


def tracker_kwargs(args: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`make_tracker` from the options of :func:`add_track_arguments`."""
    return {"project": args.wandb_project, "entity": args.wandb_entity, "group": args.wandb_group,
            "tags": tuple(args.wandb_tags or ())}
