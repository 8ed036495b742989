"""Checkpoints: exact resume in separate processes, SIGKILL safety, refused and corrupted
checkpoints, and inference from a run directory."""

import csv
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax.run import checkpoint
from acjax.run.checkpoint import Checkpointer, CheckpointError

REPO = pathlib.Path(__file__).resolve().parents[2]
# 100 updates of 4 envs x 16 steps, in 50 chunks of 2 updates (128 env steps each).
TINY = ["--env", "CartPole-v1", "--num-envs", "4", "--num-steps", "16", "--total-timesteps",
        "6400", "--num-reports", "50", "--eval-episodes", "2", "--no-progress"]
TIMING = {"wall_seconds", "steps_per_second"}


def _env(cache: pathlib.Path) -> dict:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path, "PYTHONUNBUFFERED": "1",
            "ACJAX_CACHE_DIR": str(cache)}


def _cli(*args, cache, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "acjax.ppo_a2c", *args], capture_output=True, text=True,
        cwd=cwd, env=_env(cache), timeout=300, check=False,
    )


def _rows(run_dir: pathlib.Path, drop=TIMING) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def _summary(run_dir: pathlib.Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _final_manifest(run_dir: pathlib.Path) -> list[dict]:
    saved = Checkpointer(run_dir, read_only=True)
    return saved.read_meta(saved.latest_step())["leaves"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.getbasetemp() / "jax-cache"  # shared by the session's test modules


@pytest.fixture(scope="module")
def straight(tmp_path_factory, cache) -> pathlib.Path:
    """6400 env steps in one process, evaluating every 1600 (test_run_life.py reuses it)."""
    run_dir = tmp_path_factory.getbasetemp() / "tiny-run"
    if not (run_dir / "summary.json").exists():
        out = _cli(*TINY, "--eval-every", "1600", "--tensorboard", "--run-dir", str(run_dir),
                   cache=cache, cwd=run_dir.parent)
        assert out.returncode == 0, out.stderr[-3000:]
    return run_dir


# ----------------------------------------------------------------------------------------------
# The pure pieces
# ----------------------------------------------------------------------------------------------


def test_config_differences_name_every_field_with_both_values():
    saved = {"config": {"gamma": 0.99, "network": {"hidden_sizes": [64, 64]}, "env": "A"}}
    asked = {"config": {"gamma": 0.9, "network": {"hidden_sizes": [32]}, "env": "A"}}
    diffs = checkpoint.config_differences(saved, asked)
    assert diffs == [
        "config.gamma: 0.99 (saved) vs 0.9 (requested)",
        "config.network.hidden_sizes: [64, 64] (saved) vs [32] (requested)",
    ]
    assert checkpoint.config_differences(saved, saved) == []
    assert "missing (requested)" in checkpoint.config_differences({"a": 1}, {})[0]


def test_manifest_mismatch_names_the_first_differing_leaf():
    def entry(path, shape, dtype="float32"):
        return {"path": path, "shape": shape, "dtype": dtype, "key_impl": None}

    base = [entry(".params['a']", [1, 4]), entry(".key", [1, 2], "uint32")]
    assert checkpoint.manifest_mismatch(base, base) is None
    shape = [entry(".params['a']", [1, 8]), base[1]]
    assert ".params['a'] has shape [1, 8] in the checkpoint but [1, 4]" in (
        checkpoint.manifest_mismatch(shape, base)
    )
    dtype = [base[0], entry(".key", [1, 2], "int32")]
    assert ".key has dtype int32" in checkpoint.manifest_mismatch(dtype, base)
    assert "has 1 leaves but this run's state has 2 (first unmatched: .key in the run)" in (
        checkpoint.manifest_mismatch(base[:1], base)
    )
    renamed = [entry(".params['b']", [1, 4]), base[1]]
    assert "leaf 0 is .params['b'] in the checkpoint" in checkpoint.manifest_mismatch(renamed, base)


def test_layouts_of_whole_agents_convert_and_split_environments_must_match():
    from acjax.run.parallel import Layout

    one = checkpoint.layout_meta(Layout(8, 1, "agents"))
    four = checkpoint.layout_meta(Layout(8, 4, "agents"))
    envs2 = checkpoint.layout_meta(Layout(8, 2, "envs"))
    assert checkpoint.layout_mismatch(one, four) is None
    assert checkpoint.layout_mismatch(envs2, envs2) is None
    problem = checkpoint.layout_mismatch(envs2, one)
    assert "environments split over 2 devices" in problem and "--num-devices 2" in problem
    assert "8 agent(s), this run 4" in checkpoint.layout_mismatch(
        one, checkpoint.layout_meta(Layout(4, 1, "agents"))
    )


def _tree():
    return {
        "params": {"w": np.arange(12, dtype=np.float32).reshape(3, 4)},
        "flag": np.array([True, False]),
        "count": np.array(7, np.int32),
        "key": jax.random.key(3),
        "raw_key": np.asarray(jax.random.PRNGKey(5)),
        "curve": np.array([np.nan, 1.5], np.float64),
        "empty": np.zeros((2, 0), np.float32),
    }


def test_save_restore_round_trip_keeps_every_dtype_key_and_step(tmp_path):
    tree = _tree()
    raw, impls = checkpoint.unwrap_keys(tree)
    host = jax.tree.map(np.asarray, raw)
    saver = Checkpointer(tmp_path, keep=2)
    for step in (10, 2**33, 2**33 + 10):  # env-step counts beyond 2^31 stay exact
        saver.save(step, host, {"note": "x", "nan": float("nan")}, impls)
    saver.wait()
    assert saver.steps() == [2**33, 2**33 + 10]  # keep=2: the oldest was deleted
    paths, leaves = checkpoint.host_leaves(host)
    expected = checkpoint.leaf_manifest(paths, leaves, impls, digests=False)
    restored = Checkpointer(tmp_path, read_only=True).restore(2**33 + 10, expected)
    assert restored.meta["note"] == "x" and restored.meta["nan"] is None
    assert restored.meta["step"] == 2**33 + 10
    back = checkpoint.wrap_keys(jax.tree.unflatten(jax.tree.structure(host), restored.leaves),
                                impls)
    for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(jax.tree.map(np.asarray, raw))):
        assert a.dtype == b.dtype and a.shape == b.shape
    assert back["key"].dtype == tree["key"].dtype
    assert np.array_equal(jax.random.key_data(back["key"]), jax.random.key_data(tree["key"]))
    for name in ("flag", "count", "raw_key", "empty"):
        assert back[name].dtype == tree[name].dtype and np.array_equal(back[name], tree[name])
    assert np.array_equal(back["curve"], tree["curve"], equal_nan=True)
    assert np.array_equal(back["params"]["w"], tree["params"]["w"])
    # A state of another shape is refused, naming the leaf.
    wrong = [dict(e) for e in expected]
    wrong[paths.index("['params']['w']")]["shape"] = [3, 8]
    with pytest.raises(CheckpointError, match=r"\['params'\]\['w'\] has shape \[3, 4\] in the "
                                              r"checkpoint but \[3, 8\] in this run"):
        Checkpointer(tmp_path, read_only=True).restore(2**33 + 10, wrong)


def test_half_written_steps_are_never_listed(tmp_path):
    saver = Checkpointer(tmp_path, keep=3)
    host = {"w": np.ones(3, np.float32)}
    saver.save(5, host, {})
    saver.wait()
    directory = checkpoint.checkpoint_dir(tmp_path)
    # What a process killed mid-save leaves: Orbax's temporary directory of the next step.
    shutil.copytree(directory / "5", directory / "9.orbax-checkpoint-tmp")
    assert Checkpointer(tmp_path, read_only=True).steps() == [5]
    # A writer lists only complete steps and removes the leftover before its first save.
    writer = Checkpointer(tmp_path, keep=3)
    assert writer.steps() == [5]
    writer.save(6, host, {})
    writer.wait()
    assert writer.steps() == [5, 6]
    assert not (directory / "9.orbax-checkpoint-tmp").exists()


def test_corrupted_checkpoints_raise_naming_the_problem(tmp_path):
    saver = Checkpointer(tmp_path, keep=3)
    host = {"a": np.arange(4096, dtype=np.float32), "b": np.ones(8, np.float32)}
    saver.save(1, host, {})
    saver.save(2, host, {})
    saver.wait()
    step = checkpoint.checkpoint_dir(tmp_path) / "2"
    data = max((p for p in (step / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
               key=lambda p: p.stat().st_size)
    original = data.read_bytes()
    flipped = bytearray(original)
    for i in range(len(flipped) // 2, len(flipped) // 2 + 64):
        flipped[i] ^= 0xFF
    data.write_bytes(bytes(flipped))
    reader = Checkpointer(tmp_path, read_only=True)
    with pytest.raises(CheckpointError, match=r"corrupted.*(SHA-256|cannot be read).*step 1"):
        reader.restore(2)
    data.write_bytes(original[: len(original) // 3])
    with pytest.raises(CheckpointError, match=r"corrupted or incomplete: its arrays cannot be read"):
        reader.restore(2)
    data.write_bytes(original)
    assert np.array_equal(reader.restore(2).leaves[0], host["a"])
    (step / "meta" / "metadata").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"its meta cannot be read"):
        reader.restore(2)
    assert np.array_equal(reader.restore(1).leaves[1], host["b"])  # the older one still restores


# ----------------------------------------------------------------------------------------------
# Runs in separate processes
# ----------------------------------------------------------------------------------------------


def test_resume_in_a_new_process_is_bit_identical(straight, cache, tmp_path):
    split = tmp_path / "split"
    first = _cli(*TINY, "--eval-every", "1600", "--checkpoint-every", "1600",
                 "--stop-after-steps", "3200", "--run-dir", str(split), cache=cache, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "stopped after 3,200 of 6,400 env steps" in first.stdout
    assert not (split / "summary.json").exists()
    assert Checkpointer(split, read_only=True).steps() == [1664, 3200]  # whole chunks of 128
    assert len(_rows(split)) == 25
    second = _cli("--run-dir", str(split), "--resume", cache=cache, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from the checkpoint at 3,200 env steps" in second.stdout

    a, b = _summary(straight), _summary(split)
    print(f"params_fingerprint straight {a['params_fingerprint']}, "
          f"stopped at 3200 and resumed {b['params_fingerprint']}")
    assert a["params_fingerprint"] == b["params_fingerprint"]
    assert (a["resumes"], b["resumes"]) == (0, 1)
    assert a["eval_return_per_seed"] == b["eval_return_per_seed"]
    assert a["final_train_return"] == b["final_train_return"]
    # Every leaf of the final state (parameters, optimizer moments and count, environments,
    # keys, normalisers) has the same bytes.
    ma, mb = _final_manifest(straight), _final_manifest(split)
    assert [e["path"] for e in ma] == [e["path"] for e in mb]
    assert any(e["path"].startswith(".opt_state") for e in ma)
    assert [e["sha256"] for e in ma] == [e["sha256"] for e in mb]
    # metrics.csv: the same rows (timing aside), the evaluations included, none repeated.
    rows_a, rows_b = _rows(straight), _rows(split)
    assert len(rows_a) == 50 and rows_a == rows_b
    assert [r["eval_return"] != "" for r in rows_a].count(True) == 4


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_at_a_chunk_with_a_checkpoint_and_resumes_bit_identically(
    signum, code, straight, cache, tmp_path, interrupted
):
    run_dir = tmp_path / "interrupted"
    rc, out, err, _ = interrupted(["acjax.ppo_a2c", *TINY, "--eval-every", "1600",
                                   "--run-dir", str(run_dir)],
                                  env=_env(cache), cwd=tmp_path, signals=[signum])
    assert rc == code, err[-3000:]
    assert "Traceback" not in err and "Traceback" not in out
    name = signal.Signals(signum).name
    assert f"{name}: stopping after the current chunk" in err
    line = [ln for ln in out.splitlines() if ln.startswith(f"interrupted ({name}) after ")]
    assert len(line) == 1, out
    resume = line[0].split("resume with: ")[1].split()
    assert resume == ["python", "-m", "acjax.ppo_a2c", "--run-dir", str(run_dir), "--resume"]
    stopped_at = Checkpointer(run_dir, read_only=True).steps()[-1]
    assert f"after {stopped_at:,} of 6,400 env steps, checkpoint saved" in line[0]
    assert 0 < stopped_at < 6400 and not (run_dir / "summary.json").exists()
    again = _cli(*resume[3:], cache=cache, cwd=tmp_path)  # the line's own command
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from the checkpoint at {stopped_at:,} env steps" in again.stdout
    assert _summary(run_dir)["params_fingerprint"] == _summary(straight)["params_fingerprint"]
    assert _rows(run_dir) == _rows(straight)


def test_a_second_signal_stops_at_once(cache, tmp_path, interrupted):
    run_dir = tmp_path / "twice"
    # A long run: the first signal alone would wait for the chunk, the second must not.
    rc, _, err, seconds = interrupted(
        ["acjax.ppo_a2c", *TINY, "--total-timesteps", "640000", "--num-reports", "5",
         "--run-dir", str(run_dir)],
        env=_env(cache), cwd=tmp_path, signals=[signal.SIGINT, signal.SIGINT],
    )
    assert rc == 130 and "Traceback" not in err
    assert "SIGINT again: stopping at once" in err
    assert seconds < 5
    assert not (run_dir / "summary.json").exists()


def test_without_checkpoints_an_interrupted_run_says_what_is_lost(cache, tmp_path,
                                                                  interrupted):
    run_dir = tmp_path / "nockpt"
    rc, out, err, _ = interrupted(["acjax.ppo_a2c", *TINY, "--no-checkpoints",
                                   "--run-dir", str(run_dir)],
                                  env=_env(cache), cwd=tmp_path, signals=[signal.SIGTERM])
    assert rc == 143 and "Traceback" not in err
    assert "checkpoints are off (--no-checkpoints), so this run's" in out
    assert "env steps" in out and "are lost" in out
    assert not any(checkpoint.checkpoint_dir(run_dir).glob("*"))
    refused = _cli(*TINY, "--no-checkpoints", "--checkpoint-every", "128", "--run-dir",
                   str(tmp_path / "refused"), cache=cache, cwd=tmp_path)
    assert refused.returncode == 2
    assert "--checkpoint-every needs checkpoints, but --no-checkpoints" in refused.stderr


def test_resume_refuses_flags_that_change_the_run(straight, cache, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(straight, copy)
    (copy / "summary.json").unlink()
    cases = [
        (["--run-dir", str(copy), "--resume", "--network.hidden-sizes", "32", "--gamma", "0.9"],
         ["gamma, network.hidden_sizes",
          "config.network.hidden_sizes: [64, 64] (saved) vs [32] (requested)"]),
        (["--run-dir", str(copy), "--resume", "--num-seeds", "2"], ["num_seeds: 1 (saved)"]),
        (["--resume"], ["needs the run to continue: pass --run-dir"]),
        (["--run-dir", str(tmp_path / "nothing"), "--resume"], ["holds no run to resume"]),
        (["--run-dir", str(straight), "--resume"], ["holds a finished run"]),
    ]
    for args, needles in cases:
        out = _cli(*args, cache=cache, cwd=tmp_path)
        assert out.returncode == 2, (args, out.stderr[-2000:])
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
        for needle in needles:
            assert needle in out.stderr, (needle, out.stderr)


def _fake_step(run_dir: pathlib.Path, change) -> int:
    """Writes the latest checkpoint again one step later, after `change(meta, leaves)`."""
    reader = Checkpointer(run_dir, read_only=True)
    restored = reader.restore(reader.latest_step())
    meta, leaves = restored.meta, list(restored.leaves)
    change(meta, leaves)
    keep = {k: meta[k] for k in ("identity", "layout", "progress", "host", "versions")}
    writer = Checkpointer(run_dir, keep=10)
    step = restored.step + 1
    tree = {e["path"]: x for e, x in zip(meta["leaves"], leaves, strict=True)}
    writer.save(step, tree, keep)
    writer.wait()
    writer.close()
    return step


def test_checkpoints_of_another_config_or_corrupted_are_refused_by_resume(
    straight, cache, tmp_path
):
    def resume_error(run_dir) -> str:
        out = _cli("--run-dir", str(run_dir), "--resume", cache=cache, cwd=tmp_path)
        assert out.returncode == 2, out.stderr[-2000:]
        assert "Traceback" not in out.stderr
        return out.stderr

    # A checkpoint written by another network shape and algorithm.
    other = tmp_path / "other"
    shutil.copytree(straight, other)
    (other / "summary.json").unlink()

    def other_config(meta, leaves):
        meta["identity"]["config"]["network"]["hidden_sizes"] = [32]
        meta["identity"]["config"]["algo"] = "a2c"

    step = _fake_step(other, other_config)
    err = resume_error(other)
    assert f"checkpoints/{step} was written by a different configuration" in err
    assert "config.algo: 'a2c' (checkpoint) vs 'ppo' (this run)" in err
    assert "config.network.hidden_sizes: [32] (checkpoint) vs [64, 64] (this run)" in err

    # Same declared configuration, but arrays of another structure: the first leaf is named.
    shaped = tmp_path / "shaped"
    shutil.copytree(straight, shaped)
    (shaped / "summary.json").unlink()
    _fake_step(shaped, lambda meta, leaves: None)  # tree keyed by path: a different structure
    err = resume_error(shaped)
    assert "does not fit this run's state: leaf 0 is" in err

    # A corrupted checkpoint: named, never partially restored.
    broken = tmp_path / "broken"
    shutil.copytree(straight, broken)
    (broken / "summary.json").unlink()
    latest = Checkpointer(broken, read_only=True).latest_step()
    files = [p for p in (checkpoint.checkpoint_dir(broken) / str(latest) / "state").rglob("*")
             if p.is_file() and p.parent.name == "d"]
    target = max(files, key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 32):
        data[i] ^= 0x5A
    target.write_bytes(bytes(data))
    err = resume_error(broken)
    assert f"checkpoints/{latest} is corrupted" in err
    assert "does not match the SHA-256 saved with it" in err or "cannot be read" in err
    assert not (broken / "summary.json").exists()


def test_sigkill_at_random_moments_never_leaves_a_checkpoint_that_resume_trusts(
    straight, cache, tmp_path
):
    run_dir = tmp_path / "killed"
    args = [*TINY, "--checkpoint-every", "128", "--eval-every", "1600", "--run-dir", str(run_dir)]
    rng = random.Random(0)
    kills, partial, latest_steps = 0, 0, []
    deadline = time.monotonic() + 90
    while kills < 5 and time.monotonic() < deadline:
        resume = ["--resume"] if (run_dir / "config.json").exists() else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "acjax.ppo_a2c", *args, *resume], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, cwd=tmp_path, env=_env(cache),
        )
        for line in proc.stdout:  # the loop has started: checkpoints are being written
            if line.startswith("steps"):
                break
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if (run_dir / "summary.json").exists():
            break  # finished before the kill
        kills += 1
        directory = checkpoint.checkpoint_dir(run_dir)
        names = [p.name for p in directory.iterdir()] if directory.exists() else []
        partial += any("tmp" in n for n in names)
        reader = Checkpointer(run_dir, read_only=True) if directory.exists() else None
        steps = reader.steps() if reader else []
        assert all(str(s) in names for s in steps)
        if steps:  # the newest complete step restores, every digest checked
            restored = reader.restore(steps[-1])
            assert restored.meta["progress"]["env_steps"] == steps[-1]
            latest_steps.append(steps[-1])
    print(f"SIGKILLs: {kills}, of which {partial} left a half-written step behind; "
          f"latest complete steps after each: {latest_steps}")
    assert kills >= 3 and latest_steps == sorted(latest_steps)
    done = _cli(*args, "--resume", cache=cache, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # Killed and resumed again and again, the run still equals the uninterrupted one.
    assert _summary(run_dir)["params_fingerprint"] == _summary(straight)["params_fingerprint"]
    assert _rows(run_dir) == _rows(straight)


def test_load_policy_rebuilds_the_trained_greedy_policy(straight):
    from acjax.agents.common import evaluate_policy
    from acjax.envs import make_env
    from acjax.run.parallel import agent_keys

    policy = checkpoint.load_policy(straight)
    obs = jnp.zeros((5, 4), jnp.float32)
    actions = policy(obs, jax.random.PRNGKey(0))
    assert actions.shape == (5,) and actions.dtype == jnp.int32
    assert policy(obs[0], jax.random.PRNGKey(0)).shape == ()
    # The greedy policy replays the run's own final evaluation (same keys, same episodes).
    env, env_params = make_env("CartPole-v1")
    _, eval_keys = agent_keys(np.array([0]))
    returns, _ = jax.jit(
        lambda k: evaluate_policy(lambda o, kk: policy(o, kk), env, env_params, k,
                                  num_episodes=2, max_steps=500)
    )(eval_keys[0])
    assert float(np.mean(returns)) == pytest.approx(_summary(straight)["eval_return_mean"])
    with pytest.raises(CheckpointError, match=r"agent=3 is out of range; the run has 1"):
        checkpoint.load_policy(straight, agent=3)
    with pytest.raises(CheckpointError, match=r"has no config.json"):
        checkpoint.load_policy(straight / "checkpoints")


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity") else True,
    reason="needs two cores: a lone agent is split over one CPU device per core",
)
def test_lone_agent_with_large_minibatches_splits_its_envs_and_resumes_so(cache, tmp_path):
    # 64 envs x 128 steps in one minibatch: 8,192 samples per SGD step, so the command line
    # splits the environments over two CPU devices (acjax.cpu.sizing.data_parallel_devices) and
    # records that in config.json, which a resumed run follows.
    run = tmp_path / "lone"
    args = ["--env", "CartPole-v1", "--num-envs", "64", "--num-steps", "128",
            "--num-minibatches", "1", "--update-epochs", "1", "--total-timesteps", "32768",
            "--num-reports", "4", "--eval-episodes", "2", "--no-progress"]
    first = _cli(*args, "--checkpoint-every", "8192", "--stop-after-steps", "16384",
                 "--run-dir", str(run), cache=cache, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "environments split 2 ways" in first.stdout, first.stdout[-2000:]
    assert json.loads((run / "config.json").read_text())["run"]["cpu_devices"] == 2
    second = _cli("--run-dir", str(run), "--resume", cache=cache, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = _summary(run)
    assert (summary["num_devices"], summary["device_split"], summary["resumes"]) == (2, "envs", 1)
    assert len(_rows(run)) == 4
