#!/usr/bin/env python
"""critic against Stable-Baselines3 on CartPole-v1: PPO and A2C (method: benchmarks/README.md).

Three parts, each run side by side and alternately (critic, SB3, critic, SB3, ...) in this one
invocation, every run in a fresh Python subprocess (so imports, thread pools and allocator state
never leak from one run into the next) with the same ``torch.set_num_threads``:

1. Implementation efficiency. Identical hyper-parameters (benchmarks/README.md's reference table), one plain
   ``learn(steps)`` with no evaluation; env steps/s and gradient updates/s over that call, the
   split of that time into collection and update, and the final return (10 deterministic
   episodes after training). Medians over the pairs and the ratio critic / SB3.
2. Wall time to solve, identical hyper-parameters. One ``learn(steps)`` per run with a
   callback that, every ``--eval-every`` env steps (at the first iteration boundary at or after
   it), pauses training and runs the *same* evaluation function for both libraries (10
   deterministic episodes on a fresh Gymnasium env); evaluation time is excluded from the
   clock. Reports the first evaluation with mean >= 475 and the stable one (every later
   evaluation, the final one included, stays >= 475), in train seconds and env steps.
3. User's view. critic's preset ``critic/presets/{algo}_cartpole.yaml`` (skipped with a note
   while it does not exist) against SB3 with the RL-Zoo CartPole settings; time to stable solve,
   measured as in part 2.

Run (from the repository root, with ``pip install -e '.[bench]'``)::

    python benchmarks/bench_onpolicy.py                      # everything, PPO and A2C
    python benchmarks/bench_onpolicy.py --parts 1            # throughput only
    python benchmarks/bench_onpolicy.py --algos ppo --parts 1 2 --seeds 0 1 2
    python benchmarks/bench_onpolicy.py --quick              # smoke test, about a minute

Pairs: part 1 runs ``--pairs`` pairs per algorithm, pair i on seed ``seeds[i % len(seeds)]``
(so the defaults, 3 pairs and seeds 0 1 2, give one pair per seed). Parts 2 and 3 run one pair
per seed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

from common import (EVAL_EPISODES, OUT_DIR, REPO, EvalClock, WorkerError, fmt, good, loadavg, machine_info, median,
                    median_unsolved_last, pairs, preset, preset_steps, ratio, repo_path, run_worker,
                    sb3_eval_callback, serve_worker, solve_points, start_torch, utc_date, versions_text,
                    write_results)

ENV_ID = "CartPole-v1"
THRESHOLD = 475.0
LIBS = ("critic", "sb3")
LIB_NAMES = {"critic": "critic", "sb3": "SB3"}

# ----------------------------------------------------------------------------------------------
# Hyper-parameters (benchmarks/README.md, "Reference hyper-parameters"): identical on both sides.

PPO_HP = dict(num_envs=8, n_steps=32, batch_size=256, n_epochs=20, gamma=0.98, gae_lambda=0.8,
              learning_rate=1e-3, clip=0.2, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5)
A2C_HP = dict(num_envs=8, n_steps=5, learning_rate=7e-4, rmsprop_alpha=0.99, eps=1e-5, gamma=0.99,
              gae_lambda=1.0, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5)
# RL-Zoo n_timesteps for CartPole-v1 (the user's-view budget unless --view-steps is given).
ZOO_STEPS = {"ppo": 100_000, "a2c": 500_000}
MODULES = ("critic", "torch", "gymnasium", "stable_baselines3", "numpy")  # versions recorded


def rollout_size(algo: str) -> int:
    hp = PPO_HP if algo == "ppo" else A2C_HP
    return hp["num_envs"] * hp["n_steps"]


def iterations_for(algo: str, steps: int) -> int:
    """Both libraries iterate while env_steps < total: ceil(steps / rollout)."""
    return math.ceil(steps / rollout_size(algo))


def grad_steps_per_iteration(lib: str, algo: str) -> int:
    if algo == "a2c":
        return 1
    B, bs = rollout_size("ppo"), PPO_HP["batch_size"]
    # critic drops a trailing partial minibatch, SB3 keeps it; identical for 256 / 256.
    per_epoch = B // bs if lib == "critic" else math.ceil(B / bs)
    return PPO_HP["n_epochs"] * per_epoch


# ================================================================================ worker side
# Everything below up to "driver side" runs inside the per-run subprocess.

class SplitTimer:
    """Wraps two bound methods (collection, update) and sums their time; one timer per call
    (``wrap``), or per pass over the iterator it returns (``wrap_iter``: from the first item to
    the end, so the time the caller spends on each item counts)."""

    def __init__(self):
        self.collect = 0.0
        self.update = 0.0

    def _add(self, field: str, t: float) -> None:
        setattr(self, field, getattr(self, field) + time.perf_counter() - t)

    def wrap(self, fn, field: str):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self._add(field, t)
        return timed

    def wrap_iter(self, fn, field: str):
        def timed(*a, **k):
            t = time.perf_counter()
            try:
                yield from fn(*a, **k)
            finally:
                self._add(field, t)
        return timed

    def attach(self, model, lib: str) -> bool:
        """Time ``model``'s collection and update phases; False where it has no such methods."""
        if lib == "critic":  # learn(): collector.collect(), then an update per batch of collector.batches()
            target, names = getattr(model, "collector", None), ("collect", "batches")
            wraps = (self.wrap, self.wrap_iter)
        else:
            target, names, wraps = model, ("collect_rollouts", "train"), (self.wrap, self.wrap)
        if target is None or not all(callable(getattr(target, n, None)) for n in names):
            return False
        for name, field, wrap in zip(names, ("collect", "update"), wraps):
            setattr(target, name, wrap(getattr(target, name), field))
        return True


