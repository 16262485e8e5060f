"""Asynchronous workers on a Ray cluster (``pip install 'critic[ray]'``; imported only when used).

Same contract as :mod:`critic.runners.local` (the algorithm supplies a worker factory; the
runner orchestrates), with Ray actors instead of processes and shared memory:

* a **parameter server** actor holds the global parameters (one flat tensor) and the optimizer
  with its statistics; ``push(grad, steps)`` applies one worker's gradient, counts its steps
  and returns the new parameters. Steps are counted there, with their update, so a worker that
  dies mid-rollout counts no samples.
* **worker** actors (one CPU each when the cluster has enough, a fraction otherwise) each run
  the algorithm's worker: pull, rollout, gradient, push, repeated for about
  ``_SLICE_S`` seconds per call so the learner's bookkeeping stays off the hot path. Workers
  push directly to the parameter server, asynchronously from each other, and keep one push in
  flight while the next rollout runs (that rollout uses the parameters the previous push
  returned: one update staler than a blocking push, hiding the round trip). Parameters and
  gradients travel as NumPy arrays (Ray serialises them faster than tensors).
* the learner polls the calls; a worker whose call fails (actor died, env raised) or does not
  return within ``worker_timeout`` is killed and replaced by a new actor (new env seeds) that
  pulls the latest parameters; past ``max_restarts`` restarts of one worker,
  :class:`~critic.runners.local.WorkerError` names the worker and the cause.

With ``address=None`` Ray is started on this machine with the dashboard off and every service
bound to 127.0.0.1 (and shut down again on ``close``); with an address the runner joins that
cluster (``ray start --head`` on the head node; see ``docs/ray.md``).
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import torch

from critic.buffers.rollout import RolloutBuffer
from critic.collect.base import Collector
from critic.config import worker_hparams
from critic.runners.local import START_TIMEOUT_S, WorkerError

_SLICE_S = 0.2
_LOCAL_OBJECT_STORE = 200 * 1024**2  # parameters and gradients are small; /dev/shm often is too


def loopback_only() -> None:
    """Make Ray nodes started from this process take 127.0.0.1 as their address.

    Left alone, Ray resolves even ``_node_ip_address="127.0.0.1"`` to the machine's network
    address and its GCS listens on every interface. Ray keeps loopback only where multi-machine
    clusters are off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read once at import), so critic
    sets that flag, also on an already imported Ray, before starting local nodes; test clusters
    (``ray.cluster_utils.Cluster`` with ``node_ip_address="127.0.0.1"``) stay on loopback too.
    Joining a real cluster (``address=...``) does not call this.
    """
    import os

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` or start a local, loopback-only Ray; True if this call started it."""
    import logging
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reporting (and no network attempt)
    import ray

    if ray.is_initialized():
        return False
    if address is None:
        loopback_only()
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 object_store_memory=_LOCAL_OBJECT_STORE, logging_level=logging.WARNING, log_to_driver=True)
    else:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
    return True


