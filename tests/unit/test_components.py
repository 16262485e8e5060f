"""The components face (keras-gym names): shapes and types of every member, bootstrapped targets
against hand computation, target sync exactness, the update strategies against the shared
losses, the caches against a brute-force n-step reference, SAC gradient isolation."""

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic
from critic.losses.pg import pg_loss, ppo_clip_loss

CART = gym.make("CartPole-v1")
PEND = gym.make("Pendulum-v1")


def obs_batch(env, B=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, *env.observation_space.shape)).astype(np.float32)


# ----------------------------------------------------------------------------- shapes and types

def test_discrete_members_shapes_and_types():
    func = critic.FunctionApproximator(CART, lr=1e-3)
    ac = critic.ActorCritic.from_func(func, random_seed=0)
    s, S = obs_batch(CART, 1)[0], obs_batch(CART)
    a, v = ac(s)
    assert np.ndim(a) == 0 and int(a) in (0, 1) and isinstance(v, float)
    g, v2 = ac.greedy(s)
    assert int(g) == int(np.argmax(ac.dist_params(s)[0])) and v2 == v
    p, _ = ac.dist_params(s)
    assert p.shape == (2,) and abs(p.sum() - 1) < 1e-6
    A, Vb = ac.batch_eval(S)
    assert A.shape == (5,) and Vb.shape == (5,) and Vb.dtype == np.float32
    assert ac.policy.dist_params(S).shape == (5, 2) and ac.policy.greedy(S).shape == (5,)
    q1, q2 = critic.QTypeI(func), critic.QTypeII(func)
    assert isinstance(q1(s, 1), float) and q1(s).shape == (2,) and q1.batch_eval(S).shape == (5, 2)
    assert np.isclose(q1(s)[1], q1(s, 1), atol=1e-6)
    assert isinstance(q2(s, 0), float) and q2(s).shape == (2,) and q2.batch_eval(S, np.zeros(5)).shape == (5,)
    losses = ac.batch_update(S, A, np.ones(5), np.full(5, 0.9), S)
    assert {"policy/loss", "policy/entropy", "value/loss", "loss"} <= set(losses)
    assert all(isinstance(x, float) for x in losses.values())


def test_continuous_members_shapes_and_bounds():
    func = critic.FunctionApproximator(PEND, lr=1e-3)
    ac = critic.ActorCritic.from_func(func, random_seed=0)
    s, S = obs_batch(PEND, 1)[0], obs_batch(PEND)
    a, v = ac(s)
    assert a.shape == (1,) and -2 <= a[0] <= 2 and isinstance(v, float)
    assert ac.dist_params(s)[0].shape == (2,)  # mean, log_std
    A, Vb = ac.batch_eval(S)
    assert A.shape == (5, 1) and Vb.shape == (5,)
    sac = critic.SoftActorCritic.from_func(critic.FunctionApproximator(PEND), random_seed=0)
    a, v = sac(s)
    assert a.shape == (1,) and -2 <= a[0] <= 2
    assert isinstance(sac.q_func1(s, a), float) and sac.q_func2.batch_eval(S, A).shape == (5,)
    losses = sac.batch_update(S, A, np.ones(5), np.full(5, 0.9), S)
    assert {"policy/loss", "value/loss", "q1/loss", "q2/loss"} <= set(losses)


class _KerasGymStyle(critic.FunctionApproximator):
    """keras-gym's way: override body(S); layers set before super().__init__ are the body's."""

    def __init__(self, env, **kw):
        self.fc = torch.nn.Linear(4, 8)
        self.scale = torch.nn.Parameter(torch.ones(8))
        super().__init__(env, **kw)

    def body(self, S):
        return torch.relu(self.fc(S)) * self.scale


