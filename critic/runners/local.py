"""Asynchronous workers on this machine: torch.multiprocessing with parameters in shared memory.

The runner only orchestrates (docs/architecture.md). The algorithm gives it a picklable *worker factory*
``factory(worker_id, generation) -> worker`` whose ``worker.rollout_gradient(params)`` copies
``params`` into its local network, collects one rollout with its own envs and returns the
(clipped) gradient, the loss metrics and the finished episodes' returns. The runner owns:

* the shared parameters (one flat tensor in shared memory) and the shared optimizer statistics:
  every worker builds the same optimizer over the shared tensor with the shared state attached,
  so ``step()`` in any worker updates the one set of parameters and moments in place, with no
  global lock (Hogwild-style, as in the A3C paper);
* counters in shared memory, one slot per worker: env steps and updates, incremented only
  after a worker's gradient was applied, so a worker that dies mid-rollout counts no samples;
* a control word (run / pause / stop) and the step budget of the current ``learn`` call;
* fault tolerance: a worker that dies (killed, or its env or code raised) is restarted with a
  new generation number (new env seeds) and pulls the latest parameters before its first
  rollout; a worker without progress for ``worker_timeout`` seconds is killed and restarted;
  past ``max_restarts`` restarts of one worker, :class:`WorkerError` names the worker and the
  cause, after stopping the others.

Workers ignore SIGINT (Ctrl-C is handled by the learner, which stops them) and use one torch
thread each.
"""

from __future__ import annotations

import pickle
import queue as queue_mod
import signal
import sys
import time
import traceback
import warnings
from typing import Any, Callable

import torch
import torch.multiprocessing as mp

RUN, PAUSE, STOP = 0, 1, 2
_REPORT_EVERY_S = 0.1
START_TIMEOUT_S = 120.0  # building a worker (imports, envs) may take a while on a loaded machine


class WorkerError(RuntimeError):
    """A worker failed more often than ``max_restarts`` allows (or could not start at all)."""


def share_optimizer_state_(opt: torch.optim.Optimizer) -> None:
    """Create the optimizer's state now (a zero-gradient dry step) and move it to shared memory.

    The dry step leaves the parameters unchanged (Adam and RMSprop move by 0 on a zero gradient
    from zero moments) and every state tensor, step counts included, is zeroed after it.
    Already-present state (loaded from a checkpoint) is kept and shared as it is.
    """
    params = [p for g in opt.param_groups for p in g["params"]]
    if any(p not in opt.state or not opt.state[p] for p in params):
        saved = [p.detach().clone() for p in params]
        grads = [p.grad for p in params]
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
        with torch.no_grad():
            for p, s, g in zip(params, saved, grads):
                p.copy_(s)
                p.grad = g
        for st in opt.state.values():
            for v in st.values():
                if torch.is_tensor(v):
                    v.zero_()
    for p in params:
        p.share_memory_()
        for v in opt.state[p].values():
            if torch.is_tensor(v):
                v.share_memory_()


def attach_state(opt: torch.optim.Optimizer, states: list[dict[str, Any]]) -> None:
    """Give ``opt`` (built over the shared parameters) the shared per-parameter state tensors."""
    params = [p for g in opt.param_groups for p in g["params"]]
    for p, st in zip(params, states):
        opt.state[p] = st


