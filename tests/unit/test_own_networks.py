"""Your own networks: actor and critic widths, any torch.nn activation by name, layer norm, and a
user encoder saved by its import path (imported on load only where the caller allows it)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import critic
from critic.checkpoint import CheckpointError
from critic.config import ConfigError
from critic.envs.fake import TinyImageEnv
from critic.modules.critics import QEnsemble

import my_encoders  # tests/unit/my_encoders.py (module-level factories)

HERE = Path(__file__).parent
OFF = dict(learning_starts=64, batch_size=32)


def test_actor_and_critic_widths_are_their_own():
    ppo = critic.PPO("CartPole-v1", actor_hidden_sizes=[32], critic_hidden_sizes=[48, 16])
    assert [m.out_features for m in ppo.nets.pi_body if isinstance(m, nn.Linear)] == [32]
    assert [m.out_features for m in ppo.nets.vf_body if isinstance(m, nn.Linear)] == [48, 16]
    sac = critic.SAC("Pendulum-v1", actor_hidden_sizes=[32], critic_hidden_sizes=[48, 16], **OFF)
    assert [m.out_features for m in sac.nets.actor_body if isinstance(m, nn.Linear)] == [32]
    assert [tuple(w.shape) for w in sac.nets.critic.weights] == [(2, 4, 48), (2, 48, 16), (2, 16, 1)]
    td3 = critic.TD3("Pendulum-v1", critic_hidden_sizes=[40], **OFF)  # the actor keeps hidden_sizes
    assert [m.out_features for m in td3.nets.actor if isinstance(m, nn.Linear)] == [*td3.cfg.hidden_sizes, 1]
    assert tuple(td3.nets.critic.weights[0].shape) == (2, 4, 40)


def test_one_body_refuses_two_sets_of_widths():
    with pytest.raises(ConfigError, match="'shared_body'.*actor's are \\[32\\]"):
        critic.PPO("CartPole-v1", shared_body=True, actor_hidden_sizes=[32])
    with pytest.raises(ConfigError, match="'critic_hidden_sizes'.*share one body"):
        critic.ACER("CartPole-v1", critic_hidden_sizes=[32])
    with pytest.raises(ConfigError, match="'actor_hidden_sizes'"):
        critic.PPO("CartPole-v1", actor_hidden_sizes=[0])


@pytest.mark.parametrize("name, cls", [("SiLU", nn.SiLU), ("leaky_relu", nn.LeakyReLU), ("mish", nn.Mish),
                                       ("Tanh", nn.Tanh), ("softplus", nn.Softplus)])
def test_any_torch_activation_by_name(name, cls):
    ppo = critic.PPO("CartPole-v1", activation=name)
    assert any(isinstance(m, cls) for m in ppo.nets.pi_body)
    obs = torch.randn(5, 4)
    params, v = ppo.nets(obs)  # the fast path computes what the modules compute
    torch.testing.assert_close(params, ppo.nets.pi_head(ppo.nets.pi_body(obs)))
    torch.testing.assert_close(v, ppo.nets.vf_head(ppo.nets.vf_body(obs)).squeeze(-1))


def test_unknown_or_row_mixing_activations_are_refused_by_name():
    for bad in ("softmax", "glu", "swishy"):
        with pytest.raises(ConfigError, match=f"'activation': '{bad}'.*silu"):
            critic.PPO("CartPole-v1", activation=bad)


def test_layer_norm_is_applied_in_every_network():
    ppo = critic.PPO("Pendulum-v1", layer_norm=True, shared_body=True)
    assert sum(isinstance(m, nn.LayerNorm) for m in ppo.nets.body) == 2
    with torch.no_grad():
        for m in ppo.nets.body:
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(-1.0, 1.0)
    obs = torch.randn(5, 3)
    params, v = ppo.nets(obs)
    torch.testing.assert_close(params, ppo.nets.pi_head(ppo.nets.body(obs)))
    torch.testing.assert_close(v, ppo.nets.vf_head(ppo.nets.body(obs)).squeeze(-1))

    q = QEnsemble(3, 1, (8, 8), 2, "relu", layer_norm=True)
    with torch.no_grad():
        for p in [*q.ln_weights, *q.ln_biases]:
            p.uniform_(-1.0, 2.0)
    s, a = torch.randn(6, 3), torch.randn(6, 1)
    out = q(s, a)
    for e in range(2):  # the ensemble's batched forward is each critic's own
        torch.testing.assert_close(out[e], q.member(e, s, a))
    stacked = {f"q.{k}": torch.stack([v, v + 0.0]) for k, v in q.state_dict().items()}  # two equal members
    torch.testing.assert_close(q.stacked(stacked, "q", s.expand(2, 6, 3), a.expand(2, 6, 1))[1], out)
    no_norm = QEnsemble(3, 1, (8, 8), 2, "relu")
    assert no_norm.ln_weights is None and len(list(no_norm.parameters())) == 6

    sac = critic.SAC("Pendulum-v1", layer_norm=True, **OFF)
    assert sum(isinstance(m, nn.LayerNorm) for m in sac.nets.actor_body) == 2 and sac.nets.critic.ln_weights


def test_a_body_with_other_layers_runs_every_one_of_them():
    ppo = critic.PPO("CartPole-v1", hidden_sizes=[8])
    net = ppo.nets
    net.pi_body.append(nn.Linear(8, 8))  # not mlp()'s Linear-activation form: run as a module
    net.pi_head = nn.Linear(8, 2)
    net._pi = net._runner(net.pi_body)
    obs = torch.randn(3, 4)
    torch.testing.assert_close(net(obs)[0], net.pi_head(net.pi_body(obs)))


@pytest.mark.parametrize("algo, env, hp", [("PPO", "CartPole-v1", dict(n_steps=32, batch_size=32)),
                                           ("A2C", "CartPole-v1", {}),
                                           ("SAC", "Pendulum-v1", OFF),
                                           ("SAC", "CartPole-v1", OFF),
                                           ("TD3", "Pendulum-v1", OFF),
                                           ("ACER", "CartPole-v1", dict(replay_start=64))])
def test_a_user_encoder_feeds_the_networks_and_loads_by_its_path(algo, env, hp, tmp_path):
    agent = getattr(critic, algo)(env, seed=0, encoder=my_encoders.small_mlp, **hp)
    assert agent.cfg.encoder == "my_encoders:small_mlp"
    encoders = [m for m in agent.nets.modules() if type(m).__name__ == "_Features"]
    assert encoders and all(isinstance(e.net[1], nn.LayerNorm) for e in encoders)
    seen = []
    handle = encoders[0].register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
    agent.learn(200, progress_bar=False)
    handle.remove()
    assert seen and set(seen) == {24}
    path = agent.save(tmp_path / "model")
    obs = np.random.default_rng(0).uniform(-0.05, 0.05, (4, *agent.obs_space.shape)).astype(np.float32)
    with pytest.raises(CheckpointError, match="allow_import=\\('my_encoders',\\)"):
        critic.load(path)  # even in the process that imported it: loading names what it may import
    again = critic.load(path, allow_import=("my_encoders",))
    assert np.array_equal(again.predict(obs, deterministic=True)[0], agent.predict(obs, deterministic=True)[0])


_LOAD = """
import sys, numpy as np, critic
path, allow = sys.argv[1], tuple(a for a in sys.argv[2:])
try:
    agent = critic.load(path, allow_import=allow)
