"""Hyper-parameter search with Optuna, as RL Zoo's ``--optimize``: ``critic tune ALGO ENV``.

Each trial trains a fresh agent on the hyper-parameters a TPE sampler proposes from the
algorithm's search space (``space_<algo>(trial)``, below), evaluates it every ``eval_every``
env steps, and reports each evaluation to a median pruner, which stops trials that fall behind
the median of the earlier ones at the same step. The objective is the mean return of the
trial's last ``last_evals`` (3) evaluations: less at the mercy of one lucky or unlucky
evaluation than the last one alone. The best trial's configuration is written as a preset that
``critic train ALGO ENV --preset FILE`` reads.

With a storage URL (``sqlite:///tune.db``) a study survives the process: the same command again
continues it until it holds ``trials`` finished (complete or pruned) trials in all.

Optuna is an optional dependency (``pip install "critic[tune]"``), imported only when a study
runs: ``import critic`` does not need it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from critic.checkpoint import NonFiniteError
from critic.config import ConfigError, parse_set
from critic.presets import KEYS as PRESET_KEYS

if TYPE_CHECKING:  # pragma: no cover
    import optuna

log = logging.getLogger("critic.tune")

INSTALL_HINT = 'hyper-parameter tuning needs Optuna: pip install "critic[tune]"'
EXIT_USAGE, EXIT_NO_RESULT, EXIT_INTERRUPTED = 2, 1, 130


class OptunaMissing(ImportError):
    """Optuna is not installed (the message says how to install it)."""


def _optuna():
    try:
        import optuna
    except ImportError:
        raise OptunaMissing(INSTALL_HINT) from None
    return optuna


# ----------------------------------------------------------------------------- search spaces
#
# RL-Zoo-like ranges (its hyperparams_opt.py), narrowed where Zoo's reach past anything that
# trains (learning rates up to 1), written in critic's field names. Every space returns config
# fields only, and every combination it returns is a valid config with the default num_envs
# (tests/unit/test_tune.py samples each one); `fit` repairs what fixed fields (--set) break.

NET_ARCH = {"small": [64, 64], "medium": [256, 256]}
NET_ARCH_OFF = {"small": [64, 64], "medium": [256, 256], "big": [400, 300]}
GAMMAS = [0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999]
GAE_LAMBDAS = [0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0]
MAX_GRAD_NORMS = [0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 2.0, 5.0]


def _net(trial, archs: dict[str, list[int]], activations=("tanh", "relu")) -> dict[str, Any]:
    arch = trial.suggest_categorical("net_arch", list(archs))
    return {"hidden_sizes": list(archs[arch]), "activation": trial.suggest_categorical("activation", list(activations))}


def space_ppo(trial) -> dict[str, Any]:
    """PPO: RL Zoo's space (its rollouts, minibatches, epochs, clipping, coefficients)."""
    n_steps = trial.suggest_categorical("n_steps", [16, 32, 64, 128, 256, 512, 1024, 2048])
    batch_size = trial.suggest_categorical("batch_size", [16, 32, 64, 128, 256, 512])
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "lr_schedule": trial.suggest_categorical("lr_schedule", ["constant", "linear"]),
        "n_steps": n_steps,
        "batch_size": min(batch_size, n_steps),  # at most the rollout (n_steps x num_envs >= n_steps)
        "n_epochs": trial.suggest_categorical("n_epochs", [1, 5, 10, 20]),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "gae_lambda": trial.suggest_categorical("gae_lambda", GAE_LAMBDAS),
        "clip_eps": trial.suggest_categorical("clip_eps", [0.1, 0.2, 0.3, 0.4]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "vf_coef": trial.suggest_float("vf_coef", 0.0, 1.0),
        "max_grad_norm": trial.suggest_categorical("max_grad_norm", MAX_GRAD_NORMS),
        **_net(trial, NET_ARCH),
    }


