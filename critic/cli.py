"""``critic`` command line: train, eval, plot, list, check-env.

Every user error (bad hyper-parameter, unknown env id, corrupted checkpoint) prints one line
``critic: error: ...`` and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

from critic.config import ConfigError, dump_yaml, load_yaml, parse_set, short_repr
from critic.presets import find_preset, list_presets, read_preset  # noqa: F401  (re-exported)

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CLIError(Exception):
    pass


# ----------------------------------------------------------------------------- commands

def cmd_train(args: argparse.Namespace) -> int:
    from critic.agent import run_config
    from critic.algos.registry import get_algo

    if args.resume:
        return _resume(args)
    cls = get_algo(args.algo)
    hparams: dict[str, Any] = {}
    steps, eval_every, eval_episodes = 100_000, None, 10
    preset_path = None
    if args.preset:
        preset_path = find_preset(args.preset, args.algo.lower())
        preset = read_preset(preset_path)
        if preset.get("algo", args.algo.lower()) != args.algo.lower():
            raise CLIError(f"preset {preset_path.name} is for {preset['algo']}, not {args.algo}")
        tuned = preset.get("env_id")
        tuned_ids = tuned if isinstance(tuned, list) else [tuned]
        if tuned is not None and args.env_id not in tuned_ids:
            print(f"critic: note: preset {preset_path.name} was tuned for {', '.join(map(str, tuned_ids))}, "
                  f"training on {args.env_id}", file=sys.stderr)
        hparams.update(preset.get("hparams") or {})
        steps = int(preset.get("steps", steps))
        eval_every = preset.get("eval_every", eval_every)
        eval_episodes = int(preset.get("eval_episodes", eval_episodes))
    hparams.update(parse_set(args.set or []))
    if args.seed is not None and args.seeds is not None:
        raise CLIError("give either --seed or --seeds, not both")
    if args.seed is not None:
        hparams["seed"] = args.seed
    if args.num_envs is not None:
        hparams["num_envs"] = args.num_envs
    if args.device is not None:
        hparams["device"] = args.device
    for flag in ("workers", "backend", "address"):
        value = getattr(args, flag)
        if value is not None:
            if flag not in cls.config_cls.field_names():
                raise CLIError(f"--{flag} is not an option of {cls.algo} (it is for a3c, and for ppo and a2c "
                               "with --backend ray)")
            hparams[flag] = value
    steps = args.steps if args.steps is not None else steps
    if steps <= 0:
        raise ConfigError(f"invalid value for '--steps': {steps} (allowed: an integer > 0)")
    eval_every = args.eval_every if args.eval_every is not None else (eval_every or max(steps // 20, 1000))
    eval_episodes = args.eval_episodes if args.eval_episodes is not None else eval_episodes
    cfg = cls.config_cls.from_dict(hparams)  # validate before any env is built
    if args.seeds is not None or args.sweep:
        given = [flag for flag, v in (("--stop-at", args.stop_at), ("--keep-checkpoints", args.keep_checkpoints),
                                      ("--track", args.track or None)) if v is not None]
        if given:
            raise CLIError(f"{', '.join(given)}: not available for a batched run (--seeds/--sweep) yet; train the "
                           "seeds one by one (--seed S) to use them")
        return _train_seeds(cls, args, cfg, steps, eval_every, eval_episodes, preset_path)
    out = Path(args.out) if args.out else Path("runs") / (
        f"{args.algo.lower()}_{args.env_id.replace('/', '-')}_s{cfg.seed}_"
        f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    if (out / "config.yaml").exists():
        if _has_checkpoint(out):
            raise CLIError(f"run directory {out} already holds a run; continue it with --resume {out} "
                           "or choose another --out")
        print(f"critic: note: {out} holds a run that stopped before its first checkpoint; starting it again",
              file=sys.stderr)
    agent = cls(args.env_id, cfg, allow_import=tuple(args.allow_import or ()))
    _clear_failed_attempt(out)
    out.mkdir(parents=True, exist_ok=True)
    run_cfg = {**run_config(cls.algo, args.env_id, cfg, steps, eval_every, eval_episodes, args.allow_import or (),
                            preset_path), **_run_options(args, {})}
    (out / "config.yaml").write_text(dump_yaml(run_cfg))
    print(f"critic: training {cls.algo} on {args.env_id} for {steps:,} steps -> {out}", file=sys.stderr)
    return _run(agent, steps, out, eval_every, eval_episodes, args, run_cfg)


def _run_options(args: argparse.Namespace, stored: dict[str, Any]) -> dict[str, Any]:
    """--stop-at, --checkpoint-every and --keep-checkpoints: given now, else as the run's
    config.yaml stored them (a resumed run keeps them); validated."""
    out = {}
    for key in ("stop_at", "checkpoint_every", "keep_checkpoints"):
        value = getattr(args, key, None)
        out[key] = value if value is not None else stored.get(key)
    for key in ("checkpoint_every", "keep_checkpoints"):
        if out[key] is not None and (isinstance(out[key], bool) or not isinstance(out[key], int) or out[key] < 1):
            raise ConfigError(f"invalid value for '--{key.replace('_', '-')}': {out[key]!r} (allowed: an integer >= 1)")
    if out["stop_at"] is not None and not math.isfinite(out["stop_at"]):
        raise ConfigError(f"invalid value for '--stop-at': {out['stop_at']!r} (allowed: a finite number)")
    return out


def _train_seeds(cls, args: argparse.Namespace, cfg, steps: int, eval_every: int, eval_episodes: int,
                 preset_path) -> int:
    """``--seeds 0-7``: one batched run; RUN/seed_<s>/ is each member's ordinary run directory
    (its own config.yaml: it resumes alone with --resume), RUN/ holds the aggregate."""
    from critic.agent import run_config
    from critic.algos.batch import parse_seeds

    seeds = parse_seeds(args.seeds if args.seeds is not None else [cfg.seed])
    out = Path(args.out) if args.out else Path("runs") / (
        f"{args.algo.lower()}_{args.env_id.replace('/', '-')}_seeds{seeds[0]}-{seeds[-1]}_"
        f"{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    if out.is_dir() and any(out.glob("*seed_*/config.yaml")):
        raise CLIError(f"run directory {out} already holds a batched run; choose another --out")
    hp = {k: v for k, v in cfg.to_dict().items() if k != "seed"}
    batch = cls(args.env_id, hp, seeds=seeds, sweep=args.sweep or None, allow_import=tuple(args.allow_import or ()))
    for k, member in enumerate(batch.agents):
        d = out / batch.member_name(k)
        d.mkdir(parents=True, exist_ok=True)
        run_cfg = run_config(cls.algo, args.env_id, member.cfg, steps, eval_every, eval_episodes,
                             args.allow_import or (), preset_path)
        (d / "config.yaml").write_text(dump_yaml(run_cfg))
    print(f"critic: training {cls.algo} on {args.env_id}: {batch.M} members in one batch (seeds {seeds}"
          f"{', sweep ' + ' '.join(args.sweep) if args.sweep else ''}) for {steps:,} steps each -> {out}",
          file=sys.stderr)
    if _learn_batch(batch, steps, out, eval_every, eval_episodes, args) == EXIT_INTERRUPTED:
        return EXIT_INTERRUPTED
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    for group in summary.get("groups", [summary]):
        final = group.get("final") or {}
        if final.get("iqm") is not None:
            lo, hi = final["iqm_ci"]
            which = f" ({group['label']})" if "label" in group else ""
            print(f"critic: final evaluation over {final['n']} seeds{which}: IQM {final['iqm']:.1f} (95% CI "
                  f"{lo:.1f} to {hi:.1f}), median {final['median']:.1f}", file=sys.stderr)
    print(f"critic: {out}/summary.json, {out}/curve.png", file=sys.stderr)
    return 0


def _resume(args: argparse.Namespace) -> int:
    import critic
    from critic import checkpoint as ckpt

    run_dir = Path(args.resume)
    if (run_dir / "batch.safetensors").is_file():
        return _resume_batch(run_dir, args)
    if not (run_dir / "config.yaml").is_file():
        raise CLIError(f"--resume {run_dir}: not a run directory (no config.yaml)")
    run_cfg = load_yaml(run_dir / "config.yaml")
    if not run_cfg.get("env_id"):
        raise CLIError(f"--resume {run_dir}: the run was trained on an env given as an object or callable, which the "
                       "command line cannot rebuild; resume it from Python: critic.load(RUN, env=..., "
                       "for_training=True).learn(...)")
    ck = run_dir / "checkpoints" / ckpt.FILENAME
    if not ck.is_file():
        return _restart(run_dir, run_cfg, args)
    agent = critic.load(ck, allow_import=tuple(args.allow_import or ()), for_training=True)
    steps = args.steps if args.steps is not None else int(run_cfg["steps"])
    remaining = steps - agent.env_steps
    print(f"critic: resuming {agent.algo} on {run_cfg['env_id']} at step {agent.env_steps:,} "
          f"({max(remaining, 0):,} to go) -> {run_dir}", file=sys.stderr)
    if remaining <= 0:
        print("critic: nothing to do, the run already reached its step budget", file=sys.stderr)
        return 0
    return _run(agent, remaining, run_dir, int(run_cfg.get("eval_every") or 0),
                int(run_cfg.get("eval_episodes") or 10), args, run_cfg)


def _resume_batch(run_dir: Path, args: argparse.Namespace) -> int:
    """``--resume RUN`` of a batched run (``--seeds``): every member from its checkpoint, then the
    batch's own state; it trains on to the members' step budget."""
    import critic

    batch = critic.load(run_dir, allow_import=tuple(args.allow_import or ()))
    first = next(p for p in sorted(run_dir.glob("*seed_*/config.yaml")))
    run_cfg = load_yaml(first)
    a0 = batch.agents[0]
    steps = args.steps if args.steps is not None else int(run_cfg["steps"])
    remaining = steps - a0.env_steps
    print(f"critic: resuming a batch of {batch.M} {a0.algo} members on {run_cfg['env_id']} at step "
          f"{a0.env_steps:,} ({max(remaining, 0):,} to go) -> {run_dir}", file=sys.stderr)
    return _learn_batch(batch, remaining, run_dir, int(run_cfg.get("eval_every") or 0),
                        int(run_cfg.get("eval_episodes") or 10), args)


def _learn_batch(batch, steps: int, run_dir: Path, eval_every: int, eval_episodes: int,
                 args: argparse.Namespace) -> int:
    """Train a batched run for ``steps`` more env steps (none: nothing to do) and close it."""
    try:
        if steps > 0:
            batch.learn(steps, run_dir=run_dir, eval_every=eval_every, eval_episodes=eval_episodes,
                        checkpoint_every=max(eval_every, 10_000), progress_bar=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ncritic: interrupted; each member's checkpoint is in {run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        batch.close()
    return 0


def _has_checkpoint(run_dir: Path) -> bool:
    from critic import checkpoint as ckpt
    return (run_dir / "checkpoints" / ckpt.FILENAME).is_file() or (run_dir / "model" / ckpt.FILENAME).is_file()


def _clear_failed_attempt(run_dir: Path) -> None:
    """Remove what an attempt that died before its first checkpoint left (its logs would
    otherwise be continued by the new attempt); nothing else in the directory is touched."""
    import shutil
    if _has_checkpoint(run_dir):
        return
    for name in ("metrics.csv", "evals.csv", "summary.json", "curve.png"):
        (run_dir / name).unlink(missing_ok=True)
    if (run_dir / "tb").is_dir():
        shutil.rmtree(run_dir / "tb")


def _restart(run_dir: Path, run_cfg: dict[str, Any], args: argparse.Namespace) -> int:
    """--resume of a run that failed before its first checkpoint: start it again from its
    config.yaml (same algorithm, env, hyper-parameters and step budget)."""
    from critic.algos.registry import get_algo

    try:
        cls = get_algo(str(run_cfg["algo"]))
        env_id = run_cfg["env_id"]
        cfg = cls.config_cls.from_dict(run_cfg.get("hparams") or {})
        steps = args.steps if args.steps is not None else int(run_cfg["steps"])
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise CLIError(f"--resume {run_dir}: config.yaml is incomplete ({type(e).__name__}: {e})") from None
    print(f"critic: {run_dir} stopped before its first checkpoint; starting it again from its config.yaml "
          f"({cls.algo} on {env_id}, {steps:,} steps)", file=sys.stderr)
    agent = cls(env_id, cfg, allow_import=tuple(run_cfg.get("allow_import") or ()))
    _clear_failed_attempt(run_dir)
    return _run(agent, steps, run_dir, int(run_cfg.get("eval_every") or 0), int(run_cfg.get("eval_episodes") or 10),
                args, run_cfg)


def _run(agent, steps: int, out: Path, eval_every: int, eval_episodes: int, args, run_cfg: dict[str, Any]) -> int:
    """Train with the run directory's callbacks: the best model so far in best/ (at each
    evaluation), --stop-at, --keep-checkpoints; --track logs to Weights & Biases."""
    from critic.callbacks import CheckpointCallback, EvalCallback, StopOnReward
    from critic.track import make_tracker, tracker_kwargs

    opts = _run_options(args, run_cfg)
    every = opts["checkpoint_every"] or max(eval_every, 10_000)
    callbacks: list[Any] = []
    if eval_every:
        callbacks.append(EvalCallback(eval_every, eval_episodes))
    if opts["stop_at"] is not None:
        callbacks.append(StopOnReward(opts["stop_at"]))
    if opts["keep_checkpoints"] is not None:
        callbacks.append(CheckpointCallback(every, keep=opts["keep_checkpoints"]))
    tracker = make_tracker(getattr(args, "track", False), out, run_cfg, **tracker_kwargs(args)) \
        if getattr(args, "track", False) else None
    try:
        agent.learn(steps, callbacks or None, run_dir=out, eval_every=eval_every, eval_episodes=eval_episodes,
                    checkpoint_every=every, progress_bar=not args.no_progress, tracker=tracker)
    except KeyboardInterrupt:
        print(f"\ncritic: interrupted at step {agent.env_steps:,}; checkpoint saved. "
              f"Continue with: critic train --resume {out}", file=sys.stderr)
        agent.close()
        return EXIT_INTERRUPTED
    agent.close()
    summary = json.loads((out / "summary.json").read_text())
    fe = summary.get("final_eval") or {}
    solved = summary.get("stable_solved_at")
    print(f"done: {summary['env_steps']:,} steps in {summary['train_seconds']:.1f}s "
          f"({summary['steps_per_second']:,.0f} steps/s); final return "
          f"{fe.get('mean', float('nan')):.1f} +- {fe.get('std', float('nan')):.1f}"
          + (f"; solved (stable) at {solved['env_steps']:,} steps, {solved['train_seconds']:.1f}s" if solved else "")
          + f"\nrun directory: {out} (curve: {out / 'curve.png'})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import critic

    agent = critic.load(args.path, allow_import=tuple(args.allow_import or ()))
    if agent.env_spec is None:
        raise CLIError(f"{args.path}: the model does not name a registered env id to evaluate on")
    if args.video:
        return _eval_video(agent, args)
    res = agent.evaluate(args.episodes, deterministic=not args.stochastic, seed=args.seed)
    print(f"{agent.algo} on {agent.env_id}: mean return {res['mean']:.2f} +- {res['std']:.2f} "
          f"over {args.episodes} episodes (lengths {min(res['lengths'])}-{max(res['lengths'])})")
    return 0


def _eval_video(agent, args) -> int:
    """``--video``: an MP4 (through imageio and its ffmpeg), one GIF, or a folder of GIFs."""
    out = Path(args.video)
    kind = out.suffix.lower()
    if kind not in (".mp4", ".gif", ""):
        raise CLIError(f"--video {out}: unknown video type {out.suffix!r} (allowed: a .mp4 or .gif file, or a folder)")
    writer = None
    if kind == ".mp4":
        try:
            import imageio.v2 as imageio
            import imageio_ffmpeg  # noqa: F401  (the ffmpeg binary imageio writes MP4 with)
        except ImportError:
            raise CLIError('--video x.mp4 needs imageio and imageio-ffmpeg: pip install "critic[video]" (or give '
                           "a .gif name)") from None
    env = agent.make_eval_env(render_mode="rgb_array")
    fps = int(env.metadata.get("render_fps") or 30)
    if kind:
        out.parent.mkdir(parents=True, exist_ok=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
    returns, gif_frames = [], []
    try:
        for ep in range(args.episodes):
            obs, _ = env.reset(seed=None if args.seed is None else args.seed + ep)
            frames, total, done = [env.render()], 0.0, False
            while not done:
                obs, r, term, trunc, _ = env.step(agent.predict(obs, deterministic=not args.stochastic)[0])
                total += float(r)
                done = term or trunc
                frames.append(env.render())
            frames = [f for f in frames if f is not None]
            returns.append(total)
            if not frames:
                raise CLIError("the env renders no rgb_array frames (render_mode='rgb_array' gave None)")
            if kind == ".mp4":
                if writer is None:
                    writer = imageio.get_writer(str(out), fps=fps, macro_block_size=1)
                for f in frames:
                    writer.append_data(f)
                print(f"episode {ep}: return {total:.1f}, {len(frames) - 1} steps")
            elif kind == ".gif":
                gif_frames += frames[::2]
                print(f"episode {ep}: return {total:.1f}, {len(frames) - 1} steps")
            else:
                path = out / f"episode-{ep}.gif"
                _write_gif(path, frames[::2], fps // 2)
                print(f"episode {ep}: return {total:.1f}, {len(frames) - 1} steps -> {path}")
    finally:
        if writer is not None:
            writer.close()
        env.close()
    if kind == ".gif":
        _write_gif(out, gif_frames, fps // 2)
    if kind:
        print(f"video: {out} ({out.stat().st_size / 1024:.0f} KiB)")
    print(f"mean return {sum(returns) / len(returns):.2f} over {len(returns)} episodes")
    return 0


def _write_gif(path: Path, frames: list, fps: int) -> None:
    from PIL import Image

    imgs = [Image.fromarray(f) for f in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=max(1000 // max(fps, 1), 20), loop=0)


def cmd_plot(args: argparse.Namespace) -> int:
    from critic.plotting import plot_runs

    for d in args.runs:
        if not Path(d).is_dir():
            raise CLIError(f"{d}: not a run directory")
    group_by = [f.strip() for f in args.group_by.split(",") if f.strip()] if args.group_by else None
    try:
        out = plot_runs(args.runs, args.output, title=args.title, stat=args.stat, group_by=group_by,
                        labels=args.label)
    except ValueError as e:
        raise CLIError(str(e)) from None
    print(f"wrote {out}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from critic.algos.registry import ALGOS, get_algo

    if args.algo:
        cls = get_algo(args.algo)
        print(f"{cls.algo}: {(cls.__doc__ or '').strip()}\nhyper-parameters (--set name=value):")
        print(describe_config(cls.config_cls))
        return 0
    print("algorithms:")
    for name in sorted(ALGOS):
        cls = get_algo(name)
        print(f"  {name:6s} {(sys.modules[cls.__module__].__doc__ or '').strip().splitlines()[0]}")
    print("presets (--preset NAME):")
    for p in list_presets():
        try:
            d = read_preset(p)
            print(f"  {p.stem:24s} {d.get('algo', '?')} on {d.get('env_id', '?')}, {int(d.get('steps', 0)):,} steps")
        except ConfigError as e:
            print(f"  {p.stem:24s} (invalid: {e})")
    print("hyper-parameters of an algorithm: critic list ALGO")
    return 0


def cmd_check_env(args: argparse.Namespace) -> int:
    from critic.envs.check import check_env

    if args.steps < 0:
        raise CLIError(f"invalid value for '--steps': {args.steps} (allowed: an integer >= 0)")
    findings = check_env(args.env_id, allow_import=tuple(args.allow_import or ()), probe_steps=args.steps,
                         seed=args.seed)
    for f in findings:
        print(f)
    errors = sum(f.level == "error" for f in findings)
    warnings_ = len(findings) - errors
    probe = f"spaces, reset and {args.steps} random steps, seed {args.seed}"
    if errors:
        raise CLIError(f"{args.env_id} failed {errors} check{'s' if errors != 1 else ''}"
                       + (f" and has {warnings_} warning{'s' if warnings_ != 1 else ''}" if warnings_ else "")
                       + f" (probed: {probe})")
    print(f"ok: {args.env_id} passed"
          + (f" with {warnings_} warning{'s' if warnings_ != 1 else ''}" if warnings_ else "")
          + f" (probed: {probe})")
    return 0


def describe_config(config_cls) -> str:
    lines = []
    for name, tname, default, doc in config_cls.describe():
        d = list(default) if isinstance(default, tuple) else default
        lines.append(f"  {name} ({tname}, default {d}): {doc}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- parser

def build_parser(algo_for_help: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="critic", description="Actor-critic reinforcement learning in PyTorch.")
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)

    epilog = "Hyper-parameters for --set: `critic list ALGO`, or `critic train ALGO --help`."
    if algo_for_help:
        try:
            from critic.algos.registry import get_algo
            epilog = f"hyper-parameters of {algo_for_help} (--set name=value):\n" + describe_config(
                get_algo(algo_for_help).config_cls)
        except ConfigError:
            pass
    t = sub.add_parser("train", help="train an agent and write a run directory",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog)
    t.add_argument("algo", nargs="?", help="algorithm (critic list)")
    t.add_argument("env_id", nargs="?", help="Gymnasium environment id, e.g. CartPole-v1")
    t.add_argument("--steps", type=int, help="environment steps to train (default: the preset's, else 100000)")
    t.add_argument("--seed", type=int, help="random seed (default 0)")
    t.add_argument("--seeds", metavar="SEEDS", help="many seeds as one batched run, e.g. 0-7 or 0,3,5 (ppo so far): "
                                                    "a run directory per seed and their aggregate")
    t.add_argument("--sweep", action="append", metavar="FIELD=V1,V2",
                   help="members for each value too (the product with --seeds), for learning_rate, gamma or "
                        "gae_lambda; repeat for several fields")
    t.add_argument("--num-envs", type=int, help="parallel environments")
    t.add_argument("--preset", help="tuned hyper-parameters: a name from `critic list` or a YAML path")
    t.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                   help="override hyper-parameters: --set gamma=0.98 n_steps=32 (several pairs, or the flag repeated)")
    t.add_argument("--out", help="run directory (default runs/ALGO_ENV_sSEED_TIME)")
    t.add_argument("--eval-every", type=int, help="evaluate every N env steps (default steps/20)")
    t.add_argument("--eval-episodes", type=int, help="deterministic episodes per evaluation (default 10)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its checkpoint")
    t.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    t.add_argument("--workers", type=int, help="asynchronous workers (a3c), or Ray sampling workers (ppo, a2c)")
    t.add_argument("--backend", choices=("local", "ray"), help="where workers run (default local)")
    t.add_argument("--address", help="Ray cluster address for --backend ray (default: start Ray locally)")
    t.add_argument("--allow-import", action="append", metavar="MODULE",
                   help="allow env ids of the form MODULE:Env, or an encoder MODULE:function (--set "
                        "encoder=...), to import MODULE")
    t.add_argument("--stop-at", type=float, metavar="RETURN",
                   help="stop once an evaluation's mean return reaches RETURN (e.g. 475 on CartPole-v1)")
    t.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="write the resumable checkpoint every N env steps (default max(eval-every, 10000))")
    t.add_argument("--keep-checkpoints", type=int, metavar="K",
                   help="also keep the last K checkpoints as checkpoints/step_<N>.safetensors")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    from critic.track import add_track_arguments

    add_track_arguments(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a saved model or run directory")
    e.add_argument("path", metavar="RUN_OR_MODEL")
    e.add_argument("--episodes", type=int, default=10)
    e.add_argument("--seed", type=int, default=None)
    e.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    e.add_argument("--video", metavar="PATH", help="record the episodes: an MP4 file (PATH ending in .mp4), one "
                                                  "GIF (.gif), or a folder of one GIF per episode (any other PATH)")
    e.add_argument("--allow-import", action="append", metavar="MODULE",
                   help="allow the model's env id (MODULE:Env) or its own encoder (MODULE:function) to import MODULE")
    e.set_defaults(func=cmd_eval)

    pl = sub.add_parser("plot", help="learning curves: runs of one configuration as mean (or IQM) with a 95%% "
                                     "bootstrap interval across seeds, one panel per environment")
    pl.add_argument("runs", nargs="+", metavar="RUN_DIR")
    pl.add_argument("-o", "--output", default="curves.png")
    pl.add_argument("--title", default=None)
    pl.add_argument("--stat", choices=("mean", "iqm"), default="mean",
                    help="the curve drawn across a group's runs: mean, or interquartile mean (default: mean)")
    pl.add_argument("--group-by", metavar="FIELDS", default=None,
                    help="comma-separated fields (algo, env_id or config fields) that define a group; default: "
                         "the whole configuration except the seed and machine settings")
    pl.add_argument("--label", nargs="+", metavar="TEXT", default=None,
                    help="legend labels, one per group in the order the groups first appear")
    pl.set_defaults(func=cmd_plot)

    ce = sub.add_parser("check-env", help="probe an environment for API, space and value problems",
                        description="Build one env, check its spaces, reset it and take random steps; print "
                                    "one line per problem found (exit status 2 when there are errors).")
    ce.add_argument("env_id", help="Gymnasium environment id, e.g. CartPole-v1 (or MODULE:EnvId with --allow-import)")
    ce.add_argument("--allow-import", action="append", metavar="MODULE",
                    help="allow env ids of the form MODULE:EnvId to import MODULE (repeatable)")
    ce.add_argument("--steps", type=int, default=300, help="random steps to probe after the reset (default 300)")
    ce.add_argument("--seed", type=int, default=0, help="seed of the reset and the random actions (default 0)")
    ce.set_defaults(func=cmd_check_env)

    ls = sub.add_parser("list", help="algorithms and presets, or one algorithm's hyper-parameters")
    ls.add_argument("algo", nargs="?")
    ls.set_defaults(func=cmd_list)

    from critic.export import add_export_parser
    from critic.tune import add_tune_parser

    add_export_parser(sub)
    add_tune_parser(sub)
    return p


def _version() -> str:
    from critic.version import __version__
    return f"critic {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    algo_for_help = None
    if len(argv) >= 2 and argv[0] == "train" and ("-h" in argv or "--help" in argv) and not argv[1].startswith("-"):
        algo_for_help = argv[1]
    parser = build_parser(algo_for_help)
    args = parser.parse_args(argv)
    bad = [i for i in (getattr(args, "set", None) or []) if "=" not in i]
    if args.command == "train" and bad:  # positionals after --set were taken as pairs
        print(f"critic: error: --set expects key=value pairs, got {short_repr(bad[0])} (give ALGO and ENV_ID before "
              "--set)", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "train" and not args.resume and (not args.algo or not args.env_id):
        parser.error("train needs ALGO and ENV_ID (or --resume RUN_DIR)")
    if args.command == "eval" and args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    from critic.checkpoint import CheckpointError
    from critic.envs.make import EnvError
    from gymnasium.error import DependencyNotInstalled
    try:
        return args.func(args)
    except (ConfigError, EnvError, CheckpointError, CLIError) as e:
        print(f"critic: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except DependencyNotInstalled as e:
        print(f"critic: error: a missing optional dependency: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
