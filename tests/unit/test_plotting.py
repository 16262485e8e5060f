"""critic plot groups runs by configuration (not by algorithm and env), draws one panel per
environment, aggregates with an interval, and does not cut groups to their shortest run."""

import json

import numpy as np
import pytest

from critic.plotting import _group_labels, _key, aggregate, plot_runs, run_info


def _run(tmp_path, name, algo="ppo", env="CartPole-v1", seed=0, lr=3e-4, steps=(1000, 2000, 3000), base=0.0):
    d = tmp_path / name
    d.mkdir()
    cfg = {"seed": seed, "learning_rate": lr, "gamma": 0.99, "device": "cpu"}
    (d / "summary.json").write_text(json.dumps({"algo": algo, "env_id": env, "seed": seed, "config": cfg,
                                                "threshold": 475.0 if env == "CartPole-v1" else None}))
    rows = "env_steps,wall_seconds,train_seconds,mean,std,episodes\n" + "".join(
        f"{s},1,1,{base + s / 10},0,10\n" for s in steps)
    (d / "evals.csv").write_text(rows)
    return d


def test_runs_group_by_configuration_and_labels_name_what_differs(tmp_path):
    runs = [_run(tmp_path, "a0", seed=0), _run(tmp_path, "a1", seed=1),  # same config, two seeds
            _run(tmp_path, "b0", lr=1e-3), _run(tmp_path, "p0", algo="sac", env="Pendulum-v1")]
    infos = {}
    keys = []
    for d in runs:
        info = run_info(d)
        keys.append(_key(info, None))
        infos.setdefault(keys[-1], info)
    assert keys[0] == keys[1] and keys[0] != keys[2] != keys[3]  # seeds join, a learning rate splits
    labels = _group_labels(infos, None)
    assert labels[keys[0]] == "ppo CartPole-v1 (learning_rate=0.0003)"
    assert labels[keys[2]] == "ppo CartPole-v1 (learning_rate=0.001)"
    assert labels[keys[3]] == "sac Pendulum-v1"  # nothing to tell apart within its algo and env
    by_algo = {_key(run_info(d), ["algo"]) for d in runs}
    assert len(by_algo) == 2  # --group-by algo: ppo (three runs) and sac


def test_aggregate_keeps_the_longer_runs_and_its_interval_brackets_the_centre():
    curves = [(np.array([0.0, 100, 200]), np.array([0.0, 10, 20])),
              (np.array([0.0, 100]), np.array([2.0, 12]))]
    grid, centre, low, high, count = aggregate(curves, "mean", points=3)
    assert grid.tolist() == [0, 100, 200]  # up to the longest run, not cut to the shortest
    assert count.tolist() == [2, 2, 1]
    assert centre.tolist() == [1.0, 11.0, 20.0]
    assert np.all(low <= centre) and np.all(centre <= high)
    g2, c_iqm, *_ = aggregate([(np.array([0.0, 1]), np.array([v, v])) for v in (0, 1, 2, 100)], "iqm", points=2)
    assert c_iqm[0] == pytest.approx(1.5)  # the outlier run is trimmed; the mean would be 25.75


def test_plot_draws_a_panel_per_environment_and_checks_labels(tmp_path):
    runs = [_run(tmp_path, "a0"), _run(tmp_path, "a1", seed=1, steps=(1000, 2000)),
            _run(tmp_path, "p0", algo="sac", env="Pendulum-v1", base=-1500)]
    out = plot_runs(runs, tmp_path / "c.png", stat="iqm")
    assert out.is_file() and out.stat().st_size > 10_000
    import matplotlib.image
    h, w = matplotlib.image.imread(out).shape[:2]
    assert w > 1.4 * h  # two panels side by side (one env would be 7 x 4.2)
    with pytest.raises(ValueError, match="3 labels for 2 groups"):
        plot_runs(runs, tmp_path / "d.png", labels=["x", "y", "z"])
    with pytest.raises(ValueError, match="'stat'"):
        plot_runs(runs, tmp_path / "d.png", stat="median")


def test_aggregate_summary_of_runs(tmp_path):
    from critic.aggregate import aggregate_runs, write_aggregate

    runs = []
    for k, (final, solved) in enumerate([(500, 30_000), (480, 50_000), (120, None), (499, 40_000)]):
        d = _run(tmp_path, f"m{k}", seed=k)
        s = json.loads((d / "summary.json").read_text())
        s.update(final_eval={"mean": final, "std": 0, "episodes": 10}, env_steps=100_000,
                 solved_at={"env_steps": solved} if solved else None)
        (d / "summary.json").write_text(json.dumps(s))
        runs.append(d)
    (tmp_path / "empty").mkdir()
    agg = aggregate_runs([*runs, tmp_path / "empty"])
    assert agg["n_runs"] == 5 and [r["seed"] for r in agg["runs"][:4]] == [0, 1, 2, 3]
    assert agg["final"]["n"] == 4 and agg["final"]["excluded"] == 1  # the run without evaluations
    assert agg["final"]["median"] == pytest.approx(489.5)
    assert agg["final"]["iqm"] == pytest.approx((480 + 499) / 2)  # 120 and 500 trimmed
    lo, hi = agg["final"]["iqm_ci"]
    assert lo <= agg["final"]["iqm"] <= hi
    assert agg["solved_at"]["n"] == 3 and agg["solved_at"]["unsolved"] == 2 and agg["solved_at"]["median"] == 40_000
    assert agg["threshold"] == 475.0
    path = write_aggregate(tmp_path / "group", runs)
    assert json.loads(path.read_text())["final"]["n"] == 4 and (tmp_path / "group" / "curve.png").is_file()
