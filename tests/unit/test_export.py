"""Policy export (``critic.export``): the ONNX file run by onnxruntime and the TorchScript file
loaded by ``torch.jit.load`` alone give ``agent.predict(obs, deterministic=True)``'s actions
(observation normalisation, image bytes, Box clipping and [-1, 1] rescaling, argmax indices
all inside the graph), for any batch size; with metadata; refusing what it cannot export."""

from __future__ import annotations

import argparse
import json
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic
from critic.envs.fake import MaskedChoiceEnv, MixedDictEnv, TinyImageEnv
from critic.export import ExportError, add_export_parser, cmd_export, export, policy_module

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TINY = dict(seed=0, hidden_sizes=(16,), torch_threads=1)
OFF = dict(learning_starts=64, batch_size=32, buffer_size=2000, **TINY)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def _predict(agent, obs: np.ndarray) -> np.ndarray:
    out = agent.predict(obs, deterministic=True)
    return out[0] if isinstance(out, tuple) else out


def _observations(make_env, n: int = 7, seed: int = 0) -> np.ndarray:
    """``n`` observations from random play in the env (resets and steps)."""
    env = make_env()
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    for k in range(n):
        out.append(obs)
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset(seed=seed + k + 1)
    env.close()
    x = np.stack(out)
    return x if x.dtype == np.uint8 else x.astype(np.float32)


def _run_onnx(path, obs: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"obs": obs})[0]


def _run_torchscript(path, obs: np.ndarray) -> np.ndarray:
    return torch.jit.load(str(path))(torch.as_tensor(obs)).numpy()


def _assert_same_actions(agent, tmp_path, obs: np.ndarray, discrete: bool) -> None:
    """Both formats, batches of 7 and 1, against predict (equal indices; floats to 1e-5)."""
    want = _predict(agent, obs)
    for fmt, run in (("onnx", _run_onnx), ("torchscript", _run_torchscript)):
        path = export(agent, tmp_path / f"policy.{fmt}", format=fmt)
        for x, w in ((obs, want), (obs[:1], want[:1])):
            got = run(path, x)
            assert got.dtype == w.dtype and got.shape == w.shape, (fmt, got.dtype, got.shape, w.dtype, w.shape)
            if discrete:
                np.testing.assert_array_equal(got, w, err_msg=fmt)
            else:
                np.testing.assert_allclose(got, w, rtol=0, atol=1e-5, err_msg=fmt)


# ----------------------------------------------------------------------------- agents

@pytest.fixture(scope="module")
def ppo_cartpole():
    agent = critic.PPO("CartPole-v1", n_steps=64, num_envs=2, batch_size=64, **TINY)
    agent.learn(256, progress_bar=False)
    yield agent
    agent.close()


@pytest.fixture(scope="module")
def sac_pendulum():
    agent = critic.SAC("Pendulum-v1", **OFF)
    agent.learn(200, progress_bar=False)
    yield agent
    agent.close()


def test_ppo_discrete_argmax(ppo_cartpole, tmp_path):
    obs = _observations(lambda: gym.make("CartPole-v1"))
    _assert_same_actions(ppo_cartpole, tmp_path, obs, discrete=True)
    assert _run_onnx(tmp_path / "policy.onnx", obs).dtype == np.int64


def test_sac_box_rescaled_to_the_bounds(sac_pendulum, tmp_path):
    obs = _observations(lambda: gym.make("Pendulum-v1"))
    _assert_same_actions(sac_pendulum, tmp_path, obs, discrete=False)
    # the graph maps tanh's [-1, 1] onto Pendulum's [-2, 2] (a policy at +-1 would be off by 2x)
    a = _run_onnx(tmp_path / "policy.onnx", obs)
    mode = torch.tanh(sac_pendulum.nets.dist(torch.as_tensor(obs)).base.mean).detach().numpy()
    np.testing.assert_allclose(a, 2.0 * mode, atol=1e-5)


