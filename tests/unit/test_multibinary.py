"""MultiBinary actions: independent Bernoullis for the on-policy family (A2C, A3C, PPO), a
clear error from the algorithms that cannot take them, and a model that saves and loads."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic
from critic.distributions import Bernoulli, kl_divergence, make_dist, param_dim
from critic.envs.fake import MatchBitsEnv
from critic.envs.make import EnvError, check_spaces
from critic.envs.spaces import space_from_dict, space_to_dict


def test_bernoulli_matches_torch_independent_bernoullis():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 6, generator=g) * 3
    a = (torch.rand(5, 6, generator=g) < 0.5).long()
    ours, ref = Bernoulli(logits), torch.distributions.Bernoulli(logits=logits)
    torch.testing.assert_close(ours.log_prob(a), ref.log_prob(a.float()).sum(-1))
    torch.testing.assert_close(ours.entropy(), ref.entropy().sum(-1))
    other = torch.randn(5, 6, generator=g)
    torch.testing.assert_close(kl_divergence(ours, Bernoulli(other)),
                               torch.distributions.kl_divergence(ref, torch.distributions.Bernoulli(
                                   logits=other)).sum(-1))
    assert torch.equal(ours.mode(), (logits > 0).long())
    # sampling is u < p with the given uniform noise
    u = torch.rand(5, 6, generator=g)
    assert torch.equal(ours.sample(u), (u < torch.sigmoid(logits)).long())
    assert torch.all(kl_divergence(ours, ours).abs() < 1e-6)


def test_bernoulli_is_stable_for_saturated_logits():
    d = Bernoulli(torch.tensor([[60.0, -60.0]]))
    lp = d.log_prob(torch.tensor([[0, 1]]))  # the two near-impossible bits: finite, about -120
    assert torch.isfinite(lp).all() and lp.item() < -100
    assert torch.isfinite(d.entropy()).all()


def test_multidimensional_multibinary_keeps_its_shape():
    space = gym.spaces.MultiBinary([2, 3])
    assert param_dim(space) == 6
    d = make_dist(space, torch.zeros(4, 6))
    a = d.sample()
    assert a.shape == (4, 2, 3) and d.mode().shape == (4, 2, 3)
    torch.testing.assert_close(d.log_prob(a), torch.full((4,), 6 * np.log(0.5), dtype=torch.float32))
    assert space_from_dict(space_to_dict(space)) == space
    assert space_from_dict(space_to_dict(gym.spaces.MultiBinary(5))) == gym.spaces.MultiBinary(5)


@pytest.mark.parametrize("algo", ["SAC", "TD3", "DDPG", "ACER"])
def test_algorithms_without_bernoulli_policies_refuse_multibinary_by_name(algo):
    with pytest.raises(EnvError, match=r"unsupported action space MultiBinary\(4\).*"
                                       r"MultiBinary actions are taken by A2C, A3C and PPO"):
        getattr(critic, algo)(MatchBitsEnv)
    with pytest.raises(EnvError, match="MultiBinary actions are taken by A2C, A3C and PPO"):
        check_spaces(gym.spaces.Box(0, 1, (2,)), gym.spaces.MultiBinary(2), (gym.spaces.Box,))


@pytest.mark.parametrize("algo", ["PPO", "A2C"])
def test_multibinary_agents_act_in_the_space_and_save_and_load(algo, tmp_path):
    agent = getattr(critic, algo)(MatchBitsEnv, seed=0, n_steps=16, num_envs=2, hidden_sizes=[16],
                                  **({"batch_size": 32} if algo == "PPO" else {}))
    agent.learn(256, progress_bar=False)
    assert agent.collector.buffer.actions.shape[-1] == 4
    obs = np.array([[1, 0, 1, 1], [0, 0, 0, 1]], np.float32)
    a = agent.predict(obs, deterministic=True)[0]
    assert a.shape == (2, 4) and a.dtype == np.int8 and set(np.unique(a)) <= {0, 1}
    assert agent.act_space.contains(agent.predict(obs[0])[0])
    path = agent.save(tmp_path / "m")
    loaded = critic.load(path, env=MatchBitsEnv)
    assert isinstance(loaded.act_space, gym.spaces.MultiBinary)
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], a)


def test_a_batch_of_members_trains_on_multibinary_actions():
    batch = critic.PPO(MatchBitsEnv, seeds=[0, 1], n_steps=16, batch_size=32, num_envs=2, hidden_sizes=[16])
    batch.learn(128, progress_bar=False)
    assert [m.env_steps for m in batch.agents] == [128, 128]
