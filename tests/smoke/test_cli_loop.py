"""The command line around the training loop: --stop-at, --keep-checkpoints, the best model,
--track without wandb set up, MP4/GIF videos, export and tune wired in, and Python-API runs
resumed with --resume."""

import csv
import sys

import numpy as np
import pytest
import yaml

import critic
from critic.callbacks import CheckpointCallback
from critic.cli import main

A2C = ["--set", "n_steps=8", "--num-envs", "2", "--no-progress", "--set", "torch_threads=1"]


def test_stop_at_keep_checkpoints_and_best_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "a2c", "CartPole-v1", "--steps", "4000", "--out", str(out), "--eval-every", "768",
                 "--eval-episodes", "2", "--stop-at", "-1", "--keep-checkpoints", "2", "--checkpoint-every", "256",
                 *A2C]) == 0
    printed = capsys.readouterr().out
    assert "stopping at env step 768" in printed
    summary = yaml.safe_load((out / "summary.json").read_text())
    assert summary["env_steps"] == 768
    kept = [p.name for p in CheckpointCallback.saved(out / "checkpoints")]
    assert kept == ["step_512.safetensors", "step_768.safetensors"]  # 256 was removed
    assert critic.load(out / "best").env_steps == 768  # the best (only) evaluation's model
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert (cfg["stop_at"], cfg["keep_checkpoints"], cfg["checkpoint_every"]) == (-1, 2, 256)


def test_best_model_follows_the_evaluations(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "a2c", "CartPole-v1", "--steps", "1500", "--out", str(out), "--eval-every", "500",
                 "--eval-episodes", "2", *A2C]) == 0
    evals = list(csv.DictReader(open(out / "evals.csv")))
    best = max(evals, key=lambda r: float(r["mean"]))  # the first of equal bests is kept
    assert critic.load(out / "best").env_steps == int(best["env_steps"])


@pytest.mark.parametrize("flag, value", [("--keep-checkpoints", "0"), ("--checkpoint-every", "-5")])
def test_bad_loop_options_are_one_line_errors(tmp_path, capsys, flag, value):
    assert main(["train", "a2c", "CartPole-v1", "--steps", "100", "--out", str(tmp_path / "r"), flag, value,
                 *A2C]) == 2
    assert f"'{flag}'" in capsys.readouterr().err


def test_loop_options_are_refused_for_batched_runs(tmp_path, capsys):
    assert main(["train", "a2c", "CartPole-v1", "--seeds", "0-1", "--steps", "100", "--out", str(tmp_path / "r"),
                 "--stop-at", "400", *A2C]) == 2
    assert "--stop-at: not available for a batched run" in capsys.readouterr().err


def test_track_without_a_wandb_login_trains_on(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    assert main(["train", "a2c", "CartPole-v1", "--steps", "200", "--out", str(out), "--track", *A2C]) == 0
    assert (out / "model" / "agent.safetensors").is_file()


def test_track_hint_when_wandb_is_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    assert main(["train", "a2c", "CartPole-v1", "--steps", "100", "--out", str(tmp_path / "r"), "--track",
                 *A2C]) == 0
    err = capsys.readouterr().err
    assert 'pip install "critic[track]"' in err and err.count("--track") == 1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "a2c", "CartPole-v1", "--steps", "300", "--out", str(out), *A2C]) == 0
    return out


def test_video_mp4_gif_and_folder(trained, tmp_path, capsys):
    import imageio.v3 as iio

    assert main(["eval", str(trained), "--episodes", "2", "--seed", "0", "--video", str(tmp_path / "v.mp4")]) == 0
    frames = iio.imread(tmp_path / "v.mp4")
    lengths = [int(line.split(", ")[1].split()[0]) for line in capsys.readouterr().out.splitlines()
               if line.startswith("episode")]
    assert frames.ndim == 4 and frames.shape[0] == sum(lengths) + 2 and frames.shape[-1] == 3
    assert main(["eval", str(trained), "--episodes", "1", "--video", str(tmp_path / "v.gif")]) == 0
    from PIL import Image
    assert Image.open(tmp_path / "v.gif").n_frames > 1
    assert main(["eval", str(trained), "--episodes", "2", "--video", str(tmp_path / "frames")]) == 0
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["episode-0.gif", "episode-1.gif"]
    assert main(["eval", str(trained), "--video", str(tmp_path / "v.avi")]) == 2
    assert "'.avi'" in capsys.readouterr().err


def test_export_and_tune_are_commands(trained, tmp_path, capsys):
    assert main(["export", str(trained), "--format", "torchscript", "-o", str(tmp_path / "p.pt")]) == 0
    import torch
    policy = torch.jit.load(str(tmp_path / "p.pt"))
    obs = np.zeros((3, 4), np.float32)
    want, _ = critic.load(trained).predict(obs, deterministic=True)
    assert policy(torch.from_numpy(obs)).numpy().tolist() == want.tolist()
    with pytest.raises(SystemExit) as e:
        main(["tune", "--help"])
    assert e.value.code == 0 and "--trials" in capsys.readouterr().out


def test_a_python_api_run_resumes_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    with critic.A2C("CartPole-v1", seed=1, n_steps=8, num_envs=2, torch_threads=1) as agent:
        agent.learn(160, run_dir=run, eval_every=80, eval_episodes=1, progress_bar=False)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["algo"] == "a2c" and cfg["env_id"] == "CartPole-v1" and cfg["steps"] == 160
    assert main(["train", "--resume", str(run), "--steps", "320", "--no-progress"]) == 0
    assert critic.load(run).env_steps == 320
    assert yaml.safe_load((run / "summary.json").read_text())["env_steps"] == 320


def test_a_python_api_run_on_a_callable_env_says_how_to_resume(tmp_path, capsys):
    import gymnasium as gym

    run = tmp_path / "run"
    with critic.A2C(lambda: gym.make("CartPole-v1"), n_steps=8, num_envs=2, torch_threads=1) as agent:
        agent.learn(32, run_dir=run, progress_bar=False)
    assert main(["train", "--resume", str(run)]) == 2
    assert "resume it from Python" in capsys.readouterr().err
