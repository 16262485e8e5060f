"""Opening the training envs of an agent, and playing whole episodes (evaluation)."""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym

from critic.envs.check import check_env_or_raise
from critic.envs.make import EnvError, EnvSpec, check_spaces, make_env, make_vec_env
from critic.envs.spaces import same_space
from critic.envs.state import NotRestorable, capture, restore_env


def open_training_env(env: EnvSpec | None, *, num_envs: int, seed: int, vectorization: str,
                      allow_import: tuple[str, ...], allowed_actions: tuple[type, ...],
                      spaces: tuple[gym.Space, gym.Space] | None = None
                      ) -> tuple[gym.vector.VectorEnv | None, gym.Space, gym.Space]:
    """The vector env for ``env`` (None without one: ``spaces`` then say what the model acts
    on), after checking its API with a 2-step probe (about 1 ms; an Atari reset 0.1 s) and
    its spaces against ``spaces`` and against what the algorithm supports."""
    venv = None
    if env is not None:
        check_env_or_raise(env, probe_steps=2, allow_import=allow_import, seed=seed, allowed_actions=allowed_actions)
        venv = make_vec_env(env, num_envs, seed, vectorization, allow_import)
        obs_space, act_space = venv.single_observation_space, venv.single_action_space
        if spaces is not None and not (same_space(obs_space, spaces[0]) and same_space(act_space, spaces[1])):
            venv.close()
            raise EnvError(f"the environment's spaces ({obs_space}, {act_space}) differ from the model's "
                           f"({spaces[0]}, {spaces[1]})")
    elif spaces is not None:
        obs_space, act_space = spaces
    else:
        raise EnvError("an environment is required (a Gymnasium id, a gymnasium.Env or a callable)")
    try:
        check_spaces(obs_space, act_space, allowed_actions)
    except EnvError:
        if venv is not None:
            venv.close()
        raise
    return venv, obs_space, act_space


def play_episodes(env: gym.Env, act: Callable[[Any], Any], n_episodes: int,
                  first_seed: int | None) -> tuple[list[float], list[int]]:
    """Returns and lengths of ``n_episodes`` whole episodes, acting with ``act(obs)``; the first
    reset is seeded with ``first_seed`` (the env's own generator continues after it)."""
    returns, lengths = [], []
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=first_seed if ep == 0 else None)
        total, n, done = 0.0, 0, False
        while not done:
            obs, r, term, trunc, _ = env.step(act(obs))
            total += float(r)
            n += 1
            done = term or trunc
        returns.append(total)
        lengths.append(n)
    return returns, lengths


def reward_threshold(spec: EnvSpec | None) -> float | None:
    """The registered ``reward_threshold`` of a Gymnasium id, else None."""
    if isinstance(spec, str):
        try:
            return gym.spec(spec).reward_threshold
        except Exception:
            return None
    return None


def eval_env_for(spec: EnvSpec | None, render_mode: str | None, allow_import: tuple[str, ...]) -> gym.Env:
    """A single env to evaluate (or render) on: the instance itself, or a new one from an id or
    callable; Atari games whole, with raw rewards (no episodic life, no clipping)."""
    if spec is None:
        raise EnvError("this agent has no environment to evaluate on; pass env= to critic.load")
    if isinstance(spec, gym.vector.VectorEnv):
        raise EnvError("cannot build an evaluation env from a vector env instance; pass an id or a callable")
    if isinstance(spec, gym.Env):
        return spec
    return make_env(spec, render_mode=render_mode, allow_import=allow_import, atari_eval=True)


class EvalEnv:
    """An agent's evaluation env: built at the first evaluation, its first reset seeded with
    ``seed`` (later evaluations continue the env's own generator), captured into checkpoints
    and restored from them, so a resumed run evaluates on the same episodes."""

    def __init__(self, spec: EnvSpec | None, allow_import: tuple[str, ...], seed: int):
        self.spec, self.allow_import, self.seed = spec, allow_import, seed
        self.env: gym.Env | None = None
        self.next_seed: int | None = None

    def take(self) -> tuple[gym.Env, int | None]:
        """The env and the seed of its next reset (None: continue its generator)."""
        if self.env is None:
            self.env, self.next_seed = eval_env_for(self.spec, None, self.allow_import), self.seed
        seed, self.next_seed = self.next_seed, None
        return self.env, seed

    def _own(self) -> bool:
        return self.env is not None and self.env is not self.spec  # (a user's instance is not ours)

    def state(self) -> dict[str, Any]:
        if not self._own():
            return {}
        return {"eval_env": capture(self.env)[0], "eval_seed": self.next_seed}

    def restore(self, meta: dict[str, Any]) -> None:
        if meta.get("eval_env") is None:
            return
        try:
            env = eval_env_for(self.spec, None, self.allow_import)
            restore_env(env, meta["eval_env"])
            self.close()
            self.env, self.next_seed = env, meta.get("eval_seed")
        except (NotRestorable, EnvError):
            pass

    def close(self) -> None:
        if self._own():
            self.env.close()
        self.env = None
