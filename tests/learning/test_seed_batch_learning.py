"""Every member of a batched ppo_cartpole run (8 seeds, the shipped preset) reaches 475 by
100k env steps (evaluations of 10 deterministic episodes every 10k)."""

import pytest

import critic
from critic.presets import load_preset

pytestmark = pytest.mark.slow


def test_every_member_of_a_batched_ppo_cartpole_run_solves_it(tmp_path):
    _, preset = load_preset("cartpole", "ppo")
    batch = critic.PPO("CartPole-v1", seeds=list(range(8)), **preset["hparams"])
    batch.learn(100_000, progress_bar=False, run_dir=tmp_path, eval_every=10_000, eval_episodes=10)
    batch.close()
    import json
    summary = json.loads((tmp_path / "summary.json").read_text())
    solved = {r["seed"]: r["solved_at"] for r in summary["runs"]}
    assert all(v is not None for v in solved.values()), f"members that never reached 475: {solved}"
