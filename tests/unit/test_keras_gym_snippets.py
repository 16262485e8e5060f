"""The keras-gym documentation's actor-critic API, used the way a keras-gym user writes it, with
only the module name changed (``km.`` -> ``critic.``): every constructor, ``from_func`` with
each documented argument, ``__call__``, ``batch_eval``, ``batch_update``, ``update``,
``dist_params``, ``greedy``, ``sync_target_model`` and the three update strategies, for
``ActorCritic`` and ``SoftActorCritic``. Environments are Gymnasium's (five-tuple ``step``);
function approximators are built keras-gym's way, a ``FunctionApproximator`` whose ``body`` a
subclass overrides (here in PyTorch). Each test checks what the documentation promises."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import critic


class MLP(critic.FunctionApproximator):
    """ multi-layer perceptron with one hidden layer """
    def __init__(self, env, **kwargs):
        self.hidden = torch.nn.Linear(int(np.prod(env.observation_space.shape)), 16)
        super().__init__(env, **kwargs)

    def body(self, S):
        return torch.tanh(self.hidden(S))


def cartpole():
    env = gym.make('CartPole-v1')
    torch.manual_seed(0)
    func = MLP(env, lr=0.01)
    return env, func


def pendulum():
    env = gym.make('Pendulum-v1')
    torch.manual_seed(0)
    func = MLP(env, lr=0.01)
    return env, func


def transitions(env, n=16, seed=0):
    """A batch (S, A, Rn, In, S_next) collected with random actions and 1-step bootstrapping."""
    env.action_space.seed(seed)
    s, _ = env.reset(seed=seed)
    S, A, R, I, S_next = [], [], [], [], []
    for _ in range(n):
        a = env.action_space.sample()
        s_next, r, done, truncated, info = env.step(a)
        S.append(s), A.append(a), R.append(r), I.append(0.0 if done else 0.9), S_next.append(s_next)
        s = env.reset()[0] if done or truncated else s_next
    return (np.array(S, np.float32), np.array(A), np.array(R, np.float32), np.array(I, np.float32),
            np.array(S_next, np.float32))


def weights(*objs):
    return [p.detach().clone() for obj in objs for p in obj.online_parameters()]


def changed(before, objs):
    return [not torch.equal(a, b) for a, b in zip(before, weights(*objs))]


# ----------------------------------------------------------------------------- ActorCritic

def test_actor_critic_constructor_and_batch_update():
    """ActorCritic(policy, v_func, value_loss_weight=1.0); batch_update(S, A, Rn, In, S_next,
    A_next=None) -> losses; loss = policy_loss + value_loss_weight * value_loss."""
    env, func = cartpole()
    pi = critic.SoftmaxPolicy(func, update_strategy='vanilla', entropy_beta=0.0)
    v = critic.V(func, gamma=0.9, bootstrap_n=1)
    actor_critic = critic.ActorCritic(pi, v, value_loss_weight=0.5)

    S, A, Rn, In, S_next = transitions(env)
    before = weights(pi, v)
    losses = actor_critic.batch_update(S, A, Rn, In, S_next, A_next=None)
    assert isinstance(losses, dict) and all(isinstance(k, str) and np.isfinite(x) for k, x in losses.items())
    assert np.isclose(losses['loss'], losses['policy/loss'] + 0.5 * losses['value/loss'], rtol=1e-5)
    assert all(changed(before, [pi, v]))  # shared body, policy head and value head all moved


def test_actor_critic_call_greedy_dist_params_batch_eval():
    env, func = cartpole()
    actor_critic = critic.ActorCritic.from_func(func)
    s, info = env.reset(seed=1)

    a, v = actor_critic(s)                      # a ~ pi(.|s), v(s)
    assert env.action_space.contains(int(a)) and isinstance(v, float)
    dist_params, v2 = actor_critic.dist_params(s)
    assert dist_params.shape == (2,) and np.isclose(dist_params.sum(), 1.0) and v2 == v
    a, v3 = actor_critic.greedy(s)              # argmax_a pi(a|s)
    assert a == np.argmax(dist_params) and v3 == v

    S = transitions(env, 8)[0]
    A, V = actor_critic.batch_eval(S, use_target_model=False)
    assert A.shape == (8,) and V.shape == (8,) and all(env.action_space.contains(int(x)) for x in A)
    A_target, V_target = actor_critic.batch_eval(S, use_target_model=True)
    np.testing.assert_allclose(V_target, V, rtol=1e-6)  # the target model starts as a copy


def test_actor_critic_from_func_arguments():
    """from_func(function_approximator, gamma=0.9, bootstrap_n=1, bootstrap_with_target_model=False,
    entropy_beta=0.01, update_strategy='vanilla', random_seed=None)."""
    env, func = cartpole()
    actor_critic = critic.ActorCritic.from_func(
        func, gamma=0.8, bootstrap_n=3, bootstrap_with_target_model=True, entropy_beta=0.05,
        update_strategy='ppo', random_seed=13)
    assert (actor_critic.v_func.gamma, actor_critic.v_func.bootstrap_n) == (0.8, 3)
    assert actor_critic.v_func.bootstrap_with_target_model
    assert (actor_critic.policy.entropy_beta, actor_critic.policy.update_strategy) == (0.05, 'ppo')
    assert isinstance(actor_critic.policy, critic.SoftmaxPolicy)
    # random_seed: the same seed gives the same weights and the same sampled actions
    S = transitions(env, 8)[0]
    again = critic.ActorCritic.from_func(MLP(env, lr=0.01), random_seed=13)
    other = critic.ActorCritic.from_func(MLP(env, lr=0.01), random_seed=13)
    np.testing.assert_array_equal(again.batch_eval(S)[0], other.batch_eval(S)[0])
    np.testing.assert_array_equal(again.batch_eval(S)[1], other.batch_eval(S)[1])
    # defaults as documented
    d = critic.ActorCritic.from_func(MLP(env, lr=0.01))
    assert (d.v_func.gamma, d.v_func.bootstrap_n, d.v_func.bootstrap_with_target_model) == (0.9, 1, False)
    assert (d.policy.entropy_beta, d.policy.update_strategy) == (0.01, 'vanilla')


def test_actor_critic_sync_target_model():
    """sync_target_model(tau=1.0): w_target <- (1 - tau) w_target + tau w_primary."""
    env, func = cartpole()
    actor_critic = critic.ActorCritic.from_func(func, random_seed=0)
    actor_critic.batch_update(*transitions(env))  # primary != target now
    heads = (actor_critic.policy, actor_critic.v_func)
    primary = [p.detach().clone() for h in heads for p in [*h.body.parameters(), *h.head.parameters()]]
    target = [p.detach().clone() for h in heads for p in h.target_model.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(primary, target))
    actor_critic.sync_target_model(tau=0.25)
    for w_t, w_p, new in zip(target, primary, [p for h in heads for p in h.target_model.parameters()]):
        torch.testing.assert_close(new, 0.75 * w_t + 0.25 * w_p)
    actor_critic.sync_target_model(tau=1.0)
    for w_p, new in zip(primary, [p for h in heads for p in h.target_model.parameters()]):
        assert torch.equal(new, w_p)


def test_actor_critic_update_in_an_episode_loop():
    """update(s, a, r, done) after every step, Gymnasium's step five-tuple."""
    env, func = cartpole()
    pi = critic.SoftmaxPolicy(func, update_strategy='vanilla')
    v = critic.V(func, gamma=0.9, bootstrap_n=1)
    actor_critic = critic.ActorCritic(pi, v)
    before = weights(pi, v)
    s, info = env.reset(seed=0)
    returned, first_step = [], True
    for t in range(60):
        a = pi(s)
        s_next, r, done, truncated, info = env.step(a)
        losses = actor_critic.update(s, a, r, done)
        # bootstrap_n=1 needs the next step's state: an episode's first step updates nothing yet
        returned.append((first_step, losses is None))
        if done:
            s, info = env.reset()
        else:
            s = s_next
        first_step = done
    assert all(first == empty for first, empty in returned) and sum(f for f, _ in returned) > 1
    assert all(changed(before, [pi, v]))


