"""The training envs as the collectors drive them, and the preprocessing of what they return.

:class:`Preprocess` turns env outputs into what the networks and losses see: observations
normalised (``normalize_obs``) or cast to float32 (images stay raw uint8), rewards scaled by
``reward_scale`` then normalised (``normalize_reward``). The agent's ``predict`` uses it too.

:class:`EnvStream` is one set of vector envs (``envs/step.EnvStepper``: autoreset, final
observations, terminated vs truncated) with the observation the policy acts on next. A
collector reads ``stream.obs``, acts, calls ``step`` (env step and learning rewards), reads the
true next observations it needs with ``normalize`` (statistics not updated yet), then
``advance`` (the next observation, statistics updated): that order keeps normalised final
observations and rollouts consistent within a step.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from critic.envs.state import NotRestorable, capture, decode_value, encode_value, restore_env
from critic.envs.step import EnvStepper, Step
from critic.normalize import ObsNormalizer, RewardNormalizer


class Preprocess:
    """Observation and reward preprocessing, with its checkpoint part (the running statistics)."""

    def __init__(self, obs_space: gym.Space, image: bool, num_envs: int, gamma: float, normalize_obs: bool,
                 normalize_reward: bool, reward_scale: float):
        from critic.nn import is_packed_space

        # raw: images, and packed Dict/Tuple rows, reach the networks as the env's bytes
        self.image = image or is_packed_space(obs_space)
        if normalize_obs and is_packed_space(obs_space):
            from critic.envs.packing import PackedNormalizer

            self.obs_norm = PackedNormalizer(obs_space.layout)  # the float32 vectors only
        else:
            self.obs_norm = ObsNormalizer(obs_space.shape) if normalize_obs else None
        self.rew_norm = RewardNormalizer(num_envs, gamma) if normalize_reward else None
        self.reward_scale = reward_scale

    def obs(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        """What the networks see: normalised (when asked) float32 vectors, or raw images."""
        if self.obs_norm is not None:
            return self.obs_norm(obs, update=update)
        if not self.image and obs.dtype != np.float32:
            return obs.astype(np.float32)
        return obs

    def reward(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """The rewards the algorithm learns from: scaled by ``reward_scale``, then normalised
        when ``normalize_reward`` (episode returns are recorded from the env's own rewards)."""
        if self.reward_scale != 1.0:
            reward = reward * np.float32(self.reward_scale)
        return self.rew_norm(reward, done) if self.rew_norm is not None else reward

    def state(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        if self.obs_norm is not None:
            tensors.update(self.obs_norm.rms.state_dict("obs_norm"))
        if self.rew_norm is not None:
            tensors.update(self.rew_norm.rms.state_dict("rew_norm"))
            tensors["rew_norm/ret"] = torch.from_numpy(self.rew_norm.ret.copy())
        return tensors

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.obs_norm is not None:
            self.obs_norm.rms.load_state_dict(tensors, "obs_norm")
        if self.rew_norm is not None:
            self.rew_norm.rms.load_state_dict(tensors, "rew_norm")
            self.rew_norm.ret = tensors["rew_norm/ret"].numpy().copy()


class EnvStream:
    """A vector env, its stepper and the (preprocessed) observation the policy acts on next."""

    def __init__(self, venv: gym.vector.VectorEnv, prep: Preprocess):
        self.venv, self.prep = venv, prep
        self.stepper = EnvStepper(venv)
        self.num_envs = venv.num_envs
        self.obs: np.ndarray | None = None

    def reset(self, seed: int | None) -> None:
        self.obs = self.prep.obs(self.stepper.reset(seed=seed), update=True)

    def sample_actions(self) -> np.ndarray:
        """Uniform random env actions (warm-up), from the vector env's own seeded action space;
        uniform over the valid actions where the observations carry action masks."""
        from critic.nn import mask_field

        field = mask_field(self.venv.single_observation_space)
        if field is None or self.obs is None:
            return self.venv.action_space.sample()
        off, n = field
        masks = np.ascontiguousarray(self.obs[:, off:off + 4 * n]).view(np.float32) > 0.5
        if masks.all():  # every action valid: the unmasked draw (so all-valid masks change nothing)
            return self.venv.action_space.sample()
        space = self.venv.single_action_space
        if isinstance(space, gym.spaces.MultiDiscrete):
            cuts = np.cumsum(space.nvec.reshape(-1))[:-1]
            return np.stack([space.sample(mask=tuple(m.astype(np.int8) for m in np.split(row, cuts)))
                             for row in masks])
        return np.array([space.sample(mask=row.astype(np.int8)) for row in masks])

    def step(self, env_actions: np.ndarray) -> tuple[Step, np.ndarray]:
        """One vector step: the step (raw rewards, true next observations, finished episodes)
        and the learning rewards. Call :meth:`advance` after reading what the step needs."""
        step = self.stepper.step(env_actions)
        return step, self.prep.reward(step.reward, step.done)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Observations as the networks see them, without updating the statistics."""
        return self.prep.obs(obs)

    def advance(self, step: Step) -> None:
        self.obs = self.prep.obs(step.obs, update=True)

    # ------------------------------------------------------------------ checkpoint part
    def state(self) -> dict[str, Any] | None:
        """The envs mid-episode (``envs/state.py``), the observation to act on next and the
        episode accumulators; None before any reset. ``venv`` None (with ``why``) when the envs
        cannot be captured."""
        if self.obs is None:
            return None
        venv, why = capture(self.venv)
        out: dict[str, Any] = {"venv": venv, "why": why}
        if venv is not None:
            st = self.stepper
            out.update(obs=encode_value(self.obs, "obs"), ep_ret=encode_value(st.ep_ret, "ep_ret"),
                       ep_len=encode_value(st.ep_len, "ep_len"), stepper_steps=st.env_steps)
        return out

    def load_state(self, meta: dict[str, Any], path: str, obs_shape: tuple[int, ...]) -> None:
        if meta.get("venv") is None:
            warnings.warn(f"{path}: the training envs' state was not saved ({meta.get('why')}); training "
                          "continues from freshly reset episodes, so it will not repeat a straight run exactly",
                          RuntimeWarning, stacklevel=4)
            return
        try:
            restore_env(self.venv, meta["venv"])
            obs = decode_value(meta["obs"])
            if obs.shape != (self.num_envs, *obs_shape):
                raise NotRestorable(f"saved observations of shape {obs.shape}")
        except (NotRestorable, KeyError, ValueError, TypeError) as e:
            self.obs = None  # learn() resets the envs with fresh seeds
            warnings.warn(f"{path}: could not restore the training envs' state into this env ({e}); training "
                          "continues from freshly reset episodes", RuntimeWarning, stacklevel=4)
            return
        self.obs = obs
        self.stepper.ep_ret[:] = decode_value(meta["ep_ret"])
        self.stepper.ep_len[:] = decode_value(meta["ep_len"])
        self.stepper.env_steps = int(meta["stepper_steps"])

    def close(self) -> None:
        self.venv.close()