def build_critic(algo: str, mode: str, seed: int, threads: int) -> tuple[Any, dict[str, Any]]:
    import critic

    info: dict[str, Any] = {}
    if mode == "view":  # critic/presets/{algo}_cartpole.yaml (the driver starts view runs only when it exists)
        path, data = preset(algo, "cartpole")
        hparams = data.get("hparams") or {}
        cls = critic.PPO if algo == "ppo" else critic.A2C  # checks the hparams' names itself
        info = {"preset": repo_path(path), "preset_meta": {k: v for k, v in data.items() if k != "hparams"},
                "preset_hparams": dict(hparams)}
        return cls(ENV_ID, **{**hparams, "seed": seed, "torch_threads": threads, "device": "cpu"}), info
    common = dict(seed=seed, torch_threads=threads, device="cpu", hidden_sizes=(64, 64), activation="tanh",
                  shared_body=False)
    if algo == "ppo":
        h = PPO_HP
        agent = critic.PPO(ENV_ID, num_envs=h["num_envs"], n_steps=h["n_steps"], batch_size=h["batch_size"],
                           n_epochs=h["n_epochs"], gamma=h["gamma"], gae_lambda=h["gae_lambda"],
                           learning_rate=h["learning_rate"], clip_eps=h["clip"], ent_coef=h["ent_coef"],
                           vf_coef=h["vf_coef"], max_grad_norm=h["max_grad_norm"], optimizer="adam",
                           optim_eps=1e-5, lr_schedule="constant", normalize_advantage=True, **common)
    else:
        h = A2C_HP
        agent = critic.A2C(ENV_ID, num_envs=h["num_envs"], n_steps=h["n_steps"], optimizer="rmsprop",
                           learning_rate=h["learning_rate"], rmsprop_alpha=h["rmsprop_alpha"],
                           optim_eps=h["eps"], gamma=h["gamma"], gae_lambda=h["gae_lambda"],
                           ent_coef=h["ent_coef"], vf_coef=h["vf_coef"], max_grad_norm=h["max_grad_norm"],
                           lr_schedule="constant", normalize_advantage=False, **common)
    return agent, info


