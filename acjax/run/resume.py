"""`--resume`: what a run directory says about its run, and continuing it from a checkpoint.

A resumed run reads `config.json`, refuses flags that would change the run (naming every field
and both values), restores the newest complete checkpoint that every process has, and carries
the host's bookkeeping (`Progress`: chunks done, learning curves, seconds spent, the
`metrics.csv` offset) across, so the result equals a run that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from acjax.core.config import config_to_dict
from acjax.run.flags import peek_flags
from acjax.run.options import RESUME_FIXED, RunOptions
from acjax.run.registry import public_module
from acjax.run.rundir import check_resumable

__all__ = [
    "Progress",
    "SavedRun",
    "check_same_run",
    "checked_resume_step",
    "load_saved_run",
    "restore",
    "resume_requested",
    "run_identity",
]


@dataclasses.dataclass
class Progress:
    """Host-side bookkeeping of a run, carried across resumes in the checkpoint's meta."""

    chunks: int
    curves: Any  # [agents, chunks] float64 training return per agent and chunk
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    compile_seconds: float = 0.0
    wall_seconds: float = 0.0
    resumes: int = 0
    last_row: dict[str, Any] | None = None
    metrics_bytes: int | None = None

    def to_meta(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "curves": self.curves[:, : self.chunks].tolist(),
            "train_seconds": self.train_seconds,
            "eval_seconds": self.eval_seconds,
            "compile_seconds": self.compile_seconds,
            "wall_seconds": self.wall_seconds,
            "resumes": self.resumes,
            "last_row": self.last_row,
            "metrics_bytes": self.metrics_bytes,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any], num_agents: int, num_chunks: int) -> Progress:
        import numpy as np

        curves = np.full((num_agents, num_chunks), np.nan)
        saved = np.array(meta["curves"], dtype=np.float64).reshape(num_agents, -1)
        curves[:, : saved.shape[1]] = saved
        fields = {f.name for f in dataclasses.fields(cls)} - {"curves"}
        return cls(curves=curves, **{k: meta[k] for k in fields if k in meta})


def run_identity(configs, sweep_fields, options: RunOptions) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed by this run (JSON-ready)."""
    config = configs[0]
    return {
        "module": public_module(type(config)),
        "config_type": type(config).__name__,
        "config": config_to_dict(config),
        "sweep": {name: [getattr(c, name) for c in configs] for name in sweep_fields},
        "run": {name: getattr(options, name) for name in RESUME_FIXED},
    }


def checked_resume_step(checkpointer, identity, meta_layout) -> int | None:
    """The step to resume from (None: no checkpoint yet), checked against this run.

    Raises `CheckpointError` when its meta names another configuration or layout; only JSON
    is read, so this happens before anything compiles.
    """
    from acjax.run import checkpoint

    step = _common_latest_step(checkpointer)
    if step is None:
        return None
    where = checkpointer.directory / str(step)
    meta = checkpointer.read_meta(step)
    differences = checkpoint.config_differences(meta.get("identity", {}), identity)
    if differences:
        raise checkpoint.CheckpointError(
            f"checkpoint {where} was written by a different configuration: "
            + "; ".join(d.replace("(saved)", "(checkpoint)").replace("(requested)", "(this run)")
                        for d in differences)
            + "; resume it with its own configuration (config.json) or start a new --run-dir"
        )
    problem = checkpoint.layout_mismatch(meta["layout"], meta_layout)
    if problem:
        raise checkpoint.CheckpointError(f"checkpoint {where} cannot be restored here: {problem}")
    return step


def restore(checkpointer, step, runner, state, num_agents, num_chunks):
    """Restores checkpoint `step` into the layout of `state` (a fresh `runner.init` output).

    Returns `(state, progress, step)`; with no checkpoint (`step` None), the fresh `state`,
    empty progress and step 0. Raises `CheckpointError` when the arrays do not fit `state`
    (naming the first leaf that differs) or are corrupted.
    """
    import jax
    import numpy as np

    from acjax.run import checkpoint, parallel

    if step is None:
        empty = Progress(chunks=0, curves=np.full((num_agents, num_chunks), np.nan), resumes=1)
        return state, empty, 0
    raw, impls = checkpoint.unwrap_keys(state)
    like_host = parallel.state_to_host(runner.layout, raw)
    paths, leaves = checkpoint.host_leaves(like_host)
    expected = checkpoint.leaf_manifest(paths, leaves, impls, digests=False)
    restored = checkpointer.restore(step, expected)
    host = jax.tree.unflatten(jax.tree.structure(like_host), restored.leaves)
    state = checkpoint.wrap_keys(parallel.state_from_host(runner.layout, host, raw), impls)
    progress = Progress.from_meta(restored.meta["host"], num_agents, num_chunks)
    progress.resumes += 1
    return state, progress, step


def _common_latest_step(checkpointer) -> int | None:
    """The newest step every process has complete (each process keeps its own checkpoints)."""
    import jax
    import numpy as np

    steps = checkpointer.steps()
    if jax.process_count() == 1:
        return steps[-1] if steps else None
    from jax.experimental import multihost_utils

    width = 64  # the newest 64 steps; int32 halves keep steps beyond 2^31 exact without x64
    recent = (steps[-width:] + [-1] * width)[:width]
    words = np.array([[s >> 31, s & (2**31 - 1)] if s >= 0 else [-1, -1] for s in recent],
                     np.int32)
    gathered = np.asarray(multihost_utils.process_allgather(words))  # [P, width, 2]
    sets = [
        {int(hi) << 31 | int(lo) for hi, lo in process if hi >= 0} for process in gathered
    ]
    common = set.intersection(*sets)
    return max(common) if common else None


def resume_requested(argv: list[str]) -> bool:
    flags = [a for a in argv if a in ("--resume", "--no-resume")]
    return bool(flags) and flags[-1] == "--resume"


@dataclasses.dataclass(frozen=True)
class SavedRun:
    """What a run directory's config.json says about the run (for `--resume`)."""

    run_dir: pathlib.Path
    config: Any
    options: dict[str, Any]
    grid: dict[str, tuple[float, ...]]