def _actor_critic(trial, n_steps: list[int]) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "lr_schedule": trial.suggest_categorical("lr_schedule", ["constant", "linear"]),
        "optimizer": trial.suggest_categorical("optimizer", ["rmsprop", "adam"]),
        "n_steps": trial.suggest_categorical("n_steps", n_steps),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "gae_lambda": trial.suggest_categorical("gae_lambda", GAE_LAMBDAS),
        "normalize_advantage": trial.suggest_categorical("normalize_advantage", [False, True]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "vf_coef": trial.suggest_float("vf_coef", 0.0, 1.0),
        "max_grad_norm": trial.suggest_categorical("max_grad_norm", MAX_GRAD_NORMS),
        "ortho_init": trial.suggest_categorical("ortho_init", [False, True]),
        **_net(trial, NET_ARCH),
    }


def space_a2c(trial) -> dict[str, Any]:
    """A2C: RL Zoo's space (RMSprop or Adam, rollout length, GAE, coefficients, network)."""
    return _actor_critic(trial, [5, 8, 16, 32, 64, 128, 256, 512])


def space_a3c(trial) -> dict[str, Any]:
    """A3C: A2C's space with the shorter rollouts asynchronous workers push (workers fixed)."""
    return _actor_critic(trial, [5, 8, 16, 32, 64])


def space_acer(trial) -> dict[str, Any]:
    """ACER: RL Zoo's (SB2-era) space plus the replay ratio and the trust-region settings."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "lr_schedule": trial.suggest_categorical("lr_schedule", ["constant", "linear"]),
        "optimizer": trial.suggest_categorical("optimizer", ["rmsprop", "adam"]),
        "n_steps": trial.suggest_categorical("n_steps", [5, 10, 20, 40]),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "replay_ratio": trial.suggest_categorical("replay_ratio", [0, 1, 2, 4, 8]),
        "replay_start": trial.suggest_categorical("replay_start", [500, 1000, 5000, 10000]),
        "buffer_size": trial.suggest_categorical("buffer_size", [5000, 10000, 50000, 100000]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "q_coef": trial.suggest_float("q_coef", 0.1, 1.0),
        "avg_decay": trial.suggest_categorical("avg_decay", [0.9, 0.95, 0.99, 0.995]),
        "trust_region_delta": trial.suggest_categorical("trust_region_delta", [0.5, 1.0, 2.0]),
        "max_grad_norm": trial.suggest_categorical("max_grad_norm", [1.0, 5.0, 10.0, 20.0]),
        **_net(trial, NET_ARCH, activations=("relu", "tanh")),
    }


def _replay(trial) -> dict[str, Any]:
    train_freq = trial.suggest_categorical("train_freq", [1, 4, 8, 16, 32, 64, 128, 256])
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64, 128, 256, 512, 1024, 2048]),
        "buffer_size": trial.suggest_categorical("buffer_size", [10_000, 100_000, 1_000_000]),
        "learning_starts": trial.suggest_categorical("learning_starts", [0, 1000, 10000]),
        "train_freq": train_freq,
        "gradient_steps": train_freq,  # one gradient step per env step, in rounds (RL Zoo's choice)
        **_net(trial, NET_ARCH_OFF, activations=("relu", "tanh")),
    }


def space_sac(trial) -> dict[str, Any]:
    """SAC: RL Zoo's space (automatic entropy coefficient, Polyak rate, update rounds)."""
    return {**_replay(trial), "tau": trial.suggest_categorical("tau", [0.001, 0.005, 0.01, 0.02, 0.05, 0.08])}


def _deterministic(trial) -> dict[str, Any]:
    return {**_replay(trial),
            "noise_type": trial.suggest_categorical("noise_type", ["gaussian", "ou"]),
            "action_noise": trial.suggest_float("action_noise", 0.0, 0.8)}


def space_td3(trial) -> dict[str, Any]:
    """TD3: RL Zoo's space (exploration noise kind and size; target smoothing left at defaults)."""
    return _deterministic(trial)


def space_ddpg(trial) -> dict[str, Any]:
    """DDPG: TD3's space plus the Polyak rate, as RL Zoo's."""
    return {**_deterministic(trial), "tau": trial.suggest_categorical("tau", [0.001, 0.005, 0.01, 0.02, 0.05, 0.08])}


