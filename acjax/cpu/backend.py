"""XLA settings for the CPU backend: the threefry lowering, compile options, execution threads.

None of them changes a computed value beyond float rounding (most of them none at all), and
none applies unless asked for: `acjax.cpu.apply()` (the command lines call it) or the functions
here. Importing this module changes nothing.

* Threefry on CPU: JAX lowers the threefry2x32 hash (behind every `jax.random` call) on CPU as a
  rolled five-iteration loop, which keeps compiled programs small but makes each call a small
  XLA while loop that runs op by op. In an RL rollout, where several such calls sit inside
  every step of a `lax.scan`, that loop overhead was half of the rollout's time on a 2-core
  CPU. `unroll_cpu_threefry()` registers a straight-line lowering (the one JAX uses on other
  platforms, emitted directly to lower faster), which XLA fuses into one kernel. All of them
  compute the same 20 threefry rounds, so random numbers are bit-identical (tested); only
  speed and code size differ. Set `ACJAX_ROLLED_THREEFRY=1` to keep JAX's default under
  `apply()`.
* XLA's fast-compile preset on CPU: `compiler_options()` gives the options acjax compiles its
  programs with (the command line's runners, `acjax.cpu.backend.jit`, the benchmarks): on CPU,
  `xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_COMPILE`, which cut the XLA compile of PPO at
  PureJaxRL's configuration from 4.2-4.5 s to 3.4-3.6 s with the same run time and
  bit-identical parameters there (larger batches on several threads may differ in the last
  bits). Set `ACJAX_XLA_DEFAULT_PRESET=1` to compile with XLA's defaults.
* Execution threads on CPU: `start_cpu_backend(1)` starts JAX's CPU client with a one-thread
  execution pool (compilation still uses every core). The command line does so for a
  single-device run whose SGD steps are small (`acjax.cpu.sizing.SMALL_STEP_FLOPS`), where
  handing microsecond kernels between threads costs more than it saves.
"""

from __future__ import annotations

import os

ROLLED_THREEFRY_ENV = "ACJAX_ROLLED_THREEFRY"


def _env_flag(name: str) -> bool:
    """Whether the environment variable `name` is set to 1 / true / True."""
    return os.environ.get(name, "") in ("1", "true", "True")


_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_THREEFRY_PARITY = 0x1BD11BDA


def _threefry2x32_straight_line(ctx, k1, k2, x1, x2):
    """Lowering rule: the 20 rounds of Threefry-2x32 as straight-line StableHLO.

    The rounds, key injections and constants of the straight-line lowering JAX uses on
    accelerators (`jax._src.random.threefry2x32`; tested bit-identical), emitted directly
    instead of by tracing that Python function through `mlir.lower_fun` at every call site,
    with each key word broadcast once and each constant created once: about a quarter fewer
    operations to build (lowering a PPO program took 0.42 instead of 0.55 s). Every use of a
    constant still gets its own broadcast, as there: with one broadcast shared by all uses,
    XLA folded the rotation amounts into the kernels and LLVM took 0.8 s longer to compile
    the same program.
    """
    import numpy as np

    core, mlir, hlo = _lowering_modules()
    k1_aval, k2_aval, x1_aval, x2_aval = ctx.avals_in
    aval_out = ctx.avals_out[0]
    scalar = core.ShapedArray((), np.dtype("uint32"))

    def full(op, aval):  # `op` broadcast to the output's shape (jnp's implicit broadcast)
        return mlir.multi_broadcast_in_dim(ctx, [op], [aval], aval_out.shape, aval_out.sharding)[0]

    constants: dict[int, object] = {}

    def const(value: int):
        if value not in constants:
            constants[value] = mlir.ir_constant(np.uint32(value))
        return full(constants[value], scalar)

    def rotate_left(v, d: int):
        return hlo.or_(hlo.shift_left(v, const(d)), hlo.shift_right_logical(v, const(32 - d)))

    k12_shape = np.broadcast_shapes(k1_aval.shape, k2_aval.shape)
    k12_aval = k1_aval.update(shape=k12_shape)
    k1b, k2b = mlir.multi_broadcast_in_dim(ctx, [k1, k2], [k1_aval, k2_aval], k12_shape, None)
    parity = mlir.ir_constant(np.uint32(_THREEFRY_PARITY))
    if k12_shape:
        parity = mlir.broadcast_in_dim(ctx, parity, k12_aval, broadcast_dimensions=[])
    ks = [full(k1, k1_aval), full(k2, k2_aval), full(hlo.xor(hlo.xor(k1b, k2b), parity), k12_aval)]
    x = [hlo.add(full(x1, x1_aval), ks[0]), hlo.add(full(x2, x2_aval), ks[1])]
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x[0] = hlo.add(x[0], x[1])
            x[1] = hlo.xor(x[0], rotate_left(x[1], r))
        x[0] = hlo.add(x[0], ks[(i + 1) % 3])
        x[1] = hlo.add(hlo.add(x[1], ks[(i + 2) % 3]), const(i + 1))
    return x


def _lowering_modules():
    """`(core, mlir, hlo)`: the private JAX modules the straight-line rule emits through."""
    from jax._src import core
    from jax._src.interpreters import mlir
    from jax._src.lib.mlir.dialects import hlo

    return core, mlir, hlo


