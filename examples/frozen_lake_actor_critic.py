"""keras-gym's frozen-lake actor-critic script, ported: non-slippery FrozenLake, a one-hot body
(policy and value linear in the state), update_strategy='ppo' sampling from pi_old (the target
model, synced every 20 steps), TrainMonitor and enable_logging.

    python examples/frozen_lake_actor_critic.py --episodes 500
"""

import argparse

import gymnasium as gym
import torch

import critic


class LinearFunc(critic.FunctionApproximator):
    """linear function approximator (the body only one-hot encodes the state)"""
    def body(self, S):
        return torch.nn.functional.one_hot(S.long(), 16).float()


def make_env(render_mode=None):  # keras-gym's loop ran 30 steps an episode: here a time limit
    return gym.make("FrozenLake-v1", is_slippery=False, max_episode_steps=30, render_mode=render_mode)


def main(episodes: int = 500, seed: int = 0, log: bool = True, callback=None):
    """Train; ``callback(actor_critic, env)`` runs at each episode end (False stops)."""
    env = critic.wrappers.TrainMonitor(make_env(), quiet=not log)
    if log:
        critic.enable_logging()  # show the TrainMonitor's episode lines
    torch.manual_seed(seed)  # the initial weights
    func = LinearFunc(env, lr=0.01)  # policy and value share its one-hot body
    pi = critic.SoftmaxPolicy(func, update_strategy="ppo", random_seed=seed)
    v = critic.V(func, gamma=0.9, bootstrap_n=1)
    actor_critic = critic.ActorCritic(pi, v)
    for ep in range(episodes):
        (s, _), done = env.reset(seed=seed if ep == 0 else None), False
        while not done:  # until the goal, a hole or the time limit
            a = pi(s, use_target_model=True)
            s_next, r, terminated, truncated, _ = env.step(a)
            if s_next == s:
                r = -0.1  # small incentive to keep moving
            env.record_losses(actor_critic.update(s, a, r, terminated, truncated, s_next))
            if env.T % 20 == 0:
                pi.sync_target_model(tau=1.0)
            s, done = s_next, terminated or truncated
        if callback is not None and callback(actor_critic, env) is False:
            break
    return actor_critic, env


def greedy_return(actor_critic, show: bool = False) -> float:
    """One greedy episode: 1.0 when it reaches the goal (``show`` prints v(s) and pi(.|s) too)."""
    env, G, done = make_env(render_mode="ansi"), 0.0, False
    s = env.reset()[0]
    while not done:
        if show:  # pi over (left, down, right, up)
            print(env.render(), f"v(s) = {actor_critic.v_func(s):.3f}, pi = {actor_critic.policy.dist_params(s)}")
        s, r, terminated, truncated, _ = env.step(actor_critic.policy.greedy(s))
        G, done = G + r, terminated or truncated
    return G


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--episodes", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(f"greedy episode return: {greedy_return(main(args.episodes, args.seed)[0], show=True)}")
