"""Atari 2600 games with the standard DeepMind preprocessing (Mnih et al. 2015; Machado et al. 2018).

:func:`make_atari` builds, from the inside out::

    gym.make(id, frameskip=1, obs_type="grayscale")   ALE does no skipping of its own
    NoopReset(30)        up to 30 random no-ops after a real reset (the env's own np_random)
    MaxAndSkip(4)        repeat each action 4 frames, max-pool the last two frames
    GameScore            sums the raw rewards of the whole game (all lives)
    EpisodicLife         a life loss is terminated=True; reset between lives is one no-op step
    FireReset            presses FIRE after reset in games whose action meanings include it
    Resize(84)           84x84 grayscale by area averaging (no OpenCV needed)
    ClipReward           sign(r)
    FrameStackObservation(4)                          obs (4, 84, 84) uint8, channels first

Training envs use all of it; evaluation envs (``clip_reward=False, episodic_life=False``) play
whole games for the raw score with otherwise the same preprocessing.

Sticky actions: ALE ``v5`` ids keep their default ``repeat_action_probability=0.25``
(Machado et al.'s recommended evaluation protocol, and what the v5 ids are registered with);
``*NoFrameskip-v4`` ids keep their 0.0. Pass ``repeat_action_probability=`` to override. The
frame skip is done here rather than by ALE (``frameskip=1``) so the last two frames can be
max-pooled (Atari sprites flicker between frames).

Episode returns: on every step that the learner sees as the end of an episode, ``info`` holds
``"episode_score"``: the raw, unclipped score of the whole game when the game is over, NaN when
only a life was lost and the game goes on. :class:`critic.envs.step.EnvStepper` reports the
former as the episode return and no episode for the latter, so logged returns are game scores
while bootstrapping is still cut at every life loss.

The ROMs ship inside the ``ale-py`` wheel (``pip install 'critic[atari]'``); nothing is
downloaded at run time.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import FrameStackObservation

__all__ = ["make_atari", "is_atari_id", "NoopReset", "MaxAndSkip", "GameScore", "EpisodicLife",
           "FireReset", "Resize", "ClipReward"]


def is_atari_id(env_id: str) -> bool:
    """True for ALE ids: ``ALE/...`` or ``...NoFrameskip-v4``."""
    return env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4")


def _register_ale() -> None:
    import ale_py  # raises ImportError without the 'atari' extra

    gym.register_envs(ale_py)


class NoopReset(gym.Wrapper):
    """After a reset, take 1..``noop_max`` no-op actions (drawn from the env's seeded np_random)."""

    def __init__(self, env: gym.Env, noop_max: int = 30):
        super().__init__(env)
        if env.unwrapped.get_action_meanings()[0] != "NOOP":
            raise ValueError("NoopReset needs action 0 to be NOOP")
        self.noop_max = noop_max

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        for _ in range(int(self.unwrapped.np_random.integers(1, self.noop_max + 1))):
            obs, _, term, trunc, info = self.env.step(0)
            if term or trunc:
                obs, info = self.env.reset()
        return obs, info


class MaxAndSkip(gym.Wrapper):
    """Repeat the action ``skip`` frames, sum the rewards, return the max of the last two frames."""

    def __init__(self, env: gym.Env, skip: int = 4):
        super().__init__(env)
        self.skip = skip

    def step(self, action):
        total = 0.0
        prev = last = None
        for _ in range(self.skip):
            prev = last
            last, r, term, trunc, info = self.env.step(action)
            total += float(r)
            if term or trunc:
                break
        obs = last if prev is None else np.maximum(prev, last)
        return obs, total, term, trunc, info


class GameScore(gym.Wrapper):
    """Put the raw score of a finished game in ``info["episode_score"]``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._score = 0.0

    def reset(self, **kwargs: Any):
        self._score = 0.0
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        self._score += float(r)
        if term or trunc:
            info = {**info, "episode_score": self._score}
        return obs, r, term, trunc, info


class EpisodicLife(gym.Wrapper):
    """End the learner's episode at each life loss; really reset only when the game is over.

    A life loss gives ``terminated=True`` with ``info["episode_score"] = nan`` (no game score
    yet); the ``reset`` that follows takes one no-op step instead of restarting the game. Any
    other reset (after a game over, with a seed, or mid-episode) restarts the game.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.life_lost = False

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        lives = self.unwrapped.ale.lives()
        self.life_lost = not (term or trunc) and 0 < lives < self.lives
        if self.life_lost:
            term = True
            info = {**info, "episode_score": float("nan")}
        self.lives = lives
        return obs, r, term, trunc, info

    def reset(self, **kwargs: Any):
        if self.life_lost and kwargs.get("seed") is None:
            obs, _, term, trunc, info = self.env.step(0)
            if term or trunc:  # the game ended during the no-op: start a new one
                obs, info = self.env.reset(**kwargs)
        else:
            obs, info = self.env.reset(**kwargs)
        self.life_lost = False
        self.lives = self.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper):
    """Press FIRE (then action 2, as DeepMind did) after reset, for games that wait for FIRE."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if "FIRE" not in meanings:
            raise ValueError(f"FireReset needs a FIRE action; this game has {meanings}")
        fire = meanings.index("FIRE")
        self._actions = (fire, 2) if fire == 1 and len(meanings) >= 3 else (fire,)

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        for a in self._actions:
            obs, _, term, trunc, info = self.env.step(a)
            if term or trunc:
                obs, info = self.env.reset(**kwargs)
        return obs, info


def _area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix averaging input pixels by their overlap with each output pixel."""
    scale = n_in / n_out
    lo = np.arange(n_out)[:, None] * scale
    j = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(lo + scale, j + 1) - np.maximum(lo, j), 0.0, None)
    return (overlap / scale).astype(np.float32)


