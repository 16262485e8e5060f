"""Progress bar, metrics CSV, TensorBoard events, and the run directory's summary and curve."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from critic.checkpoint import NonFiniteError


def to_float(v: Any) -> float:
    if torch.is_tensor(v):
        return float(v.detach().float().mean().cpu())
    return float(v)


class Progress:
    """A tqdm bar over env steps showing the live mean return and steps/s (no-op when off). When
    stderr is not a terminal (a log file, CI), plain lines instead, one per tenth of the run and at
    least every ``every_s`` seconds: a bar's carriage returns would fill the file."""

    def __init__(self, total: int, initial: int = 0, enabled: bool | None = None, desc: str = "",
                 every_s: float = 60.0):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.bar = None
        self.plain = bool(enabled) and not sys.stderr.isatty()
        if enabled and not self.plain:
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
                            smoothing=0.1, file=sys.stderr)
        self.last, self.total, self.start, self.desc = initial, total, initial, desc
        self.every_s, self.t_last, self.next_tenth = every_s, time.monotonic(), 1

    def _line(self, steps: int, mean_return: float | None, sps: float | None, extra: str) -> None:
        span = max(self.total - self.start, 1)
        parts = [f"{self.desc}: " if self.desc else "", f"{steps:,}/{self.total:,} steps",
                 f" ({100 * (steps - self.start) / span:.0f}%)"]
        if mean_return is not None and math.isfinite(mean_return):
            parts.append(f", return {mean_return:.1f}")
        if extra:
            parts.append(f" (range {extra})")
        if sps is not None:
            parts.append(f", {sps:,.0f} steps/s")
        print("".join(parts), file=sys.stderr, flush=True)

    def update(self, steps: int, mean_return: float | None, sps: float | None, extra: str = "") -> None:
        if self.plain:
            done, span = 10 * (steps - self.start), max(self.total - self.start, 1)  # in tenths: exact
            now = time.monotonic()
            if done >= self.next_tenth * span or now - self.t_last >= self.every_s:
                self._line(steps, mean_return, sps, extra)
                self.t_last = now
                while self.next_tenth * span <= done:
                    self.next_tenth += 1
            self.last = steps
            return
        if self.bar is None:
            return
        self.bar.update(steps - self.last)
        self.last = steps
        post = {"sps": f"{sps:,.0f}"} if sps is not None else {}
        if mean_return is not None and math.isfinite(mean_return):
            post["return"] = f"{mean_return:.1f}"
        if extra:
            post["range"] = extra
        self.bar.set_postfix(post, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class CSVWriter:
    """Append rows to a CSV; columns are fixed by the first row (later new keys are added
    by rewriting the header, so a metric that appears late is not lost)."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] = []
        if path.exists() and path.stat().st_size > 0:
            with path.open() as f:
                self.columns = next(csv.reader(f), [])

    def write(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.columns]
        if new:
            self.columns += new
            rows = []
            if self.path.exists():
                with self.path.open() as f:
                    rows = list(csv.DictReader(f))
            with self.path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.columns)
                w.writeheader()
                w.writerows(rows)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns).writerow(row)


class RunLogger:
    """Writes metrics.csv, evals.csv and TensorBoard events (when tensorboard is installed)."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, tracker: Any = None):
        """``tracker``: an experiment tracker (``critic.track.WandbTracker``, or any object with
        ``log_metrics(row)``, ``log_eval(row)`` and ``close(run_dir, exit_code)``) fed the same rows."""
        self.tracker = tracker
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.metrics = CSVWriter(self.dir / "metrics.csv")
        self.evals = CSVWriter(self.dir / "evals.csv")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(self.dir / "tb"))
            except Exception:  # tensorboard not installed: CSV only
                self.tb = None

    def log_metrics(self, row: dict[str, Any]) -> None:
        self.metrics.write(row)
        if self.tracker is not None:
            self.tracker.log_metrics(row)
        if self.tb is not None:
            step = int(row["env_steps"])
            for k, v in row.items():
                if k != "env_steps" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def log_eval(self, row: dict[str, Any]) -> None:
        self.evals.write(row)
        if self.tracker is not None:
            self.tracker.log_eval(row)
        if self.tb is not None:
            self.tb.add_scalar("eval/mean_return", row["mean"], int(row["env_steps"]))

    def close(self, exit_code: int = 0) -> None:
        """Flush TensorBoard and finish the tracker's run (``exit_code`` 1: the run failed)."""
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()
            self.tb = None
        if self.tracker is not None:
            tracker, self.tracker = self.tracker, None
            tracker.close(self.dir, exit_code=exit_code)


