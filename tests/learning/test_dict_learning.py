"""A goal-conditioned task with Dict observations learns with SAC (slow): PointGoal (observe
``{"observation", "achieved_goal", "desired_goal"}``, move a point to a goal drawn per episode;
heading straight for it scores about -2.5, standing still about -10) from an untrained -14.6 to
>= -2.5 within 8k steps. Measured (seeds 0-1, every 2k): -7.4 / -7.3 at 2k, -3.0 / -3.2 at 4k,
-1.9 / -1.9 at 6k, -1.4 / -1.4 at 8k (seed 0 on one torch thread: -2.29 at 6k)."""

import critic
from critic.envs.fake import PointGoalEnv


def test_sac_learns_a_goal_conditioned_dict_task():
    agent = critic.SAC(PointGoalEnv, seed=0, learning_starts=1000, torch_threads=1)
    before = agent.evaluate(20, seed=5)["mean"]
    agent.learn(8_000, progress_bar=False)
    after = agent.evaluate(20, seed=5)["mean"]
    print(f"\nSAC PointGoal: {before:.2f} -> {after:.2f}")
    assert before <= -8.0, f"the untrained agent already scores {before}: the task tests nothing"
    assert after >= -2.5, f"SAC reached only {after} on PointGoal within 8k steps (heading straight: about -2.5)"
