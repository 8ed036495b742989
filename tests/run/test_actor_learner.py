"""`python -m acjax.impala`: bad input, the run directory, checkpoint and resume of the learner,
a stop, and a killed gymnasium worker process."""

from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from acjax.agents.impala.config import ImpalaConfig
from acjax.agents.impala.learner import make_learner
from acjax.agents.impala.loop import initial_state
from acjax.core.config import config_to_dict
from acjax.networks import NetworkConfig
from acjax.run import checkpoint
from acjax.run.actor_learner import restore_learner_state, run_main, train_and_report
from acjax.run.options import RunOptions

SMALL = ["--num-actors", "2", "--num-envs", "4", "--num-steps", "8", "--batch-size", "1",
         "--network.hidden-sizes", "16", "16", "--no-progress", "--eval-episodes", "2",
         "--num-reports", "4"]


@pytest.mark.parametrize(("args", "message"), [
    (["--num-seeds", "3"], "num_seeds=3: python -m acjax.impala trains one agent per process"),
    (["--mode", "sync"], "mode"),
    (["--env", "CartPol-v1"], "CartPole-v1"),
    (["--sweep.learning-rate", "1e-3", "1e-4"],
     "--sweep.learning-rate: python -m acjax.impala trains one agent per process"),
    (["--mode", "a3c", "--batch-size", "2"], "batch_size=2: mode='a3c'"),
    (["--num-devices", "2"], "--num-devices is not supported by python -m acjax.impala"),
    (["--preset", "da2c-mc"], "has no named presets"),
    (["--async-envs"], "async_envs=True steps gymnasium environments"),
    (["--algo", "ppo"], "algo='ppo': python -m acjax.impala trains 'impala'"),
])
def test_bad_input_exits_with_2_and_one_line_before_anything_runs(tmp_path, capsys, args,
                                                                   message):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        run_main(["--run-dir", str(run_dir), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("error: ") or "Invalid choice" in err
    assert not (run_dir / "config.json").exists()


def test_an_existing_run_dir_is_never_overwritten(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit):
        run_main(["--run-dir", str(run_dir), *SMALL])
    assert "already holds files" in capsys.readouterr().err
    assert (run_dir / "keep.txt").read_text() == "mine"


def test_stop_then_resume_continues_from_the_learner_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--run-dir", str(run_dir), "--total-timesteps", str(4 * 8 * 40), *SMALL]
    last = {}

    def record(al, result):
        last["params"] = jax.device_get(result.state.params)
        last["version"] = int(result.state.version)

    config, options = _parse(args + ["--stop-after-steps", str(4 * 8 * 20)])
    stopped = train_and_report(config, options, run_dir=run_dir, observer=record)
    assert stopped["stopped"] and stopped["exit_code"] == 0
    assert stopped["env_steps"] == 4 * 8 * 20
    assert last["version"] == 20
    # The checkpoint holds the learner's state at the stop, bit for bit.
    learner = make_learner(config, config.validate())
    template = initial_state(learner, config, jax.devices()[0])
    state, meta = restore_learner_state(checkpoint.Checkpointer(run_dir, read_only=True),
                                        template, {"config": config_to_dict(config)})
    assert int(state.version) == 20 and meta["progress"]["updates"] == 20
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(last["params"]), strict=True):
        np.testing.assert_array_equal(a, b)

    first = {}

    def record_first(al, result):
        first.setdefault("version", int(result.state.version))

    config2, options2 = _parse(["--run-dir", str(run_dir), "--resume", "--no-progress"])
    assert config2 == config
    summary = train_and_report(config2, options2, run_dir=run_dir, observer=record_first)
    assert first["version"] == 21  # the resumed learner went on from version 20
    assert summary["resumes"] == 1 and summary["env_steps"] == 4 * 8 * 40
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["env_steps"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == 4 * 8 * 40
    assert {"policy_lag_mean", "policy_lag_max", "queue_occupancy", "updates_per_second",
            "rho_mean"} <= set(rows[0])
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["algo"] == "impala" and saved["checkpoints"][-1] == 4 * 8 * 40
    assert json.loads((run_dir / "config.json").read_text())["module"] == "acjax.impala"


def _parse(argv):
    from acjax.agents.impala.presets import impala_preset
    from acjax.run.flags import parse_args

    return parse_args(ImpalaConfig, impala_preset, argv, "", default=_saved(argv))


def _saved(argv):
    if "--resume" not in argv:
        return None
    from acjax.run.checkpoint import load_config

    return load_config(argv[argv.index("--run-dir") + 1])[0]


def test_resume_refuses_changed_flags(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["--run-dir", str(run_dir), "--total-timesteps", str(4 * 8 * 40), *SMALL]
    run_main(args + ["--stop-after-steps", str(4 * 8 * 10)])
    with pytest.raises(SystemExit) as exit_info:
        run_main(["--run-dir", str(run_dir), "--resume", "--learning-rate", "0.5"])
    assert exit_info.value.code == 2
    assert "learning_rate" in capsys.readouterr().err


def _gymnasium_available() -> bool:
    try:
        import gymnasium  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _gymnasium_available(), reason="needs gymnasium")
def test_a_killed_gymnasium_worker_stops_the_run_with_an_error_and_a_checkpoint(tmp_path,
                                                                                 capsys):
    """SIGKILL one AsyncVectorEnv worker process mid-run: the run stops within the timeout
    with exit code 1, a message naming the actor, and a checkpoint it can resume from."""
    run_dir = tmp_path / "run"
    config = dataclasses.replace(
        ImpalaConfig(), env="gymnasium:CartPole-v1", num_actors=1, num_envs=2, num_steps=8,
        batch_size=1, async_envs=True, timeout=5.0, total_timesteps=2 * 8 * 100_000,
        network=NetworkConfig(hidden_sizes=(16, 16)))
    options = RunOptions(progress=False, num_reports=100_000)
    killed = {}

    def kill_one(al, result):
        if "at" not in killed and int(result.state.version) == 5:
            workers = multiprocessing.active_children()
            assert workers, "no worker processes"
            os.kill(workers[0].pid, signal.SIGKILL)
            killed["at"] = time.monotonic()

    summary = train_and_report(config, options, run_dir=run_dir, observer=kill_one)
    elapsed = time.monotonic() - killed["at"]
    assert elapsed < config.timeout + 5
    assert summary["stopped"] and summary["exit_code"] == 1
    assert "actor 0 stopped" in summary["error"]
    err = capsys.readouterr().err
    assert "error: actor 0 stopped" in err and "resume with" in err
    assert checkpoint.Checkpointer(run_dir, read_only=True).latest_step() >= 5 * 16


def test_sigint_stops_with_a_checkpoint_and_exit_130(tmp_path):
    """SIGINT during training: exit 130, one resume line, a checkpoint (CPU subprocess)."""
    run_dir = tmp_path / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "acjax.impala", "--run-dir", str(run_dir),
         "--total-timesteps", "100000000", *SMALL, "--num-reports", "20000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    line = ""
    while time.monotonic() < deadline and not line.startswith("steps"):
        line = proc.stdout.readline().strip()
    assert line.startswith("steps"), proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted (SIGINT)" in out and "--resume" in out
    assert checkpoint.Checkpointer(run_dir, read_only=True).latest_step() > 0
