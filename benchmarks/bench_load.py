"""Loading a trained agent to act against loading it to train on: seconds and peak resident memory,
each load in a fresh process, side by side in one run.

    python benchmarks/bench_load.py [--sac-env HalfCheetah-v5] [--buffer-size 1000000]

For a SAC run (a replay of a million rows, the library's default, holding ``--fill`` transitions of
random warm-up actions) and a PPO run on CartPole, each written into a run directory, a fresh
process measures:

* ``critic.load(RUN)``: the run's ``model/`` (weights and normalisation), no envs, no replay;
* ``critic.load(RUN/checkpoints/agent.safetensors)``: to act out of the full training
  checkpoint (only the networks' tensors are read; the checksum is streamed);
* ``critic.load(RUN/checkpoints/agent.safetensors, for_training=True)``: every part (what
  ``load`` did for every use before 0.2): envs, replay, optimizers, RNG and env states.

Memory is the resident memory the load adds (VmRSS after the load and a first ``predict``, less
VmRSS after ``import critic``); the total includes Python, torch and critic themselves.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, loadavg, machine_info, out_path, run_worker, serve_worker, write_results  # noqa: E402

CASES = ("import only", "model/ (act)", "checkpoint (act)", "checkpoint (train on)")


def work(spec: dict) -> dict:
    t0 = time.perf_counter()
    import numpy as np

    import critic
    t_import = time.perf_counter() - t0
    run, case = Path(spec["run"]), spec["case"]
    rss_import = rss_mib()
    t = time.perf_counter()
    agent = None
    if case == "model/ (act)":
        agent = critic.load(run)
    elif case == "checkpoint (act)":
        agent = critic.load(run / "checkpoints" / "agent.safetensors")
    elif case == "checkpoint (train on)":
        agent = critic.load(run / "checkpoints" / "agent.safetensors", for_training=True)
    seconds = time.perf_counter() - t
    if agent is not None:  # it acts
        agent.predict(np.zeros(agent.obs_space.shape, agent.obs_space.dtype), deterministic=True)
    return {"load_seconds": seconds, "import_seconds": t_import, "rss_after_import_mib": rss_import,
            "rss_mib": rss_mib(), "added_rss_mib": rss_mib() - rss_import,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def rss_mib() -> float:
    """Resident memory now (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def train(algo: str, env: str, run: Path, steps: int, hp: dict) -> None:
    import critic

    with getattr(critic, algo)(env, seed=0, **hp) as agent:
        agent.learn(steps, run_dir=run, progress_bar=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sac-env", default="HalfCheetah-v5")
    p.add_argument("--buffer-size", type=int, default=1_000_000)
    p.add_argument("--fill", type=int, default=200_000,
                   help="SAC env steps stored in the replay before the checkpoint (random warm-up actions: "
                        "only the load is measured, not learning)")
    p.add_argument("--out", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        return serve_worker(work, args.worker)
    machine = machine_info()
    print(f"{machine['cpu']}, {machine['cores']} cores, load average {loadavg()}", flush=True)
    base = OUT_DIR / "bench_load"
    runs = {
        "SAC": ("SAC", args.sac_env, args.fill, {"learning_starts": args.fill, "buffer_size": args.buffer_size}),
        "PPO": ("PPO", "CartPole-v1", 4_096, {}),
    }
    rows = []
    for name, (algo, env, steps, hp) in runs.items():
        run = base / name
        if run.exists():
            import shutil
            shutil.rmtree(run)
        train(algo, env, run, steps, hp)
        sizes = {"model": (run / "model" / "agent.safetensors").stat().st_size,
                 "checkpoint": (run / "checkpoints" / "agent.safetensors").stat().st_size}
        print(f"\n{name} on {env} ({steps:,} steps{', buffer ' + format(hp['buffer_size'], ',') if 'buffer_size' in hp else ''}):"
              f" model/ {sizes['model'] / 2**20:.2f} MiB, checkpoints/ {sizes['checkpoint'] / 2**20:.1f} MiB")
        for case in CASES:
            r = run_worker(__file__, {"run": str(run), "case": case}, timeout=600)
            rows.append({"agent": name, "env": env, "case": case, **sizes, **r})
            print(f"  {case:24} load {r['load_seconds']:6.3f} s   resident memory added {r['added_rss_mib']:7.1f} MiB "
                  f"(total {r['rss_mib']:.0f} MiB)", flush=True)
    res = {"machine": machine, "rows": rows, "load_after": loadavg()}
    path = out_path(args.out, "load")
    write_results(path, res)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