def build_sb3(algo: str, mode: str, seed: int) -> tuple[Any, dict[str, Any]]:
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env
    from torch import nn

    policy_kwargs = dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.Tanh)
    if algo == "ppo":
        h = PPO_HP
        env = make_vec_env(ENV_ID, n_envs=h["num_envs"], seed=seed)  # DummyVecEnv + Monitor
        if mode == "view":  # RL-Zoo hyperparams/ppo.yml, CartPole-v1 (default policy_kwargs)
            model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                        ent_coef=0.0, learning_rate=lambda p: 1e-3 * p, clip_range=lambda p: 0.2 * p,
                        seed=seed, device="cpu", verbose=0)
            return model, {"settings": "rl-zoo ppo CartPole-v1 (lin_1e-3, lin_0.2)"}
        model = PPO("MlpPolicy", env, n_steps=h["n_steps"], batch_size=h["batch_size"], n_epochs=h["n_epochs"],
                    gamma=h["gamma"], gae_lambda=h["gae_lambda"], learning_rate=h["learning_rate"],
                    clip_range=h["clip"], ent_coef=h["ent_coef"], vf_coef=h["vf_coef"],
                    max_grad_norm=h["max_grad_norm"], normalize_advantage=True, policy_kwargs=policy_kwargs,
                    seed=seed, device="cpu", verbose=0)
        return model, {}
    h = A2C_HP
    env = make_vec_env(ENV_ID, n_envs=h["num_envs"], seed=seed)
    if mode == "view":  # RL-Zoo hyperparams/a2c.yml, CartPole-v1: n_envs 8, ent_coef 0, no normalisation
        model = A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu", verbose=0)
        return model, {"settings": "rl-zoo a2c CartPole-v1"}
    model = A2C("MlpPolicy", env, learning_rate=h["learning_rate"], n_steps=h["n_steps"], gamma=h["gamma"],
                gae_lambda=h["gae_lambda"], ent_coef=h["ent_coef"], vf_coef=h["vf_coef"],
                max_grad_norm=h["max_grad_norm"], use_rms_prop=True, rms_prop_eps=h["eps"],
                normalize_advantage=False, policy_kwargs=policy_kwargs, seed=seed, device="cpu", verbose=0)
    return model, {}


def work(spec: dict[str, Any]) -> dict[str, Any]:
    import resource

    lib, algo, mode = spec["lib"], spec["algo"], spec["mode"]
    seed, steps, threads = spec["seed"], spec["steps"], spec["threads"]
    torch, import_s = start_torch(threads, "critic" if lib == "critic" else "stable_baselines3")

    t_setup = time.perf_counter()
    if lib == "critic":
        model, info = build_critic(algo, mode, seed, threads)
        act = lambda o: model.predict(o, deterministic=True)[0]  # noqa: E731
    else:
        model, info = build_sb3(algo, mode, seed)
        act = lambda o: model.predict(o, deterministic=True)[0]  # noqa: E731
    setup_s = time.perf_counter() - t_setup

    split = SplitTimer()
    if mode == "throughput" and not split.attach(model, lib):  # collection and update timed apart
        split = None

    clock = EvalClock(act, ENV_ID, seed, spec.get("eval_every", 0) if mode != "throughput" else 0, steps)
    callback = None
    if mode != "throughput":
        if lib == "critic":
            callback = lambda agent, _info: clock.at(agent.env_steps)  # noqa: E731
        else:
            callback = sb3_eval_callback(clock)

    assert torch.get_num_threads() == threads, (torch.get_num_threads(), threads)
    clock.start()
    if lib == "critic":
        model.learn(steps, callback=callback, progress_bar=False)
        env_steps = model.env_steps
    else:
        model.learn(steps, callback=callback, progress_bar=False)
        env_steps = model.num_timesteps
    learn_s = time.perf_counter() - clock.t0
    train_s = learn_s - clock.eval_seconds
    threads_seen = torch.get_num_threads()
    final = clock.evaluate()
    evals = list(clock.evals)
    if mode != "throughput":
        evals.append(clock.row(env_steps, train_s, final))
    first, stable = solve_points(evals, THRESHOLD)
    iters = iterations_for(algo, steps) if mode != "view" else None
    out = {
        "lib": lib, "algo": algo, "mode": mode, "seed": seed, "threads": threads, "threads_seen": threads_seen,
        "steps_requested": steps, "env_steps": int(env_steps),
        "import_seconds": round(import_s, 3), "setup_seconds": round(setup_s, 3),
        "learn_seconds": round(learn_s, 3), "train_seconds": round(train_s, 3),
        "eval_seconds": round(clock.eval_seconds, 3),
        "steps_per_second": round(env_steps / train_s, 1),
        "final": {"mean": final["mean"], "std": final["std"]},
        "evals": evals, "solved_at": first, "stable_solved_at": stable,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **info,
    }
    if iters is not None:
        grads = iters * grad_steps_per_iteration(lib, algo)
        out.update(iterations=iters, grad_updates=grads, grad_updates_per_second=round(grads / train_s, 1))
    if mode == "throughput":
        if split is None:
            out.update(collect_seconds=None, update_seconds=None, other_seconds=None, ms_per_grad_update=None)
        else:
            out.update(collect_seconds=round(split.collect, 3), update_seconds=round(split.update, 3),
                       other_seconds=round(train_s - split.collect - split.update, 3),
                       ms_per_grad_update=round(1000 * split.update / out["grad_updates"], 3))
    return out