def _worker_main(wid: int, gen: int, factory: Callable, make_opt: Callable, schedule: Callable | None,
                 shared: list[torch.Tensor],
                 states: list[dict[str, Any]], steps: torch.Tensor, updates: torch.Tensor,
                 beat: torch.Tensor, idle: torch.Tensor, started: torch.Tensor, control: torch.Tensor,
                 queue: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    try:
        worker = factory(wid, gen)
        opt = make_opt(shared)
        attach_state(opt, states)
        beat[wid] = time.time()
        started[wid] = 1
        flat = shared[0]
        last_report = time.monotonic()
        returns: list[float] = []
        metrics: dict[str, float] = {}
        while True:
            beat[wid] = time.time()
            idle[wid] = 0
            state = int(control[0])
            if state == STOP:
                break
            if state == PAUSE or int(steps.sum()) >= int(control[2]) - int(control[1]):
                idle[wid] = 1
                time.sleep(0.002)
                continue
            if schedule is not None:
                schedule(opt, int(control[1]) + int(steps.sum()), (int(control[1]), int(control[2])))
            grad, m, rets = worker.rollout_gradient(flat)
            flat.grad = grad
            opt.step()
            steps[wid] += worker.rollout_steps
            updates[wid] += 1
            returns.extend(rets)
            metrics = m
            now = time.monotonic()
            if returns or now - last_report > _REPORT_EVERY_S:
                queue.put(("report", wid, gen, returns, {k: float(v) for k, v in metrics.items()}))
                returns, last_report = [], now
        idle[wid] = 1
        if returns:
            queue.put(("report", wid, gen, returns, {k: float(v) for k, v in metrics.items()}))
    except BaseException as e:  # noqa: BLE001  (reported to the learner, which decides)
        tb = traceback.format_exception(type(e), e, e.__traceback__)
        queue.put(("error", wid, gen, f"{type(e).__name__}: {e}", "".join(tb[-6:])))
        idle[wid] = 1
        sys.exit(1)


class LocalRunner:
    """``workers`` processes running ``factory``'s workers against ``params`` (one flat tensor)."""

    def __init__(self, factory: Callable, make_opt: Callable, opt: torch.optim.Optimizer, workers: int, *,
                 schedule: Callable | None = None, max_restarts: int = 3, worker_timeout: float = 60.0, start_method: str = "spawn"):
        self.factory, self.make_opt, self.schedule, self.n = factory, make_opt, schedule, workers
        self.max_restarts, self.timeout = max_restarts, worker_timeout
        self.ctx = mp.get_context(start_method)
        share_optimizer_state_(opt)
        self.shared = [p for g in opt.param_groups for p in g["params"]]
        self.states = [opt.state[p] for p in self.shared]
        self.steps = torch.zeros(workers, dtype=torch.int64).share_memory_()
        self.updates = torch.zeros(workers, dtype=torch.int64).share_memory_()
        self.beat = torch.zeros(workers, dtype=torch.float64).share_memory_()
        self.idle = torch.ones(workers, dtype=torch.int64).share_memory_()
        self.started = torch.zeros(workers, dtype=torch.int64).share_memory_()
        self.control = torch.zeros(3, dtype=torch.int64).share_memory_()  # state, base, target
        self.queue = self.ctx.Queue()
        self.procs: list[Any] = [None] * workers
        self.gens = [0] * workers
        self.restarts = [0] * workers
        self.failures: list[tuple[int, str]] = []
        self._errors: dict[tuple[int, int], tuple[str, str]] = {}
        self._late_returns: list[float] = []  # episode reports read while looking for errors
        self._started_at = [0.0] * workers
        self._check_picklable()

    def _check_picklable(self) -> None:
        try:
            pickle.dumps(self.factory)
        except Exception as e:
            raise WorkerError(f"the worker set-up cannot be sent to worker processes ({type(e).__name__}: {e}); "
                              "give the env as a Gymnasium id or a picklable (module-level) callable") from None

    # ------------------------------------------------------------------ lifecycle
    def start(self, base_steps: int, target_steps: int) -> None:
        self.steps.zero_()
        self.updates.zero_()
        self.control[1], self.control[2] = base_steps, target_steps
        self.control[0] = RUN
        for w in range(self.n):
            if self.procs[w] is None or not self.procs[w].is_alive():
                self._spawn(w)

    def _spawn(self, w: int) -> None:
        self.beat[w] = time.time()
        self.idle[w] = 0
        self.started[w] = 0
        p = self.ctx.Process(target=_worker_main, name=f"critic-worker-{w}", daemon=True,
                             args=(w, self.gens[w], self.factory, self.make_opt, self.schedule, self.shared, self.states,
                                   self.steps, self.updates, self.beat, self.idle, self.started, self.control,
                                   self.queue))
        p.start()
        self.procs[w] = p
        self._started_at[w] = time.time()

    def stop(self, timeout: float | None = None) -> None:
        """Let in-flight rollouts finish and push, then end every worker process (a worker still
        busy after ``timeout``, by default ``worker_timeout``, is hung and gets killed)."""
        self.control[0] = STOP
        deadline = time.time() + (self.timeout if timeout is None else timeout)
        for p in self.procs:
            if p is not None:
                p.join(max(deadline - time.time(), 0.1))
        for p in self.procs:
            if p is not None and p.is_alive():
                p.kill()
                p.join(5)
        self._drain_errors(wait=0.0)
        for (w, gen), (cause, _) in sorted(self._errors.items()):
            if gen == self.gens[w]:  # failed as training ended: report it, nothing to restart
                self.failures.append((w, cause))
                warnings.warn(f"worker {w} failed as training ended ({cause})", RuntimeWarning, stacklevel=3)
        self._errors.clear()
        self.procs = [None] * self.n

    def pause(self, timeout: float | None = None) -> None:
        """Stop workers from starting rollouts and wait until every live worker is idle."""
        self.control[0] = PAUSE
        deadline = time.time() + (self.timeout if timeout is None else timeout)
        while time.time() < deadline:
            if all(self.idle[w] == 1 or p is None or not p.is_alive() for w, p in enumerate(self.procs)):
                return
            time.sleep(0.001)

    def resume(self) -> None:
        self.control[0] = RUN

    # ------------------------------------------------------------------ progress and health
    @property
    def env_steps(self) -> int:
        return int(self.steps.sum())

    @property
    def num_updates(self) -> int:
        return int(self.updates.sum())

    def poll(self, wait: float = 0.05) -> tuple[list[float], dict[str, float]]:
        """Reports since the last poll (waiting up to ``wait`` s for one); restarts failed workers."""
        returns, self._late_returns = self._late_returns, []
        metrics: dict[str, float] = {}
        try:
            msg = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
            while True:
                self._handle(msg, returns, metrics)
                msg = self.queue.get_nowait()
        except queue_mod.Empty:
            pass
        self._check_health()
        return returns, metrics

    def _handle(self, msg: tuple, returns: list[float], metrics: dict[str, float]) -> None:
        kind, wid, gen = msg[:3]
        if kind == "report":
            returns.extend(msg[3])
            metrics.update(msg[4])
        elif kind == "error":
            self._errors[(wid, gen)] = (msg[3], msg[4])

    def _check_health(self) -> None:
        if int(self.control[0]) == STOP:
            return
        now = time.time()
        for w, p in enumerate(self.procs):
            if p is None:
                continue
            if (w, self.gens[w]) in self._errors:  # its code raised: it is exiting, restart it now
                p.join(2)
                if p.is_alive():
                    p.kill()
                    p.join(5)
                cause = self._cause(w, p.exitcode)
            elif not p.is_alive():
                self._drain_errors()
                if self.started[w] == 0 and p.exitcode is not None and p.exitcode > 0 and \
                        (w, self.gens[w]) not in self._errors:
                    self.stop(timeout=5)
                    raise WorkerError(
                        f"worker {w} failed while its process was starting (exit code {p.exitcode}), before "
                        "running any critic code. With start_method='spawn' each worker imports your main "
                        "script: guard its entry point with `if __name__ == '__main__':` (see 'Safe importing "
                        "of main module' in Python's multiprocessing docs); the error above is the worker's")
                cause = self._cause(w, p.exitcode)
            elif (self.started[w] == 1 and int(self.control[0]) == RUN and self.idle[w] == 0
                  and now - float(self.beat[w]) > self.timeout):
                p.kill()
                p.join(5)
                cause = f"no progress for {self.timeout:g} s (hung); killed"
            elif self.started[w] == 0 and now - self._started_at[w] > max(self.timeout, START_TIMEOUT_S):
                p.kill()
                p.join(5)
                cause = f"did not start within {max(self.timeout, START_TIMEOUT_S):g} s; killed"
            else:
                continue
            self._restart(w, cause)

    def _drain_errors(self, wait: float = 0.2) -> None:
        try:
            while True:
                msg = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
                self._handle(msg, self._late_returns, {})
        except queue_mod.Empty:
            pass

    def _cause(self, w: int, exitcode: int | None) -> str:
        if (w, self.gens[w]) in self._errors:
            cause, tb = self._errors.pop((w, self.gens[w]))
            return f"{cause}\n{tb}".rstrip()
        if exitcode is not None and exitcode < 0:
            try:
                return f"killed by signal {signal.Signals(-exitcode).name}"
            except ValueError:
                return f"killed by signal {-exitcode}"
        return f"exited with code {exitcode}"

    def _restart(self, w: int, cause: str) -> None:
        self.failures.append((w, cause))
        first_line = cause.splitlines()[0]
        if self.restarts[w] >= self.max_restarts:
            self.stop(timeout=5)
            raise WorkerError(f"worker {w} failed {self.restarts[w] + 1} times, more than max_restarts="
                              f"{self.max_restarts} allows; last cause: {cause}")
        self.restarts[w] += 1
        self.gens[w] += 1
        warnings.warn(f"worker {w} failed ({first_line}); restarted with the latest weights "
                      f"({self.restarts[w]}/{self.max_restarts} restarts)", RuntimeWarning, stacklevel=3)
        self._spawn(w)

    def close(self) -> None:
        self.stop(timeout=5)
        self.queue.close()


def worker_pids(runner: LocalRunner) -> list[int]:
    """Process ids of the live workers (tests kill them)."""
    return [p.pid for p in runner.procs if p is not None and p.is_alive()]


__all__ = ["LocalRunner", "WorkerError", "share_optimizer_state_", "attach_state", "worker_pids"]
