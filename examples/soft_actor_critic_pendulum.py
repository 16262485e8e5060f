"""SoftActorCritic on Pendulum-v1 (components face) with critic's replay buffer.

The policy, v and the two Q functions each get their own body here (from_func would share
one); v bootstraps from its target model, which follows by Polyak averaging.

    python examples/soft_actor_critic_pendulum.py --steps 30000
"""

import argparse

import gymnasium as gym
import numpy as np

import critic
from common import evaluate
from critic.buffers.replay import ReplayBuffer


def main(steps: int = 30_000, seed: int = 0, warmup: int = 1000, log: bool = True, callback=None,
         squash: bool = True):
    """``squash=False``: keras-gym's unsquashed Gaussian, clipped to the Box (docs/components.md)."""
    env = gym.make("Pendulum-v1")
    env.action_space.seed(seed)
    func = lambda: critic.FunctionApproximator(env, lr=1e-3, hidden_sizes=(64, 64), activation="relu")  # noqa
    policy = critic.GaussianPolicy(func(), squash=squash, entropy_beta=0.1, random_seed=seed)
    v = critic.V(func(), gamma=0.99, bootstrap_with_target_model=True)
    sac = critic.SoftActorCritic(policy, v, critic.QTypeI(func()), critic.QTypeI(func()))
    replay = ReplayBuffer(100_000, 1, env.observation_space, env.action_space, gamma=0.99)
    s, _ = env.reset(seed=seed)
    ret, returns = 0.0, []
    for t in range(steps):
        a = env.action_space.sample() if t < warmup else policy(s)
        s_next, r, terminated, truncated, _ = env.step(a)
        replay.add(s[None], a[None], [r], s_next[None], [terminated], [truncated])
        if t >= warmup:
            b = replay.sample(256)  # discount = gamma * (1 - terminated): the batch's In
            sac.batch_update(b["obs"], b["actions"], b["rewards"], b["discount"], b["next_obs"])
            sac.sync_target_model(tau=0.005)
        ret, s = ret + r, s_next
        if terminated or truncated:
            returns.append(ret)
            if log and len(returns) % 10 == 0:
                print(f"step {t + 1}: mean return of the last 10 episodes {np.mean(returns[-10:]):.1f}")
            s, ret = env.reset()[0], 0.0
            if callback is not None and callback(sac, t + 1) is False:
                break
    return sac, returns


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=30_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-squash", action="store_true", help="keras-gym's unsquashed GaussianPolicy")
    args = p.parse_args()
    agent, _ = main(args.steps, args.seed, squash=not args.no_squash)
    print(f"greedy evaluation (10 episodes): {evaluate(lambda s: agent.greedy(s)[0], 'Pendulum-v1'):.1f}")
