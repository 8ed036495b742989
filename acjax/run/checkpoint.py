"""Checkpoints of a whole run: Orbax-managed, asynchronous, crash-safe and checked on restore.

A checkpoint is one step directory `RUN_DIR/checkpoints/STEP` (STEP: env steps per agent done)
written by Orbax's `CheckpointManager` with two items:

* `state`: every array of the training state (parameters, optimizer state, environment states
  and last observations, PRNG keys as raw key data, normaliser statistics, counters), stored
  with `StandardSave` (tensorstore; no pickle anywhere). Leaves are named `leaf_0000`, ... in
  tree order; zero-sized leaves are described but not stored.
* `meta`: JSON. The configuration and run options that shape the state, the device layout,
  progress counters (Python integers, so env-step counts beyond 2^31 are exact), host-side
  progress (metrics rows written, elapsed seconds, learning curves), library versions, and a
  manifest of every leaf: its tree path, shape, dtype and SHA-256.

Orbax writes a step into a temporary directory and renames it when every item is complete, so
a process killed at any moment leaves either a complete step or a temporary directory that is
never listed. On restore the meta is compared with the run asking for it (configuration,
layout, leaf paths, shapes and dtypes) and every leaf's SHA-256 is checked, so a checkpoint of
another configuration or a corrupted one raises `CheckpointError` naming what differs; nothing
is ever partially restored.

`load_policy(run_dir)` rebuilds the networks from the run's `config.json` and returns a jitted
`policy(obs, key, deterministic=True)`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import math
import pathlib
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

FORMAT = 1
"""Version of the checkpoint layout described above."""

CHECKPOINT_DIR = "checkpoints"

__all__ = [
    "CHECKPOINT_DIR",
    "FORMAT",
    "CheckpointError",
    "Checkpointer",
    "Restored",
    "checkpoint_dir",
    "config_differences",
    "host_leaves",
    "layout_meta",
    "layout_mismatch",
    "leaf_manifest",
    "load_config",
    "load_policy",
    "manifest_mismatch",
    "unwrap_keys",
    "wrap_keys",
]


class CheckpointError(ValueError):
    """A checkpoint that cannot serve the request; the message names what differs and the fix."""


class Restored(NamedTuple):
    """A checkpoint read back and checked.

    Attributes:
      step: env steps per agent at which it was written.
      leaves: numpy arrays in tree order (key data for PRNG keys).
      meta: the JSON meta written with it.
    """

    step: int
    leaves: list[np.ndarray]
    meta: dict[str, Any]


# ----------------------------------------------------------------------------------------------
# Pure pieces: keys, leaves, manifests, differences
# ----------------------------------------------------------------------------------------------


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def unwrap_keys(tree: Any) -> tuple[Any, list[str | None]]:
    """Replaces typed PRNG key arrays by their raw key data.

    Returns:
      `(tree, impls)`: the tree with `uint32` key data in place of each key array, and per leaf
      (tree order) the key implementation's name, or None for a leaf that was not a key.
    """
    leaves, treedef = jax.tree.flatten(tree)
    impls = [str(jax.random.key_impl(x)) if _is_key(x) else None for x in leaves]
    data = [jax.random.key_data(x) if _is_key(x) else x for x in leaves]
    return jax.tree.unflatten(treedef, data), impls


def wrap_keys(tree: Any, impls: list[str | None]) -> Any:
    """Inverse of `unwrap_keys`: wraps the leaves named in `impls` back into typed keys."""
    leaves, treedef = jax.tree.flatten(tree)
    out = [
        x if impl is None else jax.random.wrap_key_data(x, impl=impl)
        for x, impl in zip(leaves, impls, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def host_leaves(tree: Any) -> tuple[list[str], list[np.ndarray]]:
    """Tree paths (`jax.tree_util.keystr`) and numpy arrays of a host tree, in tree order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(p) for p, _ in flat], [np.asarray(x) for _, x in flat]


