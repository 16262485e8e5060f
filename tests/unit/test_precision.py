"""``precision='bf16'`` for the replay-based agents: the updates' matrix products run in
bfloat16 (torch.autocast) while weights, optimizer states, losses and network outputs stay
float32. The negative control is the float32 run from the same seed: the bf16 run must differ
from it (so the autocast really ran), but only by bfloat16 rounding."""

import pytest
import torch

import critic
from critic.config import ConfigError

SMALL = dict(hidden_sizes=(32, 32), learning_starts=50, batch_size=32, buffer_size=1000, log_every=10**9, seed=0)
CASES = {
    "sac": lambda **kw: critic.SAC("Pendulum-v1", **SMALL, **kw),
    "sac_discrete": lambda **kw: critic.SAC("CartPole-v1", **SMALL, **kw),
    "td3": lambda **kw: critic.TD3("Pendulum-v1", **SMALL, **kw),
    "ddpg": lambda **kw: critic.DDPG("Pendulum-v1", **SMALL, **kw),
}


def _params(agent) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in agent.nets.parameters()])


@pytest.mark.parametrize("name", list(CASES))
def test_bf16_updates_keep_float32_state_and_stay_close_to_float32(name):
    runs = {}
    for prec in ("float32", "bf16"):
        agent = CASES[name](precision=prec)
        agent.learn(120, progress_bar=False)
        assert agent.updates > 0
        assert all(p.dtype == torch.float32 for p in agent.nets.parameters())
        for opt in agent.optims.values():
            for st in opt.state.values():
                assert all(v.dtype == torch.float32 for v in st.values() if torch.is_tensor(v) and v.is_floating_point())
        with agent.collector.precision():
            batch = agent.collector.sample()
            q = agent.nets.critic(batch["obs"], None if name == "sac_discrete" else batch["actions"])
        assert q.dtype == torch.float32  # the outputs leave the network as float32
        runs[prec] = _params(agent)
        agent.close()
    diff = (runs["bf16"] - runs["float32"]).abs().max().item()
    assert diff > 0, "bf16 updates gave bit-identical parameters: autocast did not run"
    assert diff < 0.05, f"bf16 drifted from float32 by {diff} after 70 updates"


def test_bf16_update_runs_matrix_products_in_bfloat16():
    agent = critic.TD3("Pendulum-v1", **SMALL, precision="bf16")
    agent.learn(60, progress_bar=False)
    seen = set()
    orig = torch.baddbmm

    def spy(*a, **k):
        out = orig(*a, **k)
        seen.add(out.dtype)
        return out

    torch.baddbmm = spy
    try:
        agent.learn(5, progress_bar=False)
    finally:
        torch.baddbmm = orig
    assert seen == {torch.bfloat16}, seen


def test_precision_is_validated_and_saved(tmp_path):
    with pytest.raises(ConfigError, match="'precision'.*'float32', 'bf16'"):
        critic.SAC("Pendulum-v1", precision="fp16")
    agent = critic.SAC("Pendulum-v1", **SMALL, precision="bf16")
    path = agent.save(tmp_path / "m.safetensors")
    assert critic.load(path).cfg.precision == "bf16"


def test_cpu_bf16_detection_and_warning(tmp_path, monkeypatch):
    from critic.collect import replay as agent_mod  # where the replay collector looks the CPU up
    from critic.nn import cpu_has_native_bf16

    with_bf16, without, arm = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_has_native_bf16(str(with_bf16)) is True
    assert cpu_has_native_bf16(str(without)) is False
    assert cpu_has_native_bf16(str(arm)) is None
    assert cpu_has_native_bf16(str(tmp_path / "missing")) is None

    monkeypatch.setattr(agent_mod, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match="without AVX-512 BF16 or AMX"):
        critic.TD3("Pendulum-v1", **SMALL, precision="bf16")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        critic.TD3("Pendulum-v1", **SMALL)  # float32: no warning
        monkeypatch.setattr(agent_mod, "cpu_has_native_bf16", lambda: True)
        critic.TD3("Pendulum-v1", **SMALL, precision="bf16")
