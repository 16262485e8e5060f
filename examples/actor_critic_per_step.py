"""Per-step actor-critic on CartPole-v1 with the components face: one update after every step.

    python examples/actor_critic_per_step.py --steps 50000
"""

import argparse

import gymnasium as gym
import numpy as np

import critic
from common import evaluate


def main(steps: int = 50_000, seed: int = 0, log: bool = True, callback=None):
    """Train; ``callback(ac, env_steps)`` runs at each episode end (False stops)."""
    env = gym.make("CartPole-v1")
    func = critic.FunctionApproximator(env, lr=1e-3, hidden_sizes=(64, 64))
    ac = critic.ActorCritic.from_func(func, gamma=0.99, bootstrap_n=1, entropy_beta=0.01, random_seed=seed)
    s, _ = env.reset(seed=seed)
    ret, returns = 0.0, []
    for t in range(steps):
        a, _ = ac(s)
        s_next, r, terminated, truncated, _ = env.step(a)
        # done is Gymnasium's terminated; at a time limit the value is bootstrapped from s_next
        ac.update(s, a, r, terminated, truncated, s_next)
        ret += r
        s = s_next
        if terminated or truncated:
            returns.append(ret)
            if log and len(returns) % 50 == 0:
                print(f"step {t + 1}: mean return of the last 50 episodes {np.mean(returns[-50:]):.1f}")
            s, ret = env.reset()[0], 0.0
            if callback is not None and callback(ac, t + 1) is False:
                break
    return ac, returns


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    agent, _ = main(args.steps, args.seed)
    print(f"greedy evaluation (10 episodes): {evaluate(lambda s: agent.greedy(s)[0], 'CartPole-v1'):.1f}")