def test_update_strategy_vanilla_raises_the_probability_of_advantageous_actions():
    """'vanilla': J = -Adv(s, a) ln pi(a|s)."""
    env, func = cartpole()
    actor_critic = critic.ActorCritic.from_func(func, update_strategy='vanilla', entropy_beta=0.0, random_seed=0)
    S = transitions(env)[0]
    A = np.ones(len(S), dtype=int)
    p0 = actor_critic.policy.dist_params(S)[:, 1]
    for _ in range(5):  # returns far above v(s): a positive advantage for action 1
        actor_critic.batch_update(S, A, np.full(len(S), 10.0, np.float32), np.zeros(len(S), np.float32), S)
    assert (actor_critic.policy.dist_params(S)[:, 1] > p0).all()


def test_update_strategy_ppo_clips_the_ratio_against_the_target_model():
    """'ppo': J = min(r Adv, clip(r, 1 - eps, 1 + eps) Adv), r = pi(a|s) / pi_old(a|s); pi_old is
    the target model, refreshed by sync_target_model."""
    env, func = cartpole()
    actor_critic = critic.ActorCritic.from_func(func, update_strategy='ppo', entropy_beta=0.0, random_seed=0)
    S = transitions(env)[0]
    A, Rn, In = np.ones(len(S), dtype=int), np.full(len(S), 10.0, np.float32), np.zeros(len(S), np.float32)
    p0 = actor_critic.policy.dist_params(S)[:, 1]
    clip_fractions = [actor_critic.batch_update(S, A, Rn, In, S)['train/clip_fraction'] for _ in range(30)]
    p1 = actor_critic.policy.dist_params(S)[:, 1]
    assert (p1 > p0).all()
    assert clip_fractions[0] == 0.0 and clip_fractions[-1] > 0.5  # the ratio passed 1 + eps against pi_old
    actor_critic.sync_target_model(tau=1.0)  # pi_old <- pi: the ratio starts over at 1
    assert actor_critic.batch_update(S, A, Rn, In, S)['train/clip_fraction'] == 0.0


