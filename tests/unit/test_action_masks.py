"""Action masks: from info["action_mask"], an action_masks() method or a Dict key, stored with
each observation, applied wherever the policy is evaluated; all-valid masks change no bit."""

import functools

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic
from critic.envs.fake import MaskedChoiceEnv, MaskedChoiceMethodEnv
from critic.envs.make import EnvError
from critic.nn import MASKED_LOGIT, mask_logits
from critic.distributions import Categorical, kl_divergence

SMALL = dict(hidden_sizes=[16], seed=0)
ALGOS = {
    "ppo": (critic.PPO, dict(n_steps=16, batch_size=16, num_envs=2)),
    "a2c": (critic.A2C, dict(n_steps=5, num_envs=2)),
    "acer": (critic.ACER, dict(replay_start=64, num_envs=2, n_steps=8)),
    "sac": (critic.SAC, dict(learning_starts=64, batch_size=32, buffer_size=2000)),
}


def _invalid(agent) -> int:
    return sum(e.unwrapped.invalid for e in agent.venv.envs)


def test_masked_logits_give_zero_probability_and_finite_losses():
    logits = torch.randn(4, 5, requires_grad=True)
    valid = torch.tensor([[1, 1, 0, 0, 1]] * 4, dtype=torch.bool)
    d = Categorical(mask_logits(logits, valid))
    assert torch.all(d.probs[:, 2:4] == 0) and torch.all(d.sample()[..., None] != torch.tensor([2, 3]))
    ent, kl = d.entropy(), kl_divergence(d, Categorical(mask_logits(torch.randn(4, 5), valid)))
    alpha_term = (d.probs * (torch.randn(4, 5) - 5.0 * d.logits)).sum(-1)  # discrete SAC's soft value
    assert torch.isfinite(ent).all() and torch.isfinite(kl).all() and torch.isfinite(alpha_term).all()
    (ent.sum() + alpha_term.sum()).backward()
    assert torch.isfinite(logits.grad).all() and torch.all(logits.grad[:, 2:4] == 0)
    assert MASKED_LOGIT < -1e8


@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("env", [functools.partial(MaskedChoiceEnv, source="info"), MaskedChoiceMethodEnv,
                                 functools.partial(MaskedChoiceEnv, source="key")], ids=["info", "method", "key"])
def test_a_masked_agent_never_takes_an_invalid_action(algo, env):
    cls, hp = ALGOS[algo]
    agent = cls(env, **SMALL, **hp)
    agent.learn(400, progress_bar=False)  # SAC: random warm-up actions included
    assert agent.mask_source in ("info", "method", "key")
    assert _invalid(agent) == 0
    res = agent.evaluate(3, deterministic=False)
    assert min(res["returns"]) >= 0  # a -10 would show


def test_without_masks_the_same_agent_does_take_invalid_actions():
    agent = critic.PPO(MaskedChoiceEnv, action_masks=False, **SMALL, n_steps=16, batch_size=16)
    agent.learn(400, progress_bar=False)
    assert agent.mask_source is None and _invalid(agent) > 50


@pytest.mark.parametrize("algo", list(ALGOS))
def test_all_valid_masks_change_no_bit(algo):
    cls, hp = ALGOS[algo]
    # each built and trained in turn (torch's global generator is seeded at construction)
    masked = cls(functools.partial(MaskedChoiceEnv, source="info", all_valid=True), **SMALL, **hp)
    masked.learn(300, progress_bar=False)
    plain = cls(functools.partial(MaskedChoiceEnv, source="none", all_valid=True), **SMALL, **hp)
    plain.learn(300, progress_bar=False)
    assert masked.mask_source == "info" and plain.mask_source is None
    sa, sb = masked.nets.state_dict(), plain.nets.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), [k for k in sa if not torch.equal(sa[k], sb[k])]