# ================================================================================ driver side

def launch(spec: dict[str, Any], log) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        res = run_worker(__file__, spec, threads=spec["threads"], hash_seed=spec["seed"], cwd=REPO)
    except WorkerError as e:
        log(f"  !! {spec['lib']} {spec['algo']} {spec['mode']} seed {spec['seed']} failed (rc {e.returncode})")
        log("     " + "\n     ".join(e.tail(15)))
        return {**spec, "error": e.output[-4000:]}
    res["process_seconds"] = round(time.perf_counter() - t0, 2)
    return res


def summarize_throughput(results, algo) -> dict[str, Any] | None:
    ps = [(a, b) for a, b in pairs(results, algo=algo, mode="throughput") if good(a, b)]
    if not ps:
        return None
    s: dict[str, Any] = {"pairs": len(ps)}
    for lib, i in (("critic", 0), ("sb3", 1)):
        rs = [p[i] for p in ps]
        s[lib] = {k: median([r.get(k) for r in rs]) for k in
                  ("steps_per_second", "grad_updates_per_second", "train_seconds", "collect_seconds",
                   "update_seconds", "other_seconds", "ms_per_grad_update", "setup_seconds", "import_seconds",
                   "peak_rss_mb")}
        s[lib]["final_mean"] = median([r["final"]["mean"] for r in rs])
    s["ratio_steps_per_second"] = median([a["steps_per_second"] / b["steps_per_second"] for a, b in ps])
    s["ratio_of_medians"] = ratio(s["critic"]["steps_per_second"], s["sb3"]["steps_per_second"])
    s["ratio_update_time"] = ratio(s["critic"]["update_seconds"], s["sb3"]["update_seconds"])
    s["ratio_collect_time"] = ratio(s["critic"]["collect_seconds"], s["sb3"]["collect_seconds"])
    return s


def summarize_solve(results, algo, mode) -> dict[str, Any] | None:
    ps = pairs(results, algo=algo, mode=mode)
    if not ps:
        return None
    s: dict[str, Any] = {}
    for lib, i in (("critic", 0), ("sb3", 1)):
        rs = [p[i] for p in ps if good(p[i])]
        stable = [r["stable_solved_at"]["train_seconds"] if r["stable_solved_at"] else None for r in rs]
        first = [r["solved_at"]["train_seconds"] if r["solved_at"] else None for r in rs]
        s[lib] = {"runs": len(rs), "stable_solved": sum(x is not None for x in stable),
                  "first_solved": sum(x is not None for x in first),
                  "median_stable_seconds": median_unsolved_last(stable),
                  "median_first_seconds": median_unsolved_last(first),
                  "median_stable_steps": median_unsolved_last([r["stable_solved_at"]["env_steps"]
                                                               if r["stable_solved_at"] else None for r in rs]),
                  "median_final_mean": median([r["final"]["mean"] for r in rs]),
                  "median_train_seconds": median([r["train_seconds"] for r in rs])}
    s["ratio_stable_seconds"] = ratio(s["critic"]["median_stable_seconds"], s["sb3"]["median_stable_seconds"])
    s["ratio_first_seconds"] = ratio(s["critic"]["median_first_seconds"], s["sb3"]["median_first_seconds"])
    return s


