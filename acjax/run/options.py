"""How a command line runs and reports: `RunOptions` (not part of an algorithm's configuration)."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

from acjax.core.config import flag

__all__ = ["RESUME_DEFAULTS", "RESUME_FIXED", "RunOptions", "check_run_options"]


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run and report (not part of the algorithm's configuration)."""

    preset: str | None = None
    """Start from a named preset instead of the environment's (python -m acjax.ppo_a2c:
    da2c-mc, da2c-nstep); other flags still override its fields."""
    run_dir: pathlib.Path | None = None
    """Directory for config.json, metrics.csv, checkpoints/ and summary.json (default:
    runs/ENV-ALGO-seedS-TIME). An existing run directory is never overwritten."""
    resume: bool = False
    """Continue the run in --run-dir from its latest complete checkpoint, with its saved
    configuration (flags given must agree with it); the result equals an uninterrupted run.
    Files are appended to, never rewritten."""
    checkpoint_every: int | None = None
    """Save a checkpoint every this many env steps per agent (rounded to whole chunks; written
    in the background while training goes on). One is always saved at the end."""
    keep_checkpoints: int = 3
    """Complete checkpoints to keep in RUN_DIR/checkpoints (older ones are deleted only after a
    newer one is complete)."""
    checkpoints: bool = True
    """Write checkpoints (--no-checkpoints: none at all, not even at the end or when the run is
    interrupted, so an interrupted run cannot be resumed)."""
    stop_after_steps: int | None = None
    """Stop once this many env steps per agent are done (rounded up to whole chunks), saving a
    checkpoint; --resume then continues to --total-timesteps."""
    eval_every: int | None = None
    """Greedy evaluation (--eval-episodes per agent on separate environments) every this many
    env steps (rounded to whole chunks); adds eval_* columns to metrics.csv."""
    tensorboard: bool = False
    """Also write TensorBoard event files to RUN_DIR/tensorboard (needs tensorboardX: pip
    install 'acjax[tensorboard]')."""
    wandb: bool = False
    """Also log to Weights & Biases (needs wandb: pip install 'acjax[wandb]'; WANDB_MODE=offline
    logs without an account)."""
    wandb_project: str = "acjax"
    """Weights & Biases project (with --wandb)."""
    num_seeds: int = 1
    """Train this many independent agents (seeds seed, seed+1, ...) in one jit(vmap(...))."""
    eval_episodes: int = 20
    """Greedy evaluation episodes after training (per seed)."""
    num_reports: int = 20
    """About how many progress reports (jitted chunks) the run is split into."""
    progress: bool = True
    """Show a live progress bar on a terminal (report lines are printed either way)."""
    compilation_cache: bool = True
    """Keep compiled programs in JAX's persistent cache (~/.cache/acjax/jax) for faster restarts."""
    cpu_devices: int | None = None
    """CPU only: split the host CPU into this many XLA devices so agents train in parallel
    threads (default: the largest divisor of the number of agents up to 4 per core; for a
    single agent 1, or one per core with its environments split over them when its SGD steps
    are large, see acjax.cpu.sizing.SPLIT_STEP_SAMPLES). Ignored when XLA_FLAGS already sets a host
    device count."""
    cpu_threads: int | None = None
    """CPU only: threads that run a compiled program's kernels (default: 1 for a single-device
    run whose SGD steps are small, see acjax.cpu.sizing.SMALL_STEP_FLOPS; else one per core).
    Compilation always uses every core."""
    num_devices: int | None = None
    """Local devices to use (default: all). Seeds x sweep settings are spread over them when
    their number is a multiple of it, otherwise each agent's environments are split."""
    device_split: Literal["auto", "agents", "envs"] = "auto"
    """agents: whole agents per device; envs: data parallel (environments split over devices,
    gradients averaged); auto: agents when they divide evenly, else envs."""
    coordinator_address: str | None = None
    """Multi-process run: host:port of process 0 (with --num-processes and --process-id)."""
    num_processes: int | None = None
    """Multi-process run: total number of processes."""
    process_id: int | None = None
    """Multi-process run: this process's index, 0 ... num_processes - 1."""


RESUME_FIXED = ("num_seeds", "num_reports", "eval_every", "eval_episodes")
"""Run options a resumed run keeps: they shape the agents, the chunks or metrics.csv's columns."""


RESUME_DEFAULTS = RESUME_FIXED + (
    "cpu_devices", "cpu_threads", "num_devices", "device_split", "checkpoint_every", "keep_checkpoints",
    "tensorboard", "wandb", "wandb_project",
)
"""Run options saved in config.json that a resumed run starts from (the others start fresh)."""


def check_run_options(options: RunOptions) -> None:
    """Raises `ValueError` naming the option, its value and the fix."""
    from acjax.run import loggers

    for name, example in (("num_seeds", 8), ("eval_episodes", 10), ("num_reports", 20),
                          ("keep_checkpoints", 3)):
        value = getattr(options, name)
        if value < 1:
            raise ValueError(f"{name}={value} must be >= 1; pass e.g. {flag(name)} {example}")
    for name in ("checkpoint_every", "stop_after_steps", "eval_every"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise ValueError(
                f"{name}={value} must be a positive number of env steps; pass e.g. "
                f"{flag(name)} 100000 or leave it out"
            )
    if not options.checkpoints:
        for name in ("checkpoint_every", "stop_after_steps", "resume"):
            if getattr(options, name) not in (None, False):
                raise ValueError(
                    f"{flag(name)} needs checkpoints, but --no-checkpoints turns them off; drop "
                    "one of the two"
                )
    loggers.check_available(tensorboard=options.tensorboard, wandb=options.wandb)
