"""Torch threads on a busy machine: SAC updates (256-wide MLPs) with 1 thread, 2 threads (spinning
and passive OpenMP waiting) and critic's automatic choice, on an idle machine and beside
competing busy processes, each in a fresh process, side by side in one run.

    python benchmarks/bench_threads.py [--updates 150] [--hogs 2] [--repeats 1]

A "hog" is a process that spins on one core (``while True: pass``), the way another training
run or a test worker would. The automatic choice (``torch_threads=0``) is made when the agent
is built and again when ``learn`` starts: 1 thread for narrow networks; for wide ones up to 4,
but no more than the cores other processes leave free (``critic.nn.free_cores``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import loadavg, machine_info, median, out_path, run_worker, serve_worker, write_results  # noqa: E402

VARIANTS = {  # name -> (torch_threads, OMP_WAIT_POLICY or None)
    "1 thread": (1, None),
    "2 threads": (2, None),
    "2 threads, passive": (2, "PASSIVE"),
    "auto": (0, None),
}


def work(spec: dict) -> dict:
    import torch

    import critic

    agent = critic.SAC("Pendulum-v1", seed=0, learning_starts=500, buffer_size=10_000,
                       torch_threads=spec["threads"])
    agent.learn(500, progress_bar=False)  # warm-up: random steps into the replay (no update yet)
    chosen = torch.get_num_threads()
    for _ in range(10):  # first calls allocate
        agent.update()
    t = time.perf_counter()
    for _ in range(spec["updates"]):
        agent.update()
    seconds = time.perf_counter() - t
    agent.close()
    return {"seconds": seconds, "ms_per_update": 1000 * seconds / spec["updates"], "threads": chosen}


def run_variant(name: str, updates: int) -> dict:
    threads, policy = VARIANTS[name]
    saved = os.environ.get("OMP_WAIT_POLICY")
    if policy is not None:
        os.environ["OMP_WAIT_POLICY"] = policy
    try:
        return run_worker(__file__, {"threads": threads, "updates": updates}, timeout=900)
    finally:
        if policy is not None:
            os.environ.pop("OMP_WAIT_POLICY")
        if saved is not None:
            os.environ["OMP_WAIT_POLICY"] = saved


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=150)
    p.add_argument("--hogs", type=int, default=2, help="competing busy processes in the busy scenario")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        return serve_worker(work, args.worker)
    machine = machine_info()
    print(f"{machine['cpu']}, {machine['cores']} cores, load average {loadavg()}", flush=True)
    rows = []
    for scenario in ("idle", "busy"):
        hogs = []
        if scenario == "busy":
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)]
            time.sleep(2)
        try:
            for rep in range(args.repeats):
                for name in VARIANTS:
                    r = run_variant(name, args.updates)
                    rows.append({"scenario": scenario, "variant": name, "repeat": rep, **r})
                    print(f"{scenario:5} {name:20} {r['ms_per_update']:7.2f} ms/update  ({r['threads']} thread(s) "
                          f"used)", flush=True)
        finally:
            for h in hogs:
                h.kill()
                h.wait()
    print("\nms per update (median over repeats), and ratio to 1 thread in the same scenario:")
    table = {}
    for scenario in ("idle", "busy"):
        base = median([r["ms_per_update"] for r in rows if r["scenario"] == scenario and r["variant"] == "1 thread"])
        for name in VARIANTS:
            ms = median([r["ms_per_update"] for r in rows if r["scenario"] == scenario and r["variant"] == name])
            used = sorted({r["threads"] for r in rows if r["scenario"] == scenario and r["variant"] == name})
            table[f"{scenario}/{name}"] = {"ms": round(ms, 2), "vs_1_thread": round(ms / base, 2), "threads": used}
            print(f"  {scenario:5} {name:20} {ms:7.2f} ms  {ms / base:5.2f}x  threads {used}")
    res = {"machine": machine, "hogs": args.hogs, "updates": args.updates, "rows": rows, "table": table,
           "load_after": loadavg()}
    path = out_path(args.out, "threads")
    write_results(path, res)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
