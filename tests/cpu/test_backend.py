"""acjax's CPU settings (acjax.cpu) change speed, never values; gymnax's plotting imports are
deferred."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from acjax.cpu import backend, sizing


def _draws(seed):
    key = jax.random.PRNGKey(seed)
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "split": jax.random.split(k1, 5),
        "fold_in": jax.vmap(lambda i: jax.random.fold_in(k2, i))(jnp.arange(7)),
        "uniform": jax.random.uniform(k2, (33,)),
        "normal": jax.random.normal(k3, (4, 5)),
        "categorical": jax.random.categorical(k1, jnp.zeros((9, 3))),
        "permutation": jax.random.permutation(k3, 128),
        "bits": jax.random.bits(k1, (17,), jnp.uint32),
        # Batched keys: the hash's key words and counts then have different shapes.
        "vmapped_bits": jax.vmap(lambda k: jax.random.bits(k, (3, 5)))(jax.random.split(k2, 4)),
        "vmapped_fold_in": jax.vmap(
            lambda k: jax.vmap(lambda i: jax.random.fold_in(k, i))(jnp.arange(6))
        )(jax.random.split(k3, 4)),
    }


def _cpu_draws(seed):
    """`_draws(seed)` computed on the CPU backend (the lowering these tests choose is CPU's),
    whatever the default backend is; a fresh function object, so nothing cached is reused."""
    with jax.default_device(jax.devices("cpu")[0]):
        return jax.device_get(jax.jit(lambda s: _draws(s))(seed))


def _cpu_lowering(fun, *args) -> str:
    return jax.jit(fun).trace(*args).lower(lowering_platforms=("cpu",)).as_text()


def _uniform(key):
    return jax.random.uniform(key, (8,))


def _assert_same_draws(a, b):
    for name in a:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), name)


def _needs_private_lowering():
    """Skips where this JAX lacks the private names (the fallback tests below cover that)."""
    if not backend.unroll_cpu_threefry(True):
        pytest.skip("this JAX version has no threefry lowerings to choose from")


def test_unrolled_threefry_draws_bit_identical_numbers():
    _needs_private_lowering()
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32 as threefry

    try:
        assert backend.unroll_cpu_threefry(False)
        rolled = _cpu_draws(3)
        assert backend.unroll_cpu_threefry(True)
        unrolled = _cpu_draws(3)
        # JAX's own straight-line lowering (what acjax's emits directly).
        mlir.register_lowering(
            threefry.threefry2x32_p, threefry._threefry2x32_lowering_rule, platform="cpu"
        )
        reference = _cpu_draws(3)
    finally:
        backend.apply_threefry_default()
    _assert_same_draws(rolled, unrolled)
    _assert_same_draws(reference, unrolled)


def test_unrolled_lowering_has_no_while_loop():
    _needs_private_lowering()
    key = jax.random.PRNGKey(0)
    try:
        backend.unroll_cpu_threefry(False)
        rolled = _cpu_lowering(lambda k: _uniform(k), key)
        backend.unroll_cpu_threefry(True)
        unrolled = _cpu_lowering(lambda k: _uniform(k), key)
    finally:
        backend.apply_threefry_default()
    assert "stablehlo.while" in rolled
    assert "stablehlo.while" not in unrolled


# Each private JAX name acjax.cpu.backend uses, hidden in turn: JAX's default comes back, no error.


def _rolled_reference():
    try:
        backend.unroll_cpu_threefry(False)
        return _cpu_draws(5)
    finally:
        backend.apply_threefry_default()


@pytest.mark.parametrize("module, name", [
    ("jax._src.random.threefry2x32", "_threefry2x32_cpu_lowering_rule"),
    ("jax._src.random.threefry2x32", "threefry2x32_p"),
    ("jax._src.interpreters.mlir", "multi_broadcast_in_dim"),
    ("jax._src.interpreters.mlir", "broadcast_in_dim"),
    ("jax._src.interpreters.mlir", "register_lowering"),
])
def test_threefry_lowering_falls_back_when_a_private_name_is_missing(module, name, monkeypatch):
    import importlib

    _needs_private_lowering()
    reference = _rolled_reference()
    target = importlib.import_module(module)
    with monkeypatch.context() as patch:
        patch.delattr(target, name)
        assert backend.unroll_cpu_threefry(True) is False  # nothing registered, no error
        backend.apply_threefry_default()  # what `acjax.cpu.apply()` runs: no error either
    try:
        backend.unroll_cpu_threefry(False)
        _assert_same_draws(reference, _cpu_draws(5))
    finally:
        backend.apply_threefry_default()


def test_threefry_lowering_falls_back_when_a_private_name_has_another_signature(monkeypatch):
    import types

    _needs_private_lowering()
    core, mlir, hlo = backend._lowering_modules()
    # The modules as acjax's rule sees them, with `multi_broadcast_in_dim` taking fewer
    # arguments (JAX's own lowerings keep the real one).
    changed = types.SimpleNamespace(**vars(mlir))
    changed.multi_broadcast_in_dim = lambda ctx, ops: ops
    reference = _rolled_reference()
    key = jax.random.PRNGKey(0)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(backend, "_lowering_modules", lambda: (core, changed, hlo))
            assert backend.unroll_cpu_threefry(True)
            draws = _cpu_draws(5)
            text = _cpu_lowering(lambda k: _uniform(k), key)
    finally:
        backend.apply_threefry_default()
    _assert_same_draws(reference, draws)
    assert "stablehlo.while" in text  # JAX's own (rolled) CPU rule lowered it


@pytest.mark.parametrize("hidden", [("backends_are_initialized",),
                                    ("backends_are_initialized", "_backends")])
def test_backend_started_falls_back_when_private_names_are_missing(hidden, monkeypatch):
    xla_bridge = pytest.importorskip("jax._src.xla_bridge")

    jax.devices()  # started
    assert backend.backend_started() is True
    for name in hidden:
        monkeypatch.delattr(xla_bridge, name)
    # Without the names the answer is "started", so nothing is changed; no error.
    assert backend.backend_started() is True
    assert backend.start_cpu_backend(1) is None


def test_backend_started_falls_back_when_a_private_name_has_another_signature(monkeypatch):
    xla_bridge = pytest.importorskip("jax._src.xla_bridge")

    monkeypatch.setattr(xla_bridge, "backends_are_initialized", lambda platform: False)
    assert backend.backend_started() is True  # read from `_backends` instead


_PROBE = """
import json, sys
from acjax.envs import make_env
make_env("CartPole-v1")
loaded = {n: type(sys.modules.get(n)).__name__ for n in ("seaborn", "matplotlib.pyplot")}
from matplotlib.backends.backend_agg import FigureCanvasAgg  # as acjax's plots import it
import seaborn as sns
palette = sns.color_palette("cubehelix", 2)
import matplotlib.pyplot as plt
plt.figure()
import gymnax.environments.misc.pong as pong  # gymnax's own references work too
print(json.dumps({"before_use": loaded, "palette_len": len(palette),
                  "pong_blue": pong.colors.to_rgb("blue"),
                  "after_use": type(sys.modules["seaborn"]).__name__,
                  "backend": plt.get_backend()}))
"""


def test_gymnax_plotting_imports_are_deferred_until_used():
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Loaded by gymnax's import only as stand-ins; the real modules load on first use.
    assert result["before_use"] == {"seaborn": "_DeferredModule",
                                    "matplotlib.pyplot": "_DeferredModule"}
    assert result["palette_len"] == 2
    assert result["pong_blue"] == [0.0, 0.0, 1.0]
    assert result["after_use"] == "module"


_THREADS_PROBE = """
import json, os, sys
threads = int(sys.argv[1])
from acjax.cpu import backend
import jax
started = backend.start_cpu_backend(threads) if threads else jax.devices() and None
again = backend.start_cpu_backend(1)  # the backend runs now: nothing changes any more
from acjax.run.rundir import params_fingerprint
from acjax.ppo_a2c import PPOA2CConfig, make_train
config = PPOA2CConfig(env="CartPole-v1", total_timesteps=2048, num_envs=4, num_steps=64)
state, metrics = jax.jit(make_train(config).train)(jax.random.PRNGKey(3))
print(json.dumps({"started": started, "again": again,
                  "affinity": len(os.sched_getaffinity(0)),
                  "task_affinities": sorted({len(os.sched_getaffinity(int(t)))
                                            for t in os.listdir("/proc/self/task")}),
                  "fingerprint": params_fingerprint(jax.device_get(state.params)),
                  "loss": float(metrics["total_loss"][-1])}))
"""


def _threads_probe(threads: int) -> dict:
    # The execution pool is the CPU client's: the probe runs on the CPU backend explicitly.
    out = subprocess.run(
        [sys.executable, "-c", _THREADS_PROBE, str(threads)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_one_execution_thread_gives_bit_identical_training_and_keeps_all_cores():
    cores = len(os.sched_getaffinity(0))
    default, one = _threads_probe(0), _threads_probe(1)
    assert one["fingerprint"] == default["fingerprint"]
    assert one["loss"] == default["loss"]
    assert one["again"] is None and default["again"] is None
    # Every thread (the host's, the compiler's, the pool's) has all cores back.
    assert one["affinity"] == cores and one["task_affinities"] == [cores]
    assert one["started"] == (1 if cores > 1 else None)


def test_backend_start_refuses_zero_threads():
    with pytest.raises(ValueError, match=r"cpu_threads=0 must be >= 1"):
        backend.start_cpu_backend(0)


def _parsed(argv):
    """The configuration `python -m acjax.ppo_a2c ARGV` trains (flags over the preset)."""
    from acjax.ppo_a2c import PPOA2CConfig, ppo_a2c_preset
    from acjax.run.flags import parse_args

    config, _ = parse_args(PPOA2CConfig, ppo_a2c_preset, argv, "")
    return config


_PARSE_PROBE = """
import json
from acjax.cpu import backend, sizing
from acjax.ppo_a2c import PPOA2CConfig, ppo_a2c_preset
from acjax.run.flags import parse_args
config, _ = parse_args(PPOA2CConfig, ppo_a2c_preset, ["--env", "Breakout-MinAtar"], "")
print(json.dumps({"flops": sizing.onpolicy_step_flops(config),
                  "started": backend.backend_started()}))
"""


def test_the_command_line_sizes_an_sgd_step_from_its_flags_before_jax_starts():
    # Parsing the flags over the preset and sizing the step start nothing in JAX, so the CPU
    # can still be split into devices and its execution pool sized afterwards.
    out = subprocess.run([sys.executable, "-c", _PARSE_PROBE], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe == {"flops": 6 * 1024 * 2 * 256 * 256, "started": False}

    # PureJaxRL's configuration: 4 x 128 / 4 = 128 samples; actor and critic each one 64x64
    # hidden product: 6 * 128 * (4096 + 4096).
    pjrl = ["--env", "CartPole-v1", "--num-envs", "4", "--num-steps", "128",
            "--num-minibatches", "4"]
    assert sizing.onpolicy_step_flops(_parsed(pjrl)) == 6 * 128 * 8192 == 6_291_456
    # The CartPole preset: 16 x 64 / 4 = 256 samples.
    assert sizing.onpolicy_step_flops(_parsed(["--env", "CartPole-v1"])) == 6 * 256 * 8192
    assert sizing.onpolicy_step_flops(
        _parsed(pjrl + ["--network.hidden-sizes", "256", "256", "256"])
    ) == 6 * 128 * 2 * 2 * 256 * 256
    assert sizing.onpolicy_step_flops(
        _parsed(pjrl + ["--network.critic-hidden-sizes", "32", "32"])
    ) == 6 * 128 * (4096 + 1024)
    assert sizing.step_flops(10, (8,)) == 60  # no hidden product: counted as 1
    with pytest.raises(SystemExit):  # a malformed flag: the parse reports it, nothing is sized
        _parsed(["--num-envs", "many"])


def test_lone_agent_splits_its_environments_over_cores_only_for_large_steps(monkeypatch):
    split = sizing.SPLIT_STEP_SAMPLES
    assert sizing.data_parallel_devices(2 * split, 2048, cores=2) == 2
    assert sizing.data_parallel_devices(2 * split - 1, 2048, cores=2) == 1  # halves too small
    assert sizing.data_parallel_devices(8 * split, 2048, cores=8) == 8
    assert sizing.data_parallel_devices(3 * split, 2048, cores=8) == 2  # most that keep a share
    assert sizing.data_parallel_devices(8 * split, 2047, cores=8) == 1  # 2047 envs: no divisor
    assert sizing.data_parallel_devices(8 * split, 2046, cores=8) == 6
    assert sizing.data_parallel_devices(10**9, 2048, cores=1) == 1

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    wide = ["--env", "CartPole-v1", "--num-envs", "2048", "--num-steps", "64",
            "--num-minibatches", "4"]

    def lone_agent_devices(argv):
        return sizing.onpolicy_lone_agent_devices(_parsed(argv))

    assert lone_agent_devices(wide) == 2
    assert lone_agent_devices(wide + ["--num-minibatches", "16"]) == 2  # 8,192-sample steps
    assert lone_agent_devices(wide + ["--num-minibatches", "32"]) == 1  # 4,096-sample steps
    assert lone_agent_devices(["--env", "Breakout-MinAtar"]) == 1  # 1,024 samples
    assert lone_agent_devices(["--env", "CartPole-v1"]) == 1  # the preset: 256 samples


def test_command_line_picks_one_thread_only_for_small_single_device_steps(monkeypatch):
    from acjax.cpu import host

    calls = []
    monkeypatch.setattr(backend, "start_cpu_backend", lambda n: calls.append(n) or n)
    monkeypatch.setenv("XLA_FLAGS", "")
    assert host.configure_threads(cpu_threads=None, step_flops=6_291_456) == 1
    assert host.configure_threads(cpu_threads=None,
                                  step_flops=sizing.SMALL_STEP_FLOPS + 1) is None
    assert host.configure_threads(cpu_threads=None, step_flops=None) is None
    assert host.configure_threads(cpu_threads=2, step_flops=10**12) == 2
    # A resumed run's saved --cpu-threads 1 comes in as the option's value.
    assert host.configure_threads(cpu_threads=1, step_flops=10**12) == 1
    assert host.configure_threads(cpu_threads=None, num_processes=2, step_flops=10) is None
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
    assert host.configure_threads(cpu_threads=None, step_flops=10) is None
    assert calls == [1, 2, 1]
    with pytest.raises(ValueError, match=r"cpu_threads=0 must be >= 1"):
        host.configure_threads(cpu_threads=0, step_flops=10)
