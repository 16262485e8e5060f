"""Per-network learning rates (off-policy) and Adam's betas (every algorithm) reach the optimizers."""

import pytest
import torch

import critic
from critic.config import ConfigError


@pytest.mark.parametrize("cls", [critic.SAC, critic.TD3, critic.DDPG])
def test_actor_and_critic_learning_rates(cls):
    agent = cls("Pendulum-v1", learning_rate=3e-4, actor_learning_rate=1e-3, critic_learning_rate=2e-3,
                hidden_sizes=(8,))
    assert agent.optims["actor"].param_groups[0]["lr"] == 1e-3
    assert agent.optims["critic"].param_groups[0]["lr"] == 2e-3
    if "alpha" in agent.optims:  # the temperature keeps learning_rate
        assert agent.optims["alpha"].param_groups[0]["lr"] == 3e-4
    plain = cls("Pendulum-v1", learning_rate=3e-4, hidden_sizes=(8,))
    assert {o.param_groups[0]["lr"] for o in plain.optims.values()} == {3e-4}


@pytest.mark.parametrize("cls, env", [(critic.SAC, "Pendulum-v1"), (critic.TD3, "Pendulum-v1"),
                                      (critic.PPO, "CartPole-v1"), (critic.A2C, "CartPole-v1"),
                                      (critic.ACER, "CartPole-v1")])
def test_adam_betas_reach_every_adam(cls, env):
    extra = {"optimizer": "adam"} if cls in (critic.A2C, critic.ACER) else {}
    agent = cls(env, adam_betas=(0.5, 0.9), hidden_sizes=(8,), **extra)
    adams = [o for o in agent.optims.values() if isinstance(o, torch.optim.Adam)]
    assert adams and all(o.param_groups[0]["betas"] == (0.5, 0.9) for o in adams)


def test_adam_betas_change_the_step():
    """beta1 = 0 makes Adam's first step sign(g) * lr like the default, but the second differs:
    the setting is not only stored, it is used by the (direct fused) step."""
    def two_steps(betas):
        agent = critic.SAC("Pendulum-v1", adam_betas=betas, hidden_sizes=(8,), seed=0, learning_starts=0,
                           batch_size=8, log_every=10)
        agent.learn(3, progress_bar=False)
        return torch.cat([p.detach().flatten() for p in agent.nets.critic.parameters()])
    assert not torch.equal(two_steps((0.9, 0.999)), two_steps((0.0, 0.999)))
    assert torch.equal(two_steps((0.9, 0.999)), two_steps((0.9, 0.999)))


@pytest.mark.parametrize("field, value", [("actor_learning_rate", 0.0), ("critic_learning_rate", -1.0),
                                          ("adam_betas", (0.9,)), ("adam_betas", (0.9, 1.0)),
                                          ("adam_betas", (-0.1, 0.9))])
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ConfigError, match=f"'{field}'"):
        critic.SAC.config_cls(**{field: value})
