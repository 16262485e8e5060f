#!/usr/bin/env python
"""A3C scaling on CartPole-v1: env steps/s and time to solve by worker count and backend.

For each configuration (local runner with 1, 2 and 4 workers; Ray runner with 2 workers on a
local cluster when ``ray`` is installed), every worker with the ``a3c_cartpole`` preset's
settings (4 envs, 5-step rollouts):

1. ``throughput``: ``--steps`` env steps without evaluation; steps/s measured from the first
   counted step to the end (worker start-up excluded, and reported separately).
2. ``solve``: seeds 0-2, evaluation (10 deterministic episodes, clock paused, workers paused)
   every ``--eval-every`` steps; train seconds and env steps to the first evaluation >= 475.

Parallel efficiency = speed-up over 1 local worker / usable cores, usable cores = min(workers,
CPU cores). Each configuration runs in its own subprocess, one torch thread per worker.

    python benchmarks/bench_a3c.py                     # about 5 minutes on 2 cores
    python benchmarks/bench_a3c.py --configs local:1 local:2 --seeds 0
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from common import (WorkerError, loadavg, machine_info, median, out_path, preset, run_worker, serve_worker,
                    solve_points, until_solved, utc_date, versions_text, write_results)


def worker(spec: dict) -> dict:
    import critic

    if spec["part"] == "sampling":
        return sampling(spec)
    if spec["part"] == "floor":
        return floor(spec)
    backend, workers = spec["config"].split(":")
    hp = {**preset("a3c", "cartpole")[1]["hparams"], "workers": int(workers), "backend": backend,
          "seed": spec["seed"]}
    if backend == "ray":
        hp["address"] = spec.get("address")
    agent = critic.A3C("CartPole-v1", **hp)
    marks: list[tuple[float, int]] = []
    t_start = time.perf_counter()
    try:
        if spec["part"] == "throughput":
            def mark(a, info):
                if a.env_steps > 0:
                    marks.append((time.perf_counter(), a.env_steps))
            agent.learn(spec["steps"], mark, progress_bar=False)
            t_end, steps_end = time.perf_counter(), agent.env_steps
            t0, s0 = marks[0]
            return {"sps": (steps_end - s0) / (t_end - t0), "startup_s": t0 - t_start, "env_steps": steps_end,
                    "restarts": agent.worker_restarts}
        agent.learn(spec["budget"], until_solved(475), eval_every=spec["eval_every"], progress_bar=False)
        evals = agent.evaluations
        hit, _ = solve_points(evals, 475)
        return {"solved_steps": hit["env_steps"] if hit else None,
                "solved_seconds": hit["train_seconds"] if hit else None,
                "evals": [(e["env_steps"], round(e["mean"], 1)) for e in evals]}
    finally:
        agent.close()


def sampling(spec: dict) -> dict:
    """PPO with the ``ppo_cartpole`` preset's batch (16 envs x 16 steps): in this process, or
    collected by ``workers`` Ray samplers with 16 / workers envs each."""
    import critic

    backend, workers = spec["config"].split(":")
    hp = dict(preset("ppo", "cartpole")[1]["hparams"])
    if backend == "ray":
        hp.update(backend="ray", workers=int(workers), num_envs=hp["num_envs"] // int(workers))
    agent = critic.PPO("CartPole-v1", **hp, seed=0)
    try:
        agent.learn(hp["num_envs"] * hp["n_steps"] * (int(workers) if backend == "ray" else 1),
                    progress_bar=False)  # start-up (Ray samplers), untimed
        t0, s0 = time.perf_counter(), agent.env_steps
        agent.learn(spec["steps"], progress_bar=False)
        return {"sps": (agent.env_steps - s0) / (time.perf_counter() - t0)}
    finally:
        agent.close()


def floor(spec: dict) -> dict:
    """What one rollout costs in CPU time, and what a Ray push adds on each side.

    One A3C worker of the ``a3c_cartpole`` preset runs rollouts in this process (CPU seconds per
    rollout). Then a caller actor pushes gradients of the same size to critic's own Ray parameter
    server exactly as a Ray worker does (one push in flight, parameters returned), and the CPU
    time of both processes is read from /proc. With every core busy, the Ray runner's
    parallel efficiency can reach at most rollout / (rollout + caller + server) of the local
    runner's, whatever the scheduling.
    """
    import functools

    import numpy as np
    import torch

    import critic
    from critic.algos.a3c import WorkerFactory
    from critic.algos.common import optimizer_for
    from critic.runners.ray import _remote_classes, init_ray

    torch.set_num_threads(1)
    hp = {**preset("a3c", "cartpole")[1]["hparams"], "seed": 0}
    agent = critic.A3C("CartPole-v1", **hp)
    w = WorkerFactory(agent.env_spec, agent.cfg, ())(0, 0)
    params = agent.optims["main"].param_groups[0]["params"][0].detach().clone()
    for _ in range(50):
        w.rollout_gradient(params)
    n = spec["calls"]
    c0 = time.process_time()
    for _ in range(n):
        grad, _, _ = w.rollout_gradient(params)
    rollout = (time.process_time() - c0) / n
    steps = w.rollout_steps  # env steps of one rollout (n_steps x num_envs: the preset is not episodic)
    import ray

    init_ray(num_cpus=2)
    PS, _, _ = _remote_classes()
    make_opt = functools.partial(optimizer_for, cfg=agent.cfg)
    ps = PS.remote(params.clone(), agent.optims["main"].state_dict(), make_opt, None)
    ray.get(ps.set_budget.remote(0, 10**12))

    @ray.remote(num_cpus=1)
    class Caller:
        def go(self, ps, g, steps, calls):
            c, pending = time.process_time(), None
            for _ in range(calls):
                if pending is not None:
                    torch.from_numpy(ray.get(pending)[0].copy())
                pending = ps.push.remote(g, steps)
            ray.get(pending)
            return (time.process_time() - c) / calls

    def proc_cpu(actor) -> float:
        pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    caller = Caller.remote()
    g = grad.numpy().astype(np.float32)
    ray.get(caller.go.remote(ps, g, steps, 200))
    s0 = proc_cpu(ps)
    caller_cpu = ray.get(caller.go.remote(ps, g, steps, n))
    server = (proc_cpu(ps) - s0) / n
    ray.shutdown()
    agent.close()
    return {"steps_per_rollout": steps, "params": int(params.numel()), "rollout_s": rollout,
            "caller_s": caller_cpu, "server_s": server,
            "ceiling": rollout / (rollout + caller_cpu + server)}


def run(spec: dict) -> dict:
    try:
        return run_worker(__file__, spec)
    except WorkerError as e:
        return {"error": e.last_line}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", default=["local:1", "local:2", "local:4", "ray:2"])
    ap.add_argument("--parts", nargs="+", default=["throughput", "solve"],
                    choices=["throughput", "solve", "sampling", "floor"],
                    help="sampling: PPO steps/s, local vs Ray samplers (configs local:1 ray:N); floor: CPU "
                         "per rollout and per Ray push, and the Ray efficiency ceiling they imply")
    ap.add_argument("--steps", type=int, default=60_000, help="env steps of a throughput run")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=300_000)
    ap.add_argument("--eval-every", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=2, help="throughput runs per configuration (median)")
    ap.add_argument("--address", default=None, help="Ray address for ray:N configs (default: a local Ray)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        serve_worker(worker, a.worker)
        return
    cores = os.cpu_count() or 1
    configs = list(a.configs)
    if any(c.startswith("ray:") for c in configs):
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray is not installed (pip install 'critic[ray]'): skipping", [c for c in configs if c.startswith("ray")])
            configs = [c for c in configs if not c.startswith("ray:")]
    print(f"bench_a3c {utc_date()}: {cores} cores, load {loadavg()}; {versions_text(machine_info(('torch',)))}",
          flush=True)
    results: dict = {"args": vars(a), "cores": cores, "throughput": {}, "solve": {}}
    if "throughput" in a.parts:
        for c in configs:
            rs = [run({"part": "throughput", "config": c, "seed": 0, "steps": a.steps, "address": a.address})
                  for _ in range(a.repeats)]
            results["throughput"][c] = rs
            print(f"  throughput {c}: " + ", ".join(r.get("error") or f"{r['sps']:,.0f} steps/s "
                                                    f"(start-up {r['startup_s']:.1f} s)" for r in rs), flush=True)
    if "sampling" in a.parts:
        results["sampling"] = {}
        for c in configs:
            r = run({"part": "sampling", "config": c, "steps": a.steps})
            results["sampling"][c] = r
            print(f"  PPO sampling {c}: " + (r.get("error") or f"{r['sps']:,.0f} steps/s"), flush=True)
    if "floor" in a.parts:
        r = run({"part": "floor", "calls": 2000})
        results["floor"] = r
        if "error" not in r:
            local1 = [x["sps"] for x in results["throughput"].get("local:1", []) if "sps" in x]
            if local1:  # every core busy at the floor's cost per rollout, against 1 local worker per core
                r["ceiling_vs_local1"] = r["steps_per_rollout"] / (r["rollout_s"] + r["caller_s"] + r["server_s"]) \
                    / median(local1)
        print(floor_table(r) if "error" not in r else f"  floor: {r['error']}", flush=True)
    if "solve" in a.parts:
        for c in configs:
            rs = [run({"part": "solve", "config": c, "seed": s, "budget": a.budget, "eval_every": a.eval_every,
                       "address": a.address}) for s in a.seeds]
            results["solve"][c] = rs
            print(f"  solve {c}: " + "; ".join(r.get("error") or f"{r['solved_steps']} steps, {r['solved_seconds']} s"
                                             for r in rs), flush=True)
    if results["throughput"] or results["solve"]:
        print(table(results, configs, cores, a))
    if results.get("sampling"):
        print(sampling_table(results["sampling"], a))
    out = out_path(a.out, "a3c")
    write_results(out, results, indent=1)
    print(f"\nresults: {out}")


def table(results: dict, configs: list[str], cores: int, a) -> str:
    def sps(c):
        return median([r["sps"] for r in results["throughput"].get(c, []) if "sps" in r])

    def solve(c, key):
        rs = results["solve"].get(c, [])
        if not rs or any("error" in r for r in rs):
            return None
        return median([r[key] if r[key] is not None else float("inf") for r in rs])

    base = sps("local:1")
    lines = ["", "| backend | workers | env steps/s | speed-up | usable cores | parallel efficiency | "
             "median steps to 475 | median train s to 475 |", "|---|---|---|---|---|---|---|---|"]
    for c in configs:
        backend, w = c.split(":")
        s = sps(c)
        usable = min(int(w), cores)
        up = s / base if s and base else None
        eff = up / usable if up else None
        st, sec = solve(c, "solved_steps"), solve(c, "solved_seconds")
        lines.append(f"| {backend} | {w} | {f'{s:,.0f}' if s else '—'} | {f'{up:.2f}x' if up else '—'} | {usable} | "
                     f"{f'{eff:.0%}' if eff else '—'}{' (target ≥ 80%: ' + ('yes' if eff >= 0.8 else '**no**') + ')' if eff else ''} | "
                     f"{f'{st:,.0f}' if st is not None else '—'} | {f'{sec:.1f}' if sec is not None else '—'} |")
    lines.append(f"\nThroughput: {a.steps:,} env steps without evaluation, median of {a.repeats} runs, start-up "
                 f"excluded. Solve: seeds {a.seeds}, evaluation every {a.eval_every:,} steps, budget {a.budget:,}.")
    return "\n".join(lines)


def floor_table(r: dict) -> str:
    ms = lambda x: f"{x * 1e3:.2f} ms"  # noqa: E731
    return "\n".join([
        "", "| CPU time per rollout | |", "|---|---|",
        f"| one rollout + gradient ({r['steps_per_rollout']} env steps, {r['params']:,} parameters) | {ms(r['rollout_s'])} |",
        f"| Ray push, worker side (submit, wait, copy the returned parameters) | {ms(r['caller_s'])} |",
        f"| Ray push, parameter-server side (receive, optimizer step, reply) | {ms(r['server_s'])} |",
        f"| share of CPU left for rollouts with every core busy: rollout / (rollout + both sides) | **{r['ceiling']:.0%}** |",
        *([f"| **ceiling on Ray's parallel efficiency** (every core busy at these costs, against the local:1 "
           f"throughput above) | **{r['ceiling_vs_local1']:.0%}** |"] if "ceiling_vs_local1" in r else []),
        "", "Measured uncontended (one caller); two workers sharing 2 cores with the server pay more."])


def sampling_table(res: dict, a) -> str:
    base = res.get("local:1", {}).get("sps")
    lines = ["", "| PPO sampling | env steps/s | vs local |", "|---|---|---|"]
    for c, r in res.items():
        s = r.get("sps")
        lines.append(f"| {c} | {f'{s:,.0f}' if s else r.get('error', '—')} | "
                     f"{f'{s / base:.2f}x' if s and base else '—'} |")
    lines.append(f"\nPPO ppo_cartpole preset (16 envs x 16 steps per update), {a.steps:,} env steps, start-up excluded.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
