"""A batched update of A2C (n-step with RMSprop, per-step with Adam), SAC (Box and Discrete), TD3
and DDPG members equals the members' solo updates (float32 rounding apart), member by member; a
negative control swaps the members' batches. Per-member scalars of a sweep (tau, ent_coef) reach
their member only. PPO's batched update is tested in test_members.py."""

import pytest
import torch

import critic
from critic.algos import ddpg, sac, td3
from critic.modules.target import polyak_update

SMALL = dict(hidden_sizes=(16, 16), learning_starts=10, batch_size=8)
B = 8


def _batches(env: str, n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    obs_dim = 3 if env == "Pendulum-v1" else 4
    out = []
    for _ in range(n):
        act = torch.rand(B, 1, generator=g) * 2 - 1 if env == "Pendulum-v1" else \
            torch.randint(0, 2, (B,), generator=g).float()
        out.append({"obs": torch.randn(B, obs_dim, generator=g), "actions": act, "rewards": torch.randn(B, generator=g),
                    "next_obs": torch.randn(B, obs_dim, generator=g),
                    "discount": 0.98 * (torch.rand(B, generator=g) > 0.1).float()})
    return out


def _solo_step(agent, batch: dict[str, torch.Tensor], gen: torch.Generator) -> None:
    """One solo update with the noise the batch draws for this member (its own generator)."""
    if agent.algo == "sac":
        noise = None
        if not agent.nets.discrete:
            noise = (torch.randn(B, 1, generator=gen), torch.randn(B, 1, generator=gen))
        sac.update(agent.nets, agent.optims, batch, agent.cfg, agent.target_entropy, noise)
    elif agent.algo == "td3":
        td3.update(agent.nets, agent.optims, batch, agent.cfg, agent.updates + 1, torch.randn(B, 1, generator=gen))
    else:
        ddpg.update(agent.nets, agent.optims, batch)
        polyak_update(agent.nets.critic, agent.nets.critic_target, agent.cfg.tau)
        polyak_update(agent.nets.actor, agent.nets.actor_target, agent.cfg.tau)
    agent.updates += 1


def _max_gap(solo, batch) -> float:
    return max((p - q).abs().max().item() for a, m in zip(solo, batch.agents)
               for (_, p), (_, q) in zip(a.nets.named_parameters(), m.nets.named_parameters()))


def _run(cls, env, hp, swap=False, steps=4):
    seeds = [0, 1]
    batch = cls(env, seeds=seeds, **SMALL, **hp)
    solo = [cls(env, seed=s, **SMALL, **hp) for s in seeds]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    per_member = [_batches(env, steps, 10 + k) for k in range(2)]
    for j in range(steps):
        mine = [per_member[k][j] for k in range(2)]
        for a, b, g in zip(solo, mine, gens):
            _solo_step(a, b, g)
        given = mine[::-1] if swap else mine
        cls.batch_update(batch, {k: torch.stack([b[k] for b in given]) for k in given[0]}, torch.tensor([True, True]))
        for a in batch.agents:
            a.updates += 1
    gap = _max_gap(solo, batch)
    for a in solo:
        a.close()
    batch.close()
    return gap


CASES = {
    "sac_box": (critic.SAC, "Pendulum-v1", {}),
    "sac_box_fixed_alpha": (critic.SAC, "Pendulum-v1", {"ent_coef": 0.2}),
    "sac_discrete": (critic.SAC, "CartPole-v1", {}),
    "td3": (critic.TD3, "Pendulum-v1", {}),
    "ddpg": (critic.DDPG, "Pendulum-v1", {}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_batched_update_equals_the_members_solo_updates(case):
    cls, env, hp = CASES[case]
    assert _run(cls, env, hp) < 1e-6
    # negative control: the members' batches swapped, the batched members no longer match
    assert _run(cls, env, hp, swap=True) > 1e-4


def test_swept_scalars_reach_their_member_only():
    """A sweep of tau and ent_coef in one batch equals solo members with those values."""
    values = [(0.01, 0.1), (0.2, None)]  # (tau, ent_coef): fixed alpha beside automatic tuning
    batch = critic.SAC("Pendulum-v1", seeds=[0], sweep={"tau": [0.01, 0.2], "ent_coef": [0.1, None]}, **SMALL)
    assert batch.M == 4
    keep = [k for k, a in enumerate(batch.agents) if (a.cfg.tau, a.cfg.ent_coef) in values]
    solo = [critic.SAC("Pendulum-v1", seed=0, tau=t, ent_coef=e, **SMALL) for t, e in values]
    gens = [torch.Generator().manual_seed(0) for _ in range(batch.M)]
    data = [_batches("Pendulum-v1", 3, 20 + k) for k in range(batch.M)]
    for j in range(3):
        for a, k in zip(solo, keep):
            _solo_step(a, data[k][j], gens[k])
        critic.SAC.batch_update(batch, {n: torch.stack([d[j][n] for d in data]) for n in data[0][0]},
                                torch.ones(batch.M, dtype=torch.bool))
    for a, k in zip(solo, keep):
        for (n, p), (_, q) in zip(a.nets.named_parameters(), batch.agents[k].nets.named_parameters()):
            torch.testing.assert_close(q, p, rtol=0, atol=1e-6, msg=n)
    moved = [float(batch.agents[k].nets.log_alpha.detach()) for k in keep]
    assert moved[0] == 0.0 and moved[1] != 0.0  # fixed ent_coef leaves log_alpha alone; automatic tuning moves it
    for a in solo:
        a.close()
    batch.close()


def test_an_inactive_member_moves_nothing():
    batch = critic.TD3("Pendulum-v1", seeds=[0, 1], **SMALL)
    before = batch.weights()
    data = _batches("Pendulum-v1", 2, 3)
    for j in range(2):
        critic.TD3.batch_update(batch, {k: torch.stack([data[j][k]] * 2) for k in data[j]}, torch.tensor([True, False]))
        for a in batch.agents:
            a.updates += 1
    after = batch.weights()
    assert torch.equal(after[1], before[1]) and not torch.equal(after[0], before[0])
    assert batch.opts["critic"].steps.tolist() == [2, 0] and batch.opts["actor"].steps.tolist() == [1, 0]
    batch.close()


@pytest.mark.parametrize("flavour", ["n_step_rmsprop", "per_step_adam"])
def test_a_batched_a2c_update_equals_the_members_solo_updates(flavour):
    from critic.algos import a2c

    hp = dict(hidden_sizes=(16,), n_steps=5, num_envs=2, gae_lambda=0.9) if flavour == "n_step_rmsprop" else \
        dict(hidden_sizes=(16,), n_steps=1, num_envs=1)

    def run(swap: bool) -> float:
        batch = critic.A2C("CartPole-v1", seeds=[0, 1], **hp)
        solo = [critic.A2C("CartPole-v1", seed=s, **hp) for s in (0, 1)]
        assert type(solo[0].optims["main"]).__name__ == ("RMSprop" if flavour == "n_step_rmsprop" else "Adam")
        T, N = solo[0].cfg.n_steps, solo[0].cfg.num_envs
        g = torch.Generator().manual_seed(3)
        for _ in range(3):
            rolls = []
            for _k in range(2):
                term = torch.rand(T, N, generator=g) < 0.2
                rolls.append({"obs": torch.randn(T, N, 4, generator=g), "actions": torch.randint(0, 2, (T, N), generator=g),
                              "rewards": torch.randn(T, N, generator=g), "values": torch.randn(T, N, generator=g),
                              "next_values": torch.randn(T, N, generator=g), "terminated": term,
                              "truncated": (torch.rand(T, N, generator=g) < 0.1) & ~term})
            for a, r in zip(solo, rolls):
                a2c.update(a.nets, a.optims["main"], r, a.cfg)
            given = rolls[::-1] if swap else rolls
            critic.A2C.batch_update(batch, {k: torch.stack([r[k] for r in given]) for k in given[0]},
                                    torch.tensor([True, True]))
        gap = _max_gap(solo, batch)
        for a in [*solo, batch]:
            a.close()
        return gap

    assert run(False) < 1e-6
    assert run(True) > 1e-4


def test_episodic_a2c_is_refused_by_name():
    with pytest.raises(critic.ConfigError, match="episodic A2C"):
        critic.A2C("CartPole-v1", seeds=[0, 1], episodic=True, num_envs=1)


@pytest.mark.parametrize("algo", ["sac", "td3"])
def test_image_members_take_the_vmapped_path_and_equal_solo_updates(algo):
    """Image observations (Nature-CNN encoders, not stacked): the same losses vmapped."""
    from critic.envs.fake import TinyImageEnv

    cls = critic.SAC if algo == "sac" else critic.TD3
    make = lambda: TinyImageEnv(continuous=True, hwc=True)  # noqa: E731
    hp = dict(learning_starts=10, batch_size=4, hidden_sizes=(16,), buffer_size=100)
    batch = cls(make, seeds=[0, 1], **hp)
    solo = [cls(make, seed=s, **hp) for s in (0, 1)]
    obs_space, act_dim = solo[0].obs_space, solo[0].act_space.shape[0]
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    g = torch.Generator().manual_seed(7)
    for _ in range(2):
        data = [{"obs": torch.randint(0, 255, (4, *obs_space.shape), generator=g, dtype=torch.uint8),
                 "actions": torch.rand(4, act_dim, generator=g) * 2 - 1, "rewards": torch.randn(4, generator=g),
                 "next_obs": torch.randint(0, 255, (4, *obs_space.shape), generator=g, dtype=torch.uint8),
                 "discount": torch.full((4,), 0.99)} for _ in range(2)]
        for a, b, gen in zip(solo, data, gens):
            if algo == "sac":  # the next and the current action's draws
                noise = (torch.randn(4, act_dim, generator=gen), torch.randn(4, act_dim, generator=gen))
                sac.update(a.nets, a.optims, b, a.cfg, a.target_entropy, noise)
            else:  # the smoothing noise's draw
                td3.update(a.nets, a.optims, b, a.cfg, a.updates + 1, torch.randn(4, act_dim, generator=gen))
            a.updates += 1
        cls.batch_update(batch, {k: torch.stack([b[k] for b in data]) for k in data[0]}, torch.tensor([True, True]))
        for a in batch.agents:
            a.updates += 1
    # vmapped convolutions round differently from plain ones, and Adam's normalised first steps
    # carry that into weights of near-zero gradient: a few 1e-5 after two steps (swapped members'
    # weights differ by the learning rate's order, 1e-3 and more)
    assert _max_gap(solo, batch) < 1e-4
    for a in [*solo, batch]:
        a.close()


def test_a2c_swept_coefficients_reach_their_member_only():
    from critic.algos import a2c

    hp = dict(hidden_sizes=(16,), n_steps=5, num_envs=2)
    sweep = {"ent_coef": [0.0, 0.05], "vf_coef": [0.5, 1.0], "max_grad_norm": [0.5, None]}
    batch = critic.A2C("CartPole-v1", seeds=[0], sweep=sweep, **hp)
    assert batch.M == 8 and batch.swept == ["ent_coef", "max_grad_norm", "vf_coef"]
    picks = [(0.0, 0.5, 0.5), (0.05, 1.0, None)]
    keep = [next(k for k, a in enumerate(batch.agents) if (a.cfg.ent_coef, a.cfg.vf_coef, a.cfg.max_grad_norm) == p)
            for p in picks]
    solo = [critic.A2C("CartPole-v1", seed=0, ent_coef=e, vf_coef=v, max_grad_norm=c, **hp) for e, v, c in picks]
    g = torch.Generator().manual_seed(5)
    for _ in range(3):
        rolls = []
        for _k in range(batch.M):
            term = torch.rand(5, 2, generator=g) < 0.2
            rolls.append({"obs": torch.randn(5, 2, 4, generator=g), "actions": torch.randint(0, 2, (5, 2), generator=g),
                          "rewards": torch.randn(5, 2, generator=g), "values": torch.randn(5, 2, generator=g),
                          "next_values": torch.randn(5, 2, generator=g), "terminated": term,
                          "truncated": torch.zeros(5, 2, dtype=torch.bool)})
        for a, k in zip(solo, keep):
            a2c.update(a.nets, a.optims["main"], rolls[k], a.cfg)
        critic.A2C.batch_update(batch, {n: torch.stack([r[n] for r in rolls]) for n in rolls[0]},
                                torch.ones(batch.M, dtype=torch.bool))
    for a, k in zip(solo, keep):
        for (n, p), (_, q) in zip(a.nets.named_parameters(), batch.agents[k].nets.named_parameters()):
            torch.testing.assert_close(q, p, rtol=0, atol=1e-6, msg=n)
    other = next(k for k in range(batch.M) if k not in keep)  # negative control: another member's values
    assert not torch.allclose(batch.agents[other].nets.pi_head.weight, solo[0].nets.pi_head.weight, atol=1e-6)
    for a in [*solo, batch]:
        a.close()