def test_ppo_normalised_observations_and_box_clip(tmp_path):
    agent = critic.PPO("Pendulum-v1", n_steps=64, num_envs=2, batch_size=64, normalize_obs=True, **TINY)
    agent.learn(256, progress_bar=False)
    # a steep policy head, so that some actions fall outside Pendulum's [-2, 2] and are clipped
    with torch.no_grad():
        agent.nets.pi_head.weight.mul_(200.0)
    obs = _observations(lambda: gym.make("Pendulum-v1"), n=16)
    obs = np.concatenate([obs, 40.0 * obs[:4]])  # far out: normalised values reach the clip (10)
    assert np.abs(agent.prep.obs(obs[-4:])).max() == pytest.approx(10.0)
    actions = _predict(agent, obs)
    assert (np.abs(actions) == 2.0).any() and (np.abs(actions) < 2.0).any(), actions.ravel()
    _assert_same_actions(agent, tmp_path, obs, discrete=False)
    agent.close()


def test_td3_deterministic_actor(tmp_path):
    agent = critic.TD3("Pendulum-v1", **OFF)
    agent.learn(200, progress_bar=False)
    _assert_same_actions(agent, tmp_path, _observations(lambda: gym.make("Pendulum-v1")), discrete=False)
    agent.close()


def test_image_policy_takes_uint8_and_scales_inside(tmp_path):
    make = lambda: TinyImageEnv(continuous=True, hwc=True)  # noqa: E731
    agent = critic.SAC(make, **{**OFF, "learning_starts": 50, "batch_size": 16})
    agent.learn(100, progress_bar=False)
    obs = np.stack([make().reset(seed=s)[0] for s in range(7)])
    assert obs.dtype == np.uint8
    _assert_same_actions(agent, tmp_path, obs, discrete=False)
    model = onnx.load(str(tmp_path / "policy.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    agent.close()


def test_acer_and_multibinary_a2c(tmp_path):
    from critic.envs.fake import MatchBitsEnv

    acer = critic.ACER("CartPole-v1", n_steps=8, **TINY)
    acer.learn(64, progress_bar=False)
    _assert_same_actions(acer, tmp_path, _observations(lambda: gym.make("CartPole-v1")), discrete=True)
    acer.close()
    a2c = critic.A2C(MatchBitsEnv, **TINY)
    a2c.learn(64, progress_bar=False)
    obs = _observations(MatchBitsEnv)
    _assert_same_actions(a2c, tmp_path, obs, discrete=True)
    assert _run_torchscript(tmp_path / "policy.torchscript", obs).dtype == np.int8  # MultiBinary's dtype
    a2c.close()


# ----------------------------------------------------------------------------- module, metadata

def test_policy_module_is_a_detached_copy(sac_pendulum):
    module = policy_module(sac_pendulum)
    assert not module.training and all(not p.requires_grad for p in module.parameters())
    assert all(p.device.type == "cpu" for p in module.parameters())
    names = [n for n, _ in module.named_parameters()]
    assert names and not any("critic" in n for n in names)  # the actor only
    obs = _observations(lambda: gym.make("Pendulum-v1"))
    before = module(torch.as_tensor(obs)).clone()
    agent_params = dict(sac_pendulum.nets.named_parameters())
    saved = agent_params["actor_head.bias"].detach().clone()
    with torch.no_grad():
        agent_params["actor_head.bias"].add_(1.0)  # the agent moves on; the copy does not
    try:
        torch.testing.assert_close(module(torch.as_tensor(obs)), before)
    finally:
        with torch.no_grad():
            agent_params["actor_head.bias"].copy_(saved)


def test_metadata_in_both_formats(ppo_cartpole, tmp_path):
    path = export(ppo_cartpole, tmp_path / "p.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["algo"] == "ppo" and props["critic_version"] == critic.__version__
    assert json.loads(props["observation_shape"]) == ["batch", 4] and props["observation_dtype"] == "float32"
    assert json.loads(props["action_space"]) == {"type": "Discrete", "n": 2, "start": 0}
    meta = json.loads(props["critic.json"])
    assert meta["algo"] == "ppo" and meta["outputs"]["action"]["dtype"] == "int64"
    onnx.checker.check_model(onnx.load(str(path)))
    ts = export(ppo_cartpole, tmp_path / "p.pt", format="torchscript")
    extra = {"critic.json": ""}
    torch.jit.load(str(ts), _extra_files=extra)
    assert json.loads(extra["critic.json"]) == meta


def test_dynamic_batch_axis(ppo_cartpole, tmp_path):
    path = export(ppo_cartpole, tmp_path / "p.onnx")
    model = onnx.load(str(path))
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "batch" and not dim.HasField("dim_value")
    obs = _observations(lambda: gym.make("CartPole-v1"), n=7)
    for n in (1, 7):
        assert _run_onnx(path, obs[:n]).shape == (n,)


# ----------------------------------------------------------------------------- errors

def test_bad_format_names_the_allowed_ones(ppo_cartpole, tmp_path):
    with pytest.raises(ValueError, match="onnx, torchscript"):
        export(ppo_cartpole, tmp_path / "p.tflite", format="tflite")


def test_refusals_name_what_is_not_supported(tmp_path):
    batch = critic.PPO("CartPole-v1", seeds=[0, 1], **{k: v for k, v in TINY.items() if k != "seed"})
    with pytest.raises(ExportError, match=r"batched seed run .*batch\.agents\[k\]"):
        export(batch, tmp_path / "b.onnx")
    batch.close()
    for make, what in ((MixedDictEnv, "Dict/Tuple observations"), (MaskedChoiceEnv, "action masks")):
        agent = critic.PPO(make, **TINY)
        with pytest.raises(ExportError, match=what):
            export(agent, tmp_path / "x.pt", format="torchscript")
        agent.close()


def test_missing_onnx_says_what_to_install(ppo_cartpole, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    with pytest.raises(ImportError, match=r'pip install "critic\[export\]"'):
        export(ppo_cartpole, tmp_path / "p.onnx")
    assert not (tmp_path / "p.onnx").exists()
    export(ppo_cartpole, tmp_path / "p.pt", format="torchscript")  # TorchScript needs torch only


# ----------------------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="critic")
    add_export_parser(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_export_of_a_run_directory(tmp_path, capsys):
    run = tmp_path / "run"
    agent = critic.PPO("CartPole-v1", n_steps=64, num_envs=2, batch_size=64, **TINY)
    agent.learn(128, progress_bar=False, run_dir=run)
    agent.close()
    out = tmp_path / "x.pt"
    args = _parser().parse_args(["export", str(run), "--format", "torchscript", "-o", str(out)])
    assert args.func is cmd_export and args.func(args) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and str(out) in line and "KiB" in line
    loaded = critic.load(run)
    obs = _observations(lambda: gym.make("CartPole-v1"))
    np.testing.assert_array_equal(_run_torchscript(out, obs), _predict(loaded, obs))
    loaded.close()
    # defaults: ONNX into RUN/model/; a model file works as well as its run directory
    assert cmd_export(_parser().parse_args(["export", str(run)])) == 0
    assert (run / "model" / "policy.onnx").is_file() and not list((run / "model").glob(".*.tmp"))
    model_file = run / "model" / "agent.safetensors"
    assert cmd_export(_parser().parse_args(["export", str(model_file), "-o", str(tmp_path / "m.onnx")])) == 0
    np.testing.assert_array_equal(_run_onnx(tmp_path / "m.onnx", obs), _run_onnx(run / "model" / "policy.onnx", obs))
    with pytest.raises(SystemExit):  # argparse: invalid choice
        _parser().parse_args(["export", str(run), "--format", "tflite"])
    capsys.readouterr()
