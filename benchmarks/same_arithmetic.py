"""Same arithmetic before and after a refactoring: bit-for-bit comparison of trained tensors.

Trains every algorithm (and the components face) briefly with a fixed seed, and saves every
network parameter, buffer and optimizer-state tensor. Run at two commits on the same machine
and compare: a redesign that changes no numbers gives identical tensors.

    python benchmarks/same_arithmetic.py --before 6aa127b      # worktree of that commit vs this tree
    python benchmarks/same_arithmetic.py save OUT.pt            # this tree only
    python benchmarks/same_arithmetic.py compare A.pt B.pt
    python benchmarks/same_arithmetic.py save OUT.pt --only components   # some cases (compare with --only too)

The cases cover each collection path (rollouts, per-step, episodic, replay with warm-up and
train_freq/gradient_steps, n-step replay with optimize_memory, OU noise, ACER's segments and
replay), normalisation, a checkpoint round trip in the middle of training, and the components
face's examples. A3C is left out: its workers interleave under the OS scheduler.
"""

from __future__ import annotations

import argparse
import inspect
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(os.environ.get("CRITIC_ROOT", Path(__file__).resolve().parents[1]))  # whose examples run


def _cases():
    import critic

    small = dict(learning_starts=100, hidden_sizes=(32, 32))
    # CartPole cases pin vectorization='sync' (separate envs): the default became Gymnasium's
    # vectorised CartPole, whose resets draw from another generator, and the comparison must
    # hold against commits from before that.
    sync = dict(vectorization="sync")
    return {
        "sac": (critic.SAC, "Pendulum-v1", dict(small), 400),
        "sac_discrete": (critic.SAC, "CartPole-v1", dict(small, **sync), 400),
        "sac_nstep_memory": (critic.SAC, "Pendulum-v1", dict(small, bootstrap_n=3, optimize_memory=True,
                                                              train_freq=2, gradient_steps=2, num_envs=2), 400),
        "sac_fixed_alpha": (critic.SAC, "Pendulum-v1", dict(small, ent_coef=0.1, normalize_obs=True), 300),
        "td3": (critic.TD3, "Pendulum-v1", dict(small), 400),
        "ddpg": (critic.DDPG, "Pendulum-v1", dict(small), 400),
        "ddpg_ou": (critic.DDPG, "Pendulum-v1", dict(small, noise_type="ou"), 400),
        "ppo": (critic.PPO, "CartPole-v1", dict(**sync, n_steps=64, batch_size=32), 512),
        "ppo_norm_box": (critic.PPO, "Pendulum-v1", dict(n_steps=64, batch_size=32, normalize_obs=True,
                                                         normalize_reward=True, lr_schedule="linear"), 512),
        "ppo_kl": (critic.PPO, "CartPole-v1", dict(**sync, n_steps=64, batch_size=32, clip_eps=None,
                                                   kl_penalty="adaptive"), 512),
        "a2c": (critic.A2C, "CartPole-v1", dict(**sync, n_steps=5, num_envs=4), 400),
        "a2c_per_step": (critic.A2C, "CartPole-v1", dict(**sync, n_steps=1), 300),
        "a2c_episodic": (critic.A2C, "CartPole-v1", dict(**sync, episodic=True), 400),
        "acer": (critic.ACER, "CartPole-v1", dict(**sync, replay_start=100, num_envs=2), 600),
    }


