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


IGNORED = frozenset({"seed", "device", "torch_threads", "log_every", "save_replay", "compile"})
"""Config fields that do not make a different experiment: runs differing only in them are one group."""


def run_info(run_dir: Path) -> dict:
    """``{algo, env_id, seed, config}`` of a run directory: from summary.json (every run that
    finished writes it, Python API runs included), else the CLI's config.yaml."""
    info: dict = {"algo": "?", "env_id": "?", "seed": None, "config": {}}
    try:
        s = json.loads((run_dir / "summary.json").read_text())
        info.update({k: s.get(k, info[k]) for k in ("algo", "env_id", "seed")}, config=s.get("config") or {})
    except Exception:
        pass
    if not info["config"]:
        try:
            import yaml
            c = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
            info.update({k: c.get(k, info[k]) for k in ("algo", "env_id", "seed")}, config=c.get("hparams") or {})
        except Exception:
            pass
    if info["algo"] == "?" and info["env_id"] == "?":
        info["name"] = run_dir.name
    return info


def _key(info: dict, group_by: Sequence[str] | None) -> tuple:
    if group_by is not None:
        return tuple((f, json.dumps((info["config"] | info).get(f), sort_keys=True, default=str)) for f in group_by)
    cfg = {k: v for k, v in info["config"].items() if k not in IGNORED}
    return (("algo", info["algo"]), ("env_id", info["env_id"]), ("name", info.get("name")),
            ("config", json.dumps(cfg, sort_keys=True, default=str)))


def _group_labels(infos: dict[tuple, dict], group_by: Sequence[str] | None) -> dict[tuple, str]:
    """A legend label per group: algo and env, then the config fields that differ between the
    groups of the same algo and env (or the --group-by fields' values)."""
    if group_by is not None:
        return {k: ", ".join(f"{f}={json.loads(v)}" for f, v in k) for k in infos}
    out = {}
    for k, info in infos.items():
        base = info.get("name") or f"{info['algo']} {info['env_id']}"
        peers = [i for i in infos.values() if (i["algo"], i["env_id"]) == (info["algo"], info["env_id"])]
        fields = sorted({f for i in peers for f in (i["config"].keys() | info["config"].keys())
                         if f not in IGNORED and len({json.dumps(p["config"].get(f), default=str) for p in peers}) > 1})
        extra = ", ".join(f"{f}={info['config'].get(f)}" for f in fields)
        out[k] = f"{base} ({extra})" if extra else base
    return out


def aggregate(curves: list[tuple[np.ndarray, np.ndarray]], stat: str = "mean", points: int = 100
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Curves of several runs on one step grid, from the earliest first point to the latest
    last point: (grid, centre, ci_low, ci_high, runs present). ``stat`` is 'mean' or 'iqm'; the
    interval is a 95 % percentile bootstrap of it over the runs present at each step."""
    from critic.stats import bootstrap_ci, iqm

    fn = iqm if stat == "iqm" else (lambda x, axis=-1: np.mean(x, axis=axis))
    lo, hi = min(c[0][0] for c in curves), max(c[0][-1] for c in curves)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
    centre, low, high, count = (np.full(len(grid), np.nan) for _ in range(4))
    for j, g in enumerate(grid):
        ys = np.array([np.interp(g, x, y) for x, y in curves if x[0] <= g <= x[-1]])
        count[j] = len(ys)
        if len(ys):
            centre[j] = fn(ys)
            low[j], high[j] = bootstrap_ci(ys, fn, n_boot=1000, seed=0)  # one resampling for all steps: a smooth band
    return grid, centre, low, high, count


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


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path, title: str | None = None, stat: str = "mean",
              group_by: Sequence[str] | None = None, labels: Sequence[str] | None = None) -> Path:
    """Learning curves, one panel per environment. Runs with the same configuration (all
    fields but the seed and the machine settings; or the ``group_by`` fields) form one group,
    drawn as the ``stat`` ('mean' or 'iqm') across its runs with a shaded 95 % bootstrap
    interval, dotted where some runs have already ended. ``labels`` replace the legend's group
    labels, in the order the groups first appear."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if stat not in ("mean", "iqm"):
        raise ValueError(f"invalid value for 'stat': {stat!r} (allowed: 'mean', 'iqm')")
    groups: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    infos: dict[tuple, dict] = {}
    ylabel = "return"
    thresholds: dict[str, set] = defaultdict(set)
    for d in map(Path, run_dirs):
        info = run_info(d)
        x, y, ylabel = run_curve(d)
        key = _key(info, group_by)
        if len(x):
            groups[key].append((x, y))
            infos.setdefault(key, info)
        t = _threshold(d)
        if t is not None:
            thresholds[info["env_id"]].add(t)
    if not groups:
        raise ValueError("no evaluations or episodes to plot in " + ", ".join(map(str, run_dirs)))
    names = _group_labels(infos, group_by)
    if labels is not None:
        if len(labels) != len(groups):
            raise ValueError(f"{len(labels)} labels for {len(groups)} groups of runs ({'; '.join(names.values())})")
        names = dict(zip(groups, labels))
    envs = list(dict.fromkeys(infos[k]["env_id"] for k in groups))
    fig, axes = plt.subplots(1, len(envs), figsize=(7 if len(envs) == 1 else 5.5 * len(envs), 4.2), dpi=110,
                             squeeze=False)
    single_run = len(run_dirs) == 1
    for key, curves in groups.items():
        ax = axes[0][envs.index(infos[key]["env_id"])]
        label = names[key]
        if len(curves) == 1:
            x, y = curves[0]
            line, = ax.plot(x, y, marker="o" if len(x) < 30 else None, ms=3, label=f"{label} ({ylabel})")
            if single_run:
                _training_return(ax, Path(run_dirs[0]), line.get_color(), ylabel)
            continue
        grid, centre, low, high, count = aggregate(curves, stat)
        full = count == len(curves)
        line, = ax.plot(np.where(full, grid, np.nan), np.where(full, centre, np.nan),
                        label=f"{label} ({stat} of {len(curves)} runs, 95% CI)")
        if not full.all():  # past the shortest run: fewer runs, dotted
            ax.plot(np.where(~full, grid, np.nan), np.where(~full, centre, np.nan), color=line.get_color(), ls=":")
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
    for ax, env in zip(axes[0], envs):
        for t in sorted(thresholds.get(env, ())):
            ax.axhline(t, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel if len(envs) == 1 else f"return ({ylabel})")
        ax.set_title(env if len(envs) > 1 else (title or ", ".join(names[k] for k in groups)))
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=7)
    if title and len(envs) > 1:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