except critic.CheckpointError as e:
    print("REFUSED", e)
    raise SystemExit(0)
obs = np.zeros((2, 4), np.float32)
print("ACTIONS", agent.predict(obs, deterministic=True)[0].tolist(), "my_encoders" in sys.modules)
"""


def test_a_new_process_imports_the_encoder_only_when_allowed(tmp_path):
    agent = critic.PPO("CartPole-v1", seed=0, encoder=my_encoders.small_mlp, n_steps=32, batch_size=32)
    agent.learn(64, progress_bar=False)
    path = agent.save(tmp_path / "model")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}

    def run(*allow):
        out = subprocess.run([sys.executable, "-c", _LOAD, str(path), *allow], capture_output=True, text=True,
                             env=env, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()

    refused = run()
    assert refused.startswith("REFUSED") and "allow_import=('my_encoders',)" in refused
    allowed = run("my_encoders")
    want = agent.predict(np.zeros((2, 4), np.float32), deterministic=True)[0].tolist()
    assert allowed == f"ACTIONS {want} True"


def test_an_image_encoder_replaces_the_nature_cnn(tmp_path):
    agent = critic.PPO(TinyImageEnv, encoder=my_encoders.tiny_cnn, n_steps=16, batch_size=16)
    assert not any(isinstance(m, nn.Conv2d) and m.out_channels == 32 for m in agent.nets.modules())
    agent.learn(64, progress_bar=False)
    assert agent.nets.encoder.out_dim > 0 and hasattr(agent.nets, "pi_body")  # features -> the MLPs


def test_bad_encoders_are_refused_with_the_reason():
    with pytest.raises(ConfigError, match="lambdas and nested functions have no import path"):
        critic.PPO("CartPole-v1", encoder=lambda space: nn.Identity())
    with pytest.raises(ConfigError, match="must return features \\[B, F\\].*returned \\(1, 1, 36, 36\\)"):
        critic.PPO(TinyImageEnv, encoder=my_encoders.wrong_rank)
    with pytest.raises(ConfigError, match="returned a Tensor, not a torch.nn.Module"):
        critic.PPO("CartPole-v1", encoder=my_encoders.not_a_module)
    with pytest.raises(ConfigError, match="would import the Python module 'my_encoders'; refused"):
        critic.PPO("CartPole-v1", encoder="my_encoders:small_mlp")  # a string: allow_import must name it
    critic.PPO("CartPole-v1", encoder="my_encoders:small_mlp", allow_import=("my_encoders",))
    with pytest.raises(ConfigError, match="cannot find the encoder 'my_encoders:nope'"):
        critic.PPO("CartPole-v1", encoder="my_encoders:nope", allow_import=("my_encoders",))
    with pytest.raises(ConfigError, match="would import the Python module 'os'"):
        critic.PPO("CartPole-v1", encoder="os:system")  # imported already, but not allowed
    with pytest.raises(ConfigError, match="would import the Python module 'critic_no_such_module'; refused"):
        critic.PPO("CartPole-v1", encoder="critic_no_such_module:make")
    with pytest.raises(ConfigError, match="'encoder': 'not a path'"):
        critic.PPO("CartPole-v1", encoder="not a path")