class Clock:
    """Wall time with evaluation time subtracted (``train_seconds``)."""

    def __init__(self, offset_wall: float = 0.0, offset_train: float = 0.0):
        self.start = time.perf_counter() - offset_wall
        self.eval_time = offset_wall - offset_train

    @property
    def wall(self) -> float:
        return time.perf_counter() - self.start

    @property
    def train(self) -> float:
        return self.wall - self.eval_time


def solved_points(evals: list[dict[str, float]], threshold: float | None) -> tuple[dict | None, dict | None]:
    """First evaluation at or above ``threshold``, and the first after which all stay there."""
    if threshold is None or not evals:
        return None, None
    pick = lambda e: {k: e[k] for k in ("env_steps", "wall_seconds", "train_seconds")}  # noqa: E731
    first = next((pick(e) for e in evals if e["mean"] >= threshold), None)
    stable = None
    for i in range(len(evals) - 1, -1, -1):
        if evals[i]["mean"] >= threshold:
            stable = pick(evals[i])
        else:
            break
    return first, stable


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def versions() -> dict[str, str]:
    import platform

    import gymnasium as gym

    from critic.version import __version__
    return {"critic": __version__, "torch": torch.__version__, "gymnasium": gym.__version__,
            "python": platform.python_version()}


def write_summary(run_dir: Path, head: dict[str, Any], evals: list[dict[str, Any]], env_steps: int, updates: int,
                  clock: Clock, threshold: float | None) -> None:
    """``summary.json`` (``head``: algo, env id, seed) and ``curve.png`` of a run directory."""
    first, stable = solved_points(evals, threshold)
    last = evals[-1] if evals else None
    summary = {
        **head, "env_steps": env_steps, "updates": updates, "wall_seconds": round(clock.wall, 3),
        "train_seconds": round(clock.train, 3),
        "steps_per_second": round(env_steps / max(clock.train, 1e-9), 1),
        "updates_per_second": round(updates / max(clock.train, 1e-9), 2),
        "final_eval": {"mean": last["mean"], "std": last["std"], "episodes": last["episodes"]} if last else None,
        "threshold": threshold, "solved_at": first, "stable_solved_at": stable, "versions": versions(),
    }
    write_json(run_dir / "summary.json", summary)
    try:
        from critic.plotting import plot_runs
        plot_runs([run_dir], run_dir / "curve.png")
    except Exception as e:  # a plot must never cost the run
        print(f"critic: could not draw the learning curve: {e}")


class Every:
    """A cadence in env steps: ``due(step)`` once ``step`` reaches the next multiple past
    ``start``; ``advance(step)`` moves past it (period 0: never due)."""

    def __init__(self, start: int, period: int):
        self.period = period
        self.next = start + period if period else math.inf

    def due(self, step: int) -> bool:
        return step >= self.next

    def advance(self, step: int) -> None:
        while self.next <= step:
            self.next += self.period


@contextlib.contextmanager
def sigint_flag() -> Iterator[threading.Event]:
    """Within the block, a first Ctrl-C sets the yielded event (training stops at the end of its
    iteration and checkpoints); a second one raises KeyboardInterrupt at once. Outside the
    main thread Ctrl-C is left as it is."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    try:
        old = signal.signal(signal.SIGINT, handler)
    except ValueError:  # pragma: no cover
        old = None
    try:
        yield flag
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def metrics_row(counters: dict[str, Any], metrics: dict[str, Any], episode_returns: list[float], sps: float,
                clock: Clock) -> dict[str, Any]:
    """A metrics.csv row; a non-finite metric raises :class:`NonFiniteError` naming it."""
    row: dict[str, Any] = {"env_steps": counters["env_steps"], "wall_seconds": round(clock.wall, 3),
                           "train_seconds": round(clock.train, 3), "updates": counters["updates"],
                           "episodes": counters["episodes"]}
    row["env/episodic_return"] = float(np.mean(episode_returns)) if episode_returns else ""
    row["perf/sps"] = round(sps, 1)
    for k, v in metrics.items():
        f = to_float(v)
        if not math.isfinite(f):
            raise NonFiniteError(f"{k} became {f} at env step {counters['env_steps']} (update {counters['updates']}); "
                                 "training stopped, the last good checkpoint is kept")
        row[k] = f
    return row
