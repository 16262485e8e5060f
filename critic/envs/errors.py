"""The error every env problem raises (kept apart so that every module of ``critic.envs`` can
raise it without importing another)."""


class EnvError(ValueError):
    """An environment critic cannot use (the message says which and why)."""
