"""critic.track: Weights & Biases tracking (``--track``), offline only: nothing here reaches the network.

One real offline run is read back from its ``.wandb`` file (history, summary, config, the
``env_steps`` x-axis and the curve image); the other tests replace ``wandb.init`` by a fake
run that records its calls. wandb's service process is torn down at the end of the module and
checked to be gone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import wandb  # in the `test` extra: a missing wandb fails here, it is not skipped

from critic.track import HINT, WandbTracker, add_track_arguments, make_tracker, tracker_kwargs


def _service_pids() -> list[int]:
    """wandb-core service processes started by this test process."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(c.endswith(b"wandb-core") for c in cmd) and str(os.getpid()).encode() in cmd:
                out.append(int(d.name))
    return out


@pytest.fixture(scope="module", autouse=True)
def _no_service_left():
    yield
    wandb.teardown()
    deadline = time.monotonic() + 5
    while _service_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    if sys.platform.startswith("linux"):
        assert not _service_pids(), "wandb-core service still running after wandb.teardown()"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """wandb offline, silent, every directory under tmp_path, and a dead base URL should
    anything try the network anyway. Returns WANDB_DIR."""
    wdir = tmp_path / "wandb_dir"
    wdir.mkdir()
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(wdir), "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true",
           "WANDB_DISABLE_CODE": "true", "WANDB_CONSOLE": "off", "WANDB__DISABLE_STATS": "true",
           "WANDB__DISABLE_META": "true", "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
           "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"), "WANDB_DATA_DIR": str(tmp_path / "wandb_data"),
           "WANDB_ARTIFACT_DIR": str(tmp_path / "wandb_artifacts"), "WANDB_BASE_URL": "http://127.0.0.1:9",
           "WANDB_ERROR_REPORTING": "false"}  # no Sentry
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    wandb.teardown()  # wandb reads its settings (WANDB_DIR ...) once per service: start afresh
    yield wdir
    wandb.teardown()


def _run_dir(tmp_path: Path) -> Path:
    """A run directory as ``finish`` leaves it: summary.json and curve.png."""
    import matplotlib.pyplot as plt
    d = tmp_path / "ppo-CartPole-v1-seed0"
    d.mkdir()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(d / "curve.png")
    plt.close(fig)
    (d / "summary.json").write_text(json.dumps({
        "algo": "ppo", "env_id": "CartPole-v1", "seed": 0, "env_steps": 200, "updates": 2,
        "final_eval": {"mean": 21.5, "std": 2.0, "episodes": 5}, "solved_at": None, "config": {"lr": 3e-4}}))
    return d


METRICS = [
    {"env_steps": 100, "wall_seconds": 0.5, "train_seconds": 0.4, "updates": 1, "episodes": 3,
     "env/episodic_return": "", "perf/sps": 250.0, "loss/actor": 0.25},
    {"env_steps": 200, "wall_seconds": 1.0, "train_seconds": 0.8, "updates": 2, "episodes": 7,
     "env/episodic_return": 18.5, "perf/sps": 250.0, "loss/actor": 0.125},
]
EVAL = {"env_steps": 200, "wall_seconds": 1.1, "train_seconds": 0.8, "mean": 21.5, "std": 2.0, "episodes": 5}


# --- reading an offline run back ---------------------------------------------------------------
# The .wandb file is a LevelDB-style log of wandb's protobuf ``Record``s: a 7-byte header (":W&B",
# magic, version), then 32 KiB blocks of chunks, each with a 7-byte header (crc32, length, type).

def _records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"unknown .wandb header {data[:7]!r}: the reader in this test needs updating"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the block's tail is padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and n == 0:
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # FULL, LAST
            r = pb.Record()
            r.ParseFromString(buf)
            buf = b""
            yield r


def _item(i) -> tuple[str, object]:
    return (i.key or "/".join(i.nested_key)), json.loads(i.value_json)