def _digest(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def leaf_manifest(
    paths: list[str], leaves: list[np.ndarray], impls: list[str | None] | None = None,
    *, digests: bool = True,
) -> list[dict[str, Any]]:
    """One entry per leaf: `path`, `shape`, `dtype`, `key_impl` and (optionally) `sha256`."""
    impls = impls or [None] * len(leaves)
    out = []
    for path, x, impl in zip(paths, leaves, impls, strict=True):
        entry = {"path": path, "shape": list(x.shape), "dtype": str(x.dtype), "key_impl": impl}
        if digests:
            entry["sha256"] = _digest(x)
        out.append(entry)
    return out


def manifest_mismatch(saved: list[dict], expected: list[dict]) -> str | None:
    """The first difference between two manifests (paths, shapes, dtypes, key kinds), or None."""
    for i, (s, e) in enumerate(zip(saved, expected)):
        if s["path"] != e["path"]:
            return (
                f"leaf {i} is {s['path']} in the checkpoint but {e['path']} in this run "
                "(a different state structure)"
            )
        for field in ("shape", "dtype", "key_impl"):
            if s.get(field) != e.get(field):
                return (
                    f"leaf {s['path']} has {field} {s.get(field)} in the checkpoint but "
                    f"{e.get(field)} in this run"
                )
    if len(saved) != len(expected):
        longer, who = (saved, "checkpoint") if len(saved) > len(expected) else (expected, "run")
        extra = longer[min(len(saved), len(expected))]["path"]
        return (
            f"the checkpoint has {len(saved)} leaves but this run's state has {len(expected)} "
            f"(first unmatched: {extra} in the {who})"
        )
    return None


def config_differences(saved: Any, requested: Any, prefix: str = "") -> list[str]:
    """Dotted names and both values of every field that differs between two JSON-like dicts.

    Example: `["network.hidden_sizes: [64, 64] (saved) vs [32] (requested)"]`.
    """
    if isinstance(saved, dict) and isinstance(requested, dict):
        out = []
        for key in sorted(set(saved) | set(requested), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved:
                out.append(f"{name}: missing (saved) vs {requested[key]!r} (requested)")
            elif key not in requested:
                out.append(f"{name}: {saved[key]!r} (saved) vs missing (requested)")
            else:
                out.extend(config_differences(saved[key], requested[key], name))
        return out
    return [] if saved == requested else [f"{prefix}: {saved!r} (saved) vs {requested!r} (requested)"]


def json_safe(x: Any) -> Any:
    """Floats that JSON cannot hold (NaN, inf) become None; containers are converted deeply."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return json_safe(float(x))
    return x


# ----------------------------------------------------------------------------------------------
# The manager
# ----------------------------------------------------------------------------------------------


def checkpoint_dir(run_dir: str | pathlib.Path, process_index: int = 0) -> pathlib.Path:
    """`RUN_DIR/checkpoints` (process 0) or `RUN_DIR/checkpoints-processP` (process P)."""
    name = CHECKPOINT_DIR if process_index == 0 else f"{CHECKPOINT_DIR}-process{process_index}"
    return pathlib.Path(run_dir).absolute() / name


def _quiet_absl() -> None:
    # Orbax reports routine events (read-only managers, background saves) as absl warnings.
    logging.getLogger("absl").setLevel(logging.ERROR)


class Checkpointer:
    """This process's checkpoints of one run (an Orbax `CheckpointManager` and its checks).

    Args:
      run_dir: the run directory.
      keep: complete checkpoints kept (older ones are deleted after a newer one is complete).
      read_only: only list and restore (never create, delete or clean up anything).
      process_index, num_processes: this process's place in a multi-process run; each
        process keeps its own part of the state in its own directory.
    """

    def __init__(
        self,
        run_dir: str | pathlib.Path,
        *,
        keep: int = 3,
        read_only: bool = False,
        process_index: int = 0,
        num_processes: int = 1,
    ):
        import orbax.checkpoint as ocp

        _quiet_absl()
        self._ocp = ocp
        self.directory = checkpoint_dir(run_dir, process_index)
        if read_only and not self.directory.is_dir():
            raise CheckpointError(
                f"run_dir='{run_dir}' has no {self.directory.name}/ directory; it holds no "
                "checkpoint (runs write one at the end and every --checkpoint-every env steps)"
            )
        multiprocessing = ocp.options.MultiprocessingOptions()
        async_options = None
        if num_processes > 1:  # every process writes only its own directory
            if not read_only:
                self.directory.mkdir(parents=True, exist_ok=True)
            multiprocessing = ocp.options.MultiprocessingOptions(
                primary_host=process_index, active_processes={process_index},
                barrier_sync_key_prefix=f"acjax-process{process_index}",
            )
            # Orbax announces "directory created" under coordination-service keys named only
            # by a per-process operation counter, so one process's announcement would let
            # another write into a directory that does not exist yet. Creating the
            # directories before the background write starts needs no announcement.
            async_options = ocp.options.AsyncOptions(create_directories_asynchronously=False)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=not read_only and num_processes == 1,
            read_only=read_only,
            enable_async_checkpointing=not read_only,
            cleanup_tmp_directories=not read_only,
            multiprocessing_options=multiprocessing,
            async_options=async_options,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending (temporary directories never count)."""
        return sorted(int(s) for s in self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(
        self, step: int, state: Any, meta: dict[str, Any], key_impls: list[str | None] | None = None
    ) -> None:
        """Starts writing `state` (a host tree of numpy arrays) at `step`; returns at once.

        Args:
          step: env steps per agent (the step directory's name).
          state: numpy arrays (typed PRNG keys already replaced by `unwrap_keys`).
          meta: JSON-ready description; it gains the leaf manifest (with SHA-256 digests),
            the step and the format version.
          key_impls: `unwrap_keys`'s per-leaf key implementations (None: no keys).

        The write completes in the background; `wait` blocks until it is on disk.
        """
        ocp = self._ocp
        paths, leaves = host_leaves(state)
        impls = key_impls
        meta = {
            **json_safe(meta),
            "format": FORMAT,
            "step": int(step),
            "leaves": leaf_manifest(paths, leaves, impls),
        }
        stored = {f"leaf_{i:04d}": x for i, x in enumerate(leaves) if x.size}
        self._manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(stored), meta=ocp.args.JsonSave(meta)),
            force=True,
        )

    def read_meta(self, step: int) -> dict[str, Any]:
        """The JSON meta of `step` (raises `CheckpointError` if it cannot be read)."""
        ocp = self._ocp
        try:
            meta = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )["meta"]
        except Exception as err:  # noqa: BLE001 - any failure to read means unusable
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} is corrupted or incomplete: its meta "
                f"cannot be read ({type(err).__name__}: {_short(err)}); {self._fix(step)}"
            ) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or "leaves" not in meta:
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} has meta of an unknown format "
                f"(format={meta.get('format') if isinstance(meta, dict) else None!r}, expected "
                f"{FORMAT}); {self._fix(step)}"
            )
        return meta

    def restore(self, step: int, expected: list[dict] | None = None) -> Restored:
        """Reads `step` and checks it against `expected` (a `leaf_manifest`) and its digests.

        Raises:
          CheckpointError: the leaves differ from `expected` (naming the first one that does),
            an array cannot be read, or an array's SHA-256 differs from the one saved with it.
        """
        ocp = self._ocp
        meta = self.read_meta(step)
        manifest = meta["leaves"]
        if expected is not None:
            problem = manifest_mismatch(manifest, expected)
            if problem:
                raise CheckpointError(
                    f"checkpoint {self.directory / str(step)} does not fit this run's state: "
                    f"{problem}; it was written by a different configuration or version"
                )
        reference = {
            f"leaf_{i:04d}": np.zeros(e["shape"], _dtype(e))
            for i, e in enumerate(manifest) if math.prod(e["shape"])
        }
        try:
            stored = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(reference))
            )["state"]
        except Exception as err:  # noqa: BLE001 - any failure to read means unusable
            _drop_closed_loop_callbacks()
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} is corrupted or incomplete: its arrays "
                f"cannot be read ({type(err).__name__}: {_short(err)}); {self._fix(step)}"
            ) from None
        leaves = []
        for i, entry in enumerate(manifest):
            name = f"leaf_{i:04d}"
            x = np.asarray(stored[name]) if name in reference else np.zeros(
                entry["shape"], _dtype(entry)
            )
            if list(x.shape) != entry["shape"] or str(x.dtype) != str(_dtype(entry)):
                raise CheckpointError(
                    f"checkpoint {self.directory / str(step)}: leaf {entry['path']} reads back "
                    f"as {x.dtype}{list(x.shape)}, saved as {entry['dtype']}{entry['shape']}; "
                    f"{self._fix(step)}"
                )
            if _digest(x) != entry["sha256"]:
                raise CheckpointError(
                    f"checkpoint {self.directory / str(step)} is corrupted: leaf {entry['path']} "
                    f"does not match the SHA-256 saved with it; {self._fix(step)}"
                )
            leaves.append(x)
        return Restored(int(step), leaves, meta)

    def wait(self) -> None:
        """Blocks until every started save is complete on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def _fix(self, step: int) -> str:
        older = [s for s in self.steps() if s < step]
        if older:
            return (
                f"move {self.directory / str(step)} out of {self.directory} to resume from the "
                f"previous checkpoint (step {older[-1]})"
            )
        return "start a new run with a new --run-dir"


def layout_meta(layout) -> dict[str, Any]:
    """How a runner's state is laid out on the host (see `acjax.run.parallel.state_to_host`)."""
    agent_major = layout.split == "agents" or layout.data_shards == 1
    return {
        "num_agents": int(layout.num_agents),
        "split": layout.split,
        "num_devices": int(layout.num_devices),
        "num_processes": int(layout.num_processes),
        "env_shards": int(layout.data_shards),
        "leading_axes": ["agents"] if agent_major else ["devices", "agents"],
        "local_shards": 1 if agent_major else int(layout.num_devices),
    }


