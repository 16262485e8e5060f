"""Batched runs of the shipped presets learn as the issue asks: every member of a ppo_cartpole
batch (8 seeds) reaches 475 by 100k env steps; the members of a sac_pendulum batch (8 seeds)
reach a median of -200 or better by 20k (evaluations of 10 deterministic episodes)."""

import json

import numpy as np
import pytest

import critic
from critic.presets import load_preset

pytestmark = pytest.mark.slow


def test_every_member_of_a_batched_ppo_cartpole_run_solves_it(tmp_path):
    _, preset = load_preset("cartpole", "ppo")
    batch = critic.PPO("CartPole-v1", seeds=list(range(8)), **preset["hparams"])
    batch.learn(100_000, progress_bar=False, run_dir=tmp_path, eval_every=10_000, eval_episodes=10)
    batch.close()
    summary = json.loads((tmp_path / "summary.json").read_text())
    solved = {r["seed"]: r["solved_at"] for r in summary["runs"]}
    assert all(v is not None for v in solved.values()), f"members that never reached 475: {solved}"


def test_the_members_of_a_batched_sac_pendulum_run_reach_a_median_of_minus_200(tmp_path):
    _, preset = load_preset("pendulum", "sac")
    batch = critic.SAC("Pendulum-v1", seeds=list(range(8)), **preset["hparams"])
    batch.learn(20_000, progress_bar=False, run_dir=tmp_path, eval_every=20_000, eval_episodes=10)
    finals = [a.evaluations[-1]["mean"] for a in batch.agents]
    batch.close()
    assert np.median(finals) >= -200, f"median {np.median(finals):.1f} of the members' final evaluations {finals}"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final"]["n"] == 8 and summary["final"]["median"] == pytest.approx(np.median(finals))
