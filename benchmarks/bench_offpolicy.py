#!/usr/bin/env python
"""critic against Stable-Baselines3 for the off-policy algorithms SAC, TD3 and DDPG (method: benchmarks/README.md).

Every run is a fresh Python subprocess (this script with ``--worker``), so imports, thread pools,
``torch.set_flush_denormal`` (critic turns it on by itself on CPU, SB3 does not) and allocator
state never leak from one run into the next. critic and SB3 runs alternate (critic, SB3, critic,
SB3, ...). Every part is repeated for each ``--threads`` count: SB3 runs call
``torch.set_num_threads(n)``, critic runs pass ``torch_threads=n`` (and set it too); each thread
count is reported in its own table rows.

1. ``updates`` -- gradient updates per second on HalfCheetah-v5, identical hyper-parameters (RL-Zoo
   HalfCheetah settings with one update per env step on both sides: SAC 256-256, lr 3e-4, automatic
   entropy; TD3 and DDPG 400-300, lr 1e-3, Gaussian action noise 0.1; batch 256, tau 0.005,
   gamma 0.99, buffer 1M). ``learn(5000)`` of random warm-up actions (no updates), then the clock
   runs over one more ``learn(10000)`` (critic) / ``learn(10000, reset_num_timesteps=False)``
   (SB3) with one update per env step: updates/s = updates done in that call / its seconds.
   Median over ``--pairs`` alternating pairs; ratio critic / SB3 against the targets
   (SAC, TD3 >= 1.3x; DDPG >= 1.8x).
2. ``pendulum`` -- learning on Pendulum-v1 with identical hyper-parameters (benchmarks/README.md's reference table):
   20k env steps, one update per step. Every 1000 env steps training pauses for the *same*
   evaluation function on both sides (10 deterministic episodes on a fresh env seeded with run
   seed + 100003, each library's own ``predict``); evaluation time is excluded from the clock.
   Reports the final return (last evaluation), the first evaluation with mean >= -200 (env steps
   and train seconds), the stable one (every later evaluation stays >= -200), the total train
   seconds, and the time-to-solve ratio critic / SB3. One pair per seed.
3. ``micro`` -- the compute floor, one process per thread count, no SB3: critic's own update
   (``agent.update()`` on an agent whose replay holds 5000 random HalfCheetah steps; it samples
   its own batch) against a plain eager PyTorch update written below as textbook code (separate
   ``nn.Sequential`` critics called one after the other, ``torch.optim.Adam`` with default
   settings, actor loss backpropagated through critics whose weights require grad, Polyak
   averaging in a Python loop over parameters), on batches of 256 drawn from the same replay
   (``agent.collector.sample()``, inside the timed loop, as critic's own sampling is). SAC
   256-256 with entropy tuning, TD3 400-300 with the actor every 2nd step, DDPG 400-300.
   50 warm-up updates each, then 500 timed updates each in alternating blocks of 100; ms per
   update and ours / plain (target <= 0.8). Both run in one process, so critic's
   ``set_flush_denormal(True)`` applies to the plain update too.
4. ``presets`` -- the user's view on Pendulum-v1: critic's own preset
   ``critic/presets/{algo}_pendulum.yaml`` (its hparams and steps; the row is skipped with a note
   while the file does not exist) against SB3 with RL-Zoo's Pendulum settings (SAC: lr 1e-3, SB3
   defaults otherwise; TD3 and DDPG: gamma 0.98, buffer 200k, learning_starts 10k, Gaussian noise
   0.1, train_freq (1, "episode"), gradient_steps -1, lr 1e-3, net_arch [400, 300]; 20k steps).
   Evaluated as in part 2; reports the train seconds and env steps at the first evaluation with
   mean >= -200 and the ratio critic / SB3 (target <= 0.25). Runs stop at their first solve
   (``--stop-at-solve``, on for part 4 by default).

Evaluation points: critic's ``learn`` callback runs after each env step and its updates; SB3's
callback evaluates in ``_on_rollout_start``, i.e. after the gradient steps of the previous
rollout (``_on_step`` would come before them), the same point in training as critic's.

Run (from the repository root, with ``pip install -e '.[bench]'``)::

    python benchmarks/bench_offpolicy.py                          # everything, 1 and 2 threads
    python benchmarks/bench_offpolicy.py --parts 1 3 --threads 1  # throughput and compute floor
    python benchmarks/bench_offpolicy.py --parts 2 --algos sac --seeds 0 1 2
    python benchmarks/bench_offpolicy.py --quick --parts 1 3 --algos sac   # smoke test, ~1 minute

``--quick`` (numbers are not meaningful): part 1 1000 warm-up steps and 300 updates, one pair;
part 2 3k steps (TD3/DDPG learning_starts 1000); part 3 50 timed updates each on 1000 replay
steps; part 4 at most 3k steps and learning_starts at most 1000 on both sides; first seed
only, and 1 thread unless ``--threads`` is given.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from typing import Any

from common import (EVAL_EPISODES, OUT_DIR, CpuMeter, EvalClock, WorkerError, fmt, good, loadavg, machine_info,
                    median, median_unsolved_last, out_path, pairs, preset, preset_steps, ratio, repo_path,
                    run_worker, sb3_eval_callback, serve_worker, solve_points, start_torch, utc_date,
                    versions_text, write_results)

ALGOS = ("sac", "td3", "ddpg")
LIBS = ("critic", "sb3")
LIB_NAMES = {"critic": "critic", "sb3": "SB3", "critic-bf16": "critic (bf16)"}

CHEETAH = "HalfCheetah-v5"
PENDULUM = "Pendulum-v1"
THRESHOLD = -200.0  # Pendulum-v1 "solved"

UPDATES_TARGET = {"sac": 1.3, "td3": 1.3, "ddpg": 1.8}  # critic / SB3 updates/s, at least
MICRO_TARGET = 0.8  # ours / plain ms per update, at most
PRESET_TARGET = 0.25  # time to solve critic / SB3, at most

# ----------------------------------------------------------------------------------------------
# Hyper-parameters, in critic's names; ``sb3_kwargs`` translates them. Identical on both sides.

_ONE_PER_STEP = dict(train_freq=1, gradient_steps=1)
CHEETAH_HP: dict[str, dict[str, Any]] = {  # RL-Zoo HalfCheetah, but one update per env step
    "sac": dict(hidden_sizes=(256, 256), learning_rate=3e-4, batch_size=256, tau=0.005, gamma=0.99,
                buffer_size=1_000_000, ent_coef=None, **_ONE_PER_STEP),
    "td3": dict(hidden_sizes=(400, 300), learning_rate=1e-3, batch_size=256, tau=0.005, gamma=0.99,
                buffer_size=1_000_000, action_noise=0.1, noise_type="gaussian", policy_delay=2,
                target_noise=0.2, target_noise_clip=0.5, **_ONE_PER_STEP),
    "ddpg": dict(hidden_sizes=(400, 300), learning_rate=1e-3, batch_size=256, tau=0.005, gamma=0.99,
                 buffer_size=1_000_000, action_noise=0.1, noise_type="gaussian", **_ONE_PER_STEP),
}
PENDULUM_HP: dict[str, dict[str, Any]] = {  # benchmarks/README.md, "Reference hyper-parameters"
    "sac": dict(hidden_sizes=(256, 256), learning_rate=1e-3, buffer_size=1_000_000, learning_starts=100,
                batch_size=256, tau=0.005, gamma=0.99, ent_coef=None, **_ONE_PER_STEP),
    "td3": dict(hidden_sizes=(400, 300), learning_rate=1e-3, gamma=0.98, buffer_size=200_000,
                learning_starts=10_000, batch_size=256, tau=0.005, action_noise=0.1, noise_type="gaussian",
                policy_delay=2, target_noise=0.2, target_noise_clip=0.5, **_ONE_PER_STEP),
    "ddpg": dict(hidden_sizes=(400, 300), learning_rate=1e-3, gamma=0.98, buffer_size=200_000,
                 learning_starts=10_000, batch_size=256, tau=0.005, action_noise=0.1, noise_type="gaussian",
                 **_ONE_PER_STEP),
}
ZOO_PENDULUM_STEPS = 20_000  # RL-Zoo n_timesteps for SAC / TD3 / DDPG on Pendulum-v1
MODULES = ("critic", "torch", "stable_baselines3", "gymnasium", "mujoco", "numpy")  # versions recorded


# ================================================================================ worker side
# Everything below up to "driver side" runs inside the per-run subprocess.

def critic_agent(algo: str, env_id: str, hp: dict[str, Any], seed: int, threads: int):
    import critic

    cls = {"sac": critic.SAC, "td3": critic.TD3, "ddpg": critic.DDPG}[algo]
    return cls(env_id, **{**hp, "seed": seed, "torch_threads": threads, "device": "cpu"})


def normal_noise(env, sigma: float):
    """SB3's NormalActionNoise: like critic's, added in the policy's [-1, 1] range."""
    import numpy as np
    from stable_baselines3.common.noise import NormalActionNoise

    n = env.action_space.shape[0]
    return NormalActionNoise(mean=np.zeros(n), sigma=sigma * np.ones(n))