SPACES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "ppo": space_ppo, "a2c": space_a2c, "a3c": space_a3c, "acer": space_acer,
    "sac": space_sac, "td3": space_td3, "ddpg": space_ddpg,
}


def fit(sampled: dict[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """The trial's hyper-parameters: ``sampled`` overridden by ``fixed``, with the sampled sizes
    that the fixed fields (num_envs, n_steps, buffer_size, ...) would make invalid brought back
    into range (a PPO minibatch at most the rollout, a replay batch at most the buffer, an ACER
    buffer holding a segment). Fixed values are never changed."""
    hp = {**sampled, **fixed}
    num_envs = int(hp.get("num_envs", 1))
    if "n_steps" in hp and "batch_size" in hp and "batch_size" not in fixed and "buffer_size" not in hp:
        parts = int(hp.get("workers", 1)) if hp.get("backend") == "ray" else 1  # PPO: the rollout
        hp["batch_size"] = max(1, min(int(hp["batch_size"]), int(hp["n_steps"]) * num_envs * parts))
    if "buffer_size" in hp and "buffer_size" not in fixed:
        need = max(num_envs, int(hp["n_steps"]) * num_envs if "n_steps" in hp else 0,  # ACER: a whole segment
                   int(hp["batch_size"]) if "batch_size" in hp else 0)
        hp["buffer_size"] = max(int(hp["buffer_size"]), need)
    return hp


# ----------------------------------------------------------------------------- the study

def tune(algo: str, env_id: str, trials: int = 20, study: str | None = None, study_name: str | None = None, *,
         steps: int = 50_000, eval_every: int | None = None, eval_episodes: int = 5, seed: int = 0,
         fixed_hparams: dict[str, Any] | None = None, out: str | Path | None = None, n_startup_trials: int = 5,
         n_warmup_steps: int | None = None, last_evals: int = 3, progress: bool = True,
         allow_import: tuple[str, ...] = (), space: Callable[[Any], dict[str, Any]] | None = None,
         pruner: Any = None) -> "optuna.Study":
    """Run (or continue) a study of ``algo`` on ``env_id`` until it holds ``trials`` finished
    (complete or pruned) trials in all, and return it.

    ``study``: an Optuna storage URL (``sqlite:///tune.db``; the study is continued when it
    exists) or None (in memory). ``study_name`` defaults to ``"{algo}-{env_id}"``. Each trial
    trains ``steps`` env steps, evaluating ``eval_episodes`` episodes every ``eval_every`` steps
    (default steps / 10); its value is the mean of its last ``last_evals`` evaluation means.
    ``fixed_hparams``: config fields every trial uses (they override the sampled ones).
    TPE (seeded with ``seed``, random for the first ``n_startup_trials`` trials) proposes,
    a median pruner (after ``n_startup_trials`` trials and ``n_warmup_steps`` env steps, default
    steps / 3) stops trials behind the median; ``pruner`` replaces it. ``space(trial) -> dict``
    replaces the algorithm's search space. ``out``: write the best configuration as a preset.

    A trial whose sampled configuration is invalid (:class:`ConfigError`) or diverges
    (:class:`NonFiniteError`) is recorded as pruned, its reason in the trial's user attribute
    ``pruned_reason`` and logged; any other error stops the study (the failed trial does not
    count towards ``trials``).
    """
    from critic.algos.registry import get_algo

    optuna = _optuna()
    cls = get_algo(algo)
    algo = cls.algo
    if trials < 1:
        raise ConfigError(f"invalid value for 'trials': {trials!r} (allowed: an integer >= 1)")
    if steps < 1:
        raise ConfigError(f"invalid value for 'steps': {steps!r} (allowed: an integer >= 1)")
    eval_every = max(steps // 10, 1) if eval_every is None else eval_every
    if eval_every < 1 or eval_episodes < 1 or last_evals < 1:
        raise ConfigError(f"invalid evaluation settings eval_every={eval_every}, eval_episodes={eval_episodes}, "
                          f"last_evals={last_evals} (allowed: integers >= 1)")
    space = space or SPACES[algo]
    fixed_cfg = cls.config_cls.from_dict(dict(fixed_hparams or {}))  # checked once, before any trial
    as_dict = fixed_cfg.to_dict()
    fixed = {k: as_dict[k] for k in (fixed_hparams or {})}
    fixed.setdefault("seed", seed)
    # The env and the fixed fields together, before any trial: an env id that does not exist or an
    # action space the algorithm cannot handle is the command's error, not every trial's.
    cls(env_id, fixed_cfg.replace(seed=fixed["seed"]), allow_import=tuple(allow_import)).close()

    study_name = study_name or f"{algo}-{env_id}"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO if progress else optuna.logging.WARNING)
    try:
        st = optuna.create_study(storage=study, study_name=study_name, direction="maximize",
                                 load_if_exists=study is not None)
        made_for = (st.user_attrs.get("algo"), st.user_attrs.get("env_id"))
        if made_for == (None, None):
            st.set_user_attr("algo", algo)
            st.set_user_attr("env_id", env_id)
        elif made_for != (algo, env_id):
            raise ConfigError(f"study '{study_name}' in {study} was made for {made_for[0]} on {made_for[1]}, not "
                              f"{algo} on {env_id} (choose another --study-name)")
        # A continued study draws on from where it stopped: the same seed again would repeat the
        # first run's random start-up configurations.
        st.sampler = optuna.samplers.TPESampler(seed=seed + len(st.trials), n_startup_trials=n_startup_trials)
        st.pruner = pruner if pruner is not None else optuna.pruners.MedianPruner(
            n_startup_trials=n_startup_trials, n_warmup_steps=steps // 3 if n_warmup_steps is None else n_warmup_steps)
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        remaining = trials - len(st.get_trials(deepcopy=False, states=finished))
        objective = _objective(cls, env_id, space, fixed, steps, eval_every, eval_episodes, last_evals,
                               tuple(allow_import))
        if remaining > 0:
            st.optimize(objective, n_trials=remaining, show_progress_bar=progress and sys.stderr.isatty(),
                        callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished)])
        else:
            log.info("study '%s' already holds %d finished trials; nothing to run", study_name, trials)
    finally:
        optuna.logging.set_verbosity(verbosity)
    if out is not None:
        if best_trial(st) is None:
            log.warning("no trial of study '%s' completed: no preset written", study_name)
        else:
            write_preset(st, out, storage=study)
    return st


def _objective(cls, env_id: str, space, fixed: dict[str, Any], steps: int, eval_every: int, eval_episodes: int,
               last_evals: int, allow_import: tuple[str, ...]):
    def objective(trial) -> float:
        hp = fit(space(trial), fixed)
        for k, v in (("steps", steps), ("eval_every", eval_every), ("eval_episodes", eval_episodes),
                     ("last_evals", last_evals)):
            trial.set_user_attr(k, v)
        try:
            cfg = cls.config_cls.from_dict(hp)
            trial.set_user_attr("hparams", {k: v for k, v in cfg.to_dict().items() if k in hp})
            agent = cls(env_id, cfg, allow_import=allow_import)
        except ConfigError as e:
            raise _pruned(trial, f"invalid configuration: {e}") from None
        reported: set[int] = set()
        seen = 0
        pruned_at: list[tuple[int, float]] = []

        def callback(a, info) -> bool | None:
            nonlocal seen
            evals = a.evaluations
            for ev in evals[seen:]:
                # at the evaluation grid's step (trials with different rollouts evaluate a few
                # steps apart; the median pruner compares values at equal steps)
                step = int(ev["env_steps"]) // eval_every * eval_every
                if step in reported:
                    continue
                reported.add(step)
                trial.report(float(ev["mean"]), step)
                if trial.should_prune():
                    pruned_at.append((int(ev["env_steps"]), float(ev["mean"])))
            seen = len(evals)
            return False if pruned_at else None

        try:
            agent.learn(steps, callback=callback, eval_every=eval_every, eval_episodes=eval_episodes,
                        progress_bar=False)
            means = [float(ev["mean"]) for ev in agent.evaluations]
        except NonFiniteError as e:
            raise _pruned(trial, f"diverged: {e}") from None
        except ConfigError as e:
            raise _pruned(trial, f"invalid configuration: {e}") from None
        finally:
            trial.set_user_attr("env_steps", int(agent.env_steps))
            agent.close()
        if pruned_at:
            at, mean = pruned_at[0]
            raise _pruned(trial, f"stopped by the pruner at step {at} (evaluation mean {mean:.2f})", logging.INFO)
        if not means:
            raise _pruned(trial, "no evaluation")
        value = sum(means[-last_evals:]) / len(means[-last_evals:])
        if not math.isfinite(value):
            raise _pruned(trial, f"non-finite objective {value}")
        return value

    return objective


def _pruned(trial, reason: str, level: int = logging.WARNING):
    """A TrialPruned for ``trial``, its reason kept (user attribute ``pruned_reason``) and logged."""
    trial.set_user_attr("pruned_reason", reason)
    log.log(level, "trial %d pruned: %s", trial.number, reason)
    return _optuna().TrialPruned(reason)


def best_trial(study) -> "optuna.trial.FrozenTrial | None":
    """The completed trial with the highest value (None when none completed)."""
    optuna = _optuna()
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.value is not None]
    return max(done, key=lambda t: t.value) if done else None


