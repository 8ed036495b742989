"""Seeds, sweeps and devices: laying agents out on devices and processes.

An algorithm's pure functions (`make_train(config, axis_name=...)`) see at most one *data axis*
and call the collectives of `acjax.core.collectives` on it; they never learn how many devices
or agents there are. Here `make_runner` lays out `A` agents (seeds x sweep settings, each with
its own PRNG key and traced hyperparameters) on `N` devices in one of two ways:

* `split="agents"`: each device trains `A / N` whole agents (`pmap` of `vmap`); no communication.
* `split="envs"`: data parallelism; every device holds all `A` agents and `num_envs / N` of each
  agent's environments, gradients and statistics are averaged over the device axis (also across
  processes after `jax.distributed.initialize`), and the replicas stay identical.

With one device both are `jit(vmap(...))`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from acjax.cpu import backend
from acjax.run import programs

DATA_AXIS = "data"
"""Name of the device axis over which environments (and gradients) are split."""

Split = Literal["auto", "agents", "envs"]
AxisName = str | None


# ----------------------------------------------------------------------------------------------
# Multi-host
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DistributedOptions:
    """How this process joins a multi-process run (`jax.distributed.initialize`)."""

    coordinator_address: str | None = None
    """host:port of process 0's coordinator, e.g. 10.0.0.1:1234 (all processes pass the same)."""
    num_processes: int | None = None
    """Total number of processes in the run."""
    process_id: int | None = None
    """This process's index in [0, num_processes)."""

    @property
    def requested(self) -> bool:
        return any(
            v is not None for v in (self.coordinator_address, self.num_processes, self.process_id)
        ) or "JAX_COORDINATOR_ADDRESS" in os.environ

    def validate(self) -> None:
        """Checks the flags; raises `ValueError` naming the field, its value and the fix."""
        given = {
            "coordinator_address": self.coordinator_address,
            "num_processes": self.num_processes,
            "process_id": self.process_id,
        }
        if not any(v is not None for v in given.values()):
            return
        missing = [k for k, v in given.items() if v is None]
        if missing and "JAX_COORDINATOR_ADDRESS" not in os.environ:
            raise ValueError(
                f"multi-process run needs --coordinator-address, --num-processes and "
                f"--process-id together; missing {', '.join('--' + m.replace('_', '-') for m in missing)}"
            )
        if self.num_processes is not None and self.num_processes < 1:
            raise ValueError(
                f"num_processes={self.num_processes} must be >= 1; pass e.g. --num-processes 2"
            )
        if self.process_id is not None and self.num_processes is not None and not (
            0 <= self.process_id < self.num_processes
        ):
            raise ValueError(
                f"process_id={self.process_id} must lie in [0, num_processes={self.num_processes}); "
                "give each process a distinct id 0, 1, ..."
            )
        if self.coordinator_address is not None and ":" not in self.coordinator_address:
            raise ValueError(
                f"coordinator_address={self.coordinator_address!r} must be host:port, e.g. "
                "--coordinator-address 127.0.0.1:1234"
            )


def initialize_distributed(options: DistributedOptions) -> None:
    """Joins the multi-process run described by `options` (or by JAX's environment variables).

    On CPU the processes talk through gloo collectives. Must run before any JAX computation.
    """
    options.validate()
    if not options.requested:
        return
    # Only the CPU client reads this; accelerators bring their own collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=options.coordinator_address,
        num_processes=options.num_processes,
        process_id=options.process_id,
    )


# ----------------------------------------------------------------------------------------------
# Laying agents out on devices
# ----------------------------------------------------------------------------------------------


class Layout(NamedTuple):
    """Where a run's agents and environments live.

    Attributes:
      num_agents: A, independent agents (seeds x sweep settings).
      num_devices: N, local devices used by this process.
      split: "agents" (A / N whole agents per device) or "envs" (all agents on every device,
        environments split over all devices of all processes).
      num_processes: processes taking part (devices in total: N x num_processes).
    """

    num_agents: int
    num_devices: int
    split: Literal["agents", "envs"]
    num_processes: int = 1

    @property
    def data_shards(self) -> int:
        """Shards each agent's environments are split into."""
        return self.num_devices * self.num_processes if self.split == "envs" else 1

    def describe(self) -> str:
        if self.num_devices * self.num_processes == 1:
            return "1 device"
        where = f"{self.num_devices} device(s)" + (
            f" x {self.num_processes} processes" if self.num_processes > 1 else ""
        )
        if self.split == "agents":
            return f"{where}, {self.num_agents // self.num_devices} agent(s) per device"
        return f"{where}, environments split {self.data_shards} ways"


