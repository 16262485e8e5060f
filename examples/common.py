"""Shared by the examples: a greedy evaluation over full episodes."""

import gymnasium as gym
import numpy as np


def evaluate(act, env_id: str, episodes: int = 10, seed: int = 100_003) -> float:
    """Mean return of ``episodes`` episodes acting with ``act(observation) -> action``."""
    env = gym.make(env_id)
    total = []
    for ep in range(episodes):
        s, _ = env.reset(seed=seed if ep == 0 else None)
        done, ret = False, 0.0
        while not done:
            s, r, term, trunc, _ = env.step(act(s))
            ret, done = ret + r, term or trunc
        total.append(ret)
    return float(np.mean(total))
