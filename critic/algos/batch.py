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

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from critic import checkpoint as ckpt
from critic.agent import Agent, TrainingSession, load
from critic.aggregate import write_aggregate
from critic.checkpoint import CheckpointError, NonFiniteError
from critic.config import ConfigError
from critic.logger import Progress, sigint_flag
from critic.modules.members import Members
from critic.optim import MemberAdam, MemberRMSprop, flat_view


ROW_ALIGN = 16
"""Floats per 64-byte line: each member's row of a stacked buffer is padded to a multiple."""

BATCH_FILE = "batch.safetensors"
"""The batch's own state in its run directory (update generators, frozen members, the members'
directory names); each member's state is in its own directory's checkpoint."""


def parse_sweep(sweep: Any, allowed: tuple[str, ...] = ("learning_rate", "gamma")) -> dict[str, list[Any]]:
    """``{"learning_rate": [3e-4, 1e-3]}`` or CLI items ``["learning_rate=3e-4,1e-3"]`` -> a dict of
    value lists, each field checked against ``allowed`` (the algorithm's ``sweepable``)."""
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
        if field not in allowed:
            raise ConfigError(f"invalid value for 'sweep': {field!r} cannot vary between the members of one batch "
                              f"(allowed: {', '.join(allowed)}; network sizes, batch size and the others shape the "
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


class Batched:
    """Mixin of an algorithm class whose agents train as the members of a :class:`SeedBatch`
    (``class PPO(Batched, Agent)``): ``seeds=[...]`` builds the batch, ``critic.load`` of a
    batched run's directory returns it. The class names the scalars a sweep may vary
    (``sweepable``), refuses the variants it does not batch (``check_batchable``) and implements
    ``batch_update``: one update of every member on its own batch, stacked ``[M, ...]``."""

    sweepable: tuple[str, ...] = ("learning_rate", "gamma")

    @classmethod
    def _batch(cls, env, config=None, *args, seeds, **hparams):
        return SeedBatch.build(cls, env, config, seeds=seeds, **hparams)

    @classmethod
    def _load_batch(cls, run_dir, env=None, allow_import=()):
        return SeedBatch.load(run_dir, env=env, allow_import=allow_import)

    @classmethod
    def check_batchable(cls, cfg: Any) -> None:
        """Raise a ConfigError for a configuration whose members this class cannot batch."""

    @classmethod
    def batch_policy(cls, batch: "SeedBatch") -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """On-policy: every member's (actions, log-probs, values) for the observation it acts on
        next, ``[M, N, ...]``, from one stacked forward (each member's sampling noise from its
        own acting generator); None where the members collect alone (the default)."""
        return None

    @classmethod
    def batch_act(cls, batch: "SeedBatch") -> np.ndarray | None:
        """Every member's exploring actions for its next step, ``[M, N, ...]``, from one stacked
        forward (each member's noise from its own acting generator); None where the members act
        alone (the default: each member's collector acts with its own network)."""
        return None

    @classmethod
    def batch_update(cls, batch: "SeedBatch", data: dict[str, torch.Tensor], active: torch.Tensor
                       ) -> dict[str, torch.Tensor]:
        """One update of every member where ``active`` [M]: ``data`` holds each member's batch
        stacked on a leading axis; returns metrics ``[M]``."""
        raise NotImplementedError


def _storage_groups(nets: torch.nn.Module) -> list[list[tuple[str, torch.Tensor]]]:
    """A network's parameters grouped by the flat buffer they view (``optim.flatten_``), in order."""
    groups: dict[int, list[tuple[str, torch.Tensor]]] = {}
    for name, p in nets.named_parameters():
        groups.setdefault(p.untyped_storage().data_ptr(), []).append((name, p))
    return list(groups.values())


class SeedBatch:
    """M agents (one per seed) trained in lockstep with batched updates; see the module docstring."""

    def __init__(self, agents: list[Agent], rng_states: list[torch.Tensor] | None = None):
        """The members' configs may differ in their seed and the algorithm's ``sweepable`` fields only.
        ``rng_states``: each member's own state of torch's global generator (what it acts and
        explores with), default one seeded by the member's seed."""
        self.agents, self.M = agents, len(agents)
        self.seeds = [a.cfg.seed for a in agents]
        a0 = agents[0]
        self.algo_cls = cls = type(a0)
        if not (isinstance(a0, Batched) and issubclass(cls, Batched)):
            raise ConfigError(f"{a0.algo} cannot train its members in one batch")
        self.sweepable = cls.sweepable
        cfg = a0.cfg
        same = {k: v for k, v in cfg.to_dict().items() if k not in ("seed", *self.sweepable)}
        for a in agents[1:]:
            other = {k: v for k, v in a.cfg.to_dict().items() if k not in ("seed", *self.sweepable)}
            diff = sorted(k for k in same if same[k] != other.get(k))
            if diff or type(a) is not cls:
                raise ConfigError(f"the members of one batch differ in {', '.join(diff) or 'their class'} (allowed to "
                                  f"differ: seed, {', '.join(self.sweepable)})")
        self.swept = sorted(k for k in self.sweepable if len({repr(a.cfg.to_dict()[k]) for a in agents}) > 1)
        for a in agents:
            cls.check_batchable(a.cfg)
        if getattr(cfg, "backend", "local") != "local":
            raise ConfigError(f"seeds=[...] batches {a0.algo} on the local backend only (backend={cfg.backend!r})")
        self._stack(agents)
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        # acting noise of a batch that acts for its members at once (``batch_act``): its own streams
        self.act_generators = [torch.Generator().manual_seed(int(np.random.SeedSequence([s, 1]).generate_state(1)[0]))
                               for s in self.seeds]
        self.rng = list(rng_states) if rng_states is not None else \
            [torch.Generator().manual_seed(s).get_state() for s in self.seeds]
        self.frozen = np.zeros(self.M, dtype=bool)

    @contextlib.contextmanager
    def _own_rng(self, k: int) -> Iterator[None]:
        """Member ``k``'s own stream in torch's global generator (its acting, exploration and
        checkpoint): what a member draws never depends on the other members."""
        torch.set_rng_state(self.rng[k])
        try:
            yield
        finally:
            self.rng[k] = torch.get_rng_state()

    def _stack(self, agents: list[Agent]) -> None:
        """Every flat parameter buffer of the members' networks (each optimizer's, each target's)
        becomes a row of one ``[M, n]`` leaf that the member's parameters view; one
        :class:`MemberAdam` per optimizer."""
        per_agent = [_storage_groups(a.nets) for a in agents]
        layout0 = [[(n, p.shape, p.numel()) for n, p in g] for g in per_agent[0]]
        flats: list[list[torch.Tensor]] = []  # [group][member]
        for g, layout in enumerate(layout0):
            flats.append([])
            for groups in per_agent:
                if len(groups) != len(layout0) or [(n, p.shape) for n, p in groups[g]] != \
                        [(n, s) for n, s, _ in layout]:
                    raise ConfigError("the members' networks differ in structure")
                flat = flat_view([p for _, p in groups[g]])
                if flat is None:
                    raise ConfigError(f"{agents[0].algo}: the parameters {layout[0][0]}... are not one flat buffer "
                                      "(optim.flatten_), which a batch stacks")
                flats[g].append(flat)
        owners = {f[0].untyped_storage().data_ptr(): g for g, f in enumerate(flats)}  # member 0's buffers
        self.opts: dict[str, MemberAdam | MemberRMSprop] = {}
        self.opt_group: dict[str, int] = {}
        for name, opt in agents[0].optims.items():
            pg = opt.param_groups[0]
            plain = len(opt.param_groups) == 1 and len(pg["params"]) == 1 and not pg["weight_decay"] and (
                (isinstance(opt, torch.optim.Adam) and not pg["amsgrad"] and not pg["maximize"])
                or (isinstance(opt, torch.optim.RMSprop) and not pg["momentum"] and not pg["centered"]))
            if not plain:
                raise ConfigError(f"seeds=[...] batches plain Adam or RMSprop over one flat buffer; "
                                  f"{agents[0].algo}'s {name!r} optimizer is not ({type(opt).__name__})")
            self.opt_group[name] = owners[pg["params"][0].untyped_storage().data_ptr()]
        self.stacked: list[torch.Tensor] = []
        for g, layout in enumerate(layout0):
            # each member's row padded to whole 64-byte lines: every row is aligned alike, so a
            # member's arithmetic (vectorised reductions, products) never depends on its position
            n = flats[g][0].numel()
            st = torch.zeros(self.M, -(-n // ROW_ALIGN) * ROW_ALIGN, dtype=flats[g][0].dtype,
                             device=flats[g][0].device)
            st[:, :n] = torch.stack([f.detach() for f in flats[g]])
            st.requires_grad_(per_agent[0][g][0][1].requires_grad)
            self.stacked.append(st)
            with torch.no_grad():
                for k, groups in enumerate(per_agent):
                    off = 0
                    for _, p in groups[g]:
                        p.data = st.data[k, off:off + p.numel()].view(p.shape)
                        off += p.numel()
        self.layout = layout0
        self._views: dict[tuple[str, ...], dict[str, torch.Tensor]] = {}
        self._constants: dict[str, Any] = {}
        for name, opt in agents[0].optims.items():
            pg = opt.param_groups[0]
            lrs = torch.tensor([a.optims[name].param_groups[0]["lr"] for a in agents], dtype=torch.float64)
            st = self.stacked[self.opt_group[name]]
            self.opts[name] = MemberAdam([st], lrs, self.M, betas=tuple(pg["betas"]), eps=pg["eps"]) \
                if isinstance(opt, torch.optim.Adam) else MemberRMSprop([st], lrs, self.M, alpha=pg["alpha"],
                                                                         eps=pg["eps"])
        for k, a in enumerate(agents):  # each optimizer's own flat tensor views its member's row too
            for name, opt in a.optims.items():
                f = opt.param_groups[0]["params"][0]
                f.data = self.stacked[self.opt_group[name]].data[k, :f.numel()].view(f.shape)
        self._load_optimizer_states()

    @classmethod
    def build(cls, agent_cls: type[Agent], env: Any, config: Any = None, *, seeds: Any, sweep: Any = None,
              **hparams: Any) -> "SeedBatch":
        """One member per (swept values, seed) of the product, seeds varying fastest."""
        if "seed" in hparams:
            raise ConfigError("give either seed or seeds, not both")
        seeds, sweep = parse_seeds(seeds), parse_sweep(sweep, getattr(agent_cls, "sweepable", ()))
        import itertools
        variants = [dict(zip(sweep, vals)) for vals in itertools.product(*sweep.values())] if sweep else [{}]
        agents, rng = [], []
        try:
            for variant in variants:
                for s in seeds:
                    agents.append(agent_cls(env, config, seed=s, **{**hparams, **variant}))
                    rng.append(torch.get_rng_state())  # as a solo agent's stream continues after its set-up
            return cls(agents, rng)
        except BaseException:
            for a in agents:
                a.close()
            raise

    def member_name(self, k: int) -> str:
        """``seed_3``, or with a sweep ``learning_rate=0.001_seed_3`` (member k's run directory)."""
        cfg = self.agents[k].cfg.to_dict()
        return "_".join([*(f"{f}={cfg[f]}" for f in self.swept), f"seed_{cfg['seed']}"])

    # ------------------------------------------------------------------ the batched update
    def members(self, detach: tuple[str, ...] = ()) -> Members:
        """Every member's network as stacked views ``[M, *shape]`` of the batch's weights, for
        ``Members.vmap`` or a stacked forward; parameters whose names start with one of
        ``detach`` are detached (a critic an actor loss must not move). The views are made once:
        they follow the weights' in-place updates, and autograd reaches the stacked leaves
        through them in every update."""
        if detach not in self._views:
            params = {}
            # made in grad mode whatever the caller's mode: views made under no_grad or
            # inference_mode (a batched act) would carry no gradient in later updates
            with torch.inference_mode(False), torch.enable_grad():
                for st, layout in zip(self.stacked, self.layout):
                    off = 0
                    for name, shape, n in layout:
                        v = st[:, off:off + n].view(self.M, *shape)
                        params[name] = v.detach() if detach and name.startswith(detach) else v
                        off += n
            self._views[detach] = params
        return Members.from_params(self.agents[0].nets, self._views[detach])

    def constant(self, name: str, make: Any) -> Any:
        """A per-batch constant (e.g. the members' ``tau`` as a tensor), made once by ``make()``."""
        if name not in self._constants:
            self._constants[name] = make()
        return self._constants[name]

    def group(self, prefix: str) -> torch.Tensor:
        """The stacked ``[M, n + padding]`` weights of the flat buffer whose parameter names start
        with ``prefix`` (e.g. ``critic_target.``, ``log_alpha``); the padding columns (each row
        a whole number of 64-byte lines) stay zero under elementwise updates."""
        for st, layout in zip(self.stacked, self.layout):
            if all(name.startswith(prefix) for name, _, _ in layout):
                return st
        raise KeyError(f"no flat parameter buffer named {prefix!r}*")

    def noise(self, generators: list[torch.Generator], shape: tuple[int, ...], exponential: bool = False,
              device: torch.device | str = "cpu") -> torch.Tensor:
        """``[M, *shape]`` standard normal (or Exp(1)) draws, member k's from ``generators[k]``
        (``self.generators`` for the updates, ``self.act_generators`` for acting)."""
        draw = (lambda g: torch.empty(shape).exponential_(generator=g)) if exponential else \
            (lambda g: torch.randn(shape, generator=g))
        return torch.stack([draw(g) for g in generators]).to(device)

    def acting_obs(self) -> torch.Tensor:
        """The observations every member acts on next, stacked ``[M, N, ...]``."""
        return torch.as_tensor(np.stack([a.stream.obs for a in self.agents]), device=self.agents[0].device)

    def weights(self) -> torch.Tensor:
        """Every member's weights as one row ``[M, P]`` (a copy, for comparisons)."""
        return torch.cat([st.detach()[:, :sum(n for _, _, n in layout)] for st, layout in zip(self.stacked, self.layout)],
                         1)

    def _update(self, live: list[int]) -> list[dict[str, torch.Tensor]]:
        """The updates due after one collection: each live member's collector hands out its
        batches; the j-th of every member are stacked and updated together (a member with fewer,
        e.g. refilling its replay after a resume, sits the rest out)."""
        due = [list(self.agents[k].collector.batches(self.agents[k].env_steps)) if k in live else []
               for k in range(self.M)]
        metrics: list[dict[str, torch.Tensor]] = [{} for _ in range(self.M)]
        with self.agents[0].collector.precision():
            for j in range(max(map(len, due), default=0)):
                active = torch.tensor([len(d) > j for d in due])
                fill = next(d[j] for d in due if len(d) > j)
                data = {key: torch.stack([(d[j] if len(d) > j else fill)[key] for d in due]) for key in fill}
                step = self.algo_cls.batch_update(self, data, active)
                for k in np.flatnonzero(active.numpy()):
                    self.agents[k].updates += 1
                    metrics[k] = {n: v[k] for n, v in step.items()}
        return metrics

    # ------------------------------------------------------------------ optimizer state <-> members
    def _store_optimizer_states(self) -> None:
        """Each member's slice of the batched Adams into its own optimizers, so its checkpoint is an
        ordinary one (a member resumes alone, or in a batch)."""
        for name, mopt in self.opts.items():
            for k, a in enumerate(self.agents):
                opt = a.optims[name]
                p = opt.param_groups[0]["params"][0]
                opt.param_groups[0]["lr"] = float(mopt.lr[k])
                opt.state[p] = {n: t[:p.numel()].view(p.shape) if t.dim() else t
                                for n, t in mopt.member_state(k).items()}

    def _load_optimizer_states(self) -> None:
        for name, mopt in self.opts.items():
            for k, a in enumerate(self.agents):
                opt = a.optims[name]
                st = opt.state.get(opt.param_groups[0]["params"][0])
                if st and all(n in st for n in mopt.state_names):
                    mopt.load_member_state(k, st)

    # ------------------------------------------------------------------ checkpoints
    def save_state(self, run_dir: str | os.PathLike, member_dirs: list[Path]) -> Path:
        """``run_dir/batch.safetensors``: what the batch keeps beyond its members' checkpoints."""
        tensors = {f"generator/{k}": g.get_state() for k, g in enumerate(self.generators)}
        tensors.update({f"act_generator/{k}": g.get_state() for k, g in enumerate(self.act_generators)})
        meta = {"kind": "seed_batch", "algo": self.agents[0].algo,
                "members": [str(Path(d).relative_to(run_dir)) for d in member_dirs],
                "frozen": self.frozen.tolist()}
        return ckpt.write(Path(run_dir) / BATCH_FILE, tensors, meta)

    @classmethod
    def load(cls, run_dir: str | os.PathLike, env: Any = None, allow_import: tuple[str, ...] = ()) -> "SeedBatch":
        """A batch from its run directory: each member from ``<member>/checkpoints`` (its weights,
        Adam state, envs, RNG states), then the batch's generators and frozen members: training
        continues as if it had not stopped."""
        tensors, meta = ckpt.read(Path(run_dir) / BATCH_FILE)
        if not isinstance(meta, dict) or meta.get("kind") != "seed_batch":
            raise CheckpointError(f"{run_dir}: {BATCH_FILE} is not a batched run's state")
        agents, rng = [], []
        try:
            for name in meta["members"]:
                agents.append(load(Path(run_dir) / name / "checkpoints", env=env, allow_import=allow_import,
                                   for_training=True))
                rng.append(torch.get_rng_state())  # the member's own stream, from its checkpoint
        except BaseException:
            for a in agents:
                a.close()
            raise
        batch = cls(agents, rng)
        for k, g in enumerate(batch.generators):
            g.set_state(tensors[f"generator/{k}"])
        for k, g in enumerate(batch.act_generators):
            if f"act_generator/{k}" in tensors:
                g.set_state(tensors[f"act_generator/{k}"])
        batch.frozen[:] = meta["frozen"]
        return batch

    # ------------------------------------------------------------------ training
    def learn(self, total_steps: int | float | None = None, *, progress_bar: bool | None = None,
              run_dir: str | os.PathLike | None = None, eval_every: int = 0, eval_episodes: int = 10,
              checkpoint_every: int = 0, threshold: float | None = None,
              total_timesteps: int | float | None = None) -> "SeedBatch":
        """Train every member for ``total_steps`` (or ``total_timesteps``) more env steps (in
        lockstep). With ``run_dir``, ``seed_<s>/`` holds member s's ordinary run directory and the
        top level the aggregate."""
        from critic.agent import steps_argument

        total_steps = steps_argument(total_steps, total_timesteps)
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
                    live = self._collect([k for k in range(self.M) if not self.frozen[k] and not sessions[k].done()],
                                         sessions)
                    if not live:
                        break
                    per_member = self._update(live)
                    for k in live:
                        try:
                            with self._own_rng(k):
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
        for k, s in enumerate(sessions):
            try:
                with self._own_rng(k):
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

    def _collect(self, live: list[int], sessions: list[TrainingSession]) -> list[int]:
        """One collection of every live member; returns the members still live (one whose step
        failed on non-finite weights is frozen). Rollouts step side by side with one stacked
        forward acting for all members when the algorithm has a ``batch_policy``; replay steps
        take the members' actions from ``batch_act``; otherwise each member acts alone."""
        live = list(live)

        def guarded(k: int, fn: Any) -> Any:
            try:
                return fn()
            except Exception as e:
                try:
                    sessions[k].diverged_or(e)  # a NonFiniteError if its weights diverged
                except NonFiniteError as why:
                    self._freeze(k, sessions[k], why)
                    live.remove(k)
                    return None
                raise

        policy = self.algo_cls.batch_policy(self) if live else None
        if policy is not None:  # rollouts side by side
            for k in live:
                self.agents[k].collector.begin()
            pending = list(live)
            while pending:
                a, logp, v = policy
                for k in list(pending):
                    c, stream = self.agents[k].collector, self.agents[k].stream
                    if guarded(k, lambda: c.step(stream, a[k], logp[k], v[k])) is not False:
                        pending.remove(k)  # complete (or frozen)
                if pending:
                    policy = self.algo_cls.batch_policy(self)
            for k in list(live):
                out = guarded(k, lambda: self.agents[k].collector.end(self.agents[k].stream))
                if out is not None:
                    self.agents[k].collected(*out)
            return live
        actions = self.algo_cls.batch_act(self)
        for k in list(live):
            with self._own_rng(k):
                guarded(k, lambda: self.agents[k].collect(None if actions is None else actions[k]))
        return live

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