def choose_layout(
    *,
    num_agents: int,
    num_envs: int,
    num_devices: int | None = None,
    split: Split = "auto",
) -> Layout:
    """Picks and checks a layout; raises `ValueError` (before anything compiles) if impossible.

    Args:
      num_agents: A, agents trained side by side (seeds x sweep settings).
      num_envs: each agent's (global) number of environments.
      num_devices: local devices to use (default: all of this process's devices).
      split: "agents", "envs", or "auto": agents when A is a multiple of N (and there is one
        process), otherwise environments.
    """
    available = jax.local_device_count()
    processes = jax.process_count()
    if num_devices is None:
        num_devices = available
    if not isinstance(num_devices, int) or num_devices < 1:
        raise ValueError(f"num_devices={num_devices!r} must be a positive integer, e.g. 1")
    if num_devices > available:
        raise ValueError(
            f"num_devices={num_devices} but this process sees {available} "
            f"{jax.default_backend()} device(s); pass --num-devices {available} or fewer"
        )
    if processes > 1 and num_devices != available:
        raise ValueError(
            f"num_devices={num_devices}: a multi-process run uses every local device "
            f"({available}); drop --num-devices"
        )
    if split not in ("auto", "agents", "envs"):
        raise ValueError(f"device_split={split!r} is not one of 'auto', 'agents', 'envs'")
    if split == "auto":
        split = "agents" if processes == 1 and num_agents % num_devices == 0 else "envs"
        if num_devices == 1 and processes == 1:
            split = "agents"
    if split == "agents":
        if processes > 1:
            raise ValueError(
                "device_split='agents' keeps whole agents on one device and does not span "
                "processes; use --device-split envs for a multi-process run"
            )
        if num_agents % num_devices:
            raise ValueError(
                f"device_split='agents' needs the number of agents ({num_agents} = seeds x sweep "
                f"settings) to be a multiple of num_devices={num_devices}; change --num-seeds, "
                "--num-devices, or use --device-split envs"
            )
    else:
        shards = num_devices * processes
        if num_envs % shards:
            raise ValueError(
                f"num_envs={num_envs} is not divisible by the {shards} devices it is split over; "
                f"choose --num-envs as a multiple of {shards} or pass --num-devices with a "
                f"divisor of {num_envs}"
            )
    return Layout(num_agents, num_devices, split, processes)


class Runner(NamedTuple):
    """Compiled entry points of one trainer laid out on devices.

    Arrays given to and returned by these functions are agent-major: `keys [A, 2]`,
    `hparams` with leaves `[A]`; the training state is an opaque, device-laid-out pytree.

    Attributes:
      trainer: the algorithm's pure functions (built with the data axis when split="envs").
      layout: where agents and environments live.
      init: `(keys[A], hparams[A]) -> state`.
      chunk: `(state, hparams[A]) -> (state, metrics)`; metrics leaves `[A, updates_per_chunk]`
        (host numpy arrays, already fetched).
      evaluate: `(state, keys[A]) -> (returns[A, E], lengths[A, E])` host numpy arrays.
      agent_state: `state -> one replica of the state, leaves [A, ...]` (device arrays).
      compile: `(state, hparams[A]) -> compiled chunk`, compiles ahead of time (optional).
    """

    trainer: Any
    layout: Layout
    init: Callable[..., Any]
    chunk: Callable[..., tuple[Any, dict[str, np.ndarray]]]
    evaluate: Callable[..., tuple[np.ndarray, np.ndarray]]
    agent_state: Callable[[Any], Any]
    compile: Callable[..., Any]


