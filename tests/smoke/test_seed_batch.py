"""critic.PPO(env, seeds=[...]): M ordinary agents trained as one batch."""

import json
import warnings

import numpy as np
import pytest
import torch

import critic
from critic.algos.batch import SeedBatch, parse_seeds

SMALL = dict(n_steps=16, num_envs=2, batch_size=16, n_epochs=2, hidden_sizes=(16,))


def test_seeds_give_a_batch_of_ordinary_members_with_run_dirs_and_an_aggregate(tmp_path):
    batch = critic.PPO("CartPole-v1", seeds=[3, 5], **SMALL)
    assert isinstance(batch, SeedBatch) and [a.cfg.seed for a in batch.agents] == [3, 5]
    batch.learn(256, progress_bar=False, run_dir=tmp_path, eval_every=128, eval_episodes=2)
    assert all(a.env_steps == 256 and a.updates == 8 for a in batch.agents)
    for s, a in zip((3, 5), batch.agents):
        loaded = critic.load(tmp_path / f"seed_{s}" / "checkpoints", for_training=True)  # each member loads alone
        assert loaded.cfg.seed == s and loaded.env_steps == 256
        for (n, p), (_, q) in zip(a.nets.state_dict().items(), loaded.nets.state_dict().items()):
            assert torch.equal(p, q), n
        st = next(iter(loaded.optims["main"].state.values()))
        assert int(st["step"]) == 32  # its slice of the batched Adam: 8 updates x 2 epochs x 2 minibatches
        loaded.close()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_runs"] == 2 and {r["seed"] for r in summary["runs"]} == {3, 5}
    assert summary["final"]["n"] == 2 and (tmp_path / "curve.png").is_file()
    # the members' weights differ (different seeds), yet each is a row of one stacked tensor
    assert not torch.equal(batch.weights()[0], batch.weights()[1])
    assert batch.agents[1].nets.pi_head.weight.data_ptr() != batch.agents[0].nets.pi_head.weight.data_ptr()
    batch.close()


def test_a_batched_run_repeats_bit_for_bit():
    runs = []
    for _ in range(2):
        b = critic.PPO("CartPole-v1", seeds=[0, 1], **SMALL)
        b.learn(192, progress_bar=False)
        runs.append(b.weights())
        b.close()
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("bad", [0, 1])
def test_a_diverged_member_is_frozen_and_the_others_finish(tmp_path, bad):
    b = critic.PPO("CartPole-v1", seeds=[0, 1, 2], **SMALL)
    with torch.no_grad():
        b.stacked[0][bad].fill_(float("nan"))
    with pytest.warns(RuntimeWarning, match=f"seed {bad} diverged and is frozen"):
        b.learn(128, progress_bar=False, run_dir=tmp_path, eval_every=64, eval_episodes=1)
    assert b.frozen.tolist() == [k == bad for k in range(3)]
    good = [k for k in range(3) if k != bad]
    assert all(b.agents[k].env_steps == 128 and torch.isfinite(b.weights()[k]).all() for k in good)
    for k in good:  # the others' run directories are complete, and the aggregate counts them
        assert critic.load(tmp_path / f"seed_{k}" / "model").env_steps == 128
    assert json.loads((tmp_path / "summary.json").read_text())["final"]["n"] == 2
    assert not (tmp_path / f"seed_{bad}" / "model").exists()  # no model with non-finite weights
    b.close()


