"""Many seeds in one process: M agents of one algorithm and configuration trained as one.

``critic.PPO(env, seeds=[0, 1, ..., 7])`` builds a :class:`SeedBatch`. Each member is an
ordinary agent with its own envs, normalisers, rollout storage, random streams, run directory
and checkpoints (each loads with ``critic.load``, replays with ``critic eval``). The members'
network weights are the rows of one ``[M, P]`` tensor: the members collect one after another,
then update together in one batched update (``ppo.update_members``: the per-member loss
vmapped over the stacked weights, ``MemberAdam`` with each member's gradient clipping, Adam
state and KL early stop). A member whose weights become non-finite is frozen and reported; the
others finish. The run directory holds ``seed_<s>/`` per member and the group's aggregate
(``summary.json`` with the median, the interquartile mean and 95 % bootstrap intervals, and
``curve.png``).

``sweep={"learning_rate": [3e-4, 1e-3]}`` (or ``--sweep learning_rate=3e-4,1e-3``) adds members
for each value, the product with the seeds: the swept scalars (:data:`SWEEPABLE`) are each
member's own (its Adam learning rate and schedule, its GAE discount and lambda), and the
aggregate is one per value. PPO only so far; the KL-penalised variant and Ray sampling are not
batched yet.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from critic import checkpoint as ckpt
from critic.agent import Agent, TrainingSession, load
from critic.algos.common import apply_lr_schedule
from critic.aggregate import write_aggregate
from critic.checkpoint import CheckpointError, NonFiniteError
from critic.config import ConfigError
from critic.logger import Progress, sigint_flag
from critic.modules.members import Members
from critic.optim import MemberAdam


BATCH_FILE = "batch.safetensors"
"""The batch's own state in its run directory (minibatch generators, frozen members, the members'
directory names); each member's state is in its own directory's checkpoint."""

SWEEPABLE = ("learning_rate", "gamma", "gae_lambda")
"""Scalars that may differ between the members of one batch (each member's Adam learning rate
and learning-rate schedule; its own GAE)."""


def parse_sweep(sweep: Any) -> dict[str, list[Any]]:
    """``{"learning_rate": [3e-4, 1e-3]}`` or CLI items ``["learning_rate=3e-4,1e-3"]`` -> a dict of
    value lists, each field checked against :data:`SWEEPABLE`."""
    if sweep is None:
        return {}
    if isinstance(sweep, (list, tuple)):
        out: dict[str, list[Any]] = {}
        for item in sweep:
            key, sep, values = str(item).partition("=")
            if not sep or not key.strip() or not values.strip():
                raise ConfigError(f"invalid value for 'sweep': {item!r} (allowed: FIELD=V1,V2,... e.g. "
                                  "learning_rate=3e-4,1e-3)")
            import yaml
            out[key.strip()] = [yaml.safe_load(v) for v in values.split(",")]
        sweep = out
    if not isinstance(sweep, dict):
        raise ConfigError(f"invalid value for 'sweep': {sweep!r} (allowed: a dict of field -> list of values)")
    for field, values in sweep.items():
        if field not in SWEEPABLE:
            raise ConfigError(f"invalid value for 'sweep': {field!r} cannot vary between the members of one batch "
                              f"(allowed: {', '.join(SWEEPABLE)}; network sizes, batch size and the others shape the "
                              "batch itself: run one batch per value)")
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"invalid value for 'sweep': {field}={values!r} (allowed: a non-empty list of values)")
    return {k: list(v) for k, v in sweep.items()}


def parse_seeds(seeds: Any) -> list[int]:
    """``[0, 1, 2]``, ``range(8)``, ``"0-7"`` or ``"0,3,5"`` -> a list of distinct seeds."""
    if isinstance(seeds, str):
        out: list[int] = []
        try:
            for part in seeds.split(","):
                a, _, b = part.strip().partition("-")
                out.extend(range(int(a), int(b) + 1) if b else [int(a)])
        except ValueError:
            raise ConfigError(f"invalid value for 'seeds': {seeds!r} (allowed: '0-7', '0,3,5' or a list of "
                              "integers)") from None
    else:
        try:
            out = [int(s) for s in seeds]
        except (TypeError, ValueError):
            raise ConfigError(f"invalid value for 'seeds': {seeds!r} (allowed: a list of integers)") from None
    if not out or len(set(out)) != len(out):
        raise ConfigError(f"invalid value for 'seeds': {seeds!r} (allowed: one or more distinct integers)")
    return out


class SeedBatch:
    """M agents (one per seed) trained in lockstep with batched updates; see the module docstring."""

    def __init__(self, agents: list[Agent], update_members: Callable[..., dict[str, torch.Tensor]]):
        """``update_members``: the algorithm's batched update (``ppo.update_members``). The
        members' configs may differ in their seed and the :data:`SWEEPABLE` fields only."""
        self.agents, self.M = agents, len(agents)
        self.seeds = [a.cfg.seed for a in agents]
        self.update_members = update_members
        a0 = agents[0]
        cfg = a0.cfg
        same = {k: v for k, v in cfg.to_dict().items() if k not in ("seed", *SWEEPABLE)}
        for a in agents[1:]:
            other = {k: v for k, v in a.cfg.to_dict().items() if k not in ("seed", *SWEEPABLE)}
            diff = sorted(k for k in same if same[k] != other.get(k))
            if diff or type(a) is not type(a0):
                raise ConfigError(f"the members of one batch differ in {', '.join(diff) or 'their class'} (allowed to "
                                  f"differ: seed, {', '.join(SWEEPABLE)})")
        self.swept = sorted(k for k in SWEEPABLE if len({a.cfg.to_dict()[k] for a in agents}) > 1)
        if getattr(cfg, "kl_penalty", "none") != "none" or getattr(cfg, "backend", "local") != "local":
            raise ConfigError("seeds=[...] batches PPO's clipped surrogate on the local backend so far "
                              "(kl_penalty='none', backend='local')")
        # the members' weights: rows of one [M, P] leaf that every member's network views
        flats = [a.optims["main"].param_groups[0]["params"][0] for a in agents]
        self.flat = torch.stack([f.detach() for f in flats]).requires_grad_(True)
        names = [(n, p.shape, p.numel()) for n, p in a0.nets.named_parameters()]
        with torch.no_grad():
            for k, (a, f) in enumerate(zip(agents, flats)):
                off = 0
                for (_, p), (_, shape, n) in zip(a.nets.named_parameters(), names):
                    p.data = self.flat.data[k, off:off + n].view(shape)
                    off += n
                f.data = self.flat.data[k]
        self.names = names
        lrs = torch.tensor([a.cfg.learning_rate for a in agents], dtype=torch.float64)
        self.opt = MemberAdam([self.flat], lrs, self.M, betas=tuple(cfg.adam_betas), eps=cfg.optim_eps)
        self._load_optimizer_states()
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        self.frozen = np.zeros(self.M, dtype=bool)

    @classmethod
    def build(cls, agent_cls: type[Agent], env: Any, config: Any = None, *, seeds: Any,
              update_members: Callable[..., dict[str, torch.Tensor]], sweep: Any = None,
              **hparams: Any) -> "SeedBatch":
        """One member per (swept values, seed) of the product, seeds varying fastest."""
        if "seed" in hparams:
            raise ConfigError("give either seed or seeds, not both")
        seeds, sweep = parse_seeds(seeds), parse_sweep(sweep)
        import itertools
        variants = [dict(zip(sweep, vals)) for vals in itertools.product(*sweep.values())] if sweep else [{}]
        agents = []
        try:
            for variant in variants:
                for s in seeds:
                    agents.append(agent_cls(env, config, seed=s, **{**hparams, **variant}))
        except BaseException:
            for a in agents:
                a.close()
            raise
        return cls(agents, update_members)

    def member_name(self, k: int) -> str:
        """``seed_3``, or with a sweep ``learning_rate=0.001_seed_3`` (member k's run directory)."""
        cfg = self.agents[k].cfg.to_dict()
        return "_".join([*(f"{f}={cfg[f]}" for f in self.swept), f"seed_{cfg['seed']}"])

    # ------------------------------------------------------------------ the batched update
    def _members(self) -> Members:
        off, params = 0, {}
        for name, shape, n in self.names:
            params[name] = self.flat[:, off:off + n].view(self.M, *shape)
            off += n
        return Members.from_params(self.agents[0].nets, params)

    def _update(self) -> list[dict[str, torch.Tensor]]:
        a0 = self.agents[0]
        live = [k for k in range(self.M) if not self.frozen[k]]
        for k, a in enumerate(self.agents):  # each member's own rate (and schedule) in the batched Adam
            apply_lr_schedule(a.optims["main"], a.cfg, a.env_steps, a._learn_span)
            self.opt.lr[k] = a.optims["main"].param_groups[0]["lr"]
        rollouts = [a.collector.sample() for a in self.agents]  # each member's last rollout [T, N]
        batch = {k: torch.stack([r[k] for r in rollouts]) for k in rollouts[0]}
        mask = torch.from_numpy(~self.frozen)
        metrics = self.update_members(self._members(), self.opt, batch, a0.cfg, self.generators, a0.clip_range(),
                                      active=mask, **self._gae_settings())
        for k in live:
            self.agents[k].updates += 1
        return [{n: v[k] for n, v in metrics.items()} for k in range(self.M)]

    def _gae_settings(self) -> dict[str, list[float]]:
        if "gamma" not in self.swept and "gae_lambda" not in self.swept:
            return {}
        return {"gammas": [a.cfg.gamma for a in self.agents], "lambdas": [a.cfg.gae_lambda for a in self.agents]}

    # ------------------------------------------------------------------ optimizer state <-> members
    def _store_optimizer_states(self) -> None:
        """Each member's slice of the batched Adam into its own optimizer, so its checkpoint is an
        ordinary one (a member resumes alone, or in a batch)."""
        for k, a in enumerate(self.agents):
            opt = a.optims["main"]
            p = opt.param_groups[0]["params"][0]
            opt.param_groups[0]["lr"] = float(self.opt.lr[k])
            opt.state[p] = {"step": torch.tensor(float(self.opt.steps[k])),
                            "exp_avg": self.opt.exp_avg[0][k].detach().clone(),
                            "exp_avg_sq": self.opt.exp_avg_sq[0][k].detach().clone()}

    def _load_optimizer_states(self) -> None:
        for k, a in enumerate(self.agents):
            opt = a.optims["main"]
            st = opt.state.get(opt.param_groups[0]["params"][0])
            if st and "exp_avg" in st:
                self.opt.exp_avg[0][k].copy_(st["exp_avg"])
                self.opt.exp_avg_sq[0][k].copy_(st["exp_avg_sq"])
                self.opt.steps[k] = float(st["step"])

    # ------------------------------------------------------------------ checkpoints
    def save_state(self, run_dir: str | os.PathLike, member_dirs: list[Path]) -> Path:
        """``run_dir/batch.safetensors``: what the batch keeps beyond its members' checkpoints."""
        tensors = {f"generator/{k}": g.get_state() for k, g in enumerate(self.generators)}
        meta = {"kind": "seed_batch", "algo": self.agents[0].algo,
                "members": [str(Path(d).relative_to(run_dir)) for d in member_dirs],
                "frozen": self.frozen.tolist()}
        return ckpt.write(Path(run_dir) / BATCH_FILE, tensors, meta)

    @classmethod
    def load(cls, run_dir: str | os.PathLike, update_members: Callable[..., dict[str, torch.Tensor]],
             env: Any = None) -> "SeedBatch":
        """A batch from its run directory: each member from ``<member>/checkpoints`` (its weights,
        Adam state, envs, RNG states), then the batch's generators and frozen members: training
        continues as if it had not stopped."""
        tensors, meta = ckpt.read(Path(run_dir) / BATCH_FILE)
        if not isinstance(meta, dict) or meta.get("kind") != "seed_batch":
            raise CheckpointError(f"{run_dir}: {BATCH_FILE} is not a batched run's state")
        agents = []
        try:
            for name in meta["members"]:
                agents.append(load(Path(run_dir) / name / "checkpoints", env=env))
        except BaseException:
            for a in agents:
                a.close()
            raise
        batch = cls(agents, update_members)
        for k, g in enumerate(batch.generators):
            g.set_state(tensors[f"generator/{k}"])
        batch.frozen[:] = meta["frozen"]
        return batch

    # ------------------------------------------------------------------ training
    def learn(self, total_steps: int, *, progress_bar: bool | None = None, run_dir: str | os.PathLike | None = None,
              eval_every: int = 0, eval_episodes: int = 10, checkpoint_every: int = 0,
              threshold: float | None = None) -> "SeedBatch":
        """Train every member for ``total_steps`` more env steps (in lockstep). With ``run_dir``,
        ``seed_<s>/`` holds member s's ordinary run directory and the top level the aggregate."""
        run_dirs = [Path(run_dir) / self.member_name(k) for k in range(self.M)] if run_dir is not None \
            else [None] * self.M

        def before_save() -> None:  # before each member's checkpoint (a small file; any member may be frozen)
            self._store_optimizer_states()
            if run_dir is not None:
                self.save_state(run_dir, run_dirs)

        sessions = [TrainingSession(a, total_steps, progress_bar=False, run_dir=d, eval_every=eval_every,
                                    eval_episodes=eval_episodes, checkpoint_every=checkpoint_every,
                                    threshold=threshold, before_save=before_save)
                    for a, d in zip(self.agents, run_dirs)]
        a0 = self.agents[0]
        progress = Progress(sessions[0].target, sessions[0].start, progress_bar,
                            desc=f"{a0.algo} {a0.env_id or ''} x{self.M}".strip())
        with sigint_flag() as interrupted:
            try:
                while not all(s.done(interrupted.is_set()) for s in sessions):
                    live = [k for k in range(self.M) if not self.frozen[k] and not sessions[k].done()]
                    for k in list(live):
                        try:
                            self.agents[k].collect()
                        except Exception as e:
                            try:
                                sessions[k].diverged_or(e)  # a NonFiniteError if its weights diverged
                            except NonFiniteError as why:
                                self._freeze(k, sessions[k], why)
                                live.remove(k)
                                continue
                            raise
                    if not live:
                        break
                    per_member = self._update()
                    for k in live:
                        try:
                            sessions[k].record(per_member[k])
                        except NonFiniteError as e:
                            self._freeze(k, sessions[k], e)
                    median, spread = self._median_return()
                    progress.update(max(a.env_steps for a in self.agents), median, None, spread)
            finally:
                for s in sessions:
                    s.close()
                progress.close()
        self._store_optimizer_states()
        for s in sessions:
            try:
                s.finish(interrupted.is_set())
            except KeyboardInterrupt:  # every member's checkpoint first; the batch raises below
                pass
            except NonFiniteError:  # a frozen member: its last good checkpoint stays
                pass
        if run_dir is not None:
            write_aggregate(run_dir, run_dirs, groups=self._sweep_groups(run_dirs) if self.swept else None)
        if interrupted.is_set():
            raise KeyboardInterrupt(f"training interrupted at env step {max(a.env_steps for a in self.agents)}"
                                    + (f"; checkpoints written to {run_dir}" if run_dir else ""))
        return self

    def _sweep_groups(self, run_dirs: list[Path]) -> dict[str, tuple[dict[str, Any], list[Path]]]:
        groups: dict[str, tuple[dict[str, Any], list[Path]]] = {}
        for a, d in zip(self.agents, run_dirs):
            values = {f: a.cfg.to_dict()[f] for f in self.swept}
            label = ", ".join(f"{f}={v}" for f, v in values.items())
            groups.setdefault(label, (values, []))[1].append(d)
        return groups

    def _freeze(self, k: int, session: TrainingSession, e: Exception) -> None:
        self.frozen[k] = True
        session.stopped = True
        warnings.warn(f"member with seed {self.seeds[k]} diverged and is frozen ({e}); the others go on",
                      RuntimeWarning, stacklevel=3)

    def _median_return(self) -> tuple[float | None, str]:
        means = [float(np.mean(a.recent_returns)) for a in self.agents if a.recent_returns]
        if not means:
            return None, ""
        return float(np.median(means)), f"{min(means):.0f}..{max(means):.0f}"

    def close(self) -> None:
        for a in self.agents:
            a.close()

    def __enter__(self) -> "SeedBatch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        a0 = self.agents[0]
        return f"SeedBatch({a0.algo}, env={a0.env_id!r}, seeds={self.seeds}, env_steps={a0.env_steps})"
