"""Speed of the core at two commits, side by side: does a refactoring keep critic as fast?

Each case trains one algorithm with its shipped preset for a fixed number of env steps in a
fresh Python process; the two commits alternate (before, after, before, after, ...) so drifts
in the machine's load hit both alike. Reported: median env steps (and updates) per second of
``learn`` alone (construction excluded) and the ratio after / before.

    python benchmarks/bench_core.py --before 6aa127b            # a worktree of that commit vs this tree
    python benchmarks/bench_core.py --before 6aa127b --repeats 5 --cases ppo_cartpole,sac_pendulum
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import WorkerError, fmt, loadavg, machine_info, median, run_worker, serve_worker, utc_date

ROOT = Path(__file__).resolve().parents[1]

# preset name -> (algorithm, env id, env steps to time)
CASES = {
    "ppo_cartpole": ("ppo", "CartPole-v1", 20_000),
    "a2c_cartpole": ("a2c", "CartPole-v1", 20_000),
    "a2c_cartpole_perstep": ("a2c", "CartPole-v1", 3_000),
    "acer_cartpole": ("acer", "CartPole-v1", 10_000),
    "sac_pendulum": ("sac", "Pendulum-v1", 2_500),
    "td3_pendulum": ("td3", "Pendulum-v1", 2_500),
    "ddpg_pendulum": ("ddpg", "Pendulum-v1", 2_500),
}


def work(spec: dict) -> dict:
    """In the worker: build the preset's agent with the tree on PYTHONPATH, time learn()."""
    import yaml

    import critic

    name = spec["case"]
    algo, env_id, steps = CASES[name]
    hp = yaml.safe_load((Path(critic.__file__).parent / "presets" / f"{name}.yaml").read_text())["hparams"] or {}
    cls = {"ppo": critic.PPO, "a2c": critic.A2C, "acer": critic.ACER, "sac": critic.SAC, "td3": critic.TD3,
           "ddpg": critic.DDPG}[algo]
    agent = cls(env_id, seed=0, **hp)
    t0 = time.perf_counter()
    agent.learn(steps, progress_bar=False)
    dt = time.perf_counter() - t0
    out = {"steps_per_s": steps / dt, "updates_per_s": agent.updates / dt, "seconds": dt,
           "critic_from": str(Path(critic.__file__).parent.parent)}
    agent.close()
    return out


@contextlib.contextmanager
def _tree(path: Path):
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--before", help="the commit to compare this tree with (a git worktree is made of it)")
    p.add_argument("--repeats", type=int, default=3, help="runs per case and commit (default 3)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    args = p.parse_args()
    if args.worker:
        serve_worker(work, args.worker)
        return 0
    if not args.before:
        p.error("--before COMMIT is required")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)} (available: {', '.join(CASES)})")
    info = machine_info()
    print(f"bench_core {utc_date()}: {info.get('cpu')}, {info.get('cores')} cores, load {loadavg()}; "
          f"before = {args.before}, after = this tree; {args.repeats} alternating runs per case")
    with tempfile.TemporaryDirectory() as d:
        wt = Path(d) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(wt), args.before], check=True,
                       capture_output=True)
        try:
            rows = []
            for case in cases:
                runs: dict[str, list[dict]] = {"before": [], "after": []}
                for _ in range(args.repeats):
                    for side, tree in (("before", wt), ("after", ROOT)):
                        with _tree(tree):
                            try:
                                r = run_worker(Path(__file__), {"case": case}, timeout=900, cwd=tree)
                            except WorkerError as e:
                                print(f"{case} ({side}) failed: {e.last_line}")
                                return 1
                        assert Path(r["critic_from"]).resolve() == tree.resolve(), r["critic_from"]
                        runs[side].append(r)
                b = median([r["steps_per_s"] for r in runs["before"]])
                a = median([r["steps_per_s"] for r in runs["after"]])
                ub = median([r["updates_per_s"] for r in runs["before"]])
                ua = median([r["updates_per_s"] for r in runs["after"]])
                spread = (min(r["steps_per_s"] for r in runs["after"]) / b, max(r["steps_per_s"] for r in runs["after"]) / b)
                rows.append((case, b, a, ub, ua, a / b, spread))
                print(f"  {case:22s} steps/s before {fmt(b, 0):>7s}  after {fmt(a, 0):>7s}  "
                      f"updates/s {fmt(ub, 1):>7s} -> {fmt(ua, 1):>7s}  ratio {a / b:.3f} "
                      f"(after's runs {spread[0]:.2f}-{spread[1]:.2f})", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], check=False)
    print(f"load after: {loadavg()}")
    print("\n| case | steps/s before | steps/s after | ratio after/before |\n|---|---|---|---|")
    for case, b, a, _, _, r, _ in rows:
        print(f"| {case} | {b:,.0f} | {a:,.0f} | {r:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
