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
   (``agent._update()`` on an agent whose replay holds 5000 random HalfCheetah steps; it samples
   its own batch) against a plain eager PyTorch update written below as textbook code (separate
   ``nn.Sequential`` critics called one after the other, ``torch.optim.Adam`` with default
   settings, actor loss backpropagated through critics whose weights require grad, Polyak
   averaging in a Python loop over parameters), on batches of 256 drawn from the same replay
   (``agent.replay.sample(256)``, inside the timed loop, as critic's own sampling is). SAC
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
OUT_DIR = REPO / "benchmarks" / "out"
ALGOS = ("sac", "td3", "ddpg")
LIBS = ("critic", "sb3")
LIB_NAMES = {"critic": "critic", "sb3": "SB3", "critic-bf16": "critic (bf16)"}
PART_NAMES = {1: "updates", 2: "pendulum", 3: "micro", 4: "presets"}

CHEETAH = "HalfCheetah-v5"
PENDULUM = "Pendulum-v1"
THRESHOLD = -200.0  # Pendulum-v1 "solved"
EVAL_EPISODES = 10
EVAL_SEED_OFFSET = 100_003  # evaluation env seed = run seed + this (same for both libraries)

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


# ================================================================================ worker side
# Everything below up to "driver side" runs inside the per-run subprocess.

def evaluate_policy(act, env_id: str, seed: int, n_episodes: int = EVAL_EPISODES) -> dict[str, Any]:
    """The one evaluation used for both libraries: deterministic episodes on a fresh env."""
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
    """Evaluations every ``every`` env steps during one learn() call, excluded from the clock.
    ``at(env_steps)`` returns False once training should stop (solved with ``stop_at_solve``)."""

    def __init__(self, act, env_id: str, seed: int, every: int, total: int, stop_at_solve: bool):
        self.act, self.env_id, self.seed, self.every, self.total = act, env_id, seed, every, total
        self.stop_at_solve = stop_at_solve
        self.next_eval = every
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
        # The final evaluation is done after learn() returns (same for both libraries).
        if env_steps >= self.next_eval and env_steps < self.total:
            self.eval_now(env_steps)
            while self.next_eval <= env_steps:
                self.next_eval += self.every
            self.stopped = self.stop_at_solve and self.evals[-1]["mean"] >= THRESHOLD
        return not self.stopped

    def eval_now(self, env_steps: int) -> None:
        train_s = self.train_seconds()
        t = time.perf_counter()
        res = evaluate_policy(self.act, self.env_id, self.seed + EVAL_SEED_OFFSET)
        self.eval_seconds += time.perf_counter() - t
        self.evals.append({"env_steps": int(env_steps), "train_seconds": round(train_s, 3),
                           "mean": round(res["mean"], 2), "std": round(res["std"], 2)})


def solved_points(evals: list[dict[str, Any]]):
    """First evaluation >= THRESHOLD, and the stable one (every later evaluation stays >= it)."""
    first = next((e for e in evals if e["mean"] >= THRESHOLD), None)
    stable = None
    for e in reversed(evals):
        if e["mean"] < THRESHOLD:
            break
        stable = e
    pick = (lambda e: None if e is None else {"env_steps": e["env_steps"], "train_seconds": e["train_seconds"]})
    return pick(first), pick(stable)


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


def preset_path(algo: str) -> Path:
    return REPO / "critic" / "presets" / f"{algo}_pendulum.yaml"


def read_preset(algo: str) -> dict[str, Any]:
    """critic's Pendulum preset as ``critic train --preset`` reads it (keys validated)."""
    try:
        from critic.cli import read_preset as read
    except ImportError:  # pragma: no cover
        import yaml
        return yaml.safe_load(preset_path(algo).read_text()) or {}
    return read(preset_path(algo))


def _start(spec: dict[str, Any]):
    """Import the run's library with the thread count set first; returns (torch, import seconds)."""
    t = time.perf_counter()
    import torch
    torch.set_num_threads(spec["threads"])
    if spec.get("lib") == "sb3":
        import stable_baselines3  # noqa: F401
    else:
        import critic  # noqa: F401
    return torch, time.perf_counter() - t


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
            data = read_preset(algo)
            hp = dict(data.get("hparams") or {})
            info.update(preset=str(preset_path(algo).relative_to(REPO)),
                        preset_meta={k: v for k, v in data.items() if k != "hparams"}, preset_hparams=dict(hp))
            if ls_cap is not None and int(hp.get("learning_starts", 100)) > ls_cap:
                hp["learning_starts"] = info["learning_starts"] = ls_cap
        model = critic_agent(algo, PENDULUM, hp, seed, threads)
        act = lambda o: model.predict(o, deterministic=True)  # noqa: E731
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

    clock = EvalClock(act, PENDULUM, seed, spec["eval_every"], steps, spec["stop_at_solve"])
    if lib == "critic":
        callback = lambda agent, _info: clock.at(agent.env_steps)  # noqa: E731
    else:
        from stable_baselines3.common.callbacks import BaseCallback

        class EvalCallback(BaseCallback):
            # Rollout start = just after the previous rollout's gradient steps: the same point in
            # training as critic's callback (``_on_step`` runs before that step's updates).
            def _on_rollout_start(self) -> None:
                clock.at(self.model.num_timesteps)

            def _on_step(self) -> bool:
                return not clock.stopped

        callback = EvalCallback()
    clock.start()
    model.learn(steps, callback=callback, progress_bar=False)
    learn_s = time.perf_counter() - clock.t0
    train_s = learn_s - clock.eval_seconds
    env_steps = model.env_steps if lib == "critic" else model.num_timesteps
    evals = list(clock.evals)
    if not clock.stopped:  # the final evaluation, after learn() (its return is the "final" one)
        res = evaluate_policy(act, PENDULUM, seed + EVAL_SEED_OFFSET)
        evals.append({"env_steps": int(env_steps), "train_seconds": round(train_s, 3),
                      "mean": round(res["mean"], 2), "std": round(res["std"], 2)})
    first, stable = solved_points(evals)
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
    """Part 3, one process per thread count: critic's ``_update`` against the plain update."""
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
                agent._update()  # samples its own batch from replay
                agent.updates += 1  # as learn() does (TD3's policy delay reads it)
            return time.perf_counter() - t

        def floor(k: int) -> float:
            t = time.perf_counter()
            for _ in range(k):
                plain.update(agent.replay.sample(bs))
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


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import resource

    part = spec["part"]
    res = {1: work_updates, 2: work_solve, 3: work_micro, 4: work_solve}[part](spec)
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {**{k: v for k, v in spec.items() if k != "algos" or part == 3}, **res}


# ================================================================================ driver side

def launch(spec: dict[str, Any], log) -> dict[str, Any]:
    env = dict(os.environ)
    t = str(spec["threads"])
    env.update(OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, PYTHONHASHSEED=str(spec.get("seed", 0)))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    busy0, child0 = cpu_busy_seconds(), children_cpu_seconds()
    t0 = time.perf_counter()
    # cwd: the (git-ignored) output folder, where MuJoCo writes its MUJOCO_LOG.TXT
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(OUT_DIR))
    wall = time.perf_counter() - t0
    # CPU time the rest of the machine used meanwhile (all busy time minus this run's), in cores
    other = None if busy0 is None else round(max(0.0, (cpu_busy_seconds() - busy0)
                                                    - (children_cpu_seconds() - child0)) / wall, 2)
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT_JSON:")), None)
    if proc.returncode != 0 or line is None:
        who = f"{spec.get('lib', '')} {spec.get('algo', spec.get('algos'))} part {spec['part']}"
        log(f"  !! {who} threads {spec['threads']} seed {spec.get('seed')} failed (rc {proc.returncode})")
        log("     " + "\n     ".join((proc.stderr or proc.stdout).strip().splitlines()[-15:]))
        return {**spec, "error": (proc.stderr or proc.stdout)[-4000:], "other_cpu_cores": other}
    res = json.loads(line[len("RESULT_JSON:"):])
    res.update(process_seconds=round(wall, 2), other_cpu_cores=other)
    return res


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


