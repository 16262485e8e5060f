"""Batched runs of every batched algorithm (A2C n-step and per-step, PPO on Box actions, SAC on
Box and Discrete actions, TD3, DDPG): ordinary member run directories, bit-reproducible, members
independent of their companions, and an exact resume of the whole batch in a new process."""

import json
import subprocess
import sys

import pytest
import torch

import critic

OFF = dict(hidden_sizes=(16, 16), learning_starts=64, batch_size=16, buffer_size=1000)
CASES = {
    "a2c": (critic.A2C, "CartPole-v1", dict(hidden_sizes=(16,), n_steps=8, num_envs=2), 256),
    "a2c_per_step": (critic.A2C, "CartPole-v1", dict(hidden_sizes=(16,), n_steps=1, num_envs=1), 128),
    "ppo_box": (critic.PPO, "Pendulum-v1", dict(hidden_sizes=(16,), n_steps=16, num_envs=2, batch_size=32), 256),
    "sac": (critic.SAC, "Pendulum-v1", OFF, 160),
    "sac_discrete": (critic.SAC, "CartPole-v1", OFF, 160),
    "td3": (critic.TD3, "Pendulum-v1", dict(OFF, train_freq=2, gradient_steps=2), 160),
    "ddpg": (critic.DDPG, "Pendulum-v1", OFF, 160),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_batch_trains_members_that_load_alone_and_repeats_bit_for_bit(case, tmp_path):
    cls, env, hp, steps = CASES[case]
    weights = []
    for run in range(2):
        batch = cls(env, seeds=[0, 1], **hp)
        assert isinstance(batch, critic.SeedBatch) and batch.M == 2
        batch.learn(steps, progress_bar=False, run_dir=tmp_path / str(run), eval_every=steps, eval_episodes=1)
        weights.append(batch.weights())
        assert all(a.env_steps == steps and a.updates > 0 for a in batch.agents)
        assert batch.agents[0].updates == batch.agents[1].updates
        if run == 0:
            for k, s in enumerate((0, 1)):
                loaded = critic.load(tmp_path / "0" / f"seed_{s}" / "checkpoints", for_training=True)
                assert loaded.env_steps == steps and loaded.updates == batch.agents[k].updates
                for (n, p), (_, q) in zip(batch.agents[k].nets.state_dict().items(),
                                          loaded.nets.state_dict().items()):
                    assert torch.equal(p, q), n
                for name, opt in loaded.optims.items():  # its slice of the batched optimizer
                    st = next(iter(opt.state.values()))
                    assert int(st["step"]) == int(batch.opts[name].steps[k]) > 0, name
                loaded.close()
            summary = json.loads((tmp_path / "0" / "summary.json").read_text())
            assert summary["n_runs"] == 2 and summary["final"]["n"] == 2
        batch.close()
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0][0], weights[0][1])  # two seeds, two members


@pytest.mark.parametrize("case", ["sac", "a2c"])
def test_a_batch_resumes_exactly_in_a_new_process(case, tmp_path):
    cls, env, hp, steps = CASES[case]
    straight = cls(env, seeds=[0, 1], **hp)
    straight.learn(2 * steps, progress_bar=False, run_dir=tmp_path / "a")
    expected = straight.weights()
    straight.close()
    first = cls(env, seeds=[0, 1], **hp)
    first.learn(steps, progress_bar=False, run_dir=tmp_path / "b")
    first.close()
    code = (f"import critic, torch; b = critic.load({str(tmp_path / 'b')!r}, for_training=True); "
            f"b.learn({steps}, progress_bar=False, run_dir={str(tmp_path / 'b')!r}); "
            f"torch.save(b.weights(), {str(tmp_path / 'w.pt')!r})")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert torch.equal(torch.load(tmp_path / "w.pt"), expected)
    # negative control: a straight run of other seeds ends elsewhere
    other = cls(env, seeds=[2, 3], **hp)
    other.learn(2 * steps, progress_bar=False)
    assert not torch.equal(other.weights(), expected)
    other.close()


@pytest.mark.parametrize("case", ["sac", "a2c", "ppo_box", "td3"])
def test_a_member_does_not_depend_on_the_other_members(case):
    """Member seed 0 trains to the same bits in batches of other companions and sizes: its own
    envs, storage, generators and acting stream; only the arithmetic is shared."""
    cls, env, hp, steps = CASES[case]
    found = []
    for seeds in ([0, 1], [4, 0, 2]):
        batch = cls(env, seeds=seeds, **hp)
        batch.learn(steps, progress_bar=False)
        found.append(batch.weights()[seeds.index(0)])
        batch.close()
    assert torch.equal(found[0], found[1])
    batch = cls(env, seeds=[1, 0], **hp)  # negative control: member seed 1 is another run
    batch.learn(steps, progress_bar=False)
    assert not torch.equal(batch.weights()[0], found[0])
    batch.close()