def sb3_kwargs(algo: str, hp: dict[str, Any], env) -> dict[str, Any]:
    """critic's hyper-parameter names -> SB3's constructor arguments."""
    kw = dict(learning_rate=hp["learning_rate"], buffer_size=hp["buffer_size"], learning_starts=hp["learning_starts"],
              batch_size=hp["batch_size"], tau=hp["tau"], gamma=hp["gamma"], train_freq=hp["train_freq"],
              gradient_steps=hp["gradient_steps"], policy_kwargs=dict(net_arch=list(hp["hidden_sizes"])))
    if algo == "sac":
        kw["ent_coef"] = "auto"  # initial value 1.0 and target -dim(A), as critic's ent_coef=None
    else:
        kw["action_noise"] = normal_noise(env, hp["action_noise"])
        if algo == "td3":
            kw.update(policy_delay=hp["policy_delay"], target_policy_noise=hp["target_noise"],
                      target_noise_clip=hp["target_noise_clip"])
    return kw


def sb3_model(algo: str, env_id: str, seed: int, hp: dict[str, Any] | None = None,
              learning_starts_cap: int | None = None) -> tuple[Any, dict[str, Any]]:
    """SB3 with ``hp`` (critic's names) or, with ``hp=None``, RL-Zoo's Pendulum-v1 settings."""
    from stable_baselines3 import DDPG, SAC, TD3
    from stable_baselines3.common.env_util import make_vec_env

    cls = {"sac": SAC, "td3": TD3, "ddpg": DDPG}[algo]
    env = make_vec_env(env_id, n_envs=1, seed=seed)  # DummyVecEnv + Monitor
    info: dict[str, Any] = {}
    if hp is not None:
        kw = sb3_kwargs(algo, hp, env)
    elif algo == "sac":  # rl-baselines3-zoo hyperparams/sac.yml, Pendulum-v1
        kw = dict(learning_rate=1e-3)
        info["settings"] = "rl-zoo sac Pendulum-v1: learning_rate 1e-3, SB3 defaults otherwise"
    else:  # rl-baselines3-zoo hyperparams/{td3,ddpg}.yml, Pendulum-v1
        kw = dict(gamma=0.98, buffer_size=200_000, learning_starts=10_000, action_noise=normal_noise(env, 0.1),
                  train_freq=(1, "episode"), gradient_steps=-1, learning_rate=1e-3,
                  policy_kwargs=dict(net_arch=[400, 300]))
        info["settings"] = (f"rl-zoo {algo} Pendulum-v1: gamma 0.98, buffer 200k, learning_starts 10k, "
                            "normal noise 0.1, train_freq (1, episode), gradient_steps -1, lr 1e-3, [400, 300]")
    if learning_starts_cap is not None and kw.get("learning_starts", 100) > learning_starts_cap:
        kw["learning_starts"] = info["learning_starts"] = learning_starts_cap
        if "settings" in info:
            info["settings"] += f" (learning_starts capped to {learning_starts_cap} by --quick)"
    return cls("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **kw), info


def _start(spec: dict[str, Any]):
    """Import the run's library with the thread count set first; returns (torch, import seconds)."""
    return start_torch(spec["threads"], "stable_baselines3" if spec.get("lib") == "sb3" else "critic")


def work_updates(spec: dict[str, Any]) -> dict[str, Any]:
    """Part 1: warm-up learn() untimed, then one timed learn() with one update per env step."""
    torch, import_s = _start(spec)
    lib, algo, seed, threads = spec["lib"], spec["algo"], spec["seed"], spec["threads"]
    warmup, n = spec["warmup"], spec["updates"]
    hp = {**CHEETAH_HP[algo], "learning_starts": warmup}
    t = time.perf_counter()
    if lib in ("critic", "critic-bf16"):
        if lib == "critic-bf16":
            hp["precision"] = "bf16"
        model = critic_agent(algo, CHEETAH, hp, seed, threads)
        updates = lambda: model.updates  # noqa: E731
    else:
        model, _ = sb3_model(algo, CHEETAH, seed, hp)
        updates = lambda: model._n_updates  # noqa: E731
    setup_s = time.perf_counter() - t
    assert torch.get_num_threads() == threads, (torch.get_num_threads(), threads)

    t = time.perf_counter()
    model.learn(warmup, progress_bar=False)  # random actions, no update (env steps <= learning_starts)
    warmup_s = time.perf_counter() - t
    u0 = updates()
    t = time.perf_counter()
    if lib != "sb3":
        model.learn(n, progress_bar=False)
    else:
        model.learn(n, reset_num_timesteps=False, progress_bar=False)
    seconds = time.perf_counter() - t
    done = updates() - u0
    env_steps = model.env_steps if lib != "sb3" else model.num_timesteps
    return {"updates": done, "updates_before": u0, "seconds": round(seconds, 3),
            "updates_per_second": round(done / seconds, 2), "ms_per_update": round(1000 * seconds / max(done, 1), 3),
            "env_steps": int(env_steps), "warmup_seconds": round(warmup_s, 3), "setup_seconds": round(setup_s, 3),
            "import_seconds": round(import_s, 3), "threads_seen": torch.get_num_threads()}


def work_solve(spec: dict[str, Any]) -> dict[str, Any]:
    """Parts 2 and 4: one learn() with evaluations every ``eval_every`` env steps (clock paused)."""
    torch, import_s = _start(spec)
    lib, algo, seed, threads, part = spec["lib"], spec["algo"], spec["seed"], spec["threads"], spec["part"]
    steps, ls_cap = spec["steps"], spec.get("learning_starts_cap")
    info: dict[str, Any] = {}
    t = time.perf_counter()
    if lib == "critic":
        if part == 2:
            hp = dict(PENDULUM_HP[algo])
            if ls_cap is not None:
                hp["learning_starts"] = min(hp["learning_starts"], ls_cap)
        else:
            path, data = preset(algo, "pendulum")
            hp = dict(data.get("hparams") or {})
            info.update(preset=repo_path(path),
                        preset_meta={k: v for k, v in data.items() if k != "hparams"}, preset_hparams=dict(hp))
            if ls_cap is not None and int(hp.get("learning_starts", 100)) > ls_cap:
                hp["learning_starts"] = info["learning_starts"] = ls_cap
        model = critic_agent(algo, PENDULUM, hp, seed, threads)
        act = lambda o: model.predict(o, deterministic=True)[0]  # noqa: E731
        updates = lambda: model.updates  # noqa: E731
    else:
        hp = dict(PENDULUM_HP[algo]) if part == 2 else None
        if hp is not None and ls_cap is not None:
            hp["learning_starts"] = min(hp["learning_starts"], ls_cap)
        model, info = sb3_model(algo, PENDULUM, seed, hp, ls_cap if part == 4 else None)
        act = lambda o: model.predict(o, deterministic=True)[0]  # noqa: E731
        updates = lambda: model._n_updates  # noqa: E731
    setup_s = time.perf_counter() - t
    assert torch.get_num_threads() == threads, (torch.get_num_threads(), threads)

    clock = EvalClock(act, PENDULUM, seed, spec["eval_every"], steps, threshold=THRESHOLD,
                      stop_at_solve=spec["stop_at_solve"], digits=2)
    if lib == "critic":
        callback = lambda agent, _info: clock.at(agent.env_steps)  # noqa: E731
    else:
        callback = sb3_eval_callback(clock)
    clock.start()
    model.learn(steps, callback=callback, progress_bar=False)
    learn_s = time.perf_counter() - clock.t0
    train_s = learn_s - clock.eval_seconds
    env_steps = model.env_steps if lib == "critic" else model.num_timesteps
    evals = list(clock.evals)
    if not clock.stopped:  # the final evaluation, after learn() (its return is the "final" one)
        evals.append(clock.row(env_steps, train_s, clock.evaluate()))
    first, stable = solve_points(evals, THRESHOLD)
    n_upd = updates()
    return {"steps_requested": steps, "env_steps": int(env_steps), "updates": int(n_upd),
            "train_seconds": round(train_s, 3), "eval_seconds": round(clock.eval_seconds, 3),
            "updates_per_second": round(n_upd / train_s, 2) if train_s > 0 else None,
            "stopped_at_solve": clock.stopped, "final": evals[-1] if evals else None, "evals": evals,
            "solved_at": first, "stable_solved_at": None if clock.stopped else stable,
            "setup_seconds": round(setup_s, 3), "import_seconds": round(import_s, 3),
            "threads_seen": torch.get_num_threads(), **info}


# ---------------------------------------------------------------- part 3: the plain PyTorch floor

def plain_mlp(n_in: int, hidden: tuple[int, ...], n_out: int, out_act=None):
    from torch import nn

    layers, d = [], n_in
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, n_out))
    if out_act is not None:
        layers.append(out_act)
    return nn.Sequential(*layers)