def unroll_cpu_threefry(unrolled: bool = True) -> bool:
    """Chooses the CPU lowering of threefry2x32: straight-line (True) or JAX's rolled loop.

    Affects functions lowered after the call (already compiled programs keep theirs). Both
    rules come from JAX's private modules (`jax._src`), so every step falls back to JAX's
    default: when a name is missing here, nothing is registered and the call returns False;
    when the straight-line rule fails while lowering (a name with another signature in this
    JAX version), that call site is lowered by JAX's own CPU rule instead.
    """
    try:
        from jax._src.random import threefry2x32 as threefry

        _, mlir, _ = _lowering_modules()
        default = threefry._threefry2x32_cpu_lowering_rule
        primitive = threefry.threefry2x32_p
        if unrolled:
            mlir.multi_broadcast_in_dim, mlir.broadcast_in_dim  # noqa: B018 - both needed
            rule = _guarded(_threefry2x32_straight_line, default)
        else:
            rule = default
        mlir.register_lowering(primitive, rule, platform="cpu")
    except (ImportError, AttributeError, TypeError):  # other JAX versions: JAX's default
        return False
    return True


def _guarded(rule, default):
    """`rule`, or `default` for a call site where `rule` raises (another JAX version)."""

    def lower(ctx, *args, **kwargs):
        try:
            return rule(ctx, *args, **kwargs)
        except Exception:  # noqa: BLE001 - a private API that changed: JAX's own rule
            return default(ctx, *args, **kwargs)

    return lower


FAST_COMPILE_OPTIONS = {"xla_cpu_opt_preset": "CPU_OPT_PRESET_FAST_COMPILE"}
DEFAULT_PRESET_ENV = "ACJAX_XLA_DEFAULT_PRESET"


def compiler_options() -> dict[str, str] | None:
    """XLA compile options for acjax's programs: the fast-compile preset on CPU, else None.

    Starts JAX's backend if it has not started (call it where a program is about to be
    compiled). None on accelerators and when `ACJAX_XLA_DEFAULT_PRESET=1` is set.
    """
    import jax

    if _env_flag(DEFAULT_PRESET_ENV):
        return None
    if jax.default_backend() != "cpu":
        return None
    return dict(FAST_COMPILE_OPTIONS)


def jit(fun, **kwargs):
    """`jax.jit(fun, **kwargs)` compiled with `compiler_options()` (kwargs' own are kept)."""
    import jax

    if "compiler_options" not in kwargs:
        kwargs["compiler_options"] = compiler_options()
    return jax.jit(fun, **kwargs)


def apply_threefry_default() -> bool:
    """Registers the straight-line CPU threefry lowering unless `ACJAX_ROLLED_THREEFRY=1` opts
    out; returns whether it is registered."""
    if _env_flag(ROLLED_THREEFRY_ENV):
        return False
    return unroll_cpu_threefry(True)


# ----------------------------------------------------------------------------------------------
# Execution threads of the CPU client
# ----------------------------------------------------------------------------------------------

_ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin",
                        "jax_rocm7_plugin", "libtpu", "jax_plugins.xla_cuda12")


def backend_started() -> bool:
    """Whether JAX has already created its device clients (nothing can be changed then).

    Asks JAX's private `xla_bridge` (there is no public question for it); where this JAX
    version has neither of the names used, it answers True, so nothing is changed.
    """
    try:
        from jax._src import xla_bridge
    except ImportError:
        return True
    try:
        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # noqa: BLE001 - missing, or another signature
        return bool(getattr(xla_bridge, "_backends", True))


def cpu_only() -> bool:
    """True when JAX will run on the CPU: no accelerator plugin installed, or `cpu` requested."""
    import importlib.util

    import jax

    platforms = (jax.config.jax_platforms or "").strip().lower()
    if platforms:
        return platforms.split(",")[0] == "cpu"
    for name in _ACCELERATOR_PLUGINS:
        try:
            if importlib.util.find_spec(name) is not None:
                return False
        except (ImportError, ValueError):
            continue
    return True


def start_cpu_backend(execution_threads: int) -> int | None:
    """Starts JAX's CPU client with `execution_threads` threads running compiled programs.

    XLA's CPU client sizes the thread pool that runs a compiled program's kernels from the
    cores in the process's CPU affinity when the client starts. A small program (an RL update
    on a few hundred samples: many kernels of a few microseconds each) runs faster on one
    thread than handed across two or more, because each hand-over costs more than the kernel;
    large batches gain from more threads. This starts the backend while the calling thread's
    affinity holds `execution_threads` cores, then gives every thread of the process its full
    affinity back, so compilation and the host still use all cores; only the size of the
    execution pool stays. Computed values do not change (the same kernels run in the same
    order per device); only speed does.

    Call it before anything touches JAX's devices (creating an array does). It does nothing
    when the backend has started already, when JAX will run on an accelerator, or when
    `execution_threads` is not below the number of available cores.

    Returns:
      The execution pool size it started the backend with, or None when it changed nothing.
    """
    import jax

    if execution_threads < 1:
        raise ValueError(
            f"cpu_threads={execution_threads} must be >= 1; pass e.g. --cpu-threads 1"
        )
    if not hasattr(os, "sched_getaffinity") or backend_started() or not cpu_only():
        return None
    cores = sorted(os.sched_getaffinity(0))
    if execution_threads >= len(cores):
        return None
    os.sched_setaffinity(0, cores[:execution_threads])
    try:
        jax.devices()
    finally:
        _widen_affinity(set(cores))
    return execution_threads


def _widen_affinity(cores: set[int]) -> None:
    """Gives every thread of this process the affinity `cores` (Linux; best effort)."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # pragma: no cover - not Linux
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cores)
        except OSError:  # pragma: no cover - a thread that exited meanwhile
            pass
