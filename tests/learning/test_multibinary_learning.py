"""MultiBinary actions learn (slow): on MatchBits (answer 4 observed bits; 10 steps an episode,
return 10 for all bits right, 5 for a policy that ignores the observation) PPO within 20k steps
and A2C within 30k reach >= 9.5, from an untrained policy that scores <= 7. (Measured, seeds
0-2, every 10k: A2C 8.0-8.7 at 10k, 9.0-9.9 at 20k, 10.0 at 30k.)"""

import pytest

import critic
from critic.envs.fake import MatchBitsEnv


@pytest.mark.parametrize("algo, hp, budget", [("PPO", dict(n_steps=64, batch_size=64, num_envs=4), 20_000),
                                              ("A2C", dict(num_envs=4, n_steps=5), 30_000)])
def test_multibinary_policies_learn_to_match_the_bits(algo, hp, budget):
    agent = getattr(critic, algo)(MatchBitsEnv, seed=0, **hp)
    before = agent.evaluate(20, seed=100)["mean"]
    agent.learn(budget, progress_bar=False)
    after = agent.evaluate(20, seed=100)["mean"]
    print(f"\n{algo} MatchBits: {before:.2f} -> {after:.2f}")
    assert before <= 7.0, f"the untrained {algo} already scores {before}: the task tests nothing"
    assert after >= 9.5, f"{algo} reached only {after} of 10 on MatchBits within {budget} steps"