def counts(study) -> dict[str, int]:
    """Trials of the study by state: complete, pruned, failed, running (and waiting)."""
    optuna = _optuna()
    S = optuna.trial.TrialState
    out = {"complete": 0, "pruned": 0, "failed": 0, "running": 0}
    for t in study.get_trials(deepcopy=False):
        key = {S.COMPLETE: "complete", S.PRUNED: "pruned", S.FAIL: "failed"}.get(t.state, "running")
        out[key] += 1
    return out


def write_preset(study, path: str | Path, storage: str | None = None) -> Path:
    """Write the best completed trial's configuration as a preset YAML (the keys of the shipped
    presets; what it was found by in a comment, since a preset has no notes key)."""
    trial = best_trial(study)
    if trial is None:
        raise ConfigError(f"study '{study.study_name}' has no completed trial to write a preset from")
    algo, env_id = study.user_attrs.get("algo"), study.user_attrs.get("env_id")
    hparams = {k: v for k, v in trial.user_attrs["hparams"].items() if k != "seed"}
    n = counts(study)
    path = Path(path)
    episodes = trial.user_attrs.get("eval_episodes")
    where = f" in {storage}" if storage and storage.startswith("sqlite") else ""  # other URLs may hold a password
    head = [
        f"Tuned by `critic tune {algo} {env_id}`: study '{study.study_name}'{where},",
        f"best of {n['complete'] + n['pruned']} finished trials ({n['complete']} complete, {n['pruned']} pruned): "
        f"trial {trial.number},",
        f"objective {trial.value:.2f} (the mean of its last {trial.user_attrs.get('last_evals')} evaluations of "
        f"{episodes} episode{'s' if episodes != 1 else ''}) after {trial.user_attrs.get('steps'):,} steps, "
        f"seed {trial.user_attrs['hparams'].get('seed', 0)}.",
        f"Train with: critic train {algo} {env_id} --preset {path}",
    ]
    data = {"algo": algo, "env_id": env_id, "steps": trial.user_attrs.get("steps"),
            "eval_every": trial.user_attrs.get("eval_every"), "eval_episodes": trial.user_attrs.get("eval_episodes"),
            "hparams": hparams}
    assert set(data) <= set(PRESET_KEYS)
    if path.parent != Path("."):
        path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False, default_flow_style=None)
    path.write_text("".join(f"# {line}\n" for line in head) + text)
    return path