class Resize(gym.ObservationWrapper):
    """Grayscale (H, W) frames to (size, size) uint8 by area averaging (like OpenCV INTER_AREA)."""

    def __init__(self, env: gym.Env, size: int = 84):
        super().__init__(env)
        h, w = env.observation_space.shape[:2]
        if len(env.observation_space.shape) != 2:
            raise ValueError(f"Resize expects grayscale (H, W) frames, got {env.observation_space.shape}")
        self._rows, self._cols = _area_weights(h, size), _area_weights(w, size).T.copy()
        self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)

    def observation(self, obs: np.ndarray) -> np.ndarray:
        out = self._rows @ obs.astype(np.float32) @ self._cols
        return np.rint(out, out=out).astype(np.uint8)


class ClipReward(gym.RewardWrapper):
    """Reward -> sign(reward) (-1, 0, +1)."""

    def reward(self, reward):
        return float(np.sign(reward))


def make_atari(env_id: str, *, clip_reward: bool = True, episodic_life: bool = True,
               render_mode: str | None = None, noop_max: int = 30, frame_skip: int = 4,
               screen_size: int = 84, frame_stack: int = 4, **kwargs: Any) -> gym.Env:
    """An ALE game with DeepMind preprocessing; obs (frame_stack, screen_size, screen_size) uint8.

    Training defaults (clipped rewards, episodic life); ``clip_reward=False, episodic_life=False``
    for evaluation. ``kwargs`` go to ``gym.make`` (e.g. ``repeat_action_probability``).
    """
    _register_ale()
    kwargs = {"frameskip": 1, "obs_type": "grayscale", **kwargs}
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    env = gym.make(env_id, **kwargs)
    if noop_max > 0:
        env = NoopReset(env, noop_max)
    if frame_skip > 1:
        env = MaxAndSkip(env, frame_skip)
    env = GameScore(env)
    if episodic_life:
        env = EpisodicLife(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    env = Resize(env, screen_size)
    if clip_reward:
        env = ClipReward(env)
    return FrameStackObservation(env, frame_stack)
