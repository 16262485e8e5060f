#!/usr/bin/env python
"""ACER's sample efficiency against critic's A2C, and ACER's Atari throughput (method: benchmarks/README.md).

1. ``efficiency`` -- CartPole-v1 (threshold 475) and Acrobot-v1 (threshold -100), each algorithm
   with its own preset (``critic/presets/{acer,a2c}_{cartpole,acrobot}.yaml``; a missing preset
   is reported, not replaced), seeds 0, 1, 2. Every ``--eval-every`` env steps training pauses
   for 10 deterministic evaluation episodes (excluded from the clock); a run stops at its first
   evaluation reaching the threshold or at ``--budget``. Reports env steps and train seconds to
   solve per seed, the medians, and ACER / A2C (an unsolved run counts as the budget).
2. ``atari`` -- ACER on ALE/Pong-v5 with the ``acer_atari`` preset for ``--atari-steps`` env
   steps (no evaluation): environment frames per second (4 frames per agent step, the frame
   skip), with the share of time in collection and in updates. Needs ``critic[atari]``.

Each run is its own subprocess (this script with ``--worker``), one torch thread unless
``--threads`` says otherwise.

    python benchmarks/bench_acer.py                       # both parts (about 15 minutes)
    python benchmarks/bench_acer.py --parts atari --atari-steps 5000
"""

from __future__ import annotations

import argparse
import time

from common import (WorkerError, loadavg, machine_info, median, out_path, preset, run_worker, serve_worker,
                    solve_points, start_torch, until_solved, utc_date, versions_text, write_results)

THRESHOLDS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0}
PRESET_NAMES = {"CartPole-v1": "cartpole", "Acrobot-v1": "acrobot"}


def worker(spec: dict) -> dict:
    start_torch(spec["threads"], "critic")
    import critic
    from critic.algos.registry import get_algo

    if spec["part"] == "efficiency":
        _, data = preset(spec["algo"], PRESET_NAMES[spec["env"]])
        agent = get_algo(spec["algo"])(spec["env"], **{**data["hparams"], "seed": spec["seed"],
                                                       "torch_threads": spec["threads"]})
        bar = THRESHOLDS[spec["env"]]
        agent.learn(spec["budget"], until_solved(bar), eval_every=spec["eval_every"], progress_bar=False)
        evals = agent.evaluations
        hit, _ = solve_points(evals, bar)
        return {"evals": [(e["env_steps"], round(e["mean"], 1)) for e in evals],
                "solved_steps": hit["env_steps"] if hit else None,
                "solved_seconds": hit["train_seconds"] if hit else None,
                "train_seconds": agent.train_seconds, "env_steps": agent.env_steps}
    # atari throughput
    _, data = preset("acer", "atari")
    agent = critic.ACER(spec["env"], **{**data["hparams"], "seed": spec["seed"], "torch_threads": spec["threads"]})
    agent.learn(agent.cfg.n_steps * agent.cfg.num_envs, progress_bar=False)  # warm-up (allocations)
    t0 = time.perf_counter()
    steps0 = agent.env_steps
    agent.learn(spec["steps"], progress_bar=False)
    dt = time.perf_counter() - t0
    steps = agent.env_steps - steps0
    return {"env_steps": steps, "seconds": dt, "frames_per_second": 4 * steps / dt,
            "updates": agent.updates, "num_envs": agent.cfg.num_envs, "replay_ratio": agent.cfg.replay_ratio}


def run(spec: dict) -> dict:
    try:
        return run_worker(__file__, spec)
    except WorkerError as e:
        return {"error": e.last_line}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["efficiency", "atari"], choices=["efficiency", "atari"])
    ap.add_argument("--envs", nargs="+", default=list(THRESHOLDS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=300_000, help="env steps per efficiency run")
    ap.add_argument("--eval-every", type=int, default=10_000)
    ap.add_argument("--atari-steps", type=int, default=10_000, help="agent steps of the Atari run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        serve_worker(worker, a.worker)
        return
    out = out_path(a.out, "acer")
    m = machine_info(("torch",))
    print(f"bench_acer {utc_date()}: parts {a.parts}, {a.threads} thread(s), load {loadavg()}; {versions_text(m)}",
          flush=True)
    results: dict = {"args": vars(a), "efficiency": {}, "atari": None}
    if "efficiency" in a.parts:
        for env in a.envs:
            rows = {}
            for algo in ("acer", "a2c"):
                for seed in a.seeds:
                    spec = {"part": "efficiency", "env": env, "algo": algo, "seed": seed, "budget": a.budget,
                            "eval_every": a.eval_every, "threads": a.threads}
                    r = run(spec)
                    rows[(algo, seed)] = r
                    print(f"  {env} {algo} seed {seed}: " + (r["error"] if "error" in r else
                          f"solved at {r['solved_steps']} steps, {r['solved_seconds']} s; evals {r['evals']}"),
                          flush=True)
            results["efficiency"][env] = {f"{k[0]}/{k[1]}": v for k, v in rows.items()}
            print(table(env, rows, a.seeds, a.budget), flush=True)
    if "atari" in a.parts:
        r = run({"part": "atari", "env": "ALE/Pong-v5", "seed": 0, "steps": a.atari_steps, "threads": a.threads})
        results["atari"] = r
        if "error" in r:
            print(f"\n[atari] ACER ALE/Pong-v5: {r['error']}")
        else:
            print(f"\n[atari] ACER ALE/Pong-v5, {r['num_envs']} envs, replay ratio {r['replay_ratio']}: "
                  f"{r['env_steps']:,} agent steps in {r['seconds']:.1f} s = {r['frames_per_second']:,.0f} frames/s "
                  f"({r['updates']} updates)")
    write_results(out, results, indent=1)
    print(f"\nresults: {out}")


def table(env: str, rows: dict, seeds: list[int], budget: int) -> str:
    def cell(r):
        if "error" in r:
            return "error"
        return "—" if r["solved_steps"] is None else f"{r['solved_steps'] // 1000}k / {r['solved_seconds']:.1f}s"

    def med(algo):  # env steps to solve; an unsolved (or failed) run counts as the budget
        return median([budget if rows[(algo, s)].get("solved_steps") is None else rows[(algo, s)]["solved_steps"]
                       for s in seeds])

    lines = [f"\n{env}: env steps / train seconds to the first evaluation >= {THRESHOLDS[env]} "
             f"(budget {budget:,}; '—' = not solved)", "seed | ACER             | A2C"]
    for s in seeds:
        lines.append(f"{s:>4} | {cell(rows[('acer', s)]):<16} | {cell(rows[('a2c', s)])}")
    ma, mb = med("acer"), med("a2c")
    lines.append(f" med | {ma / 1000:.0f}k steps{'':<7}| {mb / 1000:.0f}k steps   ACER / A2C env steps: {ma / mb:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