def test_update_strategy_cross_entropy_fits_the_behaviour_probabilities():
    """'cross_entropy': J = -sum_a pi_b(a|s) log pi(a|s); A holds pi_b(.|s) (no advantages)."""
    env, func = cartpole()
    actor_critic = critic.ActorCritic.from_func(func, update_strategy='cross_entropy', entropy_beta=0.0,
                                                random_seed=0)
    S, _, Rn, In, S_next = transitions(env)
    P_behaviour = np.tile(np.array([[0.8, 0.2]], np.float32), (len(S), 1))
    for _ in range(60):
        actor_critic.batch_update(S, P_behaviour, Rn, In, S_next)
    np.testing.assert_allclose(actor_critic.policy.dist_params(S), P_behaviour, atol=0.05)


# ----------------------------------------------------------------------------- SoftActorCritic

def test_soft_actor_critic_with_keras_gyms_gaussian_policy():
    """SoftActorCritic(policy, v_func, q_func1, q_func2, value_loss_weight=1.0) with keras-gym's
    ordinary (unsquashed) GaussianPolicy; actions reach the env clipped to the Box."""
    env, func = pendulum()
    pi = critic.GaussianPolicy(func)
    v = critic.V(func, gamma=0.9, bootstrap_n=1)
    q1 = critic.QTypeI(func, gamma=0.9, bootstrap_n=1)
    q2 = critic.QTypeI(func, gamma=0.9, bootstrap_n=1)
    sac = critic.SoftActorCritic(pi, v, q1, q2, value_loss_weight=1.0)

    s, info = env.reset(seed=0)
    a, v_s = sac(s)
    assert env.action_space.contains(a) and isinstance(v_s, float)
    dist_params, _ = sac.dist_params(s)
    assert dist_params.shape == (2,)            # mean, log_std
    a, _ = sac.greedy(s)
    assert env.action_space.contains(a) and np.isclose(a[0], np.clip(dist_params[0], -2, 2))

    before = weights(pi, v, q1, q2)
    for _ in range(3):
        losses = sac.batch_update(*transitions(env))
    assert {'policy/loss', 'value/loss', 'q1/loss', 'q2/loss', 'loss'} <= set(losses)
    assert all(np.isfinite(x) for x in losses.values())
    assert all(changed(before, [pi, v, q1, q2]))
    A, V = sac.batch_eval(transitions(env, 32)[0])
    assert A.shape == (32, 1) and V.shape == (32,) and (np.abs(A) <= 2).all()


