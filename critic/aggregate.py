"""The aggregate of several runs of one configuration (the members of a batched run, or
seeds run apart): per-run finals and solve points, and across runs the median, the
interquartile mean and 95 % bootstrap intervals (``critic.stats``), in one ``summary.json``
beside a ``curve.png`` of the group."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from critic.logger import write_json
from critic.plotting import plot_runs, run_info
from critic.stats import summarize


def _summary(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def aggregate_runs(run_dirs: Sequence[str | Path], seed: int = 0) -> dict[str, Any]:
    """Per-run ``final`` (last evaluation mean) and ``solved_at`` (env steps of the first
    evaluation at the threshold), and across runs: ``final`` summarised (median, mean, IQM,
    their 95 % intervals) and ``solved_at`` summarised over the runs that solved, with the
    count that did not. A run without evaluations counts as missing, not as zero."""
    runs = []
    for d in map(Path, run_dirs):
        s, info = _summary(d), run_info(d)
        final = (s.get("final_eval") or {}).get("mean")
        solved = (s.get("solved_at") or {}).get("env_steps")
        runs.append({"run": str(d), "seed": info.get("seed"), "final": final, "solved_at": solved,
                     "env_steps": s.get("env_steps"), "threshold": s.get("threshold")})
    finals = [r["final"] if r["final"] is not None else math.nan for r in runs]
    solves = [r["solved_at"] for r in runs if r["solved_at"] is not None]
    thresholds = {r["threshold"] for r in runs if r["threshold"] is not None}
    return {"runs": runs, "n_runs": len(runs),
            "threshold": thresholds.pop() if len(thresholds) == 1 else None,
            "final": summarize(finals, seed=seed),
            "solved_at": {**summarize(solves, seed=seed), "unsolved": len(runs) - len(solves)}}


def write_aggregate(out_dir: str | Path, run_dirs: Sequence[str | Path], stat: str = "iqm",
                    groups: dict[str, tuple[dict[str, Any], Sequence[str | Path]]] | None = None) -> Path:
    """``out_dir/summary.json`` (:func:`aggregate_runs`) and ``out_dir/curve.png`` (the group's
    ``stat`` with its interval). With ``groups`` (label -> (the values that set the group apart,
    its run dirs): a sweep) the summary holds one aggregate per group, under ``"groups"``, and
    the curve one line per group. Returns the summary's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if groups is None:
        summary = aggregate_runs(run_dirs)
    else:
        summary = {"groups": [{"label": label, "values": values, **aggregate_runs(dirs)}
                              for label, (values, dirs) in groups.items()]}
    write_json(out / "summary.json", summary)
    try:
        plot_runs(run_dirs, out / "curve.png", stat=stat)
    except Exception as e:  # a plot must never cost the results
        print(f"critic: could not draw the group's curve: {e}")
    return out / "summary.json"