def load_saved_run(argv: list[str], command) -> SavedRun:
    """What `--run-dir`'s config.json says about the run that `command` (a
    `registry.CommandLine`) is asked to resume; `ValueError` when there is none to resume or it
    belongs to another command line."""
    from acjax.run.checkpoint import load_config

    known = peek_flags(argv, run_dir=str)
    if known is None or known.run_dir is None:
        raise ValueError(
            "resume=True needs the run to continue: pass --run-dir RUN_DIR with --resume"
        )
    run_dir = pathlib.Path(known.run_dir)
    check_resumable(run_dir)
    config, data = load_config(run_dir)
    if type(config) is not command.config_cls:
        raise ValueError(
            f"run_dir='{run_dir}' holds a {data['module']} run ({data['config_type']}); resume "
            f"it with python -m {data['module']}"
        )
    saved = dict(data.get("run", {}))
    saved.setdefault("num_seeds", data.get("num_seeds", 1))
    fields = {f.name for f in dataclasses.fields(RunOptions)}
    options = {k: v for k, v in saved.items() if k in fields}
    grid = {k: tuple(v) for k, v in data.get("sweep_grid", {}).items()}
    return SavedRun(run_dir, config, options, grid)


def check_same_run(saved: SavedRun, config, grid, options: RunOptions) -> None:
    """Raises `ValueError` naming every field where the flags contradict the saved run."""
    from acjax.run.checkpoint import config_differences

    requested = {
        "config": config_to_dict(config),
        "sweep": {k: list(v) for k, v in grid.items()},
        **{name: getattr(options, name) for name in RESUME_FIXED},
    }
    stored = {
        "config": config_to_dict(saved.config),
        "sweep": {k: list(v) for k, v in saved.grid.items()},
        **{name: saved.options.get(name, getattr(RunOptions(), name)) for name in RESUME_FIXED},
    }
    differences = config_differences(stored, requested)
    if differences:
        names = ", ".join(d.split(":")[0].removeprefix("config.") for d in differences)
        raise ValueError(
            f"--resume continues the run in '{saved.run_dir}' with its saved configuration, but "
            f"the flags change {names} ({'; '.join(differences)}); drop those flags, or start a "
            "new run with a new --run-dir"
        )