def test_soft_actor_critic_from_func_arguments():
    """from_func(function_approximator, gamma=0.9, bootstrap_n=1, q_type=None, entropy_beta=0.01,
    random_seed=None); q_type defaults to type-II for Discrete actions, type-I otherwise."""
    env, func = cartpole()
    sac = critic.SoftActorCritic.from_func(func, gamma=0.8, bootstrap_n=2, q_type=None, entropy_beta=0.05,
                                           random_seed=3)
    assert isinstance(sac.q_func1, critic.QTypeII) and isinstance(sac.q_func2, critic.QTypeII)
    assert (sac.v_func.gamma, sac.v_func.bootstrap_n, sac.policy.entropy_beta) == (0.8, 2, 0.05)
    sac1 = critic.SoftActorCritic.from_func(MLP(env, lr=0.01), q_type=1)
    assert isinstance(sac1.q_func1, critic.QTypeI)
    env_p, func_p = pendulum()
    sac_p = critic.SoftActorCritic.from_func(func_p)
    assert isinstance(sac_p.q_func1, critic.QTypeI) and isinstance(sac_p.policy, critic.GaussianPolicy)
    for obj, e in ((sac, env), (sac1, env), (sac_p, env_p)):
        losses = obj.batch_update(*transitions(e))
        assert all(np.isfinite(x) for x in losses.values())


def test_soft_actor_critic_update_sync_and_discrete_actions():
    """update(s, a, r, done) in a loop, sync_target_model(tau) on every head, Discrete actions."""
    env, func = cartpole()
    sac = critic.SoftActorCritic.from_func(func, random_seed=0)
    heads = (sac.policy, sac.v_func, sac.q_func1, sac.q_func2)
    before = weights(*heads)
    s, info = env.reset(seed=0)
    for t in range(30):
        a, v = sac(s)
        s_next, r, done, truncated, info = env.step(a)
        sac.update(s, a, r, done)
        s = env.reset()[0] if done else s_next
    assert all(changed(before, heads))
    target_before = [p.detach().clone() for h in heads for p in h.target_model.parameters()]
    sac.sync_target_model(tau=0.5)
    online = [p for h in heads for p in [*h.body.parameters(), *h.head.parameters()]]
    for w_t, w_p, new in zip(target_before, online, [p for h in heads for p in h.target_model.parameters()]):
        torch.testing.assert_close(new, 0.5 * w_t + 0.5 * w_p.detach())
    a, v = sac.greedy(s)
    assert a == np.argmax(sac.dist_params(s)[0])


@pytest.mark.parametrize("make", [cartpole, pendulum])
def test_default_function_approximator(make):
    """critic.FunctionApproximator(env) as it comes, under both classes' from_func."""
    env = make()[0]
    for cls in (critic.ActorCritic, critic.SoftActorCritic):
        obj = cls.from_func(critic.FunctionApproximator(env), random_seed=0)
        s, info = env.reset(seed=0)
        a, v = obj(s)
        assert env.action_space.contains(a if np.ndim(a) else int(a))
        assert all(np.isfinite(x) for x in obj.batch_update(*transitions(env)).values())
