"""Shared by the learning tests: train a preset until an evaluation reaches its bar."""

from critic.algos.registry import get_algo
from critic.presets import find_preset, read_preset


def reach(algo: str, preset: str, bar: float, budget: int = 100_000, every: int = 10_000, seed: int = 0,
          env_id: str = "CartPole-v1", **overrides):
    """Evaluate (10 deterministic episodes) every ``every`` steps; stop at the first mean >= ``bar``.

    Returns the evaluation history ``[(env_steps, mean), ...]``.
    """
    data = read_preset(find_preset(preset, algo))
    agent = get_algo(algo)(env_id, **{**data["hparams"], "seed": seed, **overrides})
    evals = agent.evaluations

    def stop_when_reached(agent, info):
        return not (evals and evals[-1]["mean"] >= bar)

    # one learn() call, so schedules (linear learning rate) span the whole budget as in the CLI
    agent.learn(budget, stop_when_reached, eval_every=every, eval_episodes=10, progress_bar=False)
    history = [(e["env_steps"], round(e["mean"], 1)) for e in evals]
    print(f"\n{algo}/{preset}: {history}")
    agent.close()
    return history