def test_overridden_body_method_is_trained_and_has_its_own_target_copy():
    torch.manual_seed(0)
    func = _KerasGymStyle(CART, lr=1e-2)
    assert func.feature_dim == 8
    v = critic.V(func)
    assert {"body.layers.fc.weight", "body.params.scale"} <= set(v.state_dict())
    S = obs_batch(CART, 8)
    w0, v0 = func.fc.weight.detach().clone(), v.batch_eval(S)
    v.batch_update(S, np.ones(8), np.zeros(8), S)
    assert not torch.equal(func.fc.weight, w0) and not np.allclose(v.batch_eval(S), v0)  # the layer was trained
    np.testing.assert_allclose(v.batch_eval(S, use_target_model=True), v0, rtol=1e-6)  # target: old weights
    v.sync_target_model()
    np.testing.assert_allclose(v.batch_eval(S, use_target_model=True), v.batch_eval(S), rtol=1e-6)


def test_overridden_body_errors():
    class Late(critic.FunctionApproximator):
        def __init__(self, env):
            super().__init__(env)
            self.fc = torch.nn.Linear(4, 8)  # too late: body runs inside super().__init__

        def body(self, S):
            return self.fc(S)

    with pytest.raises(AttributeError, match="before super"):
        Late(CART)
    with pytest.raises(ValueError, match="not both"):
        _KerasGymStyle(CART, body=torch.nn.Linear(4, 8))


def test_discrete_observations_are_one_hot_by_default():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    v = critic.V(critic.FunctionApproximator(env, hidden_sizes=(8,)))
    assert isinstance(v(0), float) and v.batch_eval(np.arange(16)).shape == (16,)
    assert len(np.unique(v.batch_eval(np.arange(16)).round(6))) > 8  # states are told apart


def test_one_hot_action_rows_are_actions_probabilities_are_refused():
    ac = critic.ActorCritic.from_func(critic.FunctionApproximator(CART), entropy_beta=0.0, random_seed=0)
    S, A = obs_batch(CART, 4), np.array([0, 1, 1, 0])
    a = ac.policy.policy_actions(np.eye(2, dtype=np.float32)[A], 4)
    assert a.dtype == torch.long and a.tolist() == A.tolist()
    with pytest.raises(ValueError, match="cross_entropy"):
        ac.batch_update(S, np.full((4, 2), 0.5, np.float32), np.ones(4), np.zeros(4), S)


def test_custom_body_and_bad_input():
    body = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU())
    func = critic.FunctionApproximator(CART, body=body)
    assert func.feature_dim == 16 and critic.V(func).body is body
    with pytest.raises(ValueError, match="'update_strategy'"):
        critic.SoftmaxPolicy(func, update_strategy="sarsa")
    with pytest.raises(ValueError, match="observation of shape"):
        critic.V(func)(np.zeros(3))
    with pytest.raises(ValueError, match="Discrete"):
        critic.QTypeII(critic.FunctionApproximator(PEND))
    with pytest.raises(ValueError, match="'lr'"):
        critic.FunctionApproximator(CART, lr=0)
    with pytest.raises(ValueError, match="'bootstrap_n'"):
        critic.V(func, bootstrap_n=0)


# ----------------------------------------------------------------------------- targets and sync

@pytest.mark.parametrize("use_target", [False, True])
def test_batch_update_target_is_Rn_plus_In_v_next(use_target):
    func = critic.FunctionApproximator(CART, lr=1e-3)
    ac = critic.ActorCritic.from_func(func, gamma=0.9, bootstrap_with_target_model=use_target, random_seed=1)
    with torch.no_grad():  # make the online model differ from its target
        for p in ac.v_func.head.parameters():
            p.add_(0.5)
    S, S2 = obs_batch(CART, 6, 0), obs_batch(CART, 6, 1)
    A = np.array([0, 1, 1, 0, 1, 0])
    Rn = np.array([1.0, 0.5, 2.0, 0.0, 1.0, 3.0], np.float32)
    In = np.array([0.9, 0.0, 0.81, 0.9, 0.0, 0.729], np.float32)
    v_next = ac.v_func.batch_eval(S2, use_target_model=use_target)
    G = Rn + In * v_next
    v = ac.v_func.batch_eval(S)
    losses = ac.batch_update(S, A, Rn, In, S2)
    assert np.isclose(losses["value/loss"], np.mean((v - G) ** 2), rtol=1e-5)
    # and the other model's values would have given another loss (the test can tell them apart)
    other = Rn + In * ac.v_func.batch_eval(S2, use_target_model=not use_target)
    assert not np.isclose(np.mean((v - other) ** 2), losses["value/loss"], rtol=1e-3)


