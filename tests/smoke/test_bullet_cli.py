"""PyBullet ids from the command line: train with the Bullet presets, eval --video, check-env.

No --allow-import anywhere: critic imports pybullet_envs_gymnasium itself for a Bullet id.
A few hundred steps on InvertedPendulumBulletEnv-v0 (the cheapest Bullet task), about 5 s.
"""

import numpy as np
import yaml
from PIL import Image, ImageSequence

from critic.cli import main

ENV = "InvertedPendulumBulletEnv-v0"
CHEAP = ["--set", "buffer_size=2000", "--set", "torch_threads=1", "--eval-episodes", "1", "--no-progress"]


def test_train_eval_video_with_the_tutorial_preset(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "td3", ENV, "--preset", "bullet", "--steps", "300", "--set", "learning_starts=100",
                 "--eval-every", "300", "--out", str(out), "--seed", "1", *CHEAP]) == 0
    assert "final return" in capsys.readouterr().out
    for f in ("config.yaml", "metrics.csv", "evals.csv", "summary.json", "curve.png", "model/agent.safetensors"):
        assert (out / f).is_file(), f
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    hp = cfg["hparams"]
    assert cfg["env_id"] == ENV and cfg["allow_import"] == [] and cfg["preset"].endswith("td3_bullet.yaml")
    assert list(hp["hidden_sizes"]) == [400, 300] and hp["batch_size"] == 100 and hp["gamma"] == 0.99
    assert hp["action_noise"] == 0.1 and hp["target_noise"] == 0.2 and hp["target_noise_clip"] == 0.5
    assert hp["policy_delay"] == 2 and hp["tau"] == 0.005 and hp["learning_starts"] == 100

    vid = tmp_path / "vid"
    assert main(["eval", str(out), "--episodes", "1", "--video", str(vid), "--seed", "0"]) == 0
    assert "episode 0: return" in capsys.readouterr().out
    gifs = list(vid.glob("*.gif"))
    assert len(gifs) == 1
    frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(gifs[0]))]
    assert len(frames) >= 2 and frames[0].shape == (240, 320, 3)
    # PyBullet rendered the scene (a pole and a rail on white), not a blank canvas
    assert (frames[0].min(axis=2) < 200).sum() > 200


def test_zoo_preset_resolves(tmp_path, capsys):
    out = tmp_path / "zoo"
    assert main(["train", "td3", ENV, "--preset", "bullet_zoo", "--steps", "150", "--set", "learning_starts=100",
                 "--eval-every", "150", "--out", str(out), *CHEAP]) == 0
    hp = yaml.safe_load((out / "config.yaml").read_text())["hparams"]
    assert hp["gamma"] == 0.98 and list(hp["hidden_sizes"]) == [400, 300] and hp["batch_size"] == 100
    assert "tuned for HalfCheetahBulletEnv-v0" in capsys.readouterr().err  # the preset's note names its envs


def test_check_env_accepts_a_bullet_id(capsys):
    assert main(["check-env", "HalfCheetahBulletEnv-v0", "--steps", "50"]) == 0
    assert "ok: HalfCheetahBulletEnv-v0 passed" in capsys.readouterr().out
