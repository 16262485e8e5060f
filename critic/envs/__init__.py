"""Environment construction, the one step helper, checks and tiny analytic test envs."""

from critic.envs.make import EnvError, make_env, make_vec_env
from critic.envs.step import EnvStepper

__all__ = ["EnvError", "EnvStepper", "make_env", "make_vec_env"]