def test_sync_target_model_is_exact_polyak():
    func = critic.FunctionApproximator(CART)
    v = critic.V(func)
    with torch.no_grad():
        for p in v.head.parameters():
            p.add_(1.0)
    online = [p.detach().clone() for p in [*v.body.parameters(), *v.head.parameters()]]
    before = [p.detach().clone() for p in v.target_model.parameters()]
    v.sync_target_model(tau=0.25)
    for t0, t1, o in zip(before, v.target_model.parameters(), online):
        assert torch.allclose(t1, 0.75 * t0 + 0.25 * o, atol=1e-7)
    v.sync_target_model()  # tau=1: a copy
    for t, o in zip(v.target_model.parameters(), online):
        assert torch.equal(t, o)
    with pytest.raises(ValueError, match="'tau'"):
        v.sync_target_model(1.5)


# ----------------------------------------------------------------------------- update strategies

def test_type_one_q_is_non_linear_in_the_action():
    """Fitting Q(s, a) = -(a - 0.5)^2 on one state gives a concave curve in a: its second
    difference q(-1) + q(1) - 2 q(0) is clearly negative (a head linear in the action, the bug
    this guards against, gives exactly 0 whatever its weights)."""
    from critic.envs.fake import ContinuousBanditEnv
    env = ContinuousBanditEnv()
    torch.manual_seed(0)
    q = critic.QTypeI(critic.FunctionApproximator(env, lr=1e-2, hidden_sizes=(16,)))
    rng = np.random.default_rng(0)
    s = np.zeros((64, *env.observation_space.shape), np.float32)
    for _ in range(400):
        a = rng.uniform(-1, 1, (64, 1)).astype(np.float32)
        q_hat = q.forward(torch.as_tensor(s), torch.as_tensor(a))
        loss = (q_hat - torch.as_tensor(-(a[:, 0] - 0.5) ** 2)).square().mean()
        q._step(loss)
    grid = np.array([[-1.0], [0.0], [1.0]], np.float32)
    values = q.batch_eval(np.zeros((3, *env.observation_space.shape), np.float32), grid)
    assert values[0] + values[2] - 2 * values[1] < -1.0, values  # the true curve gives -2


def _policy_loss_by_hand(policy, S, A, adv, strategy):
    x = torch.as_tensor(S)
    with torch.no_grad():
        d, d_old = policy.dist(x), policy.dist(x, target=True)
        a = torch.as_tensor(A)
        if strategy == "vanilla":
            return float(pg_loss(d.log_prob(a), adv)[0])
        if strategy == "ppo":
            return float(ppo_clip_loss(d.log_prob(a), d_old.log_prob(a), adv, 0.2)[0])
        return float(-(torch.as_tensor(A) * d.logits).sum(-1).mean())


@pytest.mark.parametrize("strategy", ["vanilla", "ppo", "cross_entropy"])
def test_update_strategies_match_the_shared_losses(strategy):
    func = critic.FunctionApproximator(CART, lr=1e-3)
    ac = critic.ActorCritic.from_func(func, gamma=0.9, update_strategy=strategy, entropy_beta=0.0, random_seed=2)
    with torch.no_grad():  # pi differs from pi_old, so the PPO ratio is not 1
        for p in ac.policy.head.parameters():
            p.add_(0.3)
    S, S2 = obs_batch(CART, 8, 3), obs_batch(CART, 8, 4)
    Rn, In = np.linspace(-1, 2, 8).astype(np.float32), np.full(8, 0.9, np.float32)
    if strategy == "cross_entropy":
        A = np.random.default_rng(0).dirichlet([1, 1], 8).astype(np.float32)  # behaviour probabilities
    else:
        A = np.array([0, 1, 0, 1, 1, 0, 0, 1])
    adv = torch.as_tensor(Rn + In * ac.v_func.batch_eval(S2) - ac.v_func.batch_eval(S))
    expected = _policy_loss_by_hand(ac.policy, S, A, adv, strategy)
    losses = ac.batch_update(S, A, Rn, In, S2)
    assert np.isclose(losses["policy/loss"], expected, rtol=1e-5, atol=1e-6)