def read_offline_run(run_path: Path, timeout: float = 10.0) -> dict:
    """The records of an offline run. ``finish()`` can return before wandb's service has
    written the file out (seen under load), so wait for its last record, the exit record."""
    (f,) = run_path.glob("run-*.wandb")
    deadline = time.monotonic() + timeout
    while True:
        try:
            records = list(_records(f))
        except Exception:  # a record half written
            if time.monotonic() > deadline:
                raise
            records = []
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    out: dict = {"history": [], "summary": {}, "config": {}, "metrics": []}
    for r in records:
        kind = r.WhichOneof("record_type")
        if kind == "history":
            out["history"].append(dict(_item(i) for i in r.history.item))
        elif kind == "summary":
            out["summary"].update(_item(i) for i in r.summary.update)
        elif kind == "config":
            out["config"].update(_item(i) for i in r.config.update)
        elif kind == "run":
            out["config"].update(_item(i) for i in r.run.config.update)
            out["name"], out["project"] = r.run.display_name, r.run.project
            out["group"], out["tags"] = r.run.run_group, list(r.run.tags)
        elif kind == "metric":
            out["metrics"].append((r.metric.name or r.metric.glob_name, r.metric.step_metric))
        elif kind == "exit":
            out["exit_code"] = r.exit.exit_code
    return out


def test_an_offline_run_logs_metrics_evals_a_scalar_the_curve_and_the_summary(tmp_path, offline, capsys):
    run_dir = _run_dir(tmp_path)
    t0 = time.perf_counter()
    tr = make_tracker(True, run_dir, {"algo": "ppo", "lr": 3e-4}, project="critic-test", group="g1",
                      tags=("a", "b"))
    assert tr is not None and tr.active
    if sys.platform.startswith("linux"):
        assert _service_pids(), "the check for a leftover wandb-core finds none while a run is open"
    for row in METRICS:
        tr.log_metrics(row)
    tr.log_eval(EVAL)
    tr.log_scalar("custom/x", 1.5, 200)
    tr.close(run_dir)
    seconds = time.perf_counter() - t0
    assert not tr.active
    tr.close(run_dir)  # twice: nothing
    tr.log_metrics(METRICS[0])  # after close: nothing
    assert capsys.readouterr().err == ""

    (run_path,) = (offline / "wandb").glob("offline-run-*")
    got = read_offline_run(run_path)
    assert got["name"] == run_dir.name and got["project"] == "critic-test"
    assert got["group"] == "g1" and got["tags"] == ["a", "b"]
    assert got["config"]["algo"] == "ppo" and got["config"]["run_dir"] == str(run_dir)
    assert ("env_steps", "") in got["metrics"] and ("*", "env_steps") in got["metrics"]

    user = lambda h: {k: v for k, v in h.items() if not k.startswith("_")}  # noqa: E731
    hist = [user(h) for h in got["history"]]
    assert hist[0] == {k: v for k, v in METRICS[0].items() if v != ""}  # the empty return is left out
    assert hist[1] == METRICS[1]
    # the evaluation shares env_steps 200 with the second metrics row: its own row, nothing lost
    assert hist[2] == {"env_steps": 200, "eval/mean_return": 21.5, "eval/std_return": 2.0, "eval/episodes": 5,
                       "wall_seconds": 1.1, "train_seconds": 0.8}
    assert hist[3] == {"env_steps": 200, "custom/x": 1.5}
    assert hist[4]["curve/_type"] == "image-file" and len(hist) == 5  # an image is logged as nested keys
    assert hist[4]["env_steps"] == 200  # at the last env step logged
    assert [h["_step"] for h in got["history"]] == list(range(5))
    assert (run_path / "files" / hist[4]["curve/path"]).is_file()

    s = got["summary"]
    assert s["final_eval"] == {"mean": 21.5, "std": 2.0, "episodes": 5} and s["algo"] == "ppo"
    assert s["eval/mean_return"] == 21.5 and "config" not in s
    assert got["exit_code"] == 0
    assert seconds < 15, f"an offline run took {seconds:.1f} s"