def _remote_classes():
    import ray

    @ray.remote(num_cpus=0)
    class ParameterServer:
        def __init__(self, flat: torch.Tensor, opt_state: dict, make_opt: Any, schedule: Any):
            torch.set_num_threads(1)
            self.flat = flat.clone()
            self.opt = make_opt([self.flat])
            self.opt.load_state_dict(opt_state)
            self.schedule = schedule
            self.steps = self.updates = 0
            self.base, self.target = 0, 0

        def set_budget(self, base: int, target: int) -> None:
            self.base, self.target, self.steps, self.updates = base, target, 0, 0

        def pull(self) -> np.ndarray:
            return self.flat.detach().numpy()

        def push(self, grad: np.ndarray, steps: int) -> tuple[np.ndarray, bool]:
            if self.schedule is not None:
                self.schedule(self.opt, self.base + self.steps, (self.base, self.target))
            self.flat.grad = torch.from_numpy(grad.copy())
            self.opt.step()
            self.steps += steps
            self.updates += 1
            return self.flat.detach().numpy(), self.base + self.steps >= self.target

        def counts(self) -> tuple[int, int]:
            return self.steps, self.updates

        def state(self) -> tuple[torch.Tensor, dict]:
            return self.flat, self.opt.state_dict()

    @ray.remote
    class Worker:
        def __init__(self, factory: Any, wid: int, gen: int):
            torch.set_num_threads(1)
            self.worker = factory(wid, gen)
            self.wid = wid

        def node(self) -> str:
            import os

            return f"{ray.get_runtime_context().get_node_id()}:{os.getpid()}"

        def run(self, ps: Any, slice_s: float) -> tuple[list[float], dict[str, float], bool]:
            """Rollouts for about ``slice_s`` seconds; returns (episode returns, metrics, budget reached)."""
            w = self.worker
            params = torch.from_numpy(ray.get(ps.pull.remote()).copy())  # Ray's arrays are read-only
            t0, returns, metrics, done, pending = time.monotonic(), [], {}, False, None
            while not done and time.monotonic() - t0 < slice_s:
                grad, m, rets = w.rollout_gradient(params)
                if pending is not None:  # the previous push's result: newer parameters
                    latest, done = ray.get(pending)
                    params = torch.from_numpy(latest.copy())
                # the push travels while the next rollout runs (arguments are serialised here)
                pending = ps.push.remote(grad.numpy(), w.rollout_steps)
                returns.extend(rets)
                metrics = {k: float(v) for k, v in m.items()}
            if pending is not None:
                done = ray.get(pending)[1] or done
            return returns, metrics, done

    @ray.remote
    class Sampler:
        """An in-process agent of the learner's algorithm that only collects rollouts."""

        def __init__(self, factory: Any, wid: int, gen: int):
            torch.set_num_threads(1)
            self.agent = factory(wid, gen)
            a = self.agent
            a.stream.reset(seed=a.cfg.seed)
            self.flat = a.optims["main"].param_groups[0]["params"][0]

        def node(self) -> str:
            import os

            return f"{ray.get_runtime_context().get_node_id()}:{os.getpid()}"

        def collect(self, params: np.ndarray) -> tuple[dict[str, np.ndarray], list[float]]:
            from critic.buffers.rollout import FIELDS

            with torch.no_grad():
                self.flat.copy_(torch.from_numpy(params.copy()))  # Ray's arrays are read-only
            a = self.agent
            _, returns = a.collector.collect(a.stream, 0)
            buf = a.collector.buffer
            return {k: getattr(buf, k)[:buf.t].copy() for k in FIELDS}, returns

    return ParameterServer, Worker, Sampler


