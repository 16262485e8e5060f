"""critic: actor-critic reinforcement learning in PyTorch."""

from critic.version import __version__  # noqa: E402
from critic.agent import Agent, NonFiniteError, load  # noqa: E402
from critic.algos.a2c import A2C, A2CConfig  # noqa: E402
from critic.algos.a3c import A3C, A3CConfig  # noqa: E402
from critic.algos.acer import ACER, ACERConfig  # noqa: E402
from critic.algos.batch import SeedBatch  # noqa: E402
from critic.algos.ddpg import DDPG, DDPGConfig  # noqa: E402
from critic.algos.ppo import PPO, PPOConfig  # noqa: E402
from critic.algos.sac import SAC, SACConfig  # noqa: E402
from critic.algos.td3 import TD3, TD3Config  # noqa: E402
from critic.callbacks import CheckpointCallback, EvalCallback, StopOnReward  # noqa: E402
from critic.checkpoint import CheckpointError  # noqa: E402
from critic.components import (ActorCritic, FunctionApproximator, GaussianPolicy, MonteCarloCache,  # noqa: E402
                               NStepCache, QTypeI, QTypeII, SoftActorCritic, SoftmaxPolicy, V)
from critic.config import ConfigError  # noqa: E402
from critic.envs.make import EnvError  # noqa: E402
from critic.runners.local import WorkerError  # noqa: E402
from critic.wrappers import TrainMonitor, enable_logging  # noqa: E402  (also critic.wrappers.TrainMonitor)

__all__ = ["A2C", "A2CConfig", "A3C", "A3CConfig", "ACER", "ACERConfig", "ActorCritic", "Agent", "CheckpointCallback", "CheckpointError", "ConfigError", "DDPG", "DDPGConfig",
           "EnvError", "EvalCallback", "FunctionApproximator", "GaussianPolicy", "MonteCarloCache", "NStepCache", "NonFiniteError",
           "PPO", "PPOConfig", "QTypeI", "QTypeII", "SAC", "SACConfig", "SeedBatch", "SoftActorCritic", "SoftmaxPolicy", "StopOnReward", "TD3",
           "TD3Config", "TrainMonitor", "V", "WorkerError", "__version__", "enable_logging", "load"]
