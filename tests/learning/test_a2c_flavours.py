"""Each A2C flavour line of the README learns CartPole-v1 to >= 195 within 100k steps as
written (seeds 0-2; evaluations of 10 deterministic episodes every 5k steps, stopping at the
first that reaches 195)."""

import pytest

import critic

pytestmark = pytest.mark.slow

FLAVOURS = {  # exactly the README's lines
    "n-step": dict(n_steps=5, num_envs=8),
    "per-step": dict(n_steps=1),
    "episodic": dict(episodic=True),
}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_readme_flavour_line_learns_cartpole(flavour, seed):
    agent = critic.A2C("CartPole-v1", seed=seed, **FLAVOURS[flavour])
    evals = agent.evaluations
    agent.learn(100_000, lambda a, info: not (evals and evals[-1]["mean"] >= 195), eval_every=5_000,
                progress_bar=False)
    agent.close()
    history = [(e["env_steps"], round(e["mean"], 1)) for e in evals]
    assert evals and evals[-1]["mean"] >= 195, f"{flavour} seed {seed}: {history}"
