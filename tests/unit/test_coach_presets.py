"""The presets named after Intel Coach's: each loads, validates, names its Coach source and lists
what still differs, and the settings Coach's preset files spell out are the ones it holds.

Training each preset for a few hundred steps through the command line is
``tests/smoke/test_coach_presets_cli.py``; the measured curves are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math

import gymnasium as gym
import pytest
import yaml

from critic.algos.registry import get_algo
from critic.presets import find_preset, list_presets, read_preset

# preset file stem -> Coach's preset name (rl_coach/presets/<Name>.py)
COACH = {
    "acer_coach_cartpole_acer": "CartPole_ACER",
    "a3c_coach_cartpole_a3c": "CartPole_A3C",
    "ppo_coach_cartpole_clippedppo": "CartPole_ClippedPPO",
    "ppo_coach_mujoco_clippedppo": "Mujoco_ClippedPPO",
    "ppo_coach_mujoco_ppo": "Mujoco_PPO",
    "ddpg_coach_mujoco_ddpg": "Mujoco_DDPG",
    "td3_coach_mujoco_td3": "Mujoco_TD3",
    "sac_coach_mujoco_sac": "Mujoco_SAC",
    "a3c_coach_mujoco_a3c": "Mujoco_A3C",
}
IP_RANGE = 3.0  # InvertedPendulum-v5's actions lie in [-3, 3]; critic's noise is in [-1, 1] units


def load(stem: str) -> tuple[dict, object, str]:
    """(the preset's mapping, its validated config, its text) for a preset file stem."""
    algo, short = stem.split("_", 1)
    path = find_preset(short, algo)  # the CLI's lookup: `--preset coach_...` for `critic train ALGO`
    assert path.stem == stem
    preset = read_preset(path)
    cfg = get_algo(preset["algo"]).config_cls.from_dict(preset["hparams"])
    return preset, cfg, path.read_text(encoding="utf-8")


def comment(text: str) -> list[str]:
    """The leading comment block, without the '# ' markers."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return lines


def test_there_is_one_preset_per_coach_preset():
    shipped = {p.stem for p in list_presets() if "_coach_" in p.stem}
    assert shipped == set(COACH)


@pytest.mark.parametrize("stem", sorted(COACH))
def test_preset_loads_validates_and_names_its_coach_source(stem: str):
    preset, cfg, text = load(stem)
    name = COACH[stem]
    assert preset["algo"] == stem.split("_", 1)[0]
    head = comment(text)
    assert head, f"{stem}: no leading comment"
    assert head[0].startswith(f"Coach's {name} preset (Intel Lab's Coach, rl_coach/presets/{name}.py"), head[0]
    # the command that runs it, and a list of what still differs
    short = stem.split("_", 1)[1]
    assert any(f"--preset {short}" in line for line in head)
    i = head.index("Differences that remain:")
    assert any(line.startswith("- ") for line in head[i + 1:]), f"{stem}: the differences list is empty"
    assert any("Coach's own bar" in line for line in head)
    # the task Coach tests on comes first, and every id listed exists in Gymnasium
    ids = [preset["env_id"]] if isinstance(preset["env_id"], str) else list(preset["env_id"])
    assert ids[0] == ("CartPole-v0" if "cartpole" in stem else "InvertedPendulum-v5")
    for env_id in ids:
        gym.spec(env_id)
    assert preset["steps"] > 0 and preset["eval_every"] > 0 and preset["eval_episodes"] >= 1
    # yaml round trip: nothing in the file beyond the preset keys
    assert set(yaml.safe_load(text)) <= {"algo", "env_id", "steps", "eval_every", "eval_episodes", "hparams"}


def test_coach_defaults_shared_by_most_presets():
    """Coach's NetworkParameters defaults: Adam eps 1e-4 and betas (0.9, 0.99). The ClippedPPO
    presets set eps 1e-5 and beta2 0.999; TD3's agent sets eps 1e-8 and beta2 0.999."""
    for stem in COACH:
        _, cfg, _ = load(stem)
        if "clippedppo" in stem:
            assert (cfg.optim_eps, tuple(cfg.adam_betas)) == (1e-5, (0.9, 0.999)), stem
        elif "td3" in stem:
            assert (cfg.optim_eps, tuple(cfg.adam_betas)) == (1e-8, (0.9, 0.999)), stem
        else:
            assert (cfg.optim_eps, tuple(cfg.adam_betas)) == (1e-4, (0.9, 0.99)), stem
        if cfg.reward_scale != 1.0:
            assert stem.split("_", 1)[0] in ("acer", "a3c", "sac")


def test_cartpole_acer():
    preset, cfg, _ = load("acer_coach_cartpole_acer")
    assert math.isclose(cfg.reward_scale, 1 / 200)  # RewardRescaleFilter(1/200.)
    assert (cfg.n_steps, cfg.replay_ratio, cfg.replay_poisson, cfg.replay_start, cfg.buffer_size) == (5, 4, True,
                                                                                                      1000, 50000)
    assert cfg.ent_coef == 0.0 and cfg.truncation_c == 10.0 and cfg.retrace_c == 1.0
    assert cfg.trust_region and cfg.trust_region_delta == 1.0 and cfg.avg_decay == 0.99
    assert (cfg.optimizer, cfg.learning_rate, cfg.max_grad_norm) == ("adam", 0.00025, 40.0)
    assert tuple(cfg.hidden_sizes) == (256, 512) and cfg.activation == "relu"


def test_cartpole_a3c():
    _, cfg, _ = load("a3c_coach_cartpole_a3c")
    assert math.isclose(cfg.reward_scale, 1 / 200)
    assert (cfg.workers, cfg.n_steps, cfg.gae_lambda, cfg.ent_coef) == (8, 5, 1.0, 0.01)
    assert (cfg.optimizer, cfg.learning_rate, cfg.max_grad_norm, cfg.vf_coef) == ("adam", 1e-4, 40.0, 0.5)
    assert cfg.shared_body and tuple(cfg.hidden_sizes) == (256, 512) and not cfg.normalize_obs


@pytest.mark.parametrize("stem", ["ppo_coach_cartpole_clippedppo", "ppo_coach_mujoco_clippedppo"])
def test_clipped_ppo(stem: str):
    _, cfg, _ = load(stem)
    # clip_likelihood_ratio_using_epsilon 0.2 with clipping_decay_schedule LinearSchedule(1.0, 0, 1000000)
    assert (cfg.clip_eps, cfg.clip_schedule, cfg.clip_schedule_steps) == (0.2, "linear", 1_000_000)
    assert cfg.lr_schedule == "constant" and cfg.kl_penalty == "none"
    assert (cfg.n_steps, cfg.batch_size, cfg.n_epochs, cfg.learning_rate) == (2048, 64, 10, 3e-4)
    assert (cfg.gae_lambda, cfg.ent_coef, cfg.max_grad_norm) == (0.95, 0.0, None)
    assert cfg.normalize_obs and not cfg.shared_body and tuple(cfg.hidden_sizes) == (64, 64)


def test_mujoco_ppo_adaptive_kl():
    _, cfg, _ = load("ppo_coach_mujoco_ppo")
    assert cfg.clip_eps is None and cfg.kl_penalty == "adaptive"  # use_kl_regularization, no clipping
    assert (cfg.kl_coef, cfg.kl_target, cfg.kl_cutoff_coef) == (1.0, 0.01, 1000.0)
    assert (cfg.n_steps, cfg.batch_size, cfg.n_epochs, cfg.learning_rate) == (5000, 128, 10, 1e-3)
    assert (cfg.gae_lambda, cfg.ent_coef, cfg.target_kl) == (0.96, 0.01, None)
    assert cfg.normalize_obs


def test_mujoco_ddpg():
    _, cfg, _ = load("ddpg_coach_mujoco_ddpg")
    assert (cfg.actor_learning_rate, cfg.critic_learning_rate) == (1e-4, 1e-3)
    assert cfg.lr_of("actor") == 1e-4 and cfg.lr_of("critic") == 1e-3
    assert (cfg.batch_size, cfg.tau, cfg.learning_starts, cfg.noise_type) == (64, 0.001, 10000, "ou")
    assert math.isclose(cfg.action_noise * IP_RANGE, 0.2, rel_tol=1e-3)  # OU sigma 0.2 in env units
    assert tuple(cfg.hidden_sizes) == (400, 300)


def test_mujoco_td3():
    _, cfg, _ = load("td3_coach_mujoco_td3")
    assert (cfg.learning_rate, cfg.batch_size, cfg.tau, cfg.policy_delay, cfg.n_critics) == (1e-3, 100, 0.005, 2, 2)
    for got, coach in ((cfg.action_noise, 0.1), (cfg.target_noise, 0.2), (cfg.target_noise_clip, 0.5)):
        assert math.isclose(got * IP_RANGE, coach, rel_tol=1e-3)
    assert cfg.actor_learning_rate is None and cfg.critic_learning_rate is None


def test_mujoco_sac():
    _, cfg, _ = load("sac_coach_mujoco_sac")
    assert cfg.reward_scale == 5.0 and cfg.ent_coef == 1.0  # RewardRescaleFilter(5), fixed temperature
    assert (cfg.learning_rate, cfg.batch_size, cfg.tau, cfg.learning_starts) == (3e-4, 256, 0.005, 10000)
    assert tuple(cfg.hidden_sizes) == (256, 256)


def test_mujoco_a3c():
    _, cfg, _ = load("a3c_coach_mujoco_a3c")
    assert math.isclose(cfg.reward_scale, 1 / 20)  # RewardRescaleFilter(1/20.)
    assert cfg.normalize_obs and cfg.backend == "local"  # ObservationNormalizationFilter, shared statistics
    assert (cfg.learning_rate, cfg.ent_coef, cfg.workers, cfg.episodic) == (1e-5, 1e-4, 8, True)
    assert (cfg.optimizer, cfg.max_grad_norm, cfg.vf_coef) == ("adam", 40.0, 0.5)