def test_callable_strategy():
    seen = {}

    def my_loss(dist, actions, adv, old_logp):
        seen["shapes"] = (tuple(actions.shape), tuple(adv.shape), tuple(old_logp.shape))
        return -(dist.log_prob(actions) * adv).mean()

    ac = critic.ActorCritic.from_func(critic.FunctionApproximator(CART), update_strategy=my_loss, random_seed=0)
    S = obs_batch(CART, 4)
    ac.batch_update(S, np.array([0, 1, 1, 0]), np.ones(4), np.zeros(4), S)
    assert seen["shapes"] == ((4,), (4,), (4,))


# ----------------------------------------------------------------------------- caches

def brute_nstep(rs, terms, truncs, t, n, gamma):
    Rn, disc = 0.0, 1.0
    for k in range(n):
        i = t + k
        if i >= len(rs):
            return None
        Rn += disc * rs[i]
        disc *= gamma
        if terms[i]:
            return Rn, 0.0, i
        if truncs[i]:
            return Rn, disc, i
    return Rn, disc, t + n - 1


@pytest.mark.parametrize("n", [1, 3])
def test_nstep_cache_against_brute_force(n):
    gamma = 0.9
    rs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    terms = [False, False, True, False, False, False, False]
    truncs = [False, False, False, False, False, True, False]
    states = [np.array([10.0 * i], np.float32) for i in range(len(rs))]
    final = {2: np.array([-2.0], np.float32), 5: np.array([-5.0], np.float32)}
    cache = critic.NStepCache(None, n, gamma)
    got = []
    for i in range(6):  # two episodes: steps 0-2 (terminated), 3-5 (truncated)
        cache.add(states[i], i, rs[i], terms[i], truncs[i], final.get(i))
        while cache:
            got.extend(zip(*cache.pop()))
    assert len(got) == 6 and not cache
    for (S, A, Rn, In, S_next) in got:
        t = int(A)
        ep_end = 2 if t <= 2 else 5
        ref = brute_nstep(rs[:ep_end + 1], terms, truncs, t, n, gamma)
        assert np.isclose(Rn, ref[0]) and np.isclose(In, ref[1]), (t, Rn, In, ref)
        boot = ref[2]
        expected_next = final[boot] if boot == ep_end else states[boot + 1]
        if In > 0:
            assert np.array_equal(S_next, expected_next), (t, S_next, expected_next)
        assert np.array_equal(S, states[t])


def test_monte_carlo_cache_and_errors():
    cache = critic.MonteCarloCache(None, gamma=0.5)
    for i, r in enumerate([1.0, 1.0, 1.0]):
        cache.add(np.zeros(1), i, r, False, truncated=(i == 2), s_next=np.ones(1) if i == 2 else None)
        if i < 2:
            assert not cache
    S, A, Rn, In, S_next = cache.pop()
    assert np.allclose(Rn, [1.75, 1.5, 1.0]) and np.allclose(In, [0.125, 0.25, 0.5])  # bootstrapped
    assert np.array_equal(S_next, np.ones((3, 1)))
    with pytest.raises(ValueError, match="s_next"):
        cache.add(np.zeros(1), 0, 1.0, False, truncated=True)
    with pytest.raises(ValueError, match="'n'"):
        critic.NStepCache(None, 0, 0.9)


# ----------------------------------------------------------------------------- SAC isolation

