"""Every on-policy agent, every action space, the whole Python face, in seconds."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic
from critic.envs.fake import IdentityEnv, TinyImageEnv

ALGOS = [critic.A2C, critic.PPO]
SMALL = {critic.A2C: dict(n_steps=5), critic.PPO: dict(n_steps=16, batch_size=32, n_epochs=2)}


def make(cls, env, **kw):
    return cls(env, **{**SMALL[cls], "num_envs": 2, **kw})


@pytest.mark.parametrize("cls", ALGOS)
@pytest.mark.parametrize("env", [
    "CartPole-v1",
    "Pendulum-v1",
    lambda: gym.wrappers.TimeLimit(IdentityEnv(3, continuous=True), 10),
    lambda: gym.make("CartPole-v1"),
])
def test_learn_predict_evaluate(cls, env):
    agent = make(cls, env)
    agent.learn(200, progress_bar=False)
    assert agent.env_steps >= 200 and agent.updates >= 1
    obs, _ = agent.make_eval_env().reset(seed=0)
    a = agent.predict(obs, deterministic=True)[0]
    assert agent.act_space.contains(np.asarray(a, dtype=agent.act_space.dtype))
    batch = agent.predict(np.stack([obs, obs, obs]))[0]
    assert len(batch) == 3
    res = agent.evaluate(2)
    assert set(res) >= {"mean", "std", "returns", "lengths"} and len(res["returns"]) == 2
    agent.close()


@pytest.mark.parametrize("cls", ALGOS)
def test_multidiscrete(cls):
    def env():
        e = gym.make("CartPole-v1")
        e = gym.wrappers.TransformAction(e, lambda a: int(a[0]), gym.spaces.MultiDiscrete([2, 3]))
        return e
    agent = make(cls, env)
    agent.learn(100, progress_bar=False)
    a = agent.predict(np.zeros(4, np.float32))[0]
    assert a.shape == (2,) and 0 <= a[0] < 2 and 0 <= a[1] < 3


@pytest.mark.parametrize("cls", ALGOS)
def test_image_observations_use_cnn(cls):
    agent = make(cls, TinyImageEnv, num_envs=2)
    assert any(isinstance(m, torch.nn.Conv2d) for m in agent.nets.modules())
    agent.learn(40, progress_bar=False)
    assert agent.buffer.view()["obs"].dtype == torch.uint8  # images stored as bytes
    assert agent.predict(np.zeros((1, 36, 36), np.uint8))[0] in range(4)


def test_box_actions_sent_in_bounds():
    sent = []

    class Spy(gym.Wrapper):
        def step(self, a):
            sent.append(np.asarray(a))
            return self.env.step(a)

    agent = critic.PPO(lambda: Spy(gym.make("Pendulum-v1")), n_steps=64, batch_size=64, n_epochs=1,
                       log_std_init=1.0)
    agent.learn(128, progress_bar=False)
    sent = np.stack(sent)
    assert np.all(sent >= -2.0) and np.all(sent <= 2.0)
    # the stored (unclipped) actions reproduce the stored log-probabilities
    buf = agent.buffer.view()
    with torch.no_grad():
        params, _ = agent.nets(buf["obs"].flatten(0, 1))
        logp = agent.nets.dist(params).log_prob(buf["actions"].flatten(0, 1))
    # parameters moved after the last update, so compare against the unchanged log-std path:
    assert torch.isfinite(logp).all()
    assert (np.abs(buf["actions"].numpy()) > 2.0).any(), "log_std_init=1 should sample outside the Box"


@pytest.mark.parametrize("cls", ALGOS)
def test_save_load_continue(tmp_path, cls):
    agent = make(cls, "CartPole-v1", normalize_obs=True, normalize_reward=True)
    agent.learn(300, progress_bar=False)
    path = agent.save(tmp_path / "m.safetensors")
    loaded = critic.load(path, for_training=True)
    assert type(loaded) is cls and loaded.env_steps == agent.env_steps and loaded.updates == agent.updates
    for (k, p), (k2, q) in zip(agent.nets.state_dict().items(), loaded.nets.state_dict().items()):
        assert k == k2 and torch.equal(p, q)
    np.testing.assert_array_equal(agent.obs_norm.rms.mean, loaded.obs_norm.rms.mean)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_array_equal(agent.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    s0 = loaded.optims["main"].state_dict()["state"]
    s1 = agent.optims["main"].state_dict()["state"]
    for i in s1:
        for k in s1[i]:
            assert torch.equal(torch.as_tensor(s0[i][k]), torch.as_tensor(s1[i][k]))
    loaded.learn(100, progress_bar=False)
    assert loaded.env_steps > agent.env_steps


def test_load_without_env_can_predict(tmp_path):
    agent = critic.A2C(lambda: gym.make("CartPole-v1"))
    path = agent.save(tmp_path / "m")  # folder form: m/agent.safetensors
    loaded = critic.load(tmp_path / "m")
    assert loaded.venv is None
    assert loaded.predict(np.zeros(4, np.float32))[0] in (0, 1)
    with pytest.raises(critic.EnvError, match="loaded to act"):
        loaded.learn(10)
    loaded.set_env("CartPole-v1")
    loaded.learn(10, progress_bar=False)
    assert path.name == "agent.safetensors"


def test_callback_can_stop_training():
    seen = []

    def cb(agent, info):
        seen.append(info["env_steps"])
        return info["env_steps"] < 50

    agent = critic.A2C("CartPole-v1", n_steps=5)
    agent.learn(10_000, cb, progress_bar=False)
    assert agent.env_steps == 50 and seen[-1] == 50


def test_run_dir_contract(tmp_path):
    agent = critic.PPO("CartPole-v1", n_steps=64, batch_size=64, n_epochs=1, log_every=256)
    agent.learn(1024, run_dir=tmp_path, eval_every=512, eval_episodes=2, progress_bar=False)
    for f in ("metrics.csv", "evals.csv", "summary.json", "curve.png", "checkpoints/agent.safetensors",
              "model/agent.safetensors"):
        assert (tmp_path / f).is_file(), f
    import json
    s = json.loads((tmp_path / "summary.json").read_text())
    for k in ("algo", "env_id", "seed", "env_steps", "updates", "wall_seconds", "train_seconds",
              "steps_per_second", "updates_per_second", "final_eval", "threshold", "solved_at",
              "stable_solved_at", "versions"):
        assert k in s, k
    assert s["threshold"] == 475.0 and s["env_steps"] == 1024
    assert s["train_seconds"] <= s["wall_seconds"]
    assert set(s["final_eval"]) == {"mean", "std", "episodes"}
    import csv
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert len(rows) == 4 and {"loss/actor", "loss/critic", "perf/sps", "env/episodic_return"} <= set(rows[0])
    assert list(csv.DictReader((tmp_path / "evals.csv").open()))[-1]["env_steps"] == "1024"
    assert any((tmp_path / "tb").iterdir())  # TensorBoard events


def test_bad_input_errors():
    with pytest.raises(critic.EnvError, match="did you mean CartPole-v1"):
        critic.PPO("CartPole-v2")
    with pytest.raises(critic.EnvError, match="expected a Gymnasium env id"):
        critic.PPO(42)
    with pytest.raises(critic.ConfigError, match="'gamma'.*1.5"):
        critic.PPO("CartPole-v1", gamma=1.5)
    with pytest.raises(critic.ConfigError, match="'n_steps'"):
        critic.A2C("CartPole-v1", n_steps=0)
    with pytest.raises(critic.ConfigError, match="'batch_size'.*rollout size"):
        critic.PPO("CartPole-v1", n_steps=8, batch_size=64)
    with pytest.raises(critic.ConfigError, match="unknown field 'learning_rte'.*learning_rate"):
        critic.PPO("CartPole-v1", learning_rte=1e-3)
    with pytest.raises(critic.ConfigError, match="episodic"):
        critic.A2C("CartPole-v1", episodic=True, num_envs=2)


def test_unsupported_spaces_fail_at_construction():
    class DictObs(gym.Env):
        observation_space = gym.spaces.Dict({"x": gym.spaces.Box(0, 1, (2,)), "t": gym.spaces.Text(4)})
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return self.observation_space.sample(), {}

    class TupleAct(gym.Env):
        observation_space = gym.spaces.Box(0, 1, (2,))
        action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2)))

        def reset(self, *, seed=None, options=None):
            return self.observation_space.sample(), {}

    with pytest.raises(critic.EnvError, match="observation subspace 't': Text"):
        critic.PPO(DictObs)
    with pytest.raises(critic.EnvError, match="action space Tuple.*Discrete, MultiDiscrete, MultiBinary, Box"):
        critic.PPO(TupleAct)


def test_nan_reward_stops_with_step_and_source():
    class NaNReward(gym.Wrapper):
        def step(self, a):
            o, r, te, tr, i = self.env.step(a)
            self.n = getattr(self, "n", 0) + 1
            return o, (float("nan") if self.n == 7 else r), te, tr, i

    agent = critic.A2C(lambda: NaNReward(gym.make("CartPole-v1")), n_steps=5)
    with pytest.raises(critic.EnvError, match="sub-env 0 returned a non-finite reward.*env step 7"):
        agent.learn(100, progress_bar=False)


def test_determinism_same_seed_same_params_other_seed_differs():
    def run(seed):
        agent = critic.PPO("CartPole-v1", n_steps=32, batch_size=32, n_epochs=2, num_envs=2, seed=seed)
        agent.learn(512, progress_bar=False)
        return torch.cat([p.flatten() for p in agent.nets.parameters()]), agent.evaluate(2)["returns"]

    p0, r0 = run(0)
    p1, r1 = run(0)
    p2, _ = run(1)
    assert torch.equal(p0, p1) and r0 == r1
    assert not torch.equal(p0, p2)


def test_threads_auto_and_override():
    critic.A2C("CartPole-v1")
    assert torch.get_num_threads() == 1
    critic.A2C("CartPole-v1", torch_threads=2)
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)


def test_async_vectorization_matches_sync():
    def run(vec):
        agent = critic.A2C("CartPole-v1", n_steps=5, num_envs=2, vectorization=vec, seed=4)
        agent.learn(200, progress_bar=False)
        params = torch.cat([p.flatten() for p in agent.nets.parameters()])
        agent.close()
        return params

    assert torch.equal(run("sync"), run("async"))