def polyak(net, target, tau: float) -> None:
    import torch

    with torch.no_grad():
        for p, tp in zip(net.parameters(), target.parameters()):
            tp.mul_(1.0 - tau).add_(p, alpha=tau)


class PlainSAC:
    """Textbook eager SAC update: twin nn.Sequential critics, tanh-Gaussian actor, alpha tuning."""

    def __init__(self, obs_dim: int, act_dim: int, hidden=(256, 256), lr=3e-4, tau=0.005):
        import torch

        self.tau, self.target_entropy = tau, -float(act_dim)
        self.actor = plain_mlp(obs_dim, hidden, 2 * act_dim)
        self.q1 = plain_mlp(obs_dim + act_dim, hidden, 1)
        self.q2 = plain_mlp(obs_dim + act_dim, hidden, 1)
        self.q1_target, self.q2_target = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.log_alpha = torch.zeros(1, requires_grad=True)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=lr)

    def sample(self, obs):
        import torch
        from torch.distributions import Normal

        mean, log_std = self.actor(obs).chunk(2, -1)
        normal = Normal(mean, log_std.clamp(-20, 2).exp())
        u = normal.rsample()
        a = torch.tanh(u)
        logp = normal.log_prob(u).sum(-1) - torch.log(1 - a.pow(2) + 1e-6).sum(-1)
        return a, logp

    def update(self, b: dict[str, Any]) -> None:
        import torch
        import torch.nn.functional as F

        obs, act, rew, next_obs, disc = b["obs"], b["actions"], b["rewards"], b["next_obs"], b["discount"]
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            a2, logp2 = self.sample(next_obs)
            x2 = torch.cat([next_obs, a2], -1)
            q_next = torch.min(self.q1_target(x2), self.q2_target(x2)).squeeze(-1) - alpha * logp2
            y = rew + disc * q_next
        x = torch.cat([obs, act], -1)
        q_loss = 0.5 * (F.mse_loss(self.q1(x).squeeze(-1), y) + F.mse_loss(self.q2(x).squeeze(-1), y))
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()

        a, logp = self.sample(obs)
        xa = torch.cat([obs, a], -1)
        actor_loss = (alpha * logp - torch.min(self.q1(xa), self.q2(xa)).squeeze(-1)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()  # also fills the critics' gradients, discarded below
        self.actor_opt.step()
        self.q_opt.zero_grad()

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad()
        alpha_loss.backward()
        self.alpha_opt.step()

        polyak(self.q1, self.q1_target, self.tau)
        polyak(self.q2, self.q2_target, self.tau)


class PlainDeterministic:
    """Textbook eager TD3 (twin critics, target smoothing, actor every ``policy_delay`` steps
    through Q1) or DDPG (``twin=False, policy_delay=1, target_noise=0``)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden=(400, 300), lr=1e-3, tau=0.005, twin=True,
                 policy_delay=2, target_noise=0.2, noise_clip=0.5):
        import torch
        from torch import nn

        self.tau, self.delay, self.noise, self.clip, self.step = tau, policy_delay, target_noise, noise_clip, 0
        self.actor = plain_mlp(obs_dim, hidden, act_dim, nn.Tanh())
        self.actor_target = copy.deepcopy(self.actor)
        self.qs = [plain_mlp(obs_dim + act_dim, hidden, 1) for _ in range(2 if twin else 1)]
        self.q_targets = [copy.deepcopy(q) for q in self.qs]
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.q_opt = torch.optim.Adam([p for q in self.qs for p in q.parameters()], lr=lr)

    def update(self, b: dict[str, Any]) -> None:
        import torch
        import torch.nn.functional as F

        obs, act, rew, next_obs, disc = b["obs"], b["actions"], b["rewards"], b["next_obs"], b["discount"]
        self.step += 1
        with torch.no_grad():
            a2 = self.actor_target(next_obs)
            if self.noise > 0:
                a2 = (a2 + (torch.randn_like(a2) * self.noise).clamp(-self.clip, self.clip)).clamp(-1, 1)
            x2 = torch.cat([next_obs, a2], -1)
            q_next = self.q_targets[0](x2)
            for qt in self.q_targets[1:]:
                q_next = torch.min(q_next, qt(x2))
            y = rew + disc * q_next.squeeze(-1)
        x = torch.cat([obs, act], -1)
        q_loss = sum(F.mse_loss(q(x).squeeze(-1), y) for q in self.qs)
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()
        if self.step % self.delay == 0:
            actor_loss = -self.qs[0](torch.cat([obs, self.actor(obs)], -1)).mean()
            self.actor_opt.zero_grad()
            actor_loss.backward()  # also fills Q1's gradients, discarded below
            self.actor_opt.step()
            self.q_opt.zero_grad()
            for q, qt in zip(self.qs, self.q_targets):
                polyak(q, qt, self.tau)
            polyak(self.actor, self.actor_target, self.tau)


def work_micro(spec: dict[str, Any]) -> dict[str, Any]:
    """Part 3, one process per thread count: critic's ``update`` against the plain update."""
    torch, import_s = _start({**spec, "lib": "critic"})
    threads, fill, bs = spec["threads"], spec["fill"], 256
    warm, n, block = spec["warmup"], spec["updates"], spec["block"]
    out: dict[str, Any] = {"import_seconds": round(import_s, 3), "algos": {}}
    for algo in spec["algos"]:
        hp = {**CHEETAH_HP[algo], "learning_starts": fill, "batch_size": bs}
        agent = critic_agent(algo, CHEETAH, hp, spec["seed"], threads)
        agent.learn(fill, progress_bar=False)  # random steps into replay; no update while env_steps <= fill
        assert agent.updates == 0, agent.updates
        obs_dim, act_dim = agent.obs_space.shape[0], agent.act_space.shape[0]
        if algo == "sac":
            plain = PlainSAC(obs_dim, act_dim, hp["hidden_sizes"], hp["learning_rate"], hp["tau"])
        else:
            td3 = algo == "td3"
            plain = PlainDeterministic(obs_dim, act_dim, hp["hidden_sizes"], hp["learning_rate"], hp["tau"],
                                       twin=td3, policy_delay=hp.get("policy_delay", 1),
                                       target_noise=hp.get("target_noise", 0.0),
                                       noise_clip=hp.get("target_noise_clip", 0.0))
        assert torch.get_num_threads() == threads, (torch.get_num_threads(), threads)

        def ours(k: int) -> float:
            t = time.perf_counter()
            for _ in range(k):
                agent.update()  # samples its own batch from replay; counts the update (TD3's delay reads it)
            return time.perf_counter() - t

        def floor(k: int) -> float:
            t = time.perf_counter()
            for _ in range(k):
                plain.update(agent.collector.sample())  # a batch of bs from the same replay
            return time.perf_counter() - t

        ours(warm)
        floor(warm)
        blocks: list[tuple[int, float, float]] = []  # (updates, seconds ours, seconds plain)
        done = 0
        while done < n:  # alternate: a block of ours, then a block of plain
            k = min(block, n - done)
            blocks.append((k, ours(k), floor(k)))
            done += k
        tot_ours, tot_plain = sum(b[1] for b in blocks), sum(b[2] for b in blocks)
        out["algos"][algo] = {
            "ms_ours": round(1000 * tot_ours / n, 3), "ms_plain": round(1000 * tot_plain / n, 3),
            "ratio": round(tot_ours / tot_plain, 3),
            "block_ms": [[round(1000 * a / k, 3), round(1000 * b / k, 3)] for k, a, b in blocks],
            "block_ratios": [round(a / b, 3) for _, a, b in blocks],
            "hidden_sizes": list(hp["hidden_sizes"]), "batch_size": bs, "replay_steps": fill,
            "obs_dim": obs_dim, "act_dim": act_dim, "updates_timed": n, "block": block,
            "threads_seen": torch.get_num_threads()}
        agent.close()
    return out


def work(spec: dict[str, Any]) -> dict[str, Any]:
    import resource

    part = spec["part"]
    res = {1: work_updates, 2: work_solve, 3: work_micro, 4: work_solve}[part](spec)
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {**{k: v for k, v in spec.items() if k != "algos" or part == 3}, **res}


# ================================================================================ driver side

def launch(spec: dict[str, Any], log) -> dict[str, Any]:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    meter = CpuMeter()
    try:
        # cwd: the (git-ignored) output folder, where MuJoCo writes its MUJOCO_LOG.TXT
        with meter:
            res = run_worker(__file__, spec, threads=spec["threads"], hash_seed=spec.get("seed", 0), cwd=OUT_DIR)
    except WorkerError as e:
        who = f"{spec.get('lib', '')} {spec.get('algo', spec.get('algos'))} part {spec['part']}"
        log(f"  !! {who} threads {spec['threads']} seed {spec.get('seed')} failed (rc {e.returncode})")
        log("     " + "\n     ".join(e.tail(15)))
        return {**spec, "error": e.output[-4000:], "other_cpu_cores": meter.other_cores}
    res.update(process_seconds=round(meter.seconds, 2), other_cpu_cores=meter.other_cores)
    return res


CONTENDED = 0.25  # a run during which other processes used this many cores on average is flagged


def contention_note(runs, part: int) -> list[str]:
    bad = [r for r in runs if r["part"] == part and (r.get("other_cpu_cores") or 0) >= CONTENDED]
    if not bad:
        return []
    who = ", ".join(f"{r.get('algo') or '+'.join(r.get('algos', []))} {LIB_NAMES.get(r.get('lib'), '(ours and plain)')} "
                    f"{r['threads']} thr ({r['other_cpu_cores']:.2f})" for r in bad)
    return ["", f"**Warning:** other processes used ≥ {CONTENDED} core on average during: {who}; "
            "those timings are not trustworthy (this machine has " f"{os.cpu_count()} cores)."]


def met(value, target, at_least: bool) -> str:
    if value is None:
        return "—"
    return "yes" if (value >= target if at_least else value <= target) else "**no**"


# ---------------------------------------------------------------- report (Markdown)

def report_updates(res, md: list[str], targets: list[str]) -> None:
    a = res["args"]
    md += ["", f"#### [1] Gradient updates/s, {CHEETAH}, identical hyper-parameters",
           "",
           f"{a['warmup']:,} warm-up env steps (random actions, untimed), then {a['updates']:,} env steps with one "
           "update each, timed; median over the pairs; ratio = median of the per-pair ratios.",
           "",
           "| algo | threads | critic updates/s | SB3 updates/s | critic / SB3 | per-pair ratios | target |",
           "|---|---|---|---|---|---|---|"]
    for algo in a["algos"]:
        for th in a["threads"]:
            ps = [(c, s) for c, s in pairs(res["runs"], part=1, algo=algo, threads=th) if good(c, s)]
            if not ps:
                continue
            cu, su = median([c["updates_per_second"] for c, _ in ps]), median([s["updates_per_second"] for _, s in ps])
            rs = [c["updates_per_second"] / s["updates_per_second"] for c, s in ps]
            r = median(rs)
            tgt = UPDATES_TARGET[algo]
            md.append(f"| {algo.upper()} | {th} | {fmt(cu, 1)} | {fmt(su, 1)} | **{fmt(r, 2)}×** | "
                      f"{', '.join(fmt(x, 2) for x in rs)} | ≥ {tgt}× ({met(r, tgt, True)}) |")
            bf = [(b, s) for b, s in pairs(res["runs"], "critic-bf16", part=1, algo=algo, threads=th) if good(b, s)]
            if bf:
                bu = median([b["updates_per_second"] for b, _ in bf])
                brs = [b["updates_per_second"] / s["updates_per_second"] for b, s in bf]
                md.append(f"| {algo.upper()}, critic `precision='bf16'` | {th} | {fmt(bu, 1)} | {fmt(su, 1)} | "
                          f"{fmt(median(brs), 2)}× | {', '.join(fmt(x, 2) for x in brs)} | (not a float32 result) |")
            targets.append(f"| [1] {algo.upper()} updates/s, {th} thread(s) | critic / SB3 | {fmt(r, 2)} | "
                           f"≥ {tgt} | {met(r, tgt, True)} |")


def _solve_cell(r) -> tuple[str, str, str, str]:
    """(solved at steps, seconds to solve, total train seconds, final return) for one run."""
    p = r.get("solved_at")
    steps = "—" if p is None else f"{p['env_steps']:,}"
    secs = "—" if p is None else fmt(p["train_seconds"], 1)
    final = r["final"]["mean"] if r.get("final") else None
    total = fmt(r["train_seconds"], 1) + (" (stopped)" if r.get("stopped_at_solve") else "")
    return steps, secs, total, fmt(final, 0)


def report_solve(res, part: int, md: list[str], targets: list[str]) -> None:
    a = res["args"]
    if part == 2:
        md += ["", f"#### [2] Learning on {PENDULUM}, identical hyper-parameters, {a['pendulum_steps']:,} env steps",
               "", f"Evaluation every {a['eval_every']:,} env steps ({EVAL_EPISODES} deterministic episodes, "
               "clock paused); solved = first evaluation with mean ≥ -200, stable = every later one too; "
               "seconds are train seconds." + (" Runs stop at their first solve." if 2 in a["stop_at_solve"] else ""),
               ""]
    else:
        md += ["", f"#### [4] User's view on {PENDULUM}: critic's preset vs SB3's RL-Zoo settings", "",
               f"Evaluation every {a['eval_every']:,} env steps as in [2]; solved = first evaluation with "
               "mean ≥ -200; seconds are train seconds."
               + (" Runs stop at their first solve." if 4 in a["stop_at_solve"] else ""), ""]
        notes = [f"- {algo.upper()}: {res['notes'][f'presets/{algo}']}" for algo in a["algos"]
                 if f"presets/{algo}" in res["notes"]]
        md += notes + ([""] if notes else [])
    md += ["| algo | threads | seed | critic solved at | s to solve | train s | final | "
           "SB3 solved at | s to solve | train s | final | time to solve critic / SB3 |"
           + (" stable at critic / SB3 |" if part == 2 else " target |"),
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for algo in a["algos"]:
        for th in a["threads"]:
            ps = pairs(res["runs"], part=part, algo=algo, threads=th)
            if not ps:
                continue
            for c, s in ps:
                if not good(c, s):
                    md.append(f"| {algo.upper()} | {th} | {(c or s or {}).get('seed')} | (failed) |" + " |" * 9)
                    continue
                r = ratio(*(x["solved_at"]["train_seconds"] if x.get("solved_at") else None for x in (c, s)))
                last = (f" {_stable(c)} / {_stable(s)} |" if part == 2 else
                        f" ≤ {PRESET_TARGET} ({met(r, PRESET_TARGET, False)}) |")
                md.append(f"| {algo.upper()} | {th} | {c['seed']} | " + " | ".join(_solve_cell(c)) + " | "
                          + " | ".join(_solve_cell(s)) + f" | {fmt(r, 2)} |" + last)
            ok = [(c, s) for c, s in ps if good(c, s)]
            if not ok:
                continue
            t_c = median_unsolved_last([c["solved_at"]["train_seconds"] if c["solved_at"] else None for c, _ in ok])
            t_s = median_unsolved_last([s["solved_at"]["train_seconds"] if s["solved_at"] else None for _, s in ok])
            r = ratio(t_c, t_s)
            n_c, n_s = sum(c["solved_at"] is not None for c, _ in ok), sum(s["solved_at"] is not None for _, s in ok)
            if len(ok) > 1:
                md.append(f"| {algo.upper()} | {th} | median | ({n_c}/{len(ok)} solved) | {fmt(t_c, 1)} | "
                          f"{fmt(median([c['train_seconds'] for c, _ in ok]), 1)} | "
                          f"{fmt(median([c['final']['mean'] for c, _ in ok if c.get('final')]), 0)} | "
                          f"({n_s}/{len(ok)} solved) | {fmt(t_s, 1)} | "
                          f"{fmt(median([s['train_seconds'] for _, s in ok]), 1)} | "
                          f"{fmt(median([s['final']['mean'] for _, s in ok if s.get('final')]), 0)} | "
                          f"**{fmt(r, 2)}** | |")
            label = "pendulum time to solve" if part == 2 else "preset time to solve"
            if part == 4:
                targets.append(f"| [4] {algo.upper()} {label}, {th} thread(s) | critic / SB3 | {fmt(r, 2)} | "
                               f"≤ {PRESET_TARGET} | {met(r, PRESET_TARGET, False)} |")
            else:
                targets.append(f"| [2] {algo.upper()} {label}, {th} thread(s) | critic / SB3 | {fmt(r, 2)} | "
                               "(none) | |")
    if part == 4:
        used = [f"`{r['preset']}` ({r['steps_requested']:,} steps"
                + (f", learning_starts capped to {r['learning_starts']} by --quick" if "learning_starts" in r else "")
                + ")" for r in res["runs"]
                if r["part"] == 4 and r.get("lib") == "critic" and r.get("preset") and r.get("pair") == 0
                and r["threads"] == a["threads"][0]]
        sb3 = sorted({r["settings"] for r in res["runs"] if r["part"] == 4 and r.get("settings")})
        md += ["", "critic presets: " + (", ".join(used) or "none") + ". SB3: " + ("; ".join(sb3) or "—") + "."]


def _stable(r) -> str:
    p = r.get("stable_solved_at")
    return "—" if p is None else f"{p['env_steps']:,}"


def report_micro(res, md: list[str], targets: list[str]) -> None:
    a = res["args"]
    md += ["", f"#### [3] Compute floor: one update, ours against plain eager PyTorch ({CHEETAH} shapes, batch 256)",
           "", f"{a['micro_updates']} timed updates each after 50 warm-up, in alternating blocks of "
           f"{min(100, a['micro_updates'])}; one process per thread count; ms per update.", "",
           "| algo | net | threads | ours ms | plain ms | ours / plain | per-block ratios | target |",
           "|---|---|---|---|---|---|---|---|"]
    for th in a["threads"]:
        runs = [r for r in res["runs"] if r["part"] == 3 and r["threads"] == th]
        for r in runs:
            if "error" in r:
                md.append(f"| {', '.join(r.get('algos', []))} | | {th} | (failed) | | | | |")
                continue
            for algo, m in r["algos"].items():
                net = "-".join(str(h) for h in m["hidden_sizes"])
                md.append(f"| {algo.upper()} | {net} | {th} | {fmt(m['ms_ours'], 2)} | {fmt(m['ms_plain'], 2)} | "
                          f"**{fmt(m['ratio'], 2)}** | {', '.join(fmt(x, 2) for x in m['block_ratios'])} | "
                          f"≤ {MICRO_TARGET} ({met(m['ratio'], MICRO_TARGET, False)}) |")
                targets.append(f"| [3] {algo.upper()} update time, {th} thread(s) | ours / plain | "
                               f"{fmt(m['ratio'], 2)} | ≤ {MICRO_TARGET} | {met(m['ratio'], MICRO_TARGET, False)} |")


def print_report(res: dict[str, Any], log) -> list[str]:
    a, m = res["args"], res["machine"]
    md = [f"### Off-policy: critic vs Stable-Baselines3 — {res['date']}", "",
          f"{m['cpu']}, {m['cores']} cores, threads {a['threads']}, load average {m['loadavg_start']} -> "
          f"{res.get('loadavg_end')}; " + versions_text(m)
          + ("; **--quick (numbers not meaningful)**" if a["quick"] else "")]
    targets = ["| case | measure | value | target | met |", "|---|---|---|---|---|"]
    for part in sorted(a["parts"]):
        if part == 1:
            report_updates(res, md, targets)
        elif part == 3:
            report_micro(res, md, targets)
        else:
            report_solve(res, part, md, targets)
        md += contention_note(res["runs"], part)
    md += ["", "#### Ratios against targets", ""] + targets
    log("")
    for ln in md:
        log(ln)
    return md


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4],
                    help="1 updates (HalfCheetah updates/s), 2 pendulum (learning, identical hparams), "
                         "3 micro (update vs plain PyTorch), 4 presets (user's view)")
    ap.add_argument("--algos", nargs="+", default=list(ALGOS), choices=list(ALGOS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="part 1: pair i uses seeds[i %% len]; parts 2 and 4: one pair per seed")
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="torch thread counts, each its own rows (default 1 2; 1 with --quick)")
    ap.add_argument("--bf16", action="store_true",
                    help="part 1: also run critic with precision='bf16' in every pair (reported beside, "
                         "not against the float32 targets)")
    ap.add_argument("--pairs", type=int, default=2, help="critic/SB3 pairs per algorithm and thread count, part 1")
    ap.add_argument("--warmup", type=int, default=5000, help="part 1 warm-up env steps (learning_starts)")
    ap.add_argument("--updates", type=int, default=10_000, help="part 1 timed updates (env steps after warm-up)")
    ap.add_argument("--pendulum-steps", type=int, default=20_000, help="part 2 env steps per run")
    ap.add_argument("--eval-every", type=int, default=1000, help="parts 2 and 4 evaluation interval (env steps)")
    ap.add_argument("--micro-updates", type=int, default=500, help="part 3 timed updates per side")
    ap.add_argument("--stop-at-solve", type=int, nargs="*", default=[4], choices=[2, 4], metavar="PART",
                    help="parts whose runs stop at their first solve (default: 4); give the flag with no "
                         "part to run every run to its full budget")
    ap.add_argument("--quick", action="store_true", help="smoke test (see the end of the docstring)")
    ap.add_argument("--out", default=None, help="results JSON (default benchmarks/out/offpolicy-<timestamp>.json)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        serve_worker(work, args.worker)
        return 0

    ls_cap = None  # parts 2 and 4: cap on learning_starts (--quick only)
    micro_fill, quick_view_steps = 5000, None
    if args.quick:
        args.warmup, args.updates, args.pairs, args.seeds = 1000, 300, 1, args.seeds[:1]
        args.pendulum_steps, args.micro_updates, micro_fill, ls_cap, quick_view_steps = 3000, 50, 1000, 1000, 3000
    if args.threads is None:
        args.threads = [1] if args.quick else [1, 2]
    out = out_path(args.out, "offpolicy")
    log = lambda s="": print(s, flush=True)  # noqa: E731
    res: dict[str, Any] = {"date": utc_date(),
                           "machine": machine_info(MODULES), "args": vars(args) | {"worker": None},
                           "hyperparameters": {"halfcheetah": CHEETAH_HP, "pendulum": PENDULUM_HP},
                           "runs": [], "notes": {}}
    m = res["machine"]
    log(f"bench_offpolicy {res['date']}: parts {args.parts}, algos {args.algos}, threads {args.threads}, "
        f"seeds {args.seeds}{', QUICK' if args.quick else ''}")
    log(f"CPU {m['cpu']} ({m['cores']} cores), load {m['loadavg_start']}; "
        + versions_text(m))

    def run_pair(part: int, algo: str, threads: int, seed: int, pair: int, extra: dict[str, Any]) -> None:
        libs = LIBS + (("critic-bf16",) if part == 1 and args.bf16 else ())
        for lib in libs:  # critic then SB3 (then critic in bf16), every pair
            lib_extra = dict(extra)
            if "steps_by_lib" in lib_extra:  # part 4: each side its own budget
                lib_extra["steps"] = lib_extra.pop("steps_by_lib")[lib]
            run_one(res, part, lib, algo, threads, seed, pair, lib_extra, log)

    for part in sorted(args.parts):
        if part == 3:
            for th in args.threads:
                spec = {"part": 3, "threads": th, "seed": args.seeds[0], "algos": list(args.algos), "fill": micro_fill,
                        "warmup": 50, "updates": args.micro_updates, "block": 100}
                r = launch(spec, log)
                res["runs"].append(r)
                for algo, mm in r.get("algos", {}).items():
                    log(f"  [3] {algo} threads {th}: ours {mm['ms_ours']:.2f} ms, plain {mm['ms_plain']:.2f} ms, "
                        f"ratio {mm['ratio']:.2f} (other processes {fmt(r['other_cpu_cores'], 2)} cores)")
            write_results(out, res)
            continue
        for algo in args.algos:
            extra: dict[str, Any] = {}
            if part == 1:
                extra = {"warmup": args.warmup, "updates": args.updates}
            elif part == 2:
                extra = {"steps": args.pendulum_steps, "eval_every": args.eval_every,
                         "stop_at_solve": 2 in args.stop_at_solve, "learning_starts_cap": ls_cap}
            else:
                found = preset(algo, "pendulum", missing_ok=True)
                if found is None:
                    note = f"skipped: `critic/presets/{algo}_pendulum.yaml` does not exist yet"
                    res["notes"][f"presets/{algo}"] = note
                    log(f"  [4] {algo}: {note}")
                    continue
                # budgets: critic's preset `steps`, SB3's RL-Zoo n_timesteps
                budgets = {"critic": preset_steps(found[1]) or ZOO_PENDULUM_STEPS, "sb3": ZOO_PENDULUM_STEPS}
                if quick_view_steps:
                    budgets = {lib: min(n, quick_view_steps) for lib, n in budgets.items()}
                extra = {"steps_by_lib": budgets, "eval_every": args.eval_every,
                         "stop_at_solve": 4 in args.stop_at_solve, "learning_starts_cap": ls_cap}
            for th in args.threads:
                if part == 1:
                    for i in range(args.pairs):
                        run_pair(1, algo, th, args.seeds[i % len(args.seeds)], i, extra)
                else:  # parts 2 and 4: one pair per seed
                    for i, seed in enumerate(args.seeds):
                        run_pair(part, algo, th, seed, i, extra)
            write_results(out, res)  # partial results survive an interrupted run

    res["loadavg_end"] = loadavg()
    res["markdown"] = print_report(res, log)
    write_results(out, res)
    log("")
    log(f"results written to {out}")
    return 0 if not any("error" in r for r in res["runs"]) else 1


def run_one(res, part, lib, algo, threads, seed, pair, extra, log) -> None:
    spec = {"part": part, "lib": lib, "algo": algo, "threads": threads, "seed": seed, "pair": pair, **extra}
    r = launch(spec, log)
    res["runs"].append(r)
    if "error" in r:
        return
    if part == 1:
        what = f"{r['updates_per_second']:,.1f} updates/s ({r['updates']:,} in {r['seconds']:.1f} s)"
    else:
        p = r["solved_at"]
        solved = "no" if p is None else f"at {p['env_steps']:,} ({p['train_seconds']:.1f} s)"
        what = (f"{r['env_steps']:,} steps, {r['updates']:,} updates, train {r['train_seconds']:.1f} s, "
                f"solved {solved}, final {r['final']['mean']:.0f}")
    log(f"  [{part}] {algo} {LIB_NAMES[lib]:<6} threads {threads} seed {seed}: {what} "
        f"(other processes {fmt(r['other_cpu_cores'], 2)} cores)")


if __name__ == "__main__":
    sys.exit(main())