def print_report(res: dict[str, Any], log) -> list[str]:
    results, summ = res["runs"], res["summary"]
    log("")
    log("=" * 100)
    m = res["machine"]
    log(f"critic vs Stable-Baselines3, {ENV_ID}, {res['args']['threads']} torch thread(s), {m['cpu']} "
        f"({m['cores']} cores), load {m['loadavg_start']} -> {res.get('loadavg_end')}")
    log("versions: " + versions_text(m))
    md: list[str] = [f"### On-policy CartPole-v1 — {res['date']}", "",
                     f"{m['cpu']}, {m['cores']} cores, {res['args']['threads']} torch thread(s), "
                     f"load average at start {m['loadavg_start']}; "
                     + versions_text(m), ""]
    for algo in res["args"]["algos"]:
        s = summ.get(algo, {}).get("throughput")
        if s is None:
            continue
        log("")
        log(f"[1] {algo.upper()} implementation efficiency: {res['args']['steps']:,} steps, identical "
            f"hyper-parameters, no evaluation (per pair, run order critic then SB3)")
        log(f"{'pair':>4} {'seed':>4} | {'critic sps':>10} {'SB3 sps':>9} {'ratio':>6} | "
            f"{'critic s':>8} {'(coll/upd)':>13} {'SB3 s':>7} {'(coll/upd)':>13} | {'ret critic':>10} "
            f"{'ret SB3':>8}")
        for i, (a, b) in enumerate(pairs(results, algo=algo, mode="throughput")):
            if not good(a, b):
                log(f"{i:>4}  (failed)")
                continue
            log(f"{i:>4} {a['seed']:>4} | {fmt(a['steps_per_second'], 0, 10)} {fmt(b['steps_per_second'], 0, 9)} "
                f"{fmt(a['steps_per_second'] / b['steps_per_second'], 2, 6)} | {fmt(a['train_seconds'], 1, 8)} "
                f"{(fmt(a['collect_seconds'], 1) + '/' + fmt(a['update_seconds'], 1)):>13} "
                f"{fmt(b['train_seconds'], 1, 7)} "
                f"{(fmt(b['collect_seconds'], 1) + '/' + fmt(b['update_seconds'], 1)):>13} | "
                f"{fmt(a['final']['mean'], 1, 10)} {fmt(b['final']['mean'], 1, 8)}")
        c, r = s["critic"], s["sb3"]
        log(f"{'med':>4} {'':>4} | {fmt(c['steps_per_second'], 0, 10)} {fmt(r['steps_per_second'], 0, 9)} "
            f"{fmt(s['ratio_steps_per_second'], 2, 6)} | {fmt(c['train_seconds'], 1, 8)} "
            f"{(fmt(c['collect_seconds'], 1) + '/' + fmt(c['update_seconds'], 1)):>13} "
            f"{fmt(r['train_seconds'], 1, 7)} "
            f"{(fmt(r['collect_seconds'], 1) + '/' + fmt(r['update_seconds'], 1)):>13} | "
            f"{fmt(c['final_mean'], 1, 10)} {fmt(r['final_mean'], 1, 8)}")
        log(f"     grad updates/s critic {fmt(c['grad_updates_per_second'], 0)} vs SB3 "
            f"{fmt(r['grad_updates_per_second'], 0)}; ms per grad update critic {fmt(c['ms_per_grad_update'], 2)} "
            f"vs SB3 {fmt(r['ms_per_grad_update'], 2)}; setup s critic {fmt(c['setup_seconds'], 2)} vs SB3 "
            f"{fmt(r['setup_seconds'], 2)}; peak RSS MB critic {fmt(c['peak_rss_mb'], 0)} vs SB3 "
            f"{fmt(r['peak_rss_mb'], 0)}")
    for mode, title in (("solve", "[2] wall time to solve, identical hyper-parameters"),
                        ("view", "[3] user's view: critic preset vs SB3 RL-Zoo settings")):
        for algo in res["args"]["algos"]:
            note = summ.get(algo, {}).get(f"{mode}_note")
            if note:
                log("")
                log(f"{title.split(':')[0]} {algo.upper()}: {note}")
            s = summ.get(algo, {}).get(mode)
            if s is None:
                continue
            log("")
            vs = summ.get(algo, {}).get("view_steps") if mode == "view" else res["args"]["steps"]
            log(f"{title}: {algo.upper()}, {vs:,} steps, eval every {res['args']['eval_every']:,} steps, "
                f"{EVAL_EPISODES} deterministic episodes, threshold {THRESHOLD:g}; seconds = train time")
            log(f"{'seed':>4} | {'critic first':>12} {'stable':>14} {'final':>6} | {'SB3 first':>10} "
                f"{'stable':>14} {'final':>6}")

            def cell(r, key):
                p = r.get(key)
                return "—" if p is None else f"{p['train_seconds']:.1f}s@{p['env_steps'] // 1000}k"

            for a, b in pairs(results, algo=algo, mode=mode):
                if not good(a, b):
                    log("      (failed)")
                    continue
                log(f"{a['seed']:>4} | {cell(a, 'solved_at'):>12} {cell(a, 'stable_solved_at'):>14} "
                    f"{fmt(a['final']['mean'], 0, 6)} | {cell(b, 'solved_at'):>10} "
                    f"{cell(b, 'stable_solved_at'):>14} {fmt(b['final']['mean'], 0, 6)}")
            c, r = s["critic"], s["sb3"]
            log(f"{'med':>4} | {fmt(c['median_first_seconds'], 1, 12)} {fmt(c['median_stable_seconds'], 1, 14)} "
                f"{fmt(c['median_final_mean'], 0, 6)} | {fmt(r['median_first_seconds'], 1, 10)} "
                f"{fmt(r['median_stable_seconds'], 1, 14)} {fmt(r['median_final_mean'], 0, 6)}")
            log(f"     stable solves: critic {c['stable_solved']}/{c['runs']}, SB3 {r['stable_solved']}/{r['runs']} "
                "(medians count an unsolved run as slowest; '—' when the median run did not solve)")

    # ---- ratios (the table ends with them) and Markdown
    log("")
    log("ratios critic / SB3 (throughput > 1: critic faster; time < 1: critic faster)")
    md_rows = ["| case | critic | SB3 | critic / SB3 |", "|---|---|---|---|"]
    for algo in res["args"]["algos"]:
        A = algo.upper()
        s = summ.get(algo, {}).get("throughput")
        if s:
            c, r = s["critic"], s["sb3"]
            log(f"  {A} env steps/s           {fmt(c['steps_per_second'], 0, 8)} vs {fmt(r['steps_per_second'], 0, 8)}"
                f"   ratio {fmt(s['ratio_steps_per_second'], 2)} (median of per-pair ratios; "
                f"ratio of medians {fmt(s['ratio_of_medians'], 2)})")
            log(f"  {A} update time           {fmt(c['update_seconds'], 1, 8)} vs {fmt(r['update_seconds'], 1, 8)} s"
                f" ratio {fmt(s['ratio_update_time'], 2)}")
            log(f"  {A} collection time       {fmt(c['collect_seconds'], 1, 8)} vs {fmt(r['collect_seconds'], 1, 8)} s"
                f" ratio {fmt(s['ratio_collect_time'], 2)}")
            n = s["pairs"]
            md_rows.append(f"| {A} {res['args']['steps'] // 1000}k env steps/s (median of {n}) | "
                           f"{fmt(c['steps_per_second'], 0)} ({fmt(c['train_seconds'], 1)} s) | "
                           f"{fmt(r['steps_per_second'], 0)} ({fmt(r['train_seconds'], 1)} s) | "
                           f"**{fmt(s['ratio_steps_per_second'], 2)}×** |")
            md_rows.append(f"| {A} collect / update seconds | {fmt(c['collect_seconds'], 1)} / "
                           f"{fmt(c['update_seconds'], 1)} | {fmt(r['collect_seconds'], 1)} / "
                           f"{fmt(r['update_seconds'], 1)} | {fmt(s['ratio_collect_time'], 2)} / "
                           f"{fmt(s['ratio_update_time'], 2)} |")
            md_rows.append(f"| {A} grad updates/s (ms per update) | {fmt(c['grad_updates_per_second'], 0)} "
                           f"({fmt(c['ms_per_grad_update'], 2)}) | {fmt(r['grad_updates_per_second'], 0)} "
                           f"({fmt(r['ms_per_grad_update'], 2)}) | "
                           f"{fmt(ratio(c['grad_updates_per_second'], r['grad_updates_per_second']), 2)} |")
            md_rows.append(f"| {A} final return, median | {fmt(c['final_mean'], 1)} | {fmt(r['final_mean'], 1)} | |")
        for mode, label in (("solve", "time to stable solve"), ("view", "user's view, time to stable solve")):
            s = summ.get(algo, {}).get(mode)
            if not s:
                continue
            c, r = s["critic"], s["sb3"]
            log(f"  {A} {label:<22} {fmt(c['median_stable_seconds'], 1, 8)} vs "
                f"{fmt(r['median_stable_seconds'], 1, 8)} s ratio {fmt(s['ratio_stable_seconds'], 2)} "
                f"(stable solves {c['stable_solved']}/{c['runs']} vs {r['stable_solved']}/{r['runs']})")
            md_rows.append(f"| {A} {label} (median train s; runs stably solved) | {fmt(c['median_stable_seconds'], 1)} "
                           f"({c['stable_solved']}/{c['runs']}) | {fmt(r['median_stable_seconds'], 1)} "
                           f"({r['stable_solved']}/{r['runs']}) | {fmt(s['ratio_stable_seconds'], 2)} |")
    md += md_rows
    log("")
    log("Markdown for benchmarks/RESULTS.md:")
    log("")
    for ln in md:
        log(ln)
    return md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algos", nargs="+", default=["ppo", "a2c"], choices=["ppo", "a2c"])
    ap.add_argument("--steps", type=int, default=100_000, help="env steps per run (parts 1 and 2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pairs", type=int, default=3, help="critic/SB3 pairs per algorithm in part 1")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads on both sides")
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3])
    ap.add_argument("--eval-every", type=int, default=10_000, help="evaluation interval in parts 2 and 3")
    ap.add_argument("--view-steps", type=int, default=None,
                    help="part 3 budget for both sides (default: the critic preset's `steps`, else RL-Zoo "
                         "n_timesteps: PPO 100k, A2C 500k)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 10k steps, first seed, 1 pair, eval every 2.5k")
    ap.add_argument("--out", default=str(OUT_DIR / "bench_onpolicy.json"),
                    help="results JSON path")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        serve_worker(work, args.worker)
        return 0

    if args.quick:
        args.steps, args.seeds, args.pairs, args.eval_every = 10_000, args.seeds[:1], 1, 2_500
        if args.view_steps is None:
            args.view_steps = 10_000
    log = lambda s="": print(s, flush=True)  # noqa: E731
    res: dict[str, Any] = {"date": utc_date(),
                           "machine": machine_info(MODULES), "args": vars(args) | {"worker": None},
                           "hyperparameters": {"ppo": PPO_HP, "a2c": A2C_HP}, "runs": [], "summary": {}}
    log(f"bench_onpolicy: algos {args.algos}, parts {args.parts}, {args.steps:,} steps, seeds {args.seeds}, "
        f"{args.pairs} pair(s), {args.threads} thread(s); load {res['machine']['loadavg_start']}")

    def run_pair(algo, mode, seed, pair, steps, extra=None):
        for lib in LIBS:  # A B: critic then SB3, every pair
            spec = {"lib": lib, "algo": algo, "mode": mode, "seed": seed, "steps": steps,
                    "threads": args.threads, "eval_every": args.eval_every, "pair": pair, **(extra or {})}
            r = launch(spec, log)
            r["pair"] = pair
            res["runs"].append(r)
            if "error" not in r:
                extra_s = (f"{r['steps_per_second']:,.0f} steps/s" if mode == "throughput" else
                           f"stable {r['stable_solved_at']}")
                log(f"  {mode:<10} {algo} {LIB_NAMES[lib]:<6} seed {seed}: train {r['train_seconds']:.1f}s, "
                    f"{extra_s}, final {r['final']['mean']:.0f} (load {loadavg()})")

    for algo in args.algos:
        summ = res["summary"].setdefault(algo, {})
        if 1 in args.parts:
            for i in range(args.pairs):
                run_pair(algo, "throughput", args.seeds[i % len(args.seeds)], i, args.steps)
            summ["throughput"] = summarize_throughput(res["runs"], algo)
        if 2 in args.parts:
            for i, seed in enumerate(args.seeds):
                run_pair(algo, "solve", seed, i, args.steps)
            summ["solve"] = summarize_solve(res["runs"], algo, "solve")
        if 3 in args.parts:
            found = preset(algo, "cartpole", missing_ok=True)
            if found is None:
                summ["view_note"] = (f"skipped: critic/presets/{algo}_cartpole.yaml does not exist yet "
                                     "(critic has no CartPole preset to compare)")
                log(f"  [3] {algo}: {summ['view_note']}")
            else:
                # both sides train for the preset's own budget, so the stable solve is judged over the
                # same horizon (RL-Zoo's A2C schedule is constant, so a shorter run is the same
                # trajectory cut earlier; its PPO budget is 100k, the same as the preset's)
                steps = args.view_steps or preset_steps(found[1]) or ZOO_STEPS[algo]
                summ["view_steps"] = steps
                for i, seed in enumerate(args.seeds):
                    run_pair(algo, "view", seed, i, steps)
                summ["view"] = summarize_solve(res["runs"], algo, "view")
        write_results(args.out, res)  # partial results survive an interrupted run

    res["loadavg_end"] = loadavg()
    res["markdown"] = print_report(res, log)
    write_results(args.out, res)
    log("")
    log(f"results written to {args.out}")
    return 0 if not any("error" in r for r in res["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