def _tensors_of(agent) -> dict:
    import torch

    out = {f"nets/{k}": v.detach().clone() for k, v in agent.nets.state_dict().items()}
    for name, opt in agent.optims.items():
        for i, st in opt.state_dict()["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    out[f"optim/{name}/{i}/{k}"] = v.detach().clone()
    return out


def _modules_of(obj, prefix="", seen=None, depth=0) -> dict:
    """Every nn.Module reachable from a components object, by attribute path."""
    import torch

    seen = set() if seen is None else seen
    out = {}
    if id(obj) in seen or depth > 4:
        return out
    seen.add(id(obj))
    if isinstance(obj, torch.nn.Module):
        return {f"{prefix}{k}": v.detach().clone() for k, v in obj.state_dict().items()}
    if isinstance(obj, torch.optim.Optimizer):
        for i, st in obj.state_dict()["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    out[f"{prefix}state/{i}/{k}"] = v.detach().clone()
        return out
    attrs = getattr(obj, "__dict__", None)
    if attrs is None or type(obj).__module__.split(".")[0] not in ("critic", "__main__"):
        return out
    for k, v in sorted(attrs.items()):
        out.update(_modules_of(v, f"{prefix}{k}/", seen, depth + 1))
    return out


def run_cases(only: str = "") -> dict:
    import torch

    import critic

    print(f"critic from {Path(critic.__file__).parent}", flush=True)
    res = {}
    for name, (cls, env, kw, steps) in _cases().items():
        if only and not name.startswith(only):
            continue
        a = cls(env, seed=3, **kw)
        a.learn(steps, progress_bar=False)
        res[name] = _tensors_of(a)
        a.close()
    # a checkpoint round trip in the middle of training (replay, noise, RNG and env state)
    for name, cls, env, kw in () if only else (("sac_resume", critic.SAC, "Pendulum-v1", dict(learning_starts=100,
                                                                             hidden_sizes=(32, 32))),
                               ("ppo_resume", critic.PPO, "CartPole-v1", dict(vectorization="sync", n_steps=64,
                                                                               batch_size=32))):
        with tempfile.TemporaryDirectory() as d:
            a = cls(env, seed=5, **kw)
            a.learn(256, progress_bar=False)
            a.save(Path(d) / "ck")
            a.close()
            # (to train on: critic.load acts by default since 0.2; older commits take no for_training)
            train_on = {"for_training": True} if "for_training" in inspect.signature(critic.load).parameters else {}
            b = critic.load(Path(d) / "ck", **train_on)
            b.learn(256, progress_bar=False)
            res[name] = _tensors_of(b)
            b.close()
    if only and not "components".startswith(only):
        return res
    # the components face, through its examples
    sys.path.insert(0, str(ROOT / "examples"))
    import actor_critic_ppo
    import actor_critic_per_step
    import soft_actor_critic_pendulum

    torch.manual_seed(0)
    sac, _ = soft_actor_critic_pendulum.main(steps=500, seed=1, warmup=100, log=False)
    res["components_sac"] = _modules_of(sac)
    torch.manual_seed(0)
    ac, _ = actor_critic_ppo.main(steps=1024, seed=1, rollout=256, log=False)
    res["components_ppo"] = _modules_of(ac)
    torch.manual_seed(0)
    ac1, _ = actor_critic_per_step.main(steps=300, seed=1, log=False)
    res["components_per_step"] = _modules_of(ac1)
    return res


def compare(a: dict, b: dict, partial: bool = False) -> bool:
    """True when every case holds identical tensors (``partial``: only the cases both files hold)."""
    import torch

    ok = True
    for case in sorted(set(a) | set(b)):
        if (case not in a or case not in b) and partial:
            continue
        if case not in a or case not in b:
            print(f"{case:22s} only in {'before' if case in a else 'after'}")
            ok = False
            continue
        ta, tb = a[case], b[case]
        if not ta and not tb:
            continue
        va, vb = sorted(ta.values(), key=lambda t: (t.numel(), t.sum().item())), \
            sorted(tb.values(), key=lambda t: (t.numel(), t.sum().item()))
        # compare by key; when keys were renamed, fall back to the multiset of tensors
        if set(ta) == set(tb):
            diff = [k for k in ta if ta[k].shape != tb[k].shape or not torch.equal(ta[k], tb[k])]
        else:
            diff = [] if len(va) == len(vb) and all(x.shape == y.shape and torch.equal(x, y)
                                                    for x, y in zip(va, vb)) else ["(tensor sets differ)"]
        n = len(ta)
        print(f"{case:22s} {n:3d} tensors  {'identical' if not diff else 'DIFFER: ' + ', '.join(diff[:4])}")
        ok = ok and not diff
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", nargs="?", choices=("save", "compare"))
    p.add_argument("files", nargs="*")
    p.add_argument("--only", default="", help="cases whose name starts with this (e.g. components, sac)")
    p.add_argument("--before", help="a commit: train there (a git worktree) and here, then compare")
    args = p.parse_args()
    import torch

    if args.cmd == "save":
        torch.save(run_cases(args.only), args.files[0])
        return 0
    if args.cmd == "compare":
        return 0 if compare(torch.load(args.files[0]), torch.load(args.files[1]), partial=bool(args.only)) else 1
    if not args.before:
        p.error("give --before COMMIT, or save / compare")
    with tempfile.TemporaryDirectory() as d:
        wt = Path(d) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(wt), args.before], check=True,
                       capture_output=True)
        try:
            env = {**os.environ, "PYTHONPATH": str(wt), "CRITIC_ROOT": str(wt)}
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "save", f"{d}/before.pt"], env=env,
                           check=True, cwd=wt)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], check=False)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CRITIC_ROOT": str(ROOT)}
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "save", f"{d}/after.pt"], env=env, check=True)
        ok = compare(torch.load(f"{d}/before.pt"), torch.load(f"{d}/after.pt"))
    print("same arithmetic" if ok else "ARITHMETIC CHANGED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
