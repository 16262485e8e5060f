"""Many seeds in one process: what M members cost against M separate agents.

``--part update``: the PPO update and the acting forward of ``ppo_cartpole``'s shapes
(64-64 tanh networks, rollouts of 16 x 16 = 256 transitions, 6 epochs of one 256-minibatch),
for M = 1, 2, 4, 8, 16, 32 members, timed side by side in one process:

* ``solo``: M separate networks, each updated by ``ppo.update`` (flat parameters, fused Adam),
  one after another, as M runs in one process would;
* ``batched``: one ``Members`` of M stacked networks updated by ``ppo.update_members``
  (the loss on member-stacked weights, one batched product per layer, ``MemberAdam``);
  the acting column still vmaps ``act`` over the members.

``--part train``: whole training, ``ppo_cartpole``'s preset for ``--steps`` env steps per seed
(no evaluations): one seed alone, then ``critic.PPO(env, seeds=[0..M-1])``; the issue's target
is the batch's wall time <= 2x one seed's for M = 8.

    python benchmarks/bench_members.py                 # --part update, ~1 min
    python benchmarks/bench_members.py --members 1,8 --repeats 20
    python benchmarks/bench_members.py --part train --members 8 --steps 100000
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import loadavg, machine_info, start_torch, utc_date


def _setup(M: int, torch, T: int = 16, N: int = 16):
    import gymnasium as gym
    import numpy as np

    from critic.algos.common import make_optimizer
    from critic.algos.ppo import PPOConfig
    from critic.modules.members import Members
    from critic.modules.policies import ActorCriticNet
    from critic.optim import MemberAdam

    obs_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    act_space = gym.spaces.Discrete(2)
    cfg = PPOConfig(num_envs=N, n_steps=T, batch_size=T * N, n_epochs=6, gamma=0.98, gae_lambda=0.8,
                    learning_rate=3e-3, clip_eps=0.2, hidden_sizes=(64, 64))

    def net(seed):
        torch.manual_seed(seed)
        return ActorCriticNet(obs_space, act_space, (64, 64), "tanh")

    g = torch.Generator().manual_seed(0)

    def rollout(n):
        obs = torch.randn(T, N, 4, generator=g)
        with torch.no_grad():
            params, v = n(obs.reshape(T * N, 4))
            d = n.dist(params)
            a = d.sample()
        return {"obs": obs, "actions": a.reshape(T, N), "logp": d.log_prob(a).reshape(T, N),
                "values": v.reshape(T, N), "rewards": torch.ones(T, N), "next_values": v.reshape(T, N),
                "terminated": torch.rand(T, N, generator=g) < 0.02, "truncated": torch.zeros(T, N, dtype=torch.bool)}

    solos = [net(s) for s in range(M)]
    opts = [make_optimizer(n, cfg) for n in solos]
    batches = [rollout(n) for n in solos]
    members = Members([net(s) for s in range(M)])
    mopt = MemberAdam(members.parameters(), cfg.learning_rate, M, betas=tuple(cfg.adam_betas), eps=cfg.optim_eps)
    stacked = {k: torch.stack([b[k] for b in batches]) for k in batches[0]}
    gens = [torch.Generator().manual_seed(s) for s in range(M)]
    obs_solo = [torch.randn(N, 4) for _ in range(M)]
    obs_members = torch.stack(obs_solo)
    act = members.vmap(lambda n, o: n.act(o), randomness="different")
    return cfg, solos, opts, batches, members, mopt, stacked, gens, obs_solo, obs_members, act


def train_part(args) -> int:
    import critic
    from common import preset

    _, data = preset("ppo", "cartpole")
    hp = {**data["hparams"], "torch_threads": args.threads}
    info = machine_info()
    print(f"bench_members --part train {utc_date()}: {info['cpu']}, {info['cores']} cores, {args.threads} "
          f"thread(s), load {loadavg()}; ppo_cartpole, {args.steps:,} steps per seed")
    solo = critic.PPO("CartPole-v1", seed=0, **hp)
    t0 = time.perf_counter()
    solo.learn(args.steps, progress_bar=False)
    t1 = time.perf_counter() - t0
    solo.close()
    print(f"  one seed: {t1:.1f} s")
    for M in [int(x) for x in args.members.split(",")]:
        batch = critic.PPO("CartPole-v1", seeds=list(range(M)), **hp)
        t0 = time.perf_counter()
        batch.learn(args.steps, progress_bar=False)
        tm = time.perf_counter() - t0
        batch.close()
        print(f"  {M} seeds batched: {tm:.1f} s = {tm / t1:.2f}x one seed's wall time; per-seed throughput "
              f"{M * t1 / tm:.2f}x one seed's (targets for 8: <= 2x wall, >= 4x throughput)", flush=True)
    print(f"load after: {loadavg()}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", default="1,2,4,8,16,32")
    p.add_argument("--repeats", type=int, default=10, help="timed updates per size (after 2 warm-ups)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--part", choices=("update", "train"), default="update")
    p.add_argument("--steps", type=int, default=100_000, help="--part train: env steps per seed")
    args = p.parse_args()
    torch, _ = start_torch(args.threads)
    if args.part == "train":
        return train_part(args)
    from critic.algos.ppo import update, update_members

    info = machine_info()
    print(f"bench_members {utc_date()}: {info['cpu']}, {info['cores']} cores, {args.threads} thread(s), "
          f"load {loadavg()}")
    print(f"{'M':>3s} | {'solo update ms':>14s} | {'batched ms':>10s} | {'speed-up':>8s} | "
          f"{'solo act us':>11s} | {'batched act us':>14s}")
    rows = []
    for M in [int(x) for x in args.members.split(",")]:
        cfg, solos, opts, batches, members, mopt, stacked, gens, obs_solo, obs_m, act = _setup(M, torch)
        t_solo, t_batch, a_solo, a_batch = [], [], [], []
        for r in range(args.repeats + 2):
            t0 = time.perf_counter()
            for n, o, b in zip(solos, opts, batches):
                update(n, o, b, cfg)
            t1 = time.perf_counter()
            update_members(members, mopt, stacked, cfg, gens)
            t2 = time.perf_counter()
            with torch.inference_mode():
                for n, o in zip(solos, obs_solo):
                    n.act(o)
                t3 = time.perf_counter()
                act(obs_m)
                t4 = time.perf_counter()
            if r >= 2:
                t_solo.append(t1 - t0)
                t_batch.append(t2 - t1)
                a_solo.append(t3 - t2)
                a_batch.append(t4 - t3)
        s, b = statistics.median(t_solo) * 1e3, statistics.median(t_batch) * 1e3
        sa, ba = statistics.median(a_solo) * 1e6, statistics.median(a_batch) * 1e6
        rows.append((M, s, b, sa, ba))
        print(f"{M:3d} | {s:14.2f} | {b:10.2f} | {s / b:7.2f}x | {sa:11.0f} | {ba:14.0f}", flush=True)
    print(f"load after: {loadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
