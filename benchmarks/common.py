"""What every benchmark script shares (method: benchmarks/README.md): the machine record, the
fresh-process worker protocol, thread setup, critic's presets, the one evaluation used for both
libraries, solve points, medians and ratios, formatting and the results file.

The scripts run as ``python benchmarks/bench_x.py``, so this folder is on ``sys.path`` and they
``from common import ...``. Nothing here imports torch at module level: a worker sets its thread
count before torch is first imported (``start_torch``).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "benchmarks" / "out"  # git-ignored
EVAL_EPISODES = 10
EVAL_SEED_OFFSET = 100_003  # evaluation env seed = run seed + this (same for both libraries)
RESULT_TAG = "RESULT_JSON:"  # the worker's result line on stdout


# ================================================================================ machine

def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def machine_info(modules=("critic", "torch", "gymnasium", "numpy")) -> dict[str, Any]:
    """CPU model, cores, platform, versions (python, then ``modules`` in that order) and the
    load average now."""
    versions: dict[str, str] = {"python": platform.python_version()}
    for mod in modules:
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover
            versions[mod] = "missing"
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(), "versions": versions,
            "loadavg_start": loadavg()}


def versions_text(machine: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in machine["versions"].items())


def utc_date() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def cpu_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all cores; steal counts as busy)."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def children_cpu_seconds() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class CpuMeter:
    """``with CpuMeter() as m:`` around a worker run: ``m.seconds`` (wall) and ``m.other_cores``,
    the CPU cores the rest of the machine used meanwhile on average (all busy time minus this
    process's children's), or None where /proc/stat is unreadable."""

    def __enter__(self) -> CpuMeter:
        self.busy0, self.child0 = cpu_busy_seconds(), children_cpu_seconds()
        self.t0 = time.perf_counter()
        self.seconds, self.other_cores = 0.0, None
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0
        if self.busy0 is not None:
            busy = cpu_busy_seconds() - self.busy0
            self.other_cores = round(max(0.0, busy - (children_cpu_seconds() - self.child0)) / self.seconds, 2)


# ================================================================================ workers

def thread_env(threads: int) -> dict[str, str]:
    """Thread counts of the native pools, for a process that has not imported torch yet."""
    t = str(threads)
    return {"OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t}


def start_torch(threads: int, *modules: str):
    """In a worker: import torch with ``threads`` threads, then ``modules``; returns (torch, the
    import seconds)."""
    t = time.perf_counter()
    import torch
    torch.set_num_threads(threads)
    for mod in modules:
        importlib.import_module(mod)
    return torch, time.perf_counter() - t


class WorkerError(RuntimeError):
    """A worker that exited non-zero, timed out or printed no result."""

    def __init__(self, returncode: int | None, stdout: str, stderr: str, reason: str):
        super().__init__(reason)
        self.returncode, self.stdout, self.stderr, self.reason = returncode, stdout, stderr, reason

    @property
    def output(self) -> str:
        return self.stderr or self.stdout

    def tail(self, n: int) -> list[str]:
        return self.output.strip().splitlines()[-n:]

    @property
    def last_line(self) -> str:
        """The last line of stderr (the exception, usually), else the reason."""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else self.reason


def run_worker(script: str | Path, spec: dict[str, Any], timeout: float | None = None, *,
               threads: int | None = None, hash_seed: int | None = None, cwd: str | Path | None = None) -> dict:
    """Run ``script --worker JSON(spec)`` in a fresh Python process and return its result (the
    JSON the worker printed with ``serve_worker``). ``threads`` sets the native thread pools'
    sizes and ``hash_seed`` PYTHONHASHSEED in the child's environment. Raises WorkerError."""
    env = dict(os.environ)
    if threads is not None:
        env.update(thread_env(threads))
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = str(hash_seed)
    cmd = [sys.executable, str(Path(script).resolve()), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=None if cwd is None else str(cwd),
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        text = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
        raise WorkerError(None, text(e.stdout), text(e.stderr), f"timed out after {timeout} s") from None
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(RESULT_TAG)), None)
    if proc.returncode != 0 or line is None:
        raise WorkerError(proc.returncode, proc.stdout, proc.stderr, f"exit {proc.returncode}")
    return json.loads(line[len(RESULT_TAG):])


def serve_worker(work, spec_json: str) -> None:
    """The worker side of ``run_worker``: ``work(spec)``, its result printed as one tagged line."""
    print(RESULT_TAG + json.dumps(work(json.loads(spec_json))), flush=True)


# ================================================================================ presets

def preset(algo: str, name: str, missing_ok: bool = False) -> tuple[Path, dict[str, Any]] | None:
    """critic's preset ``{algo}_{name}`` as ``critic train --preset NAME`` reads it (keys
    checked): (path, contents). A preset critic does not ship raises critic's ConfigError, or
    gives None with ``missing_ok``."""
    from critic.config import ConfigError
    from critic.presets import find_preset, read_preset

    try:
        path = find_preset(name, algo)
    except ConfigError:
        if missing_ok:
            return None
        raise
    return path, read_preset(path)


def preset_steps(data: dict[str, Any]) -> int | None:
    """A preset's own training budget (``steps``), if it has one."""
    return int(float(data["steps"])) if data.get("steps") is not None else None