# ----------------------------------------------------------------------------- command line

def add_tune_parser(sub) -> argparse.ArgumentParser:
    """Add ``critic tune`` to the CLI's subparsers ``sub``; its handler is :func:`cmd_tune`."""
    t = sub.add_parser("tune", help="search hyper-parameters with Optuna (TPE, median pruning) and write the "
                                    "best as a preset",
                       description="Train a fresh agent per trial on hyper-parameters a TPE sampler proposes, "
                                   "prune trials behind the median, and write the best configuration as a preset "
                                   "for `critic train ALGO ENV --preset FILE`. Needs Optuna: "
                                   'pip install "critic[tune]".')
    t.add_argument("algo", help="algorithm: ppo, a2c, a3c, acer, sac, td3 or ddpg")
    t.add_argument("env_id", help="Gymnasium environment id, e.g. CartPole-v1")
    t.add_argument("--trials", type=int, default=20,
                   help="finished (complete or pruned) trials the study holds in all when done; a continued "
                        "study runs only the rest (default 20)")
    t.add_argument("--study", metavar="URL", default=None,
                   help="Optuna storage, e.g. sqlite:///tune.db: the study survives and the same command "
                        "continues it (default: in memory)")
    t.add_argument("--study-name", default=None, help="study name in the storage (default ALGO-ENV_ID)")
    t.add_argument("--steps", type=int, default=50_000, help="env steps per trial (default 50000)")
    t.add_argument("--eval-every", type=int, default=None, help="evaluate every N env steps (default steps/10)")
    t.add_argument("--eval-episodes", type=int, default=5, help="deterministic episodes per evaluation (default 5)")
    t.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial's agent (default 0)")
    t.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                   help="fix hyper-parameters for every trial: --set num_envs=8 torch_threads=1")
    t.add_argument("-o", "--output", default=None, help="preset file to write (default tune_ALGO_ENV.yaml)")
    t.add_argument("--allow-import", action="append", metavar="MODULE",
                   help="allow env ids of the form MODULE:Env, or an encoder MODULE:function, to import MODULE")
    t.add_argument("--no-progress", action="store_true", help="no progress bar and no line per trial")
    t.set_defaults(func=cmd_tune)
    return t