def test_seeds_are_checked():
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("1,4-5") == [1, 4, 5] and parse_seeds(range(2)) == [0, 1]
    for bad in ("a-b", [], [1, 1]):
        with pytest.raises(critic.ConfigError, match="'seeds'"):
            parse_seeds(bad)
    with pytest.raises(critic.ConfigError, match="a2c, ddpg, ppo, sac, td3, not acer"):
        critic.ACER("CartPole-v1", seeds=[0, 1])
    with pytest.raises(critic.ConfigError, match="either seed or seeds"):
        critic.PPO("CartPole-v1", seeds=[0, 1], seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = critic.PPO("CartPole-v1", **SMALL)  # without seeds: an ordinary agent
    assert isinstance(a, critic.PPO) and np.isfinite(a.predict(np.zeros(4, np.float32))[0])
    a.close()


def test_cli_seeds_writes_member_run_dirs_that_resume_alone(tmp_path, capsys):
    from critic.cli import main

    out = tmp_path / "run"
    rc = main(["train", "ppo", "CartPole-v1", "--seeds", "0-1", "--steps", "256", "--out", str(out), "--no-progress",
               "--set", "n_steps=16", "num_envs=2", "batch_size=16", "n_epochs=1", "--eval-every", "128",
               "--eval-episodes", "1"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "2 members in one batch" in err and "IQM" in err and "95% CI" in err
    assert (out / "summary.json").is_file() and (out / "curve.png").is_file()
    assert main(["train", "--resume", str(out / "seed_1"), "--steps", "320", "--no-progress"]) == 0
    assert critic.load(out / "seed_1" / "model").env_steps == 320
    assert main(["train", "--resume", str(out), "--steps", "384", "--no-progress"]) == 0  # the whole batch
    assert critic.load(out / "seed_0" / "model").env_steps == 384
    assert main(["train", "ppo", "CartPole-v1", "--seeds", "0-1", "--seed", "3"]) == 2  # one or the other


def test_a_sweep_trains_the_product_and_aggregates_per_value(tmp_path):
    batch = critic.PPO("CartPole-v1", seeds=[0, 1], sweep={"learning_rate": [1e-3, 1e-2], "gamma": [0.9]}, **SMALL)
    assert [(a.cfg.learning_rate, a.cfg.seed) for a in batch.agents] == [(1e-3, 0), (1e-3, 1), (1e-2, 0), (1e-2, 1)]
    assert batch.swept == ["learning_rate"] and batch.opts["main"].lr.tolist() == [1e-3, 1e-3, 1e-2, 1e-2]
    assert all(a.cfg.gamma == 0.9 for a in batch.agents)  # one value: every member, not a sweep
    batch.learn(128, progress_bar=False, run_dir=tmp_path, eval_every=128, eval_episodes=1)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [g["label"] for g in summary["groups"]] == ["learning_rate=0.001", "learning_rate=0.01"]
    assert all(g["n_runs"] == 2 for g in summary["groups"])
    assert critic.load(tmp_path / "learning_rate=0.01_seed_1" / "model").cfg.learning_rate == 1e-2
    batch.close()
    with pytest.raises(critic.ConfigError, match="'hidden_sizes' cannot vary between the members"):
        critic.PPO("CartPole-v1", seeds=[0], sweep={"hidden_sizes": [[8], [16]]})


def test_a_batched_run_resumes_exactly_in_a_new_process(tmp_path):
    import subprocess
    import sys

    straight = critic.PPO("CartPole-v1", seeds=[0, 1], **SMALL)
    straight.learn(192, progress_bar=False, run_dir=tmp_path / "a")
    expected = straight.weights()
    straight.close()
    first = critic.PPO("CartPole-v1", seeds=[0, 1], **SMALL)
    first.learn(96, progress_bar=False, run_dir=tmp_path / "b")
    first.close()
    code = (f"import critic, torch; b = critic.load({str(tmp_path / 'b')!r}, for_training=True); "
            f"b.learn(96, progress_bar=False, run_dir={str(tmp_path / 'b')!r}); "
            f"torch.save(b.weights(), {str(tmp_path / 'flat.pt')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    resumed = torch.load(tmp_path / "flat.pt")
    assert torch.equal(resumed, expected)
    # negative control: the members alone, with fresh minibatch generators, do not repeat it
    again = critic.PPO("CartPole-v1", seeds=[0, 1], **SMALL)
    again.learn(96, progress_bar=False, run_dir=tmp_path / "c")
    again.close()
    members = [critic.load(tmp_path / "c" / f"seed_{s}" / "checkpoints", for_training=True) for s in (0, 1)]
    fresh = SeedBatch(members)
    fresh.generators = [torch.Generator().manual_seed(99 + k) for k in range(2)]
    fresh.learn(96, progress_bar=False)
    assert not torch.equal(fresh.weights(), expected)
    fresh.close()
