"""The command line: train / eval / plot / list, one-line errors, Ctrl-C and --resume."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from critic.cli import main


def run_cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "critic.cli", *args], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 120), **kw)


def test_train_eval_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "ppo", "CartPole-v1", "--steps", "2048", "--out", str(out), "--no-progress",
                 "--set", "n_steps=64", "--set", "batch_size=128", "--set", "n_epochs=2", "--num-envs", "2",
                 "--eval-every", "1024", "--eval-episodes", "2", "--seed", "3"]) == 0
    assert "final return" in capsys.readouterr().out
    for f in ("config.yaml", "metrics.csv", "evals.csv", "summary.json", "curve.png", "model/agent.safetensors"):
        assert (out / f).is_file(), f
    import yaml
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["hparams"]["n_steps"] == 64 and cfg["hparams"]["seed"] == 3 and cfg["env_id"] == "CartPole-v1"
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    assert "mean return" in capsys.readouterr().out
    assert main(["eval", str(out / "model"), "--episodes", "1", "--video", str(tmp_path / "vid")]) == 0
    assert list((tmp_path / "vid").glob("*.gif"))
    assert main(["plot", str(out), str(out), "-o", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000
    # the same --out twice is refused (the first run's files are kept)
    assert main(["train", "ppo", "CartPole-v1", "--steps", "100", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_set_takes_several_pairs_and_repeats(tmp_path, capsys):
    """RL Zoo users type several pairs after one --set; the flag may also repeat."""
    out = tmp_path / "run"
    assert main(["train", "ppo", "CartPole-v1", "--steps", "64", "--out", str(out), "--no-progress",
                 "--set", "gamma=0.98", "n_steps=32", "batch_size=32", "--set", "n_epochs=1", "--eval-every", "64",
                 "--eval-episodes", "1"]) == 0
    import yaml
    h = yaml.safe_load((out / "config.yaml").read_text())["hparams"]
    assert (h["gamma"], h["n_steps"], h["batch_size"], h["n_epochs"]) == (0.98, 32, 32, 1)


def test_list(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "ppo" in text and "a2c" in text and "ppo_cartpole" in text
    assert main(["list", "ppo"]) == 0
    text = capsys.readouterr().out
    assert "clip_eps (float | None, default 0.2): Clipping range of the probability ratio" in text


def test_train_help_lists_hyperparameters():
    r = run_cli("train", "a2c", "--help")
    assert r.returncode == 0 and "episodic" in r.stdout and "Rollout length per env" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "ppo", "CartPole-v2", "--steps", "10"], "did you mean CartPole-v1"),
    (["train", "ppo", "CartPole-v1", "--set", "gamma=2"], "invalid value for 'gamma': 2.0"),
    (["train", "ppo", "CartPole-v1", "--set", "n_steps=abc"], "invalid value for 'n_steps': 'abc'"),
    (["train", "ppo", "CartPole-v1", "--set", "gamam=0.9"], "unknown field 'gamam'"),
    (["train", "ppo", "CartPole-v1", "--set", "novalue"], "--set expects key=value"),
    (["train", "ppo", "CartPole-v1", "--set", "lr=1e-3"], "unknown field 'lr' for PPOConfig; did you mean learning_rate?"),
    (["train", "ppo", "CartPole-v1", "--set", "clip_range=0.1"], "did you mean clip_eps?"),
    (["train", "td3", "Pendulum-v1", "--set", "policy_noise=0.1"], "did you mean target_noise"),
    (["train", "sac", "Pendulum-v1", "--set", "total_timesteps=10"], "use --steps N"),
    (["train", "--set", "gamma=0.9", "ppo", "CartPole-v1"], "got 'ppo' (give ALGO and ENV_ID before --set)"),
    (["train", "pop", "CartPole-v1"], "unknown algorithm 'pop'"),
    (["train", "ppo", "CartPole-v1", "--preset", "nope"], "unknown preset 'nope'"),
    (["train", "ppo", "evil.module:Env", "--steps", "10"], "refused unless explicitly allowed"),
    (["eval", "/nonexistent/run"], "no checkpoint found"),
])
def test_errors_are_one_line(args, message):
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_ctrl_c_writes_checkpoint_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "critic.cli", "train", "a2c", "CartPole-v1", "--steps", "10000000",
                          "--out", str(out), "--no-progress", "--eval-every", "1000000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "metrics.csv").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    assert "checkpoint saved" in stderr and "--resume" in stderr and "Traceback" not in stderr
    import critic
    ck = critic.load(out / "checkpoints" / "agent.safetensors")
    step = ck.env_steps
    assert step > 0
    r = run_cli("train", "--resume", str(out), "--steps", str(step + 2000), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert f"at step {step:,}" in r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["env_steps"] >= step + 2000
    assert critic.load(out / "model").env_steps == s["env_steps"]


def test_python_dash_m_critic_is_the_cli():
    out = subprocess.run([sys.executable, "-m", "critic", "train", "sac", "Pendulum-v1", "--set", "precision=fp16"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "'precision'" in out.stderr, out.stderr


@pytest.mark.parametrize("again", ["rerun", "resume"])
def test_a_run_that_failed_before_its_first_checkpoint_can_be_started_again(tmp_path, monkeypatch, capsys, again):
    """A crash in the first iteration leaves config.yaml and no checkpoint: the same command and
    --resume both start the run again (the dead attempt's logs are replaced, not continued)."""
    from critic.agent import Agent
    out = tmp_path / "run"
    argv = ["train", "ppo", "CartPole-v1", "--steps", "256", "--out", str(out), "--no-progress",
            "--set", "n_steps=64", "batch_size=64", "n_epochs=1", "--eval-every", "256", "--eval-episodes", "1"]
    real = Agent._iteration

    def crash(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(Agent, "_iteration", crash)
    with pytest.raises(RuntimeError, match="boom"):
        main(argv)
    assert (out / "config.yaml").is_file() and not (out / "checkpoints").exists()
    (out / "metrics.csv").write_text("stale\n")
    monkeypatch.setattr(Agent, "_iteration", real)
    capsys.readouterr()
    assert main(argv if again == "rerun" else ["train", "--resume", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "before its first checkpoint" in err
    assert (out / "model" / "agent.safetensors").is_file()
    assert "stale" not in (out / "metrics.csv").read_text()
    # a run with a checkpoint is still protected
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_loading_through_another_algorithm_class_is_refused(tmp_path):
    import critic
    from critic.checkpoint import CheckpointError
    critic.PPO("CartPole-v1", n_steps=16, batch_size=16).save(tmp_path / "ppo")
    with pytest.raises(CheckpointError, match="a ppo checkpoint, not a sac one"):
        critic.SAC.load(tmp_path / "ppo")
    assert type(critic.PPO.load(tmp_path / "ppo")).__name__ == "PPO"
    assert type(critic.load(tmp_path / "ppo")).__name__ == "PPO"
    critic.DDPG("Pendulum-v1", hidden_sizes=(8,)).save(tmp_path / "ddpg")
    with pytest.raises(CheckpointError, match="a ddpg checkpoint, not a td3 one"):
        critic.TD3.load(tmp_path / "ddpg")  # DDPG's networks are TD3's, the algorithm is not


@pytest.mark.parametrize("device, message", [("mps", "MPS backend is not available"),
                                             ("cuda:1", "CUDA is not available")])
def test_unavailable_devices_are_one_line_errors(device, message):
    r = run_cli("train", "ppo", "CartPole-v1", "--device", device, "--steps", "10")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1
