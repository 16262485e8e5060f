"""The components face: keras-gym's objects in PyTorch, on the agents' functional core.

    func = critic.FunctionApproximator(env, lr=1e-3)
    ac = critic.ActorCritic.from_func(func, gamma=0.99, bootstrap_n=1)
    a, v = ac(s); ac.update(s, a, r, done)

See docs/components.md for the mapping from keras-gym names and the differences.
"""

from critic.components.actor_critic import ActorCritic, SoftActorCritic
from critic.components.approximators import (FunctionApproximator, GaussianPolicy, QTypeI, QTypeII, SoftmaxPolicy,
                                             V)
from critic.components.caches import MonteCarloCache, NStepCache

__all__ = ["ActorCritic", "FunctionApproximator", "GaussianPolicy", "MonteCarloCache", "NStepCache", "QTypeI",
           "QTypeII", "SoftActorCritic", "SoftmaxPolicy", "V"]