def repo_path(path: Path) -> str:
    """``path`` relative to the repository root where it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


# ================================================================================ evaluation

def evaluate_policy(act, env_id: str, seed: int, n_episodes: int = EVAL_EPISODES) -> dict[str, float]:
    """The one evaluation used for both libraries: deterministic episodes on a fresh env whose
    first reset is seeded with ``seed``."""
    import gymnasium as gym
    import numpy as np

    env = gym.make(env_id)
    returns = []
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=seed if ep == 0 else None)
        total, done = 0.0, False
        while not done:
            obs, r, term, trunc, _ = env.step(act(obs))
            total += float(r)
            done = term or trunc
        returns.append(total)
    env.close()
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns))}


class EvalClock:
    """Evaluations every ``every`` env steps (none for 0) during one learn() call of ``total``
    env steps, taken off the train clock. ``at(env_steps)`` is the learn callback's work; it
    returns False once training should stop (the last evaluation reached ``threshold`` and
    ``stop_at_solve``). ``digits`` rounds the recorded mean and std."""

    def __init__(self, act, env_id: str, seed: int, every: int, total: int, *, threshold: float | None = None,
                 stop_at_solve: bool = False, digits: int | None = None):
        self.act, self.env_id, self.seed, self.every, self.total = act, env_id, seed, every, total
        self.threshold, self.stop_at_solve, self.digits = threshold, stop_at_solve, digits
        self.next_eval = every if every else math.inf
        self.eval_seconds = 0.0
        self.evals: list[dict[str, Any]] = []
        self.stopped = False
        self.t0 = 0.0

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def train_seconds(self) -> float:
        return time.perf_counter() - self.t0 - self.eval_seconds

    def at(self, env_steps: int) -> bool:
        if self.stopped:
            return False
        # The final evaluation is done after learn() returns (``final``), the same for both libraries.
        if env_steps >= self.next_eval and env_steps < self.total:
            train_s = self.train_seconds()
            t = time.perf_counter()
            res = self.evaluate()
            self.eval_seconds += time.perf_counter() - t
            self.evals.append(self.row(env_steps, train_s, res))
            while self.next_eval <= env_steps:
                self.next_eval += self.every
            self.stopped = self.stop_at_solve and self.evals[-1]["mean"] >= self.threshold
        return not self.stopped

    def evaluate(self) -> dict[str, float]:
        return evaluate_policy(self.act, self.env_id, self.seed + EVAL_SEED_OFFSET)

    def row(self, env_steps: int, train_s: float, res: dict[str, float]) -> dict[str, Any]:
        r = (lambda x: x) if self.digits is None else (lambda x: round(x, self.digits))
        return {"env_steps": int(env_steps), "train_seconds": round(train_s, 3), "mean": r(res["mean"]),
                "std": r(res["std"])}


def sb3_eval_callback(clock: EvalClock):
    """SB3's side of ``EvalClock``: evaluates at rollout start, i.e. just after the previous
    rollout's gradient steps, the same point in training as critic's learn callback
    (``_on_step`` runs before that step's updates)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class EvalCallback(BaseCallback):
        def _on_rollout_start(self) -> None:
            clock.at(self.model.num_timesteps)

        def _on_step(self) -> bool:
            return not clock.stopped

    return EvalCallback()


def until_solved(threshold: float):
    """critic learn callback: stop once the latest evaluation reached ``threshold``."""
    return lambda agent, _info: not (agent.evaluations and agent.evaluations[-1]["mean"] >= threshold)


def solve_points(evals: list[dict[str, Any]], threshold: float):
    """(first, stable): the first evaluation with mean >= ``threshold``, and the first from which
    every later one stays there; each as {env_steps, train_seconds}, or None."""
    first = next((e for e in evals if e["mean"] >= threshold), None)
    stable = None
    for e in reversed(evals):
        if e["mean"] < threshold:
            break
        stable = e
    pick = (lambda e: None if e is None else {"env_steps": e["env_steps"], "train_seconds": e["train_seconds"]})
    return pick(first), pick(stable)


# ================================================================================ statistics

def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def median_unsolved_last(xs):
    """Median where an unsolved run (None) counts as slower than any solved one; None if the
    median itself is unsolved."""
    if not xs:
        return None
    m = statistics.median([math.inf if x is None else x for x in xs])
    return None if math.isinf(m) else m


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def good(*rs) -> bool:
    """Every run present and without an error."""
    return all(r is not None and "error" not in r for r in rs)


def pairs(runs, ours: str = "critic", theirs: str = "sb3", **match) -> list[tuple[dict | None, dict | None]]:
    """[(our run, their run)] in pair order, over the runs whose fields equal ``match``."""
    by_pair: dict[int, dict[str, Any]] = {}
    for r in runs:
        if all(r.get(k) == v for k, v in match.items()):
            by_pair.setdefault(r["pair"], {})[r["lib"]] = r
    return [(p.get(ours), p.get(theirs)) for _, p in sorted(by_pair.items())]


# ================================================================================ output

def fmt(x, nd=0, width=None):
    s = "—" if x is None else (f"{x:,.{nd}f}" if isinstance(x, (int, float)) else str(x))
    return s if width is None else s.rjust(width)


def out_path(given: str | None, prefix: str) -> Path:
    """``--out`` if given, else ``benchmarks/out/{prefix}-{UTC timestamp}.json``."""
    return Path(given) if given else OUT_DIR / f"{prefix}-{utc_stamp()}.json"


def write_results(path: str | Path, res: dict[str, Any], indent: int = 2) -> None:
    """The results JSON, replaced atomically (a partial file never stands in for a whole one)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(res, indent=indent, default=str))
    tmp.replace(p)