CONTENDED = 0.25  # a run during which other processes used this many cores on average is flagged


def contention_note(runs, part: int) -> list[str]:
    bad = [r for r in runs if r["part"] == part and (r.get("other_cpu_cores") or 0) >= CONTENDED]
    if not bad:
        return []
    who = ", ".join(f"{r.get('algo') or '+'.join(r.get('algos', []))} {LIB_NAMES.get(r.get('lib'), '(ours and plain)')} "
                    f"{r['threads']} thr ({r['other_cpu_cores']:.2f})" for r in bad)
    return ["", f"**Warning:** other processes used ≥ {CONTENDED} core on average during: {who}; "
            "those timings are not trustworthy (this machine has " f"{os.cpu_count()} cores)."]


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


def fmt(x, nd=0):
    return "—" if x is None else (f"{x:,.{nd}f}" if isinstance(x, (int, float)) else str(x))


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {"python": platform.python_version()}
    for mod in ("critic", "torch", "stable_baselines3", "gymnasium", "mujoco", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover
            versions[mod] = "missing"
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "versions": versions,
            "loadavg_start": loadavg()}


def pairs_of(runs, part: int, algo: str, threads: int, ours: str = "critic") -> list[tuple[dict | None, dict | None]]:
    """[(critic run, SB3 run)] in run order for one part, algorithm and thread count (``ours``:
    'critic', or 'critic-bf16' for the runs with ``precision='bf16'``)."""
    by_pair: dict[int, dict[str, Any]] = {}
    for r in runs:
        if r["part"] == part and r.get("algo") == algo and r["threads"] == threads:
            by_pair.setdefault(r["pair"], {})[r["lib"]] = r
    return [(p.get(ours), p.get("sb3")) for _, p in sorted(by_pair.items()) if ours in p or ours == "critic"]