def test_mode_disabled_logs_nothing_and_writes_nothing(tmp_path, offline, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tr = make_tracker("disabled", tmp_path / "run", {"a": 1})
    assert tr is not None
    tr.log_metrics(METRICS[0])
    tr.log_eval(EVAL)
    tr.close()
    assert not list(tmp_path.rglob("*-run-*")) and capsys.readouterr().err == ""


# --- a fake run --------------------------------------------------------------------------------

class FakeRun:
    def __init__(self, fail_on: str | None = None, **init):
        self.init, self.calls, self.summary, self.fail_on = init, [], {}, fail_on

    def _call(self, name, *a, **kw):
        self.calls.append((name, a, kw))
        if name == self.fail_on:
            raise RuntimeError(f"{name} broke\nsecond line")

    def define_metric(self, *a, **kw):
        self._call("define_metric", *a, **kw)

    def log(self, *a, **kw):
        self._call("log", *a, **kw)

    def finish(self, *a, **kw):
        self._call("finish", *a, **kw)


@pytest.fixture
def fake(monkeypatch, offline):
    runs: list[FakeRun] = []
    state = {"fail_on": None}

    def init(**kw):
        if state["fail_on"] == "init":
            raise wandb.errors.UsageError("api_key not configured (no-tty)")
        runs.append(FakeRun(state["fail_on"], **kw))
        return runs[-1]

    monkeypatch.setattr(wandb, "init", init)
    return runs, state


def test_init_arguments_step_metric_and_config(tmp_path, fake):
    runs, _ = fake
    cfg = {"algo": "sac"}
    tr = make_tracker(True, tmp_path / "my-run", cfg, project="p", entity="team", group="grp", tags=["x"])
    (run,) = runs
    assert run.init == {"project": "p", "entity": "team", "name": "my-run", "group": "grp", "tags": ["x"],
                        "config": {"algo": "sac", "run_dir": str(tmp_path / "my-run")}, "mode": None}
    assert cfg == {"algo": "sac"}  # the caller's dict is not changed
    assert run.calls == [("define_metric", ("env_steps",), {}), ("define_metric", ("*",), {"step_metric": "env_steps"})]
    assert tr.run is run
    WandbTracker(tmp_path / "r2", {}, name="given", tags=(), mode="offline")
    assert runs[1].init["name"] == "given" and runs[1].init["tags"] is None and runs[1].init["mode"] == "offline"


def test_values_are_plain_finite_numbers(tmp_path, fake):
    import numpy as np
    import torch
    runs, _ = fake
    tr = make_tracker(True, tmp_path / "r", {})
    tr.log_metrics({"env_steps": np.int64(300), "a": np.float32(0.5), "b": torch.tensor(2.0), "c": "",
                    "d": math.nan, "e": "text", "f": True})
    tr.log_scalar("g", math.inf, 300)  # skipped
    tr.log_scalar("h", np.float64(3.0), 300)
    logs = [a[0] for name, a, _ in runs[0].calls if name == "log"]
    assert logs == [{"env_steps": 300, "a": 0.5, "b": 2.0, "f": 1}, {"h": 3.0, "env_steps": 300}]
    assert all(type(v) in (int, float) for d in logs for v in d.values())


def test_close_uploads_the_curve_and_the_summary_then_finishes(tmp_path, fake, capsys):
    runs, _ = fake
    run_dir = _run_dir(tmp_path)
    tr = make_tracker(True, run_dir, {})
    tr.close()  # the run directory given at construction
    run = runs[0]
    (img,) = [a[0]["curve"] for name, a, _ in run.calls if name == "log"]  # no env_steps logged: none given
    assert isinstance(img, wandb.Image)
    assert run.summary["final_eval"]["mean"] == 21.5 and "config" not in run.summary
    assert run.calls[-1] == ("finish", (), {"exit_code": None})
    assert capsys.readouterr().err == ""


def test_close_without_curve_or_summary_just_finishes(tmp_path, fake):
    runs, _ = fake
    tr = make_tracker(True, tmp_path / "empty", {})
    tr.close(tmp_path / "empty", exit_code=255)
    assert [c[0] for c in runs[0].calls] == ["define_metric", "define_metric", "finish"]
    assert runs[0].calls[-1][2] == {"exit_code": 255}


def test_a_wandb_error_warns_once_and_training_goes_on(tmp_path, fake, capsys):
    runs, state = fake
    state["fail_on"] = "log"
    tr = make_tracker(True, tmp_path / "r", {})
    for row in METRICS * 3:  # the training loop keeps calling
        tr.log_metrics(row)
        tr.log_eval(EVAL)
        tr.log_scalar("x", 1.0, row["env_steps"])
    tr.close(_run_dir(tmp_path))
    err = capsys.readouterr().err.splitlines()
    assert err == ["critic: warning: Weights & Biases error while logging metrics (RuntimeError: log broke); "
                   "training continues without tracking"]
    assert not tr.active and tr.failed
    assert [c[0] for c in runs[0].calls] == ["define_metric", "define_metric", "log", "finish"]
    assert runs[0].calls[-1][2] == {"exit_code": 1}  # the run is closed as failed


def test_a_bad_row_is_an_error_like_any_other(tmp_path, fake, capsys):
    tr = make_tracker(True, tmp_path / "r", {})
    tr.log_eval({"mean": 1.0})  # no env_steps
    assert "while logging an evaluation (KeyError" in capsys.readouterr().err and not tr.active


@pytest.mark.parametrize("where", ["init", "define_metric"])
def test_a_run_that_cannot_start_is_no_tracker(tmp_path, fake, capsys, where):
    runs, state = fake
    state["fail_on"] = where
    assert make_tracker(True, tmp_path / "r", {}) is None
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("critic: warning: Weights & Biases error while starting the run (")
    assert line.endswith("training continues without tracking")
    if where == "define_metric":
        assert runs[0].calls[-1] == ("finish", (), {"exit_code": 1})


def test_without_wandb_make_tracker_is_none_with_one_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    assert make_tracker(True, tmp_path / "r", {}) is None
    captured = capsys.readouterr()
    assert captured.err == HINT + "\n" and captured.out == ""
    assert HINT == ('critic: note: --track needs Weights & Biases: pip install "critic[track]"; '
                    "training without tracking")
    assert make_tracker(False, tmp_path / "r", {}) is None and capsys.readouterr().err == ""  # off: silent


def test_importing_critic_does_not_import_wandb():
    code = "import sys; sys.modules['wandb'] = None; import critic, critic.track, critic.cli; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_modes(tmp_path, fake):
    runs, _ = fake
    make_tracker("offline", tmp_path / "r", {})
    make_tracker(True, tmp_path / "r", {}, mode="online")
    assert [r.init["mode"] for r in runs] == ["offline", "online"]
    with pytest.raises(ValueError, match="invalid wandb mode 'sometimes'"):
        make_tracker("sometimes", tmp_path / "r", {})
    with pytest.raises(ValueError, match="two modes"):
        make_tracker("offline", tmp_path / "r", {}, mode="online")
    with pytest.raises(ValueError, match="invalid wandb mode"):
        WandbTracker(tmp_path / "r", {}, mode="shared")


def test_cli_options():
    p = argparse.ArgumentParser()
    add_track_arguments(p)
    a = p.parse_args([])
    assert (a.track, a.wandb_project, a.wandb_entity, a.wandb_group, a.wandb_tags) == (False, "critic", None, None, [])
    assert tracker_kwargs(a) == {"project": "critic", "entity": None, "group": None, "tags": ()}
    a = p.parse_args(["--track", "--wandb-project", "rl", "--wandb-entity", "me", "--wandb-group", "sweep1",
                      "--wandb-tags", "ppo", "baseline"])
    assert a.track and tracker_kwargs(a) == {"project": "rl", "entity": "me", "group": "sweep1",
                                             "tags": ("ppo", "baseline")}
    assert "--track" in p.format_help() and "critic[track]" in p.format_help()