class RayA3CRunner:
    """``cfg.workers`` Ray actors pushing gradients to a parameter-server actor."""

    def __init__(self, factory: Any, make_opt: Any, opt: torch.optim.Optimizer, cfg: Any, schedule: Any = None):
        try:
            import ray
        except ImportError:
            raise WorkerError("backend='ray' needs Ray: pip install 'critic[ray]'") from None
        self.ray = ray
        self.factory, self.make_opt, self.opt, self.cfg, self.schedule = factory, make_opt, opt, cfg, schedule
        self.n, self.max_restarts, self.timeout = cfg.workers, cfg.max_restarts, cfg.worker_timeout
        self.started_ray = init_ray(cfg.address)
        self.PS, self.Worker, _ = _remote_classes()
        total_cpus = float(ray.cluster_resources().get("CPU", 1.0))
        self.cpus_per_worker = min(1.0, total_cpus / self.n)
        self.flat = opt.param_groups[0]["params"][0]
        self.ps = None
        self.actors: list[Any] = [None] * self.n
        self.calls: dict[int, tuple[Any, float]] = {}
        self.gens = [0] * self.n
        self.fresh = [True] * self.n
        self.ready: list[Any] = [None] * self.n
        self.restarts = [0] * self.n
        self.failures: list[tuple[int, str]] = []
        self.paused = True
        self.done = False
        self._steps = self._updates = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self, base_steps: int, target_steps: int) -> None:
        ray = self.ray
        self.ps = self.PS.remote(self.flat.detach().clone(), self.opt.state_dict(), self.make_opt, self.schedule)
        ray.get(self.ps.set_budget.remote(base_steps, target_steps))
        self._steps = self._updates = 0
        for w in range(self.n):
            self._spawn(w)
        self.done, self.paused = False, False
        for w in range(self.n):
            self._launch(w)

    def _spawn(self, w: int) -> None:
        self.fresh[w] = True
        self.actors[w] = self.Worker.options(num_cpus=self.cpus_per_worker, max_restarts=0).remote(
            self.factory, w, self.gens[w])
        self.ready[w] = self.actors[w].node.remote()  # answers once the actor is built

    def _launch(self, w: int) -> None:
        if not self.paused and not self.done and w not in self.calls:
            self.calls[w] = (self.actors[w].run.remote(self.ps, _SLICE_S), time.time())

    def _wait_calls(self, timeout: float) -> None:
        """Wait for every in-flight call (pause, stop), handling failures without relaunching."""
        deadline = time.time() + timeout
        while self.calls and time.time() < deadline:
            self._collect(min(0.1, max(deadline - time.time(), 0.01)), [], {})

    def pause(self, timeout: float | None = None) -> None:
        self.paused = True
        self._wait_calls(self.timeout if timeout is None else timeout)
        self.sync()

    def resume(self) -> None:
        self.paused = False
        for w in range(self.n):
            self._launch(w)

    def sync(self) -> None:
        """Copy the parameter server's parameters and optimizer state into the learner's."""
        if self.ps is None:
            return
        flat, opt_state = self.ray.get(self.ps.state.remote())
        with torch.no_grad():
            self.flat.copy_(flat)
        self.opt.load_state_dict(opt_state)
        self._steps, self._updates = self.ray.get(self.ps.counts.remote())

    def stop(self, timeout: float | None = None) -> None:
        self.paused = True
        if self.ps is not None:
            self._wait_calls(self.timeout if timeout is None else timeout)
            self.sync()
        for w, a in enumerate(self.actors):
            if a is not None:
                self.ray.kill(a, no_restart=True)
        self.actors = [None] * self.n
        self.calls.clear()
        if self.ps is not None:
            self.ray.kill(self.ps, no_restart=True)
            self.ps = None

    def close(self) -> None:
        self.stop(timeout=5)
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False

    # ------------------------------------------------------------------ progress and health
    @property
    def env_steps(self) -> int:
        return self._steps

    @property
    def num_updates(self) -> int:
        return self._updates

    @property
    def procs(self) -> list[Any]:
        return list(self.actors)

    def poll(self, wait: float = 0.05) -> tuple[list[float], dict[str, float]]:
        returns: list[float] = []
        metrics: dict[str, float] = {}
        self._collect(wait, returns, metrics)
        if self.ps is not None:
            self._steps, self._updates = self.ray.get(self.ps.counts.remote())
        for w in range(self.n):
            self._launch(w)
        return returns, metrics

    def _collect(self, wait: float, returns: list[float], metrics: dict[str, float]) -> None:
        ray = self.ray
        if not self.calls:
            time.sleep(wait)
            return
        refs = {ref: w for w, (ref, _) in self.calls.items()}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=wait)
        for ref in ready:
            w = refs[ref]
            del self.calls[w]
            try:
                rets, m, done = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                self._restart(w, _task_cause(e))
                continue
            except ray.exceptions.RayActorError as e:
                self._restart(w, f"actor died ({type(e).__name__}: {str(e).splitlines()[0]})")
                continue
            self.fresh[w] = False
            returns.extend(rets)
            metrics.update(m)
            self.done = self.done or done
        now = time.time()
        for w, (ref, since) in list(self.calls.items()):
            # a new actor's first call includes building it (imports, envs): the start-up allowance,
            # until the actor answers a trivial call
            if self.fresh[w] and ray.wait([self.ready[w]], timeout=0)[0]:
                self.fresh[w] = False
                self.calls[w] = (ref, max(since, now - _SLICE_S))  # count from when it was built
                since = self.calls[w][1]
            limit = max(self.timeout, START_TIMEOUT_S) if self.fresh[w] else self.timeout
            if now - since > limit + _SLICE_S:
                del self.calls[w]
                ray.kill(self.actors[w], no_restart=True)
                self._restart(w, f"no progress for {self.timeout:g} s (hung); killed")

    def _restart(self, w: int, cause: str) -> None:
        self.failures.append((w, cause))
        if self.actors[w] is not None:
            self.ray.kill(self.actors[w], no_restart=True)
        if self.restarts[w] >= self.max_restarts:
            self.stop(timeout=5)
            raise WorkerError(f"worker {w} failed {self.restarts[w] + 1} times, more than max_restarts="
                              f"{self.max_restarts} allows; last cause: {cause}")
        self.restarts[w] += 1
        self.gens[w] += 1
        warnings.warn(f"worker {w} failed ({cause.splitlines()[0]}); restarted with the latest weights "
                      f"({self.restarts[w]}/{self.max_restarts} restarts)", RuntimeWarning, stacklevel=4)
        self._spawn(w)

    def worker_nodes(self) -> list[str]:
        """``node_id:pid`` of each worker actor (tests check placement on several nodes)."""
        return self.ray.get([a.node.remote() for a in self.actors if a is not None])


