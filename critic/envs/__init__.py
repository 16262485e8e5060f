"""Environment construction, the one step helper, checks and tiny analytic test envs."""

from critic.envs.check import EnvCheckError, EnvCheckWarning, Finding, check_env, check_env_or_raise
from critic.envs.make import EnvError, make_env, make_vec_env
from critic.envs.step import EnvStepper

__all__ = ["EnvCheckError", "EnvCheckWarning", "EnvError", "EnvStepper", "Finding", "check_env", "check_env_or_raise",
           "make_env", "make_vec_env"]
