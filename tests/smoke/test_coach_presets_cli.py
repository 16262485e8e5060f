"""Every preset named after an Intel Coach preset trains from the command line on its first env id.

400 env steps each (a whole rollout for the PPO presets, whose batches are longer), with the
off-policy warm-up and ACER's replay start lowered so that gradient steps and replay happen,
and the A3C presets on 2 workers instead of Coach's 8. About 15 s for all nine.
"""

from __future__ import annotations

import json

import pytest
import yaml

from critic.cli import find_preset, read_preset, main

PRESETS = {  # preset name -> algorithm
    "coach_cartpole_acer": "acer",
    "coach_cartpole_a3c": "a3c",
    "coach_cartpole_clippedppo": "ppo",
    "coach_mujoco_clippedppo": "ppo",
    "coach_mujoco_ppo": "ppo",
    "coach_mujoco_ddpg": "ddpg",
    "coach_mujoco_td3": "td3",
    "coach_mujoco_sac": "sac",
    "coach_mujoco_a3c": "a3c",
}
CHEAPER = {  # only what makes 400 steps exercise the update; everything else stays the preset's
    "acer": ["--set", "replay_start=100"],
    "a3c": ["--set", "workers=2"],
    "ddpg": ["--set", "learning_starts=200"],
    "td3": ["--set", "learning_starts=200"],
    "sac": ["--set", "learning_starts=200"],
}


@pytest.mark.filterwarnings("ignore:.*CartPole-v0 is out of date")  # Coach's CartPole presets use v0
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_coach_preset_trains_on_its_first_env(name: str, tmp_path, capsys):
    algo = PRESETS[name]
    preset = read_preset(find_preset(name, algo))
    env_id = preset["env_id"] if isinstance(preset["env_id"], str) else preset["env_id"][0]
    out = tmp_path / name
    assert main(["train", algo, env_id, "--preset", name, "--steps", "400", "--out", str(out), "--no-progress",
                 "--eval-every", "400", "--eval-episodes", "1", "--seed", "0", "--set", "torch_threads=1",
                 *CHEAPER.get(algo, [])]) == 0
    assert "final return" in capsys.readouterr().out
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["env_id"] == env_id and cfg["preset"].endswith(f"{algo}_{name}.yaml")
    hp = cfg["hparams"]
    for key, value in preset["hparams"].items():  # the run used the preset's values (bar the overrides)
        if key in ("workers", "learning_starts", "replay_start"):
            continue
        assert hp[key] == value, key
    summary = json.loads((out / "summary.json").read_text())
    assert summary["env_steps"] >= 400 and summary["updates"] > 0
    assert summary["final_eval"]["episodes"] == 1