def _task_cause(e: Exception) -> str:
    cause = getattr(e, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return str(e).strip().splitlines()[-1]


class SamplerFactory:
    """Picklable recipe for a sampling worker: an agent of the learner's class, one env set."""

    def __init__(self, agent_cls: type, env: Any, cfg: Any, allow_import: tuple[str, ...] = ()):
        import pickle

        from critic.config import ConfigError
        if env is not None and not isinstance(env, str):
            try:
                pickle.dumps(env)
            except Exception as e:
                raise ConfigError(f"backend='ray' needs the env as a Gymnasium id or a picklable callable; "
                                  f"{env!r} is not ({type(e).__name__})") from None
        self.agent_cls, self.env, self.cfg, self.allow_import = agent_cls, env, cfg, allow_import

    def __call__(self, worker_id: int, generation: int) -> Any:
        hp = worker_hparams(self.cfg, self.agent_cls.config_cls, worker_id, generation)
        return self.agent_cls(self.env, hp, allow_import=self.allow_import)


class RaySampler:
    """``cfg.workers`` Ray actors collecting rollouts with the learner's weights (PPO, A2C).

    ``collect(params)`` sends the flat parameters to every sampler, each collects ``n_steps`` x
    ``num_envs`` steps with its own envs, and the rollouts come back to be concatenated along
    the env axis; the learner then updates as usual. A sampler that dies, raises or hangs is
    replaced (new env seeds) and its rollout collected again from the new one: a dead
    sampler's partial rollout is never used or counted. Past ``max_restarts`` restarts of one
    sampler, :class:`~critic.runners.local.WorkerError` names it and the cause.
    """

    def __init__(self, factory: Any, cfg: Any):
        try:
            import ray
        except ImportError:
            raise WorkerError("backend='ray' needs Ray: pip install 'critic[ray]'") from None
        self.ray, self.factory = ray, factory
        self.n, self.max_restarts, self.timeout = cfg.workers, cfg.max_restarts, cfg.worker_timeout
        self.started_ray = init_ray(cfg.address)
        _, _, self.Sampler = _remote_classes()
        self.cpus = min(1.0, float(ray.cluster_resources().get("CPU", 1.0)) / self.n)
        self.actors: list[Any] = [None] * self.n
        self.gens = [0] * self.n
        self.restarts = [0] * self.n
        self.failures: list[tuple[int, str]] = []
        self.ready: list[Any] = [None] * self.n

    def _spawn(self, w: int) -> None:
        self.actors[w] = self.Sampler.options(num_cpus=self.cpus, max_restarts=0).remote(self.factory, w, self.gens[w])
        self.ready[w] = self.actors[w].node.remote()

    def collect(self, params: np.ndarray) -> tuple[list[dict[str, np.ndarray]], list[float]]:
        ray = self.ray
        for w in range(self.n):
            if self.actors[w] is None:
                self._spawn(w)
        ref_params = ray.put(params)
        calls = {w: (self.actors[w].collect.remote(ref_params), time.time()) for w in range(self.n)}
        parts: dict[int, dict[str, np.ndarray]] = {}
        returns: list[float] = []
        while calls:
            refs = {ref: w for w, (ref, _) in calls.items()}
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0.5)
            for ref in ready:
                w = refs[ref]
                del calls[w]
                try:
                    part, rets = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    self._restart(w, _task_cause(e))
                    calls[w] = (self.actors[w].collect.remote(ref_params), time.time())
                    continue
                except ray.exceptions.RayActorError as e:
                    self._restart(w, f"actor died ({type(e).__name__}: {str(e).splitlines()[0]})")
                    calls[w] = (self.actors[w].collect.remote(ref_params), time.time())
                    continue
                parts[w] = part
                returns.extend(rets)
            now = time.time()
            for w, (ref, since) in list(calls.items()):
                built = bool(ray.wait([self.ready[w]], timeout=0)[0])
                limit = self.timeout if built else max(self.timeout, START_TIMEOUT_S)
                if now - since > limit:
                    self._restart(w, f"no progress for {self.timeout:g} s (hung); killed")
                    calls[w] = (self.actors[w].collect.remote(ref_params), time.time())
        return [parts[w] for w in range(self.n)], returns

    def _restart(self, w: int, cause: str) -> None:
        self.failures.append((w, cause))
        self.ray.kill(self.actors[w], no_restart=True)
        if self.restarts[w] >= self.max_restarts:
            self.close()
            raise WorkerError(f"sampling worker {w} failed {self.restarts[w] + 1} times, more than max_restarts="
                              f"{self.max_restarts} allows; last cause: {cause}")
        self.restarts[w] += 1
        self.gens[w] += 1
        warnings.warn(f"sampling worker {w} failed ({cause.splitlines()[0]}); restarted "
                      f"({self.restarts[w]}/{self.max_restarts} restarts)", RuntimeWarning, stacklevel=4)
        self._spawn(w)

    def worker_nodes(self) -> list[str]:
        return self.ray.get([a.node.remote() for a in self.actors if a is not None])

    def close(self) -> None:
        for a in self.actors:
            if a is not None:
                self.ray.kill(a, no_restart=True)
        self.actors = [None] * self.n
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False


class RaySamplingCollector(Collector):
    """The rollout collector of an on-policy learner with ``backend='ray'``: each collection
    sends the current weights to the :class:`RaySampler`'s workers (started at the first one) and
    loads their rollouts side by side into the learner's buffer."""

    envs_elsewhere = "the envs live in Ray sampling workers"

    def __init__(self, factory: SamplerFactory, cfg: Any, buffer: RolloutBuffer, params: Callable[[], torch.Tensor]):
        self.factory, self.cfg, self.buffer, self.params = factory, cfg, buffer, params
        self.sampler: RaySampler | None = None

    def collect(self, stream: Any, env_steps: int = 0) -> tuple[int, list[float]]:
        if self.sampler is None:
            self.sampler = RaySampler(self.factory, self.cfg)
        parts, returns = self.sampler.collect(self.params().detach().cpu().numpy())
        self.buffer.load_parts(parts)
        return self.buffer.t * self.buffer.N, returns

    def batches(self, env_steps: int) -> Iterator[dict[str, torch.Tensor]]:
        yield self.buffer.view()

    def sample(self) -> dict[str, torch.Tensor]:
        return self.buffer.view()

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.close()
            self.sampler = None