def cmd_tune(args: argparse.Namespace) -> int:
    """``critic tune``: run the study, print its best trials and write the preset."""
    fixed = parse_set(args.set or [])
    out = Path(args.output) if args.output else Path(f"tune_{args.algo.lower()}_{args.env_id.replace('/', '-')}.yaml")
    try:
        study = tune(args.algo, args.env_id, args.trials, study=args.study, study_name=args.study_name,
                     steps=args.steps, eval_every=args.eval_every, eval_episodes=args.eval_episodes, seed=args.seed,
                     fixed_hparams=fixed, out=out, allow_import=tuple(args.allow_import or ()),
                     progress=not getattr(args, "no_progress", False))
    except OptunaMissing as e:
        print(f"critic: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        again = " (the same command continues the study)" if args.study else ""
        print(f"\ncritic: tuning interrupted{again}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary(study))
    if best_trial(study) is None:
        print("critic: no trial completed, so no preset was written (more --steps or --trials?)", file=sys.stderr)
        return EXIT_NO_RESULT
    algo, env_id = study.user_attrs["algo"], study.user_attrs["env_id"]
    print(f"preset: {out}  (train with: critic train {algo} {env_id} --preset {out})")
    return 0


def summary(study, top: int = 5) -> str:
    """A short table of the study's best completed trials."""
    optuna = _optuna()
    n = counts(study)
    lines = [f"study '{study.study_name}': {n['complete']} complete, {n['pruned']} pruned, {n['failed']} failed"
             + (f", {n['running']} running" if n["running"] else "")]
    done = sorted((t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                   if t.value is not None), key=lambda t: -t.value)[:top]
    if done:
        lines.append(f"{'trial':>6} {'value':>10}  parameters")
        for t in done:
            used = t.user_attrs.get("hparams") or t.params  # what the agent ran with (sizes fitted, --set applied)
            params = " ".join(f"{k}={_short(v)}" for k, v in used.items() if k not in ("seed", "torch_threads"))
            lines.append(f"{t.number:>6} {t.value:>10.2f}  {params}")
    return "\n".join(lines)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v).replace(" ", "")