def test_soft_actor_critic_policy_term_leaves_q_functions_alone():
    mk = lambda: critic.FunctionApproximator(PEND, lr=1e-2)  # noqa: E731
    pol = critic.GaussianPolicy(mk(), squash=True, entropy_beta=0.1, random_seed=0)
    q1, q2 = critic.QTypeI(mk()), critic.QTypeI(mk())
    sac = critic.SoftActorCritic(pol, critic.V(mk(), bootstrap_with_target_model=True), q1, q2,
                                 value_loss_weight=0.0)  # only the policy term is optimised
    qs = [p.detach().clone() for q in (q1, q2) for p in q.online_parameters()]
    ps = [p.detach().clone() for p in pol.online_parameters()]
    S = obs_batch(PEND, 16)
    sac.batch_update(S, np.zeros((16, 1)), np.zeros(16), np.full(16, 0.9), S)
    assert all(torch.equal(a, b) for a, b in zip(qs, [p for q in (q1, q2) for p in q.online_parameters()]))
    assert any(not torch.equal(a, b) for a, b in zip(ps, pol.online_parameters()))


# ----------------------------------------------------------------------------- SAC, unsquashed (keras-gym's)

def _unsquashed_sac(mean_bias=0.0, seed=0):
    torch.manual_seed(seed)
    mk = lambda: critic.FunctionApproximator(PEND, lr=1e-2, hidden_sizes=(16,))  # noqa: E731
    pol = critic.GaussianPolicy(mk(), entropy_beta=0.2, random_seed=seed)  # squash=False, keras-gym's
    with torch.no_grad():
        pol.head.bias[0] += mean_bias  # shift the mean (in env units; the Box is [-2, 2])
    return critic.SoftActorCritic(pol, critic.V(mk(), bootstrap_with_target_model=True),
                                  critic.QTypeI(mk()), critic.QTypeI(mk()))


def test_soft_actor_critic_unsquashed_policy_loss_by_hand():
    """The policy term is alpha * (plain Gaussian log pi at the sample u) - min(q1, q2) at
    clip(u, -2, 2), the action the env executes; the mean sits at ~4, so most samples are
    clipped and Q at the unclipped u (keras-gym's choice) gives another number."""
    sac = _unsquashed_sac(mean_bias=4.0)
    S = obs_batch(PEND, 32)
    A = np.random.default_rng(0).uniform(-2, 2, (32, 1)).astype(np.float32)
    x = torch.as_tensor(S)

    def by_hand(clip):
        with torch.no_grad():
            out = sac.policy.head(sac.policy.body(x))
            mean, log_std = out[:, :1], out[:, 1:].clamp(-20, 2)
            torch.manual_seed(7)
            u = mean + log_std.exp() * torch.randn_like(mean)
            logp = (-0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * np.log(2 * np.pi)).sum(-1)
            a = u.clamp(-2, 2) if clip else u
            q = torch.minimum(sac.q_func1.forward(x, a), sac.q_func2.forward(x, a))
            return float((0.2 * logp - q).mean()), float((u.abs() > 2).float().mean())

    expected, clipped = by_hand(True)
    unclipped_q, _ = by_hand(False)
    assert clipped > 0.5  # the clipping is exercised
    assert abs(expected - unclipped_q) > 1e-3
    torch.manual_seed(7)  # the update's first random draw is the policy's sample
    losses = sac.batch_update(S, A, np.ones(32), np.full(32, 0.9), S)
    assert np.isclose(losses["policy/loss"], expected, rtol=1e-5, atol=1e-6), (losses["policy/loss"], expected)


def test_soft_actor_critic_unsquashed_trains_and_acts_in_the_box():
    sac = _unsquashed_sac(mean_bias=5.0)  # the Gaussian's mean far outside the Box
    before = [p.detach().clone() for h in (sac.policy, sac.v_func, sac.q_func1, sac.q_func2)
              for p in h.online_parameters()]
    rng = np.random.default_rng(0)
    for _ in range(5):
        S, S2 = obs_batch(PEND, 16, rng.integers(1 << 30)), obs_batch(PEND, 16, rng.integers(1 << 30))
        A, _ = sac.batch_eval(S)
        losses = sac.batch_update(S, A, rng.normal(size=16), np.full(16, 0.9), S2)
        assert all(np.isfinite(v) for v in losses.values()), losses
        sac.sync_target_model(tau=0.1)
    after = [p for h in (sac.policy, sac.v_func, sac.q_func1, sac.q_func2) for p in h.online_parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(before, after) if a.dim() == 2)  # every weight matrix moved
    S = obs_batch(PEND, 200, 9)
    for A in (sac.batch_eval(S)[0], sac.policy(S), sac.policy.greedy(S), np.array([sac(s)[0] for s in S[:20]])):
        assert A.shape[-1] == 1 and A.min() >= -2 and A.max() <= 2
    assert np.isclose(np.abs(sac.batch_eval(S)[0]), 2).mean() > 0.5  # clipped onto the bound, not resampled


