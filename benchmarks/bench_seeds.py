"""Many seeds in one batched run: wall time against one seed, against Stable-Baselines3 running
the same seeds one after another, and how the cost grows with the member count.

Every measurement runs in a fresh process (``--worker``), one after another, with the thread
count given (default 1; critic's own choice for these small networks):

* ``--part ratio``: the shipped preset (``ppo_cartpole``: 100k steps, ``sac_pendulum``: 20k),
  no evaluations: one seed alone, then ``critic.PPO(env, seeds=range(8))`` (``SAC``). The
  issue's targets: PPO's batch <= 2x one seed's wall time, SAC's <= 3x.
* ``--part sb3``: the same 8 seeds with Stable-Baselines3 and RL-Zoo's settings for the env,
  one after another (as a user scripting seeds would), against critic's batch of 8 (the
  ``ratio`` part's number, measured again here so the two sit side by side).
* ``--part scaling``: M = 1, 2, 4, 8, 16, 32 members for a fixed number of steps per member
  (PPO 20k, SAC 4k with updates from step 1k): wall time, and per member, plotted to
  ``--plot`` (default ``benchmarks/seed_scaling.png``).

    python benchmarks/bench_seeds.py --part ratio              # ~4 min
    python benchmarks/bench_seeds.py --part sb3 --algos ppo    # ~10 min (needs .[bench])
    python benchmarks/bench_seeds.py --part scaling            # ~12 min
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import WorkerError, loadavg, machine_info, preset, run_worker, serve_worker, utc_date

PRESETS = {"ppo": ("PPO", "cartpole", "CartPole-v1"), "sac": ("SAC", "pendulum", "Pendulum-v1")}
SCALING_STEPS = {"ppo": 20_000, "sac": 4_000}


def _critic(spec: dict) -> dict:
    import torch

    import critic

    torch.set_num_threads(spec["threads"])
    cls_name, name, env_id = PRESETS[spec["algo"]]
    _, data = preset(spec["algo"], name)
    hp = {**data["hparams"], "torch_threads": spec["threads"]}
    steps = spec.get("steps") or int(float(data["steps"]))
    cls = getattr(critic, cls_name)
    M = spec["members"]
    agent = cls(env_id, seed=0, **hp) if M == 0 else cls(env_id, seeds=list(range(M)), **hp)
    t0 = time.perf_counter()
    agent.learn(steps, progress_bar=False)
    wall = time.perf_counter() - t0
    agents = [agent] if M == 0 else agent.agents
    returns = [float(sum(a.recent_returns) / len(a.recent_returns)) if a.recent_returns else None for a in agents]
    agent.close()
    return {"wall": wall, "steps": steps, "recent_returns": returns}


def _sb3(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env

    seed, algo = spec["seed"], spec["algo"]
    if algo == "ppo":  # RL-Zoo hyperparams/ppo.yml, CartPole-v1
        env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
        model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                    ent_coef=0.0, learning_rate=lambda p: 1e-3 * p, clip_range=lambda p: 0.2 * p,
                    seed=seed, device="cpu", verbose=0)
        steps = 100_000
    else:  # RL-Zoo hyperparams/sac.yml, Pendulum-v1: learning_rate 1e-3, SB3's defaults otherwise
        env = make_vec_env("Pendulum-v1", n_envs=1, seed=seed)
        model = SAC("MlpPolicy", env, learning_rate=1e-3, seed=seed, device="cpu", verbose=0)
        steps = 20_000
    t0 = time.perf_counter()
    model.learn(steps)
    return {"wall": time.perf_counter() - t0, "steps": steps}


def work(spec: dict) -> dict:
    return _sb3(spec) if spec["kind"] == "sb3" else _critic(spec)


def _run(spec: dict, threads: int, timeout: float = 3600) -> dict:
    return run_worker(Path(__file__), {**spec, "threads": threads}, timeout=timeout, threads=threads)


def ratio_part(args, algos: list[str]) -> list[str]:
    rows = ["| algorithm (preset) | one seed | 8 seeds batched | wall ratio | per-seed throughput | target |",
            "|---|---|---|---|---|---|"]
    for algo in algos:
        one = _run({"kind": "critic", "algo": algo, "members": 0}, args.threads)
        eight = _run({"kind": "critic", "algo": algo, "members": 8}, args.threads)
        r = eight["wall"] / one["wall"]
        target = "<= 2x" if algo == "ppo" else "<= 3x"
        rows.append(f"| {algo} ({algo}_{PRESETS[algo][1]}, {one['steps']:,} steps) | {one['wall']:.1f} s | "
                    f"{eight['wall']:.1f} s | {r:.2f}x | {8 / r:.2f}x | {target} |")
        print(rows[-1], flush=True)
    return rows


def sb3_part(args, algos: list[str]) -> list[str]:
    rows = ["| algorithm | SB3, 8 seeds one after another (RL-Zoo settings) | critic, 8 seeds batched (preset) | "
            "SB3 / critic |", "|---|---|---|---|"]
    for algo in algos:
        batch = _run({"kind": "critic", "algo": algo, "members": 8}, args.threads)
        walls = []
        for seed in range(args.sb3_seeds):
            walls.append(_run({"kind": "sb3", "algo": algo, "seed": seed}, args.threads)["wall"])
            print(f"  sb3 {algo} seed {seed}: {walls[-1]:.1f} s", flush=True)
        total = sum(walls) * 8 / len(walls)  # with --sb3-seeds < 8: the mean per seed times 8
        note = "" if len(walls) == 8 else f" ({len(walls)} seeds measured, x 8 / {len(walls)})"
        rows.append(f"| {algo} | {total:.0f} s{note} | {batch['wall']:.1f} s | {total / batch['wall']:.1f}x |")
        print(rows[-1], flush=True)
    return rows


def scaling_part(args, algos: list[str]) -> list[str]:
    sizes = [int(x) for x in args.members.split(",")]
    rows = ["| algorithm | steps per member | " + " | ".join(f"M={m}" for m in sizes) + " |",
            "|---|---|" + "---|" * len(sizes)]
    results: dict[str, list[float]] = {}
    for algo in algos:
        steps = SCALING_STEPS[algo]
        walls = []
        for m in sizes:
            walls.append(_run({"kind": "critic", "algo": algo, "members": m, "steps": steps}, args.threads)["wall"])
            print(f"  {algo} M={m}: {walls[-1]:.1f} s ({walls[-1] / m:.2f} s per member)", flush=True)
        results[algo] = walls
        rows.append(f"| {algo} wall (per member) | {steps:,} | " +
                    " | ".join(f"{w:.1f} s ({w / m:.2f})" for w, m in zip(walls, sizes)) + " |")
    _plot(args.plot, sizes, results)
    return rows


def _plot(path: str, sizes: list[int], results: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for algo, walls in results.items():
        rel = [w / walls[0] for w in walls]
        axes[0].plot(sizes, rel, "o-", label=f"{algo} ({SCALING_STEPS[algo]:,} steps per member)")
        axes[1].plot(sizes, [w / m / walls[0] for w, m in zip(walls, sizes)], "o-", label=algo)
    axes[0].plot(sizes, sizes, ":", color="grey", label="M separate runs (linear)")
    axes[0].set(xscale="log", yscale="log", xlabel="members M", ylabel="wall time / wall time of M=1",
                title="cost of a batch")
    axes[1].set(xscale="log", xlabel="members M", ylabel="wall time per member / M=1",
                title="cost per member")
    for ax in axes:
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot: {path}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("ratio", "sb3", "scaling"), default="ratio")
    p.add_argument("--algos", default="ppo,sac")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--members", default="1,2,4,8,16,32", help="--part scaling: the member counts")
    p.add_argument("--sb3-seeds", type=int, default=8, help="--part sb3: seeds SB3 runs (the total is scaled to 8)")
    p.add_argument("--plot", default=str(Path(__file__).with_name("seed_scaling.png")))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        serve_worker(work, args.worker)
        return 0
    algos = [a.strip() for a in args.algos.split(",")]
    info = machine_info()
    print(f"bench_seeds --part {args.part} {utc_date()}: {info['cpu']}, {info['cores']} cores, {args.threads} "
          f"thread(s), load {loadavg()}", flush=True)
    try:
        rows = {"ratio": ratio_part, "sb3": sb3_part, "scaling": scaling_part}[args.part](args, algos)
    except WorkerError as e:
        print(f"a run failed: {e.reason}\n" + "\n".join(e.tail(15)), file=sys.stderr)
        return 1
    print("\n".join(rows))
    print(f"load after: {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
