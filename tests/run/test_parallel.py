"""Seeds, sweeps and devices: layouts, device-count invariance, multi-process runs, CLI.

Multi-device runs use CPU devices made with `XLA_FLAGS=--xla_force_host_platform_device_count`,
which must be set before JAX starts, hence the subprocesses.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from acjax.core import collectives
from acjax.run import parallel

REPO = str(pathlib.Path(__file__).resolve().parents[2])


def _env(devices: int) -> dict[str, str]:
    path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p)
    flags = f"--xla_force_host_platform_device_count={devices}"
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": path, "XLA_FLAGS": flags}


def _python(code: str, devices: int, cwd) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        cwd=cwd, env=_env(devices), timeout=600, check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cli(*args, devices: int, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "acjax.ppo_a2c", *args, "--no-progress",
         "--no-compilation-cache"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=_env(devices),
    )


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _load_params(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# ----------------------------------------------------------------------------------------------
# Layout checks (one device in this process)
# ----------------------------------------------------------------------------------------------


def test_layout_errors_name_the_field_and_the_fix():
    with pytest.raises(ValueError, match=r"num_devices=2 but this process sees 1 .* --num-devices 1"):
        parallel.choose_layout(num_agents=1, num_envs=16, num_devices=2)
    with pytest.raises(ValueError, match=r"num_devices=0 must be a positive integer"):
        parallel.choose_layout(num_agents=1, num_envs=16, num_devices=0)
    with pytest.raises(ValueError, match=r"device_split='rows'"):
        parallel.choose_layout(num_agents=1, num_envs=16, split="rows")
    layout = parallel.choose_layout(num_agents=5, num_envs=7)
    assert layout == parallel.Layout(5, 1, "agents", 1) and layout.data_shards == 1


@pytest.mark.parametrize(
    "kw, pattern",
    [
        (dict(coordinator_address="127.0.0.1:1234"), r"missing --num-processes, --process-id"),
        (dict(coordinator_address="h:1", num_processes=2, process_id=2),
         r"process_id=2 must lie in \[0, num_processes=2\)"),
        (dict(coordinator_address="h:1", num_processes=0, process_id=0), r"num_processes=0"),
        (dict(coordinator_address="localhost", num_processes=2, process_id=0),
         r"coordinator_address='localhost' must be host:port"),
    ],
)
def test_distributed_options_are_checked(kw, pattern, monkeypatch):
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    with pytest.raises(ValueError, match=pattern):
        parallel.DistributedOptions(**kw).validate()
    assert not parallel.DistributedOptions().requested


def test_shard_keys_follow_the_global_index():
    import jax

    key = jax.random.PRNGKey(3)
    whole = collectives.shard_keys(key, 8, None)
    halves = jax.vmap(lambda _: collectives.shard_keys(key, 8, "d"), axis_name="d")(np.arange(2))
    np.testing.assert_array_equal(np.asarray(halves).reshape(8, 2), np.asarray(whole))
    x = np.arange(24.0).reshape(8, 3)
    mu, var = jax.vmap(lambda s: collectives.batch_moments(s, "d"), axis_name="d")(x.reshape(2, 4, 3))
    np.testing.assert_allclose(mu[0], x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(var[1], x.var(0), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# 1, 2, 4, 8 devices give the same agent
# ----------------------------------------------------------------------------------------------

EQUIVALENCE = """
import dataclasses, json
import acjax.cpu
acjax.cpu.apply()
import jax, numpy as np
from acjax.run import parallel
from acjax.ppo_a2c import make_train
from acjax.ppo_a2c import ppo_a2c_preset

def train(cfg, seeds, devices, split):
    layout = parallel.choose_layout(num_agents=len(seeds), num_envs=cfg.num_envs,
                                    num_devices=devices, split=split)
    runner = parallel.make_runner(make_train, cfg, layout, num_reports=1, eval_episodes=1)
    keys, _ = parallel.agent_keys(np.asarray(seeds))
    hp = parallel.stack_agents(jax.tree.map(lambda x: x[None], cfg.hyperparams()), len(seeds))
    state = runner.init(keys, hp)
    state, metrics = runner.chunk(state, hp)
    return jax.device_get(state.params), jax.device_get(runner.agent_state(state).params), metrics

