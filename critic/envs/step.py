"""The one place that steps vector envs: autoreset, final observations, terminated vs truncated.

Vector envs built by critic reset a finished sub-env inside the same ``step`` call and put its
true final observation in ``info["final_obs"]``. :class:`EnvStepper` returns both views:
``next_obs`` (the true s_{t+1}, what storage and bootstrapping must use) and ``obs`` (what the
agent acts on next, a reset observation where an episode ended). It also keeps the raw episode
returns and lengths, and refuses non-finite observations or rewards with the env index and step.

Atari training envs (``envs/atari.py``) end the learner's episode at each life loss and clip
rewards; they report ``final_info["episode_score"]`` at each such end: the raw score of the
whole game, or NaN when only a life was lost. The stepper reports that score as the episode
return (and the game's length in steps), and no episode at a life loss. It is read only on
steps where some sub-env finished, so other envs pay nothing for it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from critic.envs.make import EnvError


@dataclass
class Step:
    obs: np.ndarray
    """Observations to act on next (reset observations where an episode just ended)."""
    next_obs: np.ndarray
    """True next observations s_{t+1}: the final observation where an episode ended."""
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


def env_info(infos: dict[str, Any], i: int) -> dict[str, Any]:
    """Sub-env ``i``'s info out of a vector env's stacked infos (arrays with ``_key`` masks)."""
    out: dict[str, Any] = {}
    for k, v in infos.items():
        if k.startswith("_"):
            continue
        has = infos.get(f"_{k}")
        if has is not None and not bool(np.asarray(has)[i]):
            continue
        if isinstance(v, dict):
            out[k] = env_info(v, i)
        else:
            x = v[i] if isinstance(v, (np.ndarray, list, tuple)) and np.ndim(v) > 0 and len(v) > i else v
            out[k] = x.item() if isinstance(x, np.generic) else x
    return out


class EnvStepper:
    """Wraps a same-step-autoreset vector env; counts env steps and finished episodes."""

    def __init__(self, venv: gym.vector.VectorEnv):
        self.venv = venv
        self.num_envs = venv.num_envs
        self.env_steps = 0
        self._float_obs = np.issubdtype(venv.single_observation_space.dtype, np.floating)
        self.ep_ret = np.zeros(self.num_envs, dtype=np.float64)
        self.ep_len = np.zeros(self.num_envs, dtype=np.int64)
        self.finished_infos: deque[dict[str, Any]] = deque(maxlen=10_000)
        """The last step's info of each finished episode (the env's own keys, plus ``episode``:
        ``{"r": return, "l": length}`` as Stable-Baselines3's Monitor names them, unless the env
        gives its own); the training loop hands them to callbacks and empties this."""

    def reset(self, seed: int | None = None) -> np.ndarray:
        seeds = None if seed is None else [seed + i for i in range(self.num_envs)]
        obs, _ = self.venv.reset(seed=seeds)
        self.ep_ret[:] = 0
        self.ep_len[:] = 0
        self._check_obs(obs, "reset")
        return obs

    def step(self, actions: np.ndarray) -> Step:
        obs, reward, terminated, truncated, info = self.venv.step(actions)
        self.env_steps += self.num_envs
        reward = np.asarray(reward, dtype=np.float32)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        if not np.isfinite(reward).all():
            i = int(np.flatnonzero(~np.isfinite(reward))[0])
            raise EnvError(f"sub-env {i} returned a non-finite reward ({reward[i]}) at env step {self.env_steps}")
        self._check_obs(obs, "step")
        self.ep_ret += reward
        self.ep_len += 1
        done = terminated | truncated
        next_obs = obs
        step = Step(obs, obs, reward, terminated, truncated)
        if done.any():
            mask = info.get("_final_obs", done)
            next_obs = obs.copy()
            for i in np.flatnonzero(done):
                if not mask[i]:  # pragma: no cover - would mean a next-step autoreset env
                    raise EnvError("vector env reported an episode end without its final observation")
                next_obs[i] = info["final_obs"][i]
            self._check_obs(next_obs, "step (final observation)")
            step.next_obs = next_obs
            ended, returns = done, self.ep_ret
            final_info = info.get("final_info")
            if final_info is not None and "episode_score" in final_info:
                has = np.asarray(final_info["_episode_score"], dtype=bool) & done
                score = np.asarray(final_info["episode_score"], dtype=np.float64)
                ended = done & ~(has & np.isnan(score))  # a life lost, the game goes on
                returns = np.where(has, score, self.ep_ret)
            step.episode_returns = returns[ended].tolist()
            step.episode_lengths = self.ep_len[ended].tolist()
            for i, r, n in zip(np.flatnonzero(ended), step.episode_returns, step.episode_lengths):
                one = env_info(final_info, int(i)) if final_info is not None else {}
                one.setdefault("episode", {"r": r, "l": n})
                self.finished_infos.append(one)
            self.ep_ret[ended] = 0
            self.ep_len[ended] = 0
        return step

    def _check_obs(self, obs: np.ndarray, where: str) -> None:
        if self._float_obs and not np.isfinite(obs).all():
            bad = ~np.isfinite(obs.reshape(self.num_envs, -1)).all(1)
            i = int(np.flatnonzero(bad)[0])
            raise EnvError(f"sub-env {i} returned a non-finite observation from {where} at env step "
                           f"{self.env_steps}: {obs[i]}")

    def close(self) -> None:
        self.venv.close()
