"""Action masking learns (slow). MaskedChoice: 6 actions, a random subset of 2-5 valid each step,
reward 1 for the highest-numbered valid action, 0.2 for another valid one, -10 for an invalid
one; the observation is constant, so only the mask tells which actions are valid (20 steps an
episode: 20 is the optimum, about 9 picking uniformly among the valid ones). Every masked agent
(PPO, A2C, A3C, ACER, discrete SAC) takes no invalid action while training and reaches >= 19;
the same PPO without masks (the negative control) takes thousands and stays below 0.
Measured (seed 0, every 5k): PPO 19.5 at 5k; A2C 19.6; ACER 19.5 at 5k and 10k, 20 at 15k;
SAC 20.0 at 5k; A3C (2 workers) 20.0 at 20k; PPO without masks -89 at 5k, -74 at 20k."""

import pytest

import critic
from critic.envs.fake import MaskedChoiceEnv

CASES = {
    "ppo": (critic.PPO, dict(n_steps=64, batch_size=64, num_envs=4), 5_000),
    "a2c": (critic.A2C, dict(num_envs=4), 5_000),
    "acer": (critic.ACER, dict(replay_start=500, num_envs=2), 10_000),
    "sac": (critic.SAC, dict(learning_starts=500, hidden_sizes=[64, 64], buffer_size=20_000, torch_threads=1), 5_000),
}


@pytest.mark.parametrize("algo", list(CASES))
def test_a_masked_agent_solves_the_task_without_one_invalid_action(algo):
    cls, hp, steps = CASES[algo]
    agent = cls(MaskedChoiceEnv, seed=0, **hp)
    agent.learn(steps, progress_bar=False)
    invalid = sum(e.unwrapped.invalid for e in agent.venv.envs)
    res = agent.evaluate(10)
    print(f"\n{algo} masked: {res['mean']:.1f} after {steps} steps, {invalid} invalid actions")
    assert invalid == 0, f"{algo} took {invalid} invalid actions while training with masks"
    assert res["mean"] >= 19.0, f"{algo} reached only {res['mean']} of 20 within {steps} steps"


def test_a3c_workers_mask_too():
    agent = critic.A3C(MaskedChoiceEnv, workers=2, seed=0)
    agent.learn(20_000, progress_bar=False)
    res = agent.evaluate(10)
    agent.close()
    assert min(res["returns"]) >= 0, f"an A3C evaluation episode took an invalid action: {res['returns']}"
    assert res["mean"] >= 19.0, f"A3C reached only {res['mean']} of 20 within 20k steps"


def test_without_masks_the_task_is_not_solved():
    agent = critic.PPO(MaskedChoiceEnv, seed=0, action_masks=False, n_steps=64, batch_size=64, num_envs=4)
    agent.learn(10_000, progress_bar=False)
    invalid = sum(e.unwrapped.invalid for e in agent.venv.envs)
    res = agent.evaluate(10)
    print(f"\nppo unmasked: {res['mean']:.1f}, {invalid} invalid actions")
    assert invalid > 1_000 and res["mean"] < 0.0