def layout_mismatch(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why a state saved with layout `saved` cannot be restored into `current`, or None.

    Whole-agent layouts convert freely (one device or any number of them); a state whose
    environments were split over devices needs the same split.
    """
    if saved["num_agents"] != current["num_agents"]:
        return f"it holds {saved['num_agents']} agent(s), this run {current['num_agents']}"
    if saved["leading_axes"] == current["leading_axes"] == ["agents"]:
        return None
    keys = ("leading_axes", "env_shards", "num_devices", "num_processes")
    if all(saved[k] == current[k] for k in keys):
        return None

    def describe(m):
        if m["leading_axes"] == ["agents"]:
            return "whole agents per device"
        return (
            f"environments split over {m['env_shards']} devices ({m['num_devices']} per process "
            f"x {m['num_processes']} process(es))"
        )

    return (
        f"it was written with {describe(saved)} but this run has {describe(current)}; resume "
        f"with the saved layout (--device-split {saved['split']} --num-devices "
        f"{saved['num_devices']}, {saved['num_processes']} process(es))"
    )


def _drop_closed_loop_callbacks() -> None:
    """Silences the reads still in flight after a failed restore.

    When one array of a restore fails, Orbax closes its event loop while tensorstore still
    completes the other reads; their callbacks then fail with "Event loop is closed" and would
    print a traceback each. Only that error is dropped; every other one reaches the previous hook.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_acjax_filter", False):
        return

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        previous(unraisable)

    hook._acjax_filter = True
    sys.unraisablehook = hook


def _dtype(entry: dict) -> np.dtype:
    return np.dtype(entry["dtype"])


def _short(err: Exception, limit: int = 200) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------
# Inference from a run directory
# ----------------------------------------------------------------------------------------------


def load_config(run_dir: str | pathlib.Path) -> tuple[Any, dict[str, Any]]:
    """Rebuilds a run's configuration from its `config.json`.

    Returns:
      `(config, data)`: the frozen config dataclass and the whole JSON document.
    """
    from acjax.core.config import config_from_dict

    path = pathlib.Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(
            f"run_dir='{run_dir}' has no config.json; pass the directory of a run written by "
            "python -m acjax.ppo_a2c --run-dir ..."
        )
    try:
        data = json.loads(path.read_text())
        module = importlib.import_module(data["module"])
        config_cls = getattr(module, data["config_type"])
    except (ValueError, KeyError, ImportError, AttributeError) as err:
        raise CheckpointError(
            f"{path} cannot be read as a run configuration ({type(err).__name__}: {_short(err)})"
        ) from None
    if not dataclasses.is_dataclass(config_cls) or not data["module"].startswith("acjax."):
        raise CheckpointError(
            f"{path} names config type {data['module']}.{data['config_type']}, which is not an "
            "acjax configuration"
        )
    return config_from_dict(config_cls, data["config"]), data


def load_policy(
    run_dir: str | pathlib.Path, *, agent: int = 0, step: int | None = None
) -> Callable[..., jax.Array]:
    """A jitted `policy(obs, key, deterministic=True) -> action` of a run's latest checkpoint.

    The run's `config.json` rebuilds the networks; nothing needs to be restated.

    Args:
      run_dir: a run directory with `config.json` and `checkpoints/`.
      agent: which agent of a multi-seed or sweep run (setting-major: setting h, seed k is
        agent `h * num_seeds + k`).
      step: a checkpoint step (env steps per agent); default: the latest.

    Returns:
      `policy(obs[..., *obs_shape], key, deterministic=True) -> action[...]`: the greedy action
      (`deterministic=True`) or a sample, with observation normalisation applied as in training.
    """
    config, data = load_config(run_dir)
    module = importlib.import_module(data["module"])
    trainer = module.make_train(config)
    checkpointer = Checkpointer(run_dir, read_only=True)
    step = checkpointer.latest_step() if step is None else step
    if step is None or step not in checkpointer.steps():
        raise CheckpointError(
            f"run_dir='{run_dir}' has no complete checkpoint"
            + (f" at step {step}; it has {checkpointer.steps()}" if step is not None else "")
        )
    meta = checkpointer.read_meta(step)
    num_agents = int(meta["layout"]["num_agents"])
    if not 0 <= agent < num_agents:
        raise CheckpointError(
            f"agent={agent} is out of range; the run has {num_agents} agent(s): 0 ... "
            f"{num_agents - 1}"
        )
    # The expected structure of one agent's state, without running anything.
    one = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))
    one, impls = unwrap_keys(one)
    lead = (num_agents,)
    if meta["layout"]["leading_axes"] != ["agents"]:
        lead = (int(meta["layout"]["local_shards"]), num_agents)
    paths, _ = host_leaves(one)
    expected = [
        {"path": p, "shape": list(lead + tuple(x.shape)), "dtype": str(x.dtype), "key_impl": k}
        for p, x, k in zip(paths, jax.tree.leaves(one), impls, strict=True)
    ]
    restored = checkpointer.restore(step, expected)
    checkpointer.close()
    pick = (lambda x: x[agent]) if len(lead) == 1 else (lambda x: x[0, agent])
    state = jax.tree.unflatten(
        jax.tree.structure(one), [pick(x) for x in restored.leaves]
    )
    state = wrap_keys(jax.tree.map(jax.numpy.asarray, state), impls)

    def policy(obs, key, deterministic: bool = True):
        return trainer.act(state, obs, key, deterministic)

    return jax.jit(policy, static_argnames="deterministic")