def good(*rs) -> bool:
    return all(r is not None and "error" not in r for r in rs)


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
            ps = [(c, s) for c, s in pairs_of(res["runs"], 1, algo, th) if good(c, s)]
            if not ps:
                continue
            cu, su = median([c["updates_per_second"] for c, _ in ps]), median([s["updates_per_second"] for _, s in ps])
            rs = [c["updates_per_second"] / s["updates_per_second"] for c, s in ps]
            r = median(rs)
            tgt = UPDATES_TARGET[algo]
            md.append(f"| {algo.upper()} | {th} | {fmt(cu, 1)} | {fmt(su, 1)} | **{fmt(r, 2)}×** | "
                      f"{', '.join(fmt(x, 2) for x in rs)} | ≥ {tgt}× ({met(r, tgt, True)}) |")
            bf = [(b, s) for b, s in pairs_of(res["runs"], 1, algo, th, "critic-bf16") if good(b, s)]
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
            ps = pairs_of(res["runs"], part, algo, th)
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
          f"{res.get('loadavg_end')}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
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
        print("RESULT_JSON:" + json.dumps(run_worker(json.loads(args.worker))), flush=True)
        return 0

    ls_cap = None  # parts 2 and 4: cap on learning_starts (--quick only)
    micro_fill, quick_view_steps = 5000, None
    if args.quick:
        args.warmup, args.updates, args.pairs, args.seeds = 1000, 300, 1, args.seeds[:1]
        args.pendulum_steps, args.micro_updates, micro_fill, ls_cap, quick_view_steps = 3000, 50, 1000, 1000, 3000
    if args.threads is None:
        args.threads = [1] if args.quick else [1, 2]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else OUT_DIR / f"offpolicy-{stamp}.json"
    log = lambda s="": print(s, flush=True)  # noqa: E731
    res: dict[str, Any] = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                           "machine": machine_info(), "args": vars(args) | {"worker": None},
                           "hyperparameters": {"halfcheetah": CHEETAH_HP, "pendulum": PENDULUM_HP},
                           "runs": [], "notes": {}}
    m = res["machine"]
    log(f"bench_offpolicy {res['date']}: parts {args.parts}, algos {args.algos}, threads {args.threads}, "
        f"seeds {args.seeds}{', QUICK' if args.quick else ''}")
    log(f"CPU {m['cpu']} ({m['cores']} cores), load {m['loadavg_start']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))

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
            _write(out, res)
            continue
        for algo in args.algos:
            extra: dict[str, Any] = {}
            if part == 1:
                extra = {"warmup": args.warmup, "updates": args.updates}
            elif part == 2:
                extra = {"steps": args.pendulum_steps, "eval_every": args.eval_every,
                         "stop_at_solve": 2 in args.stop_at_solve, "learning_starts_cap": ls_cap}
            else:
                path = preset_path(algo)
                if not path.exists():
                    note = f"skipped: `{path.relative_to(REPO)}` does not exist yet"
                    res["notes"][f"presets/{algo}"] = note
                    log(f"  [4] {algo}: {note}")
                    continue
                # budgets: critic's preset `steps`, SB3's RL-Zoo n_timesteps
                budgets = {"critic": _preset_steps(path) or ZOO_PENDULUM_STEPS, "sb3": ZOO_PENDULUM_STEPS}
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
            _write(out, res)  # partial results survive an interrupted run

    res["loadavg_end"] = loadavg()
    res["markdown"] = print_report(res, log)
    _write(out, res)
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


def _preset_steps(path: Path) -> int | None:
    try:
        import yaml
        data = yaml.safe_load(path.read_text()) or {}
        return int(float(data["steps"])) if "steps" in data else None
    except Exception:
        return None


def _write(path: Path, res: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(res, indent=2, default=str))
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
