"""Learning curves from run directories (``critic plot`` and each run's ``curve.png``)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def run_curve(run_dir: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """(env_steps, mean return) from evals.csv, else the training episodic return in metrics.csv."""
    evals = _read_csv(run_dir / "evals.csv")
    if evals:
        return (np.array([float(r["env_steps"]) for r in evals]), np.array([float(r["mean"]) for r in evals]),
                "evaluation return")
    rows = [r for r in _read_csv(run_dir / "metrics.csv") if r.get("env/episodic_return", "") != ""]
    return (np.array([float(r["env_steps"]) for r in rows]),
            np.array([float(r["env/episodic_return"]) for r in rows]), "training episodic return")


def _label(run_dir: Path) -> str:
    try:
        s = json.loads((run_dir / "summary.json").read_text())
        return f"{s['algo']} {s['env_id']}"
    except Exception:
        try:
            import yaml
            c = yaml.safe_load((run_dir / "config.yaml").read_text())
            return f"{c.get('algo', '?')} {c.get('env_id', '?')}"
        except Exception:
            return run_dir.name


def _threshold(run_dir: Path) -> float | None:
    try:
        return json.loads((run_dir / "summary.json").read_text()).get("threshold")
    except Exception:
        return None


def _training_return(ax, run_dir: Path, color: str, ylabel: str) -> None:
    """Faint training-episode return under a single run's evaluation curve."""
    if ylabel != "evaluation return":
        return
    rows = [r for r in _read_csv(run_dir / "metrics.csv") if r.get("env/episodic_return", "") != ""]
    if rows:
        ax.plot([float(r["env_steps"]) for r in rows], [float(r["env/episodic_return"]) for r in rows],
                color=color, alpha=0.3, lw=1, label="training episodes")


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path, title: str | None = None) -> Path:
    """Overlay learning curves; runs sharing a label (algo + env) are drawn as mean and
    min-max spread across seeds on a common step grid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    ylabel = "return"
    thresholds = set()
    for d in map(Path, run_dirs):
        x, y, ylabel = run_curve(d)
        if len(x):
            groups[_label(d)].append((x, y))
        t = _threshold(d)
        if t is not None:
            thresholds.add(t)
    if not groups:
        raise ValueError("no evaluations or episodes to plot in " + ", ".join(map(str, run_dirs)))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    single_run = len(run_dirs) == 1
    for label, curves in groups.items():
        if len(curves) == 1:
            x, y = curves[0]
            line, = ax.plot(x, y, marker="o" if len(x) < 30 else None, ms=3, label=f"{label} ({ylabel})")
            if single_run:
                _training_return(ax, Path(run_dirs[0]), line.get_color(), ylabel)
            continue
        lo = max(c[0][0] for c in curves)
        hi = min(c[0][-1] for c in curves)
        grid = np.linspace(lo, hi, 100) if hi > lo else np.array([lo])
        ys = np.stack([np.interp(grid, x, y) for x, y in curves])
        line, = ax.plot(grid, ys.mean(0), label=f"{label} ({len(curves)} seeds)")
        ax.fill_between(grid, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.2)
    for t in sorted(thresholds):
        ax.axhline(t, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(title or ", ".join(groups))
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