def maxdiff(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

out = {}
# PPO with observation normalisation and reward scaling: every statistic is shared.
cfg = dataclasses.replace(ppo_a2c_preset("CartPole-v1", "ppo"), total_timesteps=16 * 64 * 3,
                          normalize_observations=True, scale_rewards=True)
_, ref, ref_metrics = train(cfg, [0], 1, "envs")
for n in (2, 4, 8):
    replicas, params, metrics = train(cfg, [0], n, "envs")
    leaves = jax.tree.leaves(replicas)
    out[f"envs_{n}_replicas_equal"] = all(
        np.array_equal(leaf[i], leaf[0]) for leaf in leaves for i in range(n))
    out[f"envs_{n}_maxdiff"] = maxdiff(params, ref)
    out[f"envs_{n}_episodes_equal"] = bool(
        np.array_equal(metrics["episode_count"], ref_metrics["episode_count"]))
# Seeds spread over devices: the same agents as on one device.
seeds = list(range(8))
_, ref, _ = train(cfg, seeds, 1, "agents")
for n in (8,):
    _, params, _ = train(cfg, seeds, n, "agents")
    out[f"agents_{n}_maxdiff"] = maxdiff(params, ref)
try:
    parallel.choose_layout(num_agents=1, num_envs=12, num_devices=8, split="envs")
except ValueError as err:
    out["indivisible"] = str(err)
try:
    parallel.choose_layout(num_agents=6, num_envs=16, num_devices=4, split="agents")
except ValueError as err:
    out["agents_indivisible"] = str(err)
print(json.dumps(out))
"""


def test_device_counts_give_the_same_parameters(tmp_path):
    out = _python(EQUIVALENCE, devices=8, cwd=tmp_path)
    print("max |params(N devices) - params(1 device)|:",
          {k: v for k, v in out.items() if k.endswith("maxdiff")})
    for n in (2, 4, 8):
        assert out[f"envs_{n}_replicas_equal"], n  # replicas bit-identical on every device
        assert out[f"envs_{n}_maxdiff"] < 1e-4, out
        assert out[f"envs_{n}_episodes_equal"], n  # same episodes: the same random streams
    assert out["agents_8_maxdiff"] < 1e-4, out
    assert "num_envs=12 is not divisible by the 8 devices" in out["indivisible"]
    assert "agents (6 = seeds x sweep settings)" in out["agents_indivisible"]


# ----------------------------------------------------------------------------------------------
# The command line: devices, two processes, sweeps
# ----------------------------------------------------------------------------------------------

COMMON = ["--env", "CartPole-v1", "--total-timesteps", "4096", "--num-reports", "2",
          "--eval-episodes", "2", "--normalize-observations"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_train_one_agent_like_one_process(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    run = tmp_path / "two"
    procs = [
        _cli(*COMMON, "--run-dir", str(run), "--coordinator-address", address,
             "--num-processes", "2", "--process-id", str(i), "--checkpoint-every", "512",
             devices=1, cwd=tmp_path)
        for i in range(2)
    ]
    single = _cli(*COMMON, "--run-dir", str(tmp_path / "one"), "--device-split", "envs",
                  devices=2, cwd=tmp_path)
    results = [_finish(p) for p in procs]
    for out in results:
        assert out.returncode == 0, out.stderr[-4000:]
    assert _finish(single).returncode == 0
    plain = _finish(_cli(*COMMON, "--run-dir", str(tmp_path / "plain"), devices=1, cwd=tmp_path))
    assert plain.returncode == 0, plain.stderr[-4000:]

    first = json.loads((run / "summary.json").read_text())
    second = json.loads((run / "summary-process1.json").read_text())
    same_batch = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert first["num_processes"] == 2 and first["device_split"] == "envs"
    # Both processes end with bit-identical parameters, equal to one process with 2 devices.
    assert first["params_fingerprint"] == second["params_fingerprint"]
    assert first["params_fingerprint"] == same_batch["params_fingerprint"]
    # ... and, up to float rounding, to one process with one device and the same global batch.
    a = _load_params(run / "params.npz")
    b = _load_params(tmp_path / "plain" / "params.npz")
    assert a.keys() == b.keys()
    diff = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    print(f"max |params(2 processes) - params(1 process, 1 device)| = {diff:.2e}")
    assert diff < 1e-4
    # Each process saved its own checkpoints, both complete, none left half-written (the
    # processes' saves overlap in time and share one coordination service).
    for name in ("checkpoints", "checkpoints-process1"):
        assert sorted(p.name for p in (run / name).iterdir()) == ["2048", "4096"], name


def test_cli_devices_and_sweeps(tmp_path):
    run = tmp_path / "sweep"
    out = _finish(_cli(*COMMON, "--algo", "a2c", "--num-steps", "8", "--update-epochs", "1",
                       "--num-minibatches", "1", "--sweep.lr", "1e-4", "1e-3",
                       "--sweep.ent-coef", "0", "0.01", "--num-seeds", "2", "--run-dir", str(run),
                       devices=4, cwd=tmp_path))
    assert out.returncode == 0, out.stderr[-4000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["num_settings"] == 4 and summary["num_seeds"] == 2
    assert len(summary["eval_return_per_seed"]) == 8
    assert summary["num_devices"] == 4 and summary["device_split"] == "agents"
    assert [row["learning_rate"] for row in summary["sweep"]] == [1e-4, 1e-4, 1e-3, 1e-3]
    table = (run / "sweep.csv").read_text().splitlines()
    assert table[0].startswith("learning_rate,ent_coef,num_seeds,eval_return_mean")
    assert len(table) == 5
    assert (run / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((run / "config.json").read_text())
    assert config["sweep"] == {"learning_rate": [1e-4, 1e-4, 1e-3, 1e-3],
                               "ent_coef": [0.0, 0.01, 0.0, 0.01]}

    for args, needle in [
        (["--sweep.num-envs", "4", "8"], "cannot sweep num_envs"),
        (["--num-devices", "3"], "num_envs=16 is not divisible by the 3 devices"),
        (["--num-devices", "9"], "num_devices=9 but this process sees 8"),
        (["--num-seeds", "3", "--device-split", "agents"], "agents (3 = seeds x sweep"),
    ]:
        bad = _finish(_cli("--run-dir", str(tmp_path / "bad"), *args, devices=8, cwd=tmp_path))
        assert bad.returncode == 2, (args, bad.stderr[-2000:])
        assert needle in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())


def _configure_devices(argv, settings, lone_agent_devices=1):
    """`acjax.cpu.host.configure_devices` with the flags `argv` (as the command line reads
    them) for `settings` sweep settings."""
    from acjax.cpu import host
    from acjax.run.flags import peek_flags

    known = peek_flags(argv, cpu_devices=int, num_seeds=int, num_devices=int,
                       num_processes=int, device_split=str)
    return host.configure_devices(
        cpu_devices=known.cpu_devices, num_agents=settings * (known.num_seeds or 1),
        num_devices=known.num_devices, num_processes=known.num_processes,
        device_split=known.device_split or "auto", lone_agent_devices=lone_agent_devices,
    )


def test_cpu_devices_default_to_a_divisor_of_the_agents(monkeypatch):

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    # (argv, settings, lone-agent hint, expected device count, count returned for recording).
    # A lone agent with large SGD steps gets the algorithm's device count (its environments
    # are then split) unless the flags say otherwise; that count is returned and recorded as
    # the run's cpu_devices, so a resumed run splits alike.
    cases = [
        ([], 1, 1, None, None),                          # one agent: one device
        (["--num-seeds", "64"], 1, 1, 8, None),          # up to 4 devices per core
        (["--num-seeds", "3"], 1, 1, 3, None),
        (["--num-seeds", "5"], 2, 1, 5, None),           # 10 agents: largest divisor <= 8
        (["--num-seeds", "8", "--cpu-devices", "4"], 1, 1, 4, None),
        (["--num-seeds", "8", "--cpu-devices", "1"], 1, 1, None, None),
        ([], 1, 2, 2, 2),                                # a lone agent with large steps
        (["--num-seeds", "2"], 1, 2, 2, None),           # whole agents, as without the hint
        (["--num-seeds", "3"], 1, 2, 3, None),
        (["--cpu-devices", "1"], 1, 2, None, None),
        (["--cpu-devices", "2"], 1, 2, 2, None),         # asked for: nothing to record
        (["--num-devices", "1"], 1, 2, None, None),
        (["--device-split", "agents"], 1, 2, None, None),
        (["--num-processes", "2"], 1, 2, None, None),
    ]
    for argv, settings, lone, expected, recorded in cases:
        monkeypatch.setenv("XLA_FLAGS", "--xla_foo=1")
        assert _configure_devices(argv, settings, lone_agent_devices=lone) == recorded
        flags = os.environ["XLA_FLAGS"]
        if expected is None:
            assert "device_count" not in flags, (argv, flags)
        else:
            assert flags.endswith(f"--xla_force_host_platform_device_count={expected}"), argv
    # A count the user already set wins.
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    _configure_devices(["--num-seeds", "64"], 1)
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8"
    with pytest.raises(ValueError, match=r"cpu_devices=0 must be >= 1"):
        _configure_devices(["--cpu-devices", "0"], 1)