def test_predict_takes_a_mask_and_a_loaded_model_keeps_applying_it(tmp_path):
    agent = critic.PPO(MaskedChoiceMethodEnv, **SMALL, n_steps=16, batch_size=16)
    agent.learn(64, progress_bar=False)
    obs = np.zeros(2, np.float32)
    only3 = np.array([0, 0, 0, 1, 0, 0])
    assert agent.predict(obs, action_mask=only3)[0] == 3
    batch = agent.predict(np.zeros((4, 2), np.float32), action_mask=np.eye(6)[[0, 5, 2, 2]])[0]
    assert batch.tolist() == [0, 5, 2, 2]
    loaded = critic.load(agent.save(tmp_path / "m"))  # no env: predict only
    assert all(loaded.predict(obs, action_mask=only3)[0] == 3 for _ in range(5))
    assert loaded.predict(obs)[0] in range(6)  # no mask given: every action counts as valid
    with pytest.raises(ValueError, match="trained without action masks"):
        critic.PPO("CartPole-v1").predict(np.zeros(4, np.float32), action_mask=np.ones(2))[0]


class _BadMask(MaskedChoiceEnv):
    def __init__(self, defect):
        super().__init__(source="info")
        self.defect = defect

    def _out(self):
        obs, info = super()._out()
        if self.defect == "short":
            info["action_mask"] = info["action_mask"][:4]
        elif self.defect == "none_valid":
            info["action_mask"] = np.zeros(6, np.int8)
        elif self.defect == "missing" and getattr(self, "t", 0) > 0:
            info.pop("action_mask")
        return obs, info


@pytest.mark.parametrize("defect, message", [("short", "action mask of shape \\(4,\\).*needs 6 flags"),
                                             ("none_valid", "allows no action"),
                                             ("missing", "info\\['action_mask'\\] at reset but none at step 1")])
def test_bad_masks_stop_with_the_reason(defect, message):
    with pytest.raises(EnvError, match=message):
        agent = critic.PPO(lambda: _BadMask(defect), **SMALL, n_steps=16, batch_size=16)
        agent.learn(32, progress_bar=False)


def test_masks_on_actions_that_take_none_are_refused():
    class BoxWithMask(gym.Env):
        observation_space = gym.spaces.Dict({"obs": gym.spaces.Box(-1, 1, (2,)), "action_mask": gym.spaces.MultiBinary(2)})
        action_space = gym.spaces.Box(-1, 1, (2,))

        def reset(self, *, seed=None, options=None):
            return {"obs": np.zeros(2, np.float32), "action_mask": np.ones(2, np.int8)}, {}

        def step(self, a):
            return self.reset()[0], 0.0, False, False, {}

    with pytest.raises(EnvError, match="masks apply to Discrete and MultiDiscrete"):
        critic.PPO(BoxWithMask)
    critic.PPO(BoxWithMask, action_masks=False)  # ignored when asked


class _MultiMasked(gym.Env):
    """MultiDiscrete([3, 4]) actions, masks in sb3-contrib's layout (3 + 4 flags side by side):
    each step one value of each sub-action is invalid."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.MultiDiscrete([3, 4])

    def __init__(self):
        self.invalid = 0

    def _mask(self):
        self.bad = (int(self.np_random.integers(3)), int(self.np_random.integers(4)))
        m = np.ones(7, np.int8)
        m[self.bad[0]] = m[3 + self.bad[1]] = 0
        return {"action_mask": m}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), self._mask()

    def step(self, a):
        self.invalid += int(a[0] == self.bad[0]) + int(a[1] == self.bad[1])
        return np.zeros(2, np.float32), 0.0, False, False, self._mask()


def test_multidiscrete_masks_use_the_flags_of_every_sub_action():
    agent = critic.PPO(_MultiMasked, **SMALL, n_steps=16, batch_size=16, num_envs=2)
    agent.learn(320, progress_bar=False)
    assert agent.mask_source == "info" and _invalid(agent) == 0
    a = agent.predict(np.zeros(2, np.float32), action_mask=np.array([0, 0, 1, 1, 0, 0, 0]))[0]
    assert a.tolist() == [2, 0]