def make_runner(
    make_train: Callable[..., Any],
    config: Any,
    layout: Layout,
    *,
    num_reports: int = 20,
    eval_episodes: int = 10,
) -> Runner:
    """Builds the trainer for `layout` and the mapped, compiled functions that drive it.

    Args:
      make_train: an algorithm's `make_train(config, *, num_reports, axis_name)`.
      config: its (validated) configuration.
      layout: from `choose_layout`.
      num_reports: chunks per run (see `make_train`).
      eval_episodes: greedy episodes per agent in `evaluate`.
    """
    axis = DATA_AXIS if layout.split == "envs" and layout.data_shards > 1 else None
    trainer = make_train(config, num_reports=num_reports, axis_name=axis)
    n, a = layout.num_devices, layout.num_agents

    def evaluate_one(state, key):
        return trainer.evaluate(state, key, eval_episodes)

    # Agents are initialised one after another (`lax.map`, a one-off cost): a vmapped init
    # batches the orthogonal initialisers' QR factorisations, and on CPU the batched LAPACK
    # kernel waits on the thread pool that other devices' kernels occupy, which can deadlock a
    # multi-device run.
    def v_init(keys, hparams):
        return jax.lax.map(lambda args: trainer.init(*args), (keys, hparams))

    v_chunk = jax.vmap(trainer.train_chunk)
    v_eval = jax.vmap(evaluate_one)

    single_device = n == 1 and axis is None
    if single_device:
        init_fn = backend.jit(v_init)
        chunk_fn = backend.jit(v_chunk, donate_argnums=0)
        eval_fn = backend.jit(v_eval)

        def to_dev(x):
            return x

        def from_dev(x):
            return jax.device_get(x)

        agent_state = _identity
    elif axis is None:  # whole agents per device
        init_fn = jax.pmap(v_init)
        chunk_fn = jax.pmap(v_chunk, donate_argnums=0)
        eval_fn = jax.pmap(v_eval)

        def to_dev(x):
            return jax.tree.map(lambda y: jnp.reshape(y, (n, a // n) + y.shape[1:]), x)

        def from_dev(x):
            return jax.tree.map(lambda y: np.reshape(y, (a,) + y.shape[2:]), jax.device_get(x))

        def agent_state(state):
            return jax.tree.map(lambda y: y.reshape((a,) + y.shape[2:]), state)
    else:  # environments split over devices: every device holds every agent
        init_fn = jax.pmap(v_init, axis_name=axis)
        chunk_fn = jax.pmap(v_chunk, axis_name=axis, donate_argnums=0)
        eval_fn = backend.jit(v_eval)

        def to_dev(x):
            return jax.tree.map(lambda y: jnp.broadcast_to(y, (n,) + y.shape), x)

        def from_dev(x):  # identical on every replica: fetch this process's first one
            return jax.device_get(jax.tree.map(_first_replica, x))

        def agent_state(state):
            return jax.tree.map(_first_replica, state)

    compiled: dict[str, Any] = {}

    def init(keys, hparams):
        _check_agents(keys, hparams, a)
        return init_fn(to_dev(keys), to_dev(hparams))

    def compile_chunk(state, hparams):
        """Compiles `chunk` ahead of time (its first call would otherwise do it).

        Across processes, `pmap`'s ahead-of-time lowering sees global shapes while calls pass
        process-local ones, so there the first call compiles.
        """
        if "chunk" not in compiled:
            if single_device and layout.num_processes == 1:
                # One device: through a saved program when JAX's compilation cache is on, so
                # a repeated run skips tracing and lowering as well (acjax.run.programs).
                compiled["chunk"], _ = programs.compile_state_program(
                    v_chunk, (state, hparams), state_like=state,
                    name=f"chunk/{trainer.updates_per_chunk}", config=config, donate_state=True,
                )
            else:
                # pmap: XLA's default options, as a multi-process run (compiled on its first
                # call) gets them, so one process with N devices matches N processes bit for bit.
                compiled["chunk"] = (
                    chunk_fn.lower(state, to_dev(hparams)).compile()
                    if layout.num_processes == 1 else chunk_fn
                )
        return compiled["chunk"]

    def chunk(state, hparams):
        fn = compile_chunk(state, hparams)
        state, metrics = fn(state, to_dev(hparams))
        return state, from_dev(metrics)

    def evaluate(state, keys):
        if axis is None:
            return from_dev(eval_fn(state, to_dev(keys)))
        return jax.device_get(eval_fn(agent_state(state), keys))

    return Runner(trainer, layout, init, chunk, evaluate, agent_state, compile_chunk)


def state_to_host(layout: Layout, state: Any) -> Any:
    """This process's part of a runner's state as numpy arrays, in a layout-independent form.

    Whole agents on devices (one device, or `split="agents"` on any number of them) give leaves
    `[A, ...]`, the same arrays however many devices held them. With `split="envs"` every
    device holds its own environments, so leaves are `[D, A, ...]` with D this process's
    devices (parameters and statistics repeat along D).

    Args:
      layout: the runner's layout.
      state: the runner's state (`Runner.init` / `Runner.chunk` output).
    """

    def fetch(x):
        if not isinstance(x, jax.Array) or x.ndim == 0:
            return np.asarray(x)
        pieces = [np.asarray(s.data) for s in x.addressable_shards]
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=0)

    host = jax.tree.map(fetch, state)
    if layout.split == "agents" and layout.num_devices > 1:
        a = layout.num_agents
        host = jax.tree.map(lambda y: y.reshape((a,) + y.shape[2:]), host)
    return host


def state_from_host(layout: Layout, host: Any, like: Any) -> Any:
    """Inverse of `state_to_host`: places host arrays on devices exactly as `like` is placed.

    Args:
      layout: the runner's layout.
      host: numpy leaves as `state_to_host` returns them for this layout.
      like: a state laid out by the same runner (e.g. `Runner.init`'s output); only its
        structure, shapes and shardings are used.
    """
    n = layout.num_devices
    if layout.split == "agents" and n > 1:
        host = jax.tree.map(lambda y: y.reshape((n, y.shape[0] // n) + y.shape[1:]), host)

    def place(y, ref):
        if not isinstance(ref, jax.Array) or ref.ndim == 0:
            return jnp.asarray(y, dtype=ref.dtype)
        shards = ref.addressable_shards
        parts = np.split(np.asarray(y, dtype=ref.dtype), len(shards), axis=0)
        arrays = [jax.device_put(p, s.device) for p, s in zip(parts, shards, strict=True)]
        return jax.make_array_from_single_device_arrays(ref.shape, ref.sharding, arrays)

    return jax.tree.map(place, host, like)


def _identity(x):
    return x


def _first_replica(x: jax.Array) -> jax.Array:
    """This process's first replica of a `pmap`ped array (works when it spans processes)."""
    return x.addressable_shards[0].data[0]


def _check_agents(keys, hparams, num_agents: int) -> None:
    leaves = [keys, *jax.tree.leaves(hparams)]
    bad = [leaf.shape for leaf in leaves if not leaf.shape or leaf.shape[0] != num_agents]
    if bad:
        raise ValueError(
            f"expected keys and every hyperparameter with a leading axis of {num_agents} agents, "
            f"got shapes {bad}"
        )


def agent_keys(seeds) -> tuple[jax.Array, jax.Array]:
    """`(train_keys[A], eval_keys[A])` for integer `seeds[A]`.

    Seed `s` gets the same keys however many agents run beside it.
    """
    keys = jax.vmap(lambda s: jax.random.split(jax.random.PRNGKey(s)))(jnp.asarray(seeds))
    return keys[:, 0], keys[:, 1]


def stack_agents(hparams: Any, num_seeds: int) -> Any:
    """Repeats each of `H` settings (leaves `[H]`) for `num_seeds` seeds: leaves `[H * K]`,
    setting-major (agent `h * K + k` is setting `h`, seed `k`)."""
    return jax.tree.map(lambda x: jnp.repeat(jnp.asarray(x), num_seeds, axis=0), hparams)


def is_main_process() -> bool:
    return jax.process_index() == 0


def describe_hardware() -> str:
    """One line: backend, device kind and count, processes, jax version."""
    dev = jax.devices()[0]
    return (
        f"{jax.default_backend()} / {dev.device_kind}: {jax.device_count()} device(s) "
        f"({jax.local_device_count()} local) in {jax.process_count()} process(es); "
        f"jax {jax.__version__}"
    )


__all__ = [
    "DATA_AXIS",
    "DistributedOptions",
    "Layout",
    "Runner",
    "agent_keys",
    "choose_layout",
    "describe_hardware",
    "initialize_distributed",
    "is_main_process",
    "make_runner",
    "stack_agents",
    "state_from_host",
    "state_to_host",
]