def test_soft_actor_critic_from_func_still_squashes():
    sac = critic.SoftActorCritic.from_func(critic.FunctionApproximator(PEND), random_seed=0)
    assert sac.policy.squash


# ----------------------------------------------------------------------------- examples (smoke)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture()
def examples_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


def test_examples_run_with_tiny_budgets(examples_path):
    import actor_critic_per_step
    import actor_critic_ppo
    import soft_actor_critic_pendulum
    ac, returns = actor_critic_per_step.main(steps=300, log=False)
    assert returns and isinstance(ac, critic.ActorCritic)
    ac, _ = actor_critic_ppo.main(steps=256, rollout=128, epochs=2, log=False)
    sac, returns = soft_actor_critic_pendulum.main(steps=450, warmup=300, log=False)
    assert len(returns) == 2  # two 200-step episodes
    for name in list(sys.modules):
        if name in ("actor_critic_per_step", "actor_critic_ppo", "soft_actor_critic_pendulum", "common"):
            del sys.modules[name]


def test_frozen_lake_example_runs_a_few_hundred_steps(examples_path, caplog):
    import frozen_lake_actor_critic as ex
    try:
        with caplog.at_level("INFO", logger="critic"):
            ac, env = ex.main(episodes=40, log=True)
        assert isinstance(ac, critic.ActorCritic) and env.ep == 40 and 80 <= env.T <= 40 * 30
        lines = [r.getMessage() for r in caplog.records if r.name == "critic.wrappers.TrainMonitor"]
        assert len(lines) == 40 and lines[-1].startswith(f"ep: 40, T: {env.T:,d}") and "value/loss" in lines[-1]
        assert ex.greedy_return(ac) in (0.0, 1.0)
    finally:
        sys.modules.pop("frozen_lake_actor_critic", None)
        import logging
        for h in list(logging.getLogger("critic").handlers):  # the example called enable_logging
            if getattr(h, "_critic_enable_logging", False):
                logging.getLogger("critic").removeHandler(h)
        logging.getLogger("critic").setLevel(logging.NOTSET)


def test_components_report_the_agents_metric_names_beside_keras_gyms():
    """loss/actor, loss/critic and train/entropy mean the same on both faces (keras-gym's names stay)."""
    ac = critic.ActorCritic.from_func(critic.FunctionApproximator(CART), random_seed=0)
    S = obs_batch(CART)
    A, _ = ac.batch_eval(S)
    losses = ac.batch_update(S, A, np.ones(5), np.full(5, 0.9), S)
    assert losses["loss/actor"] == losses["policy/loss"] and losses["loss/critic"] == losses["value/loss"]
    assert losses["train/entropy"] == losses["policy/entropy"]
    sac = critic.SoftActorCritic.from_func(critic.FunctionApproximator(PEND), random_seed=0)
    S = obs_batch(PEND)
    A, _ = sac.batch_eval(S)
    losses = sac.batch_update(S, A, np.ones(5), np.full(5, 0.9), S)
    assert losses["loss/actor"] == losses["policy/loss"]
    assert np.isclose(losses["loss/critic"], losses["value/loss"] + losses["q1/loss"] + losses["q2/loss"], rtol=1e-6)
    agent = critic.A2C("CartPole-v1", n_steps=5, hidden_sizes=(8,), ent_coef=0.01)
    seen = []
    agent.learn(10, lambda a, info: seen.append(set(info["metrics"])), progress_bar=False)
    assert {"loss/actor", "loss/critic", "train/entropy"} <= seen[-1]
    agent.close()
