"""n-step batched actor-critic with update_strategy='ppo' on CartPole-v1 (components face).

Collect a rollout, turn it into (S, A, Rn, In, S_next) with an NStepCache, take several
epochs of minibatch updates, then sync the target model (PPO's pi_old) to the policy.

    python examples/actor_critic_ppo.py --steps 100000
"""

import argparse

import gymnasium as gym
import numpy as np
import torch

import critic
from common import evaluate


def main(steps: int = 100_000, seed: int = 0, rollout: int = 512, epochs: int = 10, batch: int = 64,
         log: bool = True, callback=None):
    """Train; ``callback(ac, env_steps)`` runs after each rollout's updates (False stops)."""
    env = gym.make("CartPole-v1")
    torch.manual_seed(seed)
    # separate bodies: a shared one would let the value loss (returns ~100) swamp the policy's
    pi = critic.SoftmaxPolicy(critic.FunctionApproximator(env, lr=1e-3), update_strategy="ppo",
                              entropy_beta=0.0, random_seed=seed)
    v = critic.V(critic.FunctionApproximator(env, lr=1e-3), gamma=0.99, bootstrap_n=8)
    ac = critic.ActorCritic(pi, v)
    cache = critic.NStepCache(env, n=8, gamma=0.99)
    rng = np.random.default_rng(seed)
    s, _ = env.reset(seed=seed)
    ret, returns, t = 0.0, [], 0
    while t < steps:
        batches = []
        for _ in range(rollout):
            a, _ = ac(s)
            s_next, r, terminated, truncated, _ = env.step(a)
            cache.add(s, a, r, terminated, truncated, s_next)
            while cache:
                batches.append(cache.pop())
            ret, s, t = ret + r, s_next, t + 1
            if terminated or truncated:
                returns.append(ret)
                s, ret = env.reset()[0], 0.0
        S, A, Rn, In, S_next = (np.concatenate(x) for x in zip(*batches))
        for _ in range(epochs):
            idx = rng.permutation(len(S))
            for i in range(0, len(S), batch):
                j = idx[i:i + batch]
                ac.batch_update(S[j], A[j], Rn[j], In[j], S_next[j])
        ac.sync_target_model(tau=1.0)  # pi_old <- pi for the next rollout's ratios
        if log and returns:
            print(f"step {t}: mean return of the last 20 episodes {np.mean(returns[-20:]):.1f}")
        if callback is not None and callback(ac, t) is False:
            break
    return ac, returns


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    agent, _ = main(args.steps, args.seed)
    print(f"greedy evaluation (10 episodes): {evaluate(lambda s: agent.greedy(s)[0], 'CartPole-v1'):.1f}")
