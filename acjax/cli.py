"""The host side of a run: command-line parsing, the report loop, the run directory.

Every algorithm module's `main()` calls `run_main`, so all of them share the same flags for the
run (`--run-dir`, `--eval-episodes`, ...), the same progress display and the same files:

* `config.json`: the full configuration, the run options and library versions;
* `metrics.csv`: one row per report (between jitted chunks of updates), with greedy evaluation
  columns under `--eval-every`; TensorBoard event files (`--tensorboard`) and a Weights & Biases
  run (`--wandb`) get the same rows (`acjax.loggers`);
* `checkpoints/`: Orbax checkpoints of the whole training state, written asynchronously every
  `--checkpoint-every` env steps and at the end (`acjax.checkpoint`); `--resume` continues
  from the latest complete one, bit-identically to a run that was never interrupted;
* `summary.json`: `algo`, `env`, `seed`, `env_steps`, `wall_seconds`, `compile_seconds`,
  `steps_per_second`, `eval_return_mean`, `eval_return_std`, `eval_episodes`,
  `params_fingerprint`, and more.

Training runs as jitted chunks of updates; the host only touches the device between chunks, so
reporting, evaluating and checkpointing never interrupt the compiled loop.
"""

import argparse
import contextlib
import dataclasses
import datetime
import functools
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import tyro

from acjax import interrupt
from acjax.config import config_to_dict, flag


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run and report (not part of the algorithm's configuration)."""

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
    are large, see acjax.backend.SPLIT_STEP_SAMPLES). Ignored when XLA_FLAGS already sets a host
    device count."""
    cpu_threads: int | None = None
    """CPU only: threads that run a compiled program's kernels (default: 1 for a single-device
    run whose SGD steps are small, see acjax.backend.SMALL_STEP_FLOPS; else one per core).
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


def library_versions(env: str = "") -> dict[str, str]:
    out = {"python": platform.python_version()}
    names = ["acjax", "jax", "jaxlib", "flax", "optax", "gymnax", "chex", "orbax-checkpoint"]
    if str(env).startswith("brax/"):
        names += ["brax", "mujoco", "mujoco-mjx"]
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def enable_compilation_cache(path: str | os.PathLike | None = None) -> None:
    """Turns on JAX's persistent compilation cache (safe to call more than once)."""
    import jax

    path = path or os.environ.get("ACJAX_CACHE_DIR") or (
        pathlib.Path.home() / ".cache" / "acjax" / "jax"
    )
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def default_run_dir(config) -> pathlib.Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    algo = getattr(config, "algo", "run")
    env = str(config.env).replace("/", "-")  # brax/ant -> brax-ant: one flat folder
    return pathlib.Path("runs") / f"{env}-{algo}-seed{config.seed}-{stamp}"


def prepare_run_dir(run_dir: pathlib.Path) -> pathlib.Path:
    """Creates `run_dir`; refuses one that already holds a run (nothing is ever overwritten)."""
    run_dir = pathlib.Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(
            f"run_dir='{run_dir}' already holds files; pass a new --run-dir (existing runs are "
            "never overwritten)"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _json_float(x: float) -> float | None:
    return None if (x is None or not math.isfinite(x)) else float(x)


RESUME_FIXED = ("num_seeds", "num_reports", "eval_every", "eval_episodes")
"""Run options a resumed run keeps: they shape the agents, the chunks or metrics.csv's columns."""

RESUME_DEFAULTS = RESUME_FIXED + (
    "cpu_devices", "cpu_threads", "num_devices", "device_split", "checkpoint_every", "keep_checkpoints",
    "tensorboard", "wandb", "wandb_project",
)
"""Run options saved in config.json that a resumed run starts from (the others start fresh)."""


@dataclasses.dataclass
class _Progress:
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
    def from_meta(cls, meta: dict[str, Any], num_agents: int, num_chunks: int) -> "_Progress":
        import numpy as np

        curves = np.full((num_agents, num_chunks), np.nan)
        saved = np.array(meta["curves"], dtype=np.float64).reshape(num_agents, -1)
        curves[:, : saved.shape[1]] = saved
        fields = {f.name for f in dataclasses.fields(cls)} - {"curves"}
        return cls(curves=curves, **{k: meta[k] for k in fields if k in meta})


def _due(every: int | None, before: int, after: int) -> bool:
    """Whether a multiple of `every` env steps lies in (before, after]."""
    return every is not None and after // every > before // every


def run_identity(configs, sweep_fields, options: RunOptions) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed by this run (JSON-ready)."""
    config = configs[0]
    return {
        "module": type(config).__module__,
        "config_type": type(config).__name__,
        "config": config_to_dict(config),
        "sweep": {name: [getattr(c, name) for c in configs] for name in sweep_fields},
        "run": {name: getattr(options, name) for name in RESUME_FIXED},
    }


def train_and_report(
    make_train: Callable[..., Any],
    configs,
    options: RunOptions,
    *,
    run_dir: pathlib.Path | None = None,
    sweep_fields: tuple[str, ...] = (),
    console=None,
    grid: dict[str, tuple[float, ...]] | None = None,
    stop: interrupt.StopRequest | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Trains in jitted chunks, reports between them, evaluates, writes the run directory.

    Every setting in `configs` runs with `options.num_seeds` seeds; all of these agents train in
    one compiled program, laid out on `options.num_devices` devices (see `acjax.parallel`).
    Between chunks the host writes the report row, evaluates (`options.eval_every`) and starts
    checkpoints (`options.checkpoint_every`, and at the end); with `options.resume` the run
    continues from the latest complete checkpoint in `run_dir`.

    Args:
      make_train: an algorithm's `make_train(config, *, num_reports, axis_name)`.
      configs: one configuration, or several that differ only in traced fields (a sweep).
      options: run options (seeds, devices, evaluation, checkpoints, logs, progress display).
      run_dir: where to write; created fresh (default: `default_run_dir(config)`), or the run
        to continue with `options.resume`.
      sweep_fields: the traced fields that vary across `configs` (for the sweep table).
      console: a `rich.console.Console` (default: stdout).
      grid: the sweep grid (`{field: values}`), recorded in config.json for `--resume`.
      stop: set by SIGINT / SIGTERM (`acjax.interrupt.StopRequest`): the run stops at the next
        chunk boundary with a checkpoint.
      command: how the run was started, for the resume line (default `python -m MODULE` of
        the configuration's module).

    Returns:
      The summary dict also written to `summary.json`; for a run stopped early (by
      `options.stop_after_steps` or `stop`), `{"stopped": True, "env_steps": ...,
      "run_dir": ..., "interrupted": signal name or None}`.

    Raises:
      CheckpointError: (with `options.resume`) the checkpoint belongs to another configuration
        or layout, or is corrupted; raised before anything trains.
    """
    import jax
    import numpy as np
    from rich.console import Console
    from rich.markup import escape

    from acjax import checkpoint, loggers, parallel, sweep

    configs = list(configs) if isinstance(configs, (list, tuple)) else [configs]
    config = configs[0]
    main = parallel.is_main_process()
    console = console or Console(quiet=not main)
    start = time.perf_counter()
    run_dir = pathlib.Path(run_dir or options.run_dir or default_run_dir(config))
    if options.resume:
        check_resumable(run_dir)
    elif main:
        prepare_run_dir(run_dir)
        _write_config(run_dir / "config.json", config, configs, sweep_fields, options, grid)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    num_settings, num_seeds = len(configs), options.num_seeds
    num_agents = num_settings * num_seeds
    layout = parallel.choose_layout(
        num_agents=num_agents, num_envs=config.num_envs, num_devices=options.num_devices,
        split=options.device_split,
    )
    runner = parallel.make_runner(
        make_train, config, layout, num_reports=options.num_reports,
        eval_episodes=options.eval_episodes,
    )
    hparams = parallel.stack_agents(sweep.stack_hyperparams(configs), num_seeds)
    seeds = np.tile(np.arange(config.seed, config.seed + num_seeds), num_settings)
    train_keys, eval_keys = parallel.agent_keys(seeds)
    updates_per_chunk = runner.trainer.updates_per_chunk
    steps_per_update = config.num_envs * config.num_steps
    steps_per_chunk = updates_per_chunk * steps_per_update
    num_chunks = config.num_updates // updates_per_chunk
    total_steps = config.num_updates * steps_per_update
    aggregate_steps = total_steps * num_agents
    identity = run_identity(configs, sweep_fields, options)
    meta_layout = checkpoint.layout_meta(layout)

    checkpointer = checkpoint.Checkpointer(
        run_dir, keep=options.keep_checkpoints, process_index=jax.process_index(),
        num_processes=jax.process_count(),
    )
    resume_step = _checked_resume_step(checkpointer, identity, meta_layout) if options.resume \
        else None
    t0 = time.perf_counter()
    state = runner.init(train_keys, hparams)
    progress = _Progress(chunks=0, curves=np.full((num_agents, num_chunks), np.nan))
    resumed_from = None
    if options.resume:
        state, progress, resumed_from = _restore(
            checkpointer, resume_step, runner, state, num_agents, num_chunks
        )
    interrupt.wait(runner.compile, state, hparams)
    progress.compile_seconds += time.perf_counter() - t0
    wall_before = progress.wall_seconds

    who = f"seed {config.seed}{f'..{seeds[num_seeds - 1]}' if num_seeds > 1 else ''}"
    if num_settings > 1:
        who = f"{num_settings} settings x {num_seeds} seed(s)"
    console.print(
        f"[bold]{getattr(config, 'algo', '').upper()}[/] on {config.env}, {who} "
        f"({layout.describe()}): {total_steps:,} env steps per agent in {num_chunks} chunks of "
        f"{updates_per_chunk} updates x {steps_per_update} steps "
        f"(compiled in {time.perf_counter() - t0:.1f} s) -> {escape(str(run_dir))}",
        soft_wrap=True,
    )
    if options.resume:
        console.print(
            f"resumed from the checkpoint at {resumed_from:,} env steps" if resumed_from
            else "no complete checkpoint yet: starting from the beginning"
        )
    logs = loggers.open_loggers(
        run_dir, main=main, tensorboard=options.tensorboard,
        wandb_project=options.wandb_project if options.wandb else None,
        config={**identity["config"], "num_seeds": num_seeds, "sweep": identity["sweep"]},
        resume_bytes=(progress.metrics_bytes or 0) if options.resume else None,
        resume_step=progress.chunks * steps_per_chunk,
    )

    def save(chunks_done: int, state) -> None:
        if not options.checkpoints:
            return
        raw, impls = checkpoint.unwrap_keys(state)
        host = parallel.state_to_host(layout, raw)  # copied now: the next chunk donates `state`
        progress.metrics_bytes = logs.csv_bytes
        progress.wall_seconds = wall_before + time.perf_counter() - start
        meta = {
            "identity": identity,
            "layout": meta_layout,
            "progress": {
                "chunks": chunks_done,
                "updates": chunks_done * updates_per_chunk,
                "env_steps": chunks_done * steps_per_chunk,
                "aggregate_env_steps": chunks_done * steps_per_chunk * num_agents,
                "total_env_steps": total_steps,
            },
            "host": progress.to_meta(),
            "versions": library_versions(config.env),
        }
        checkpointer.save(chunks_done * steps_per_chunk, host, meta, impls)

    print_every = max(1, num_chunks // options.num_reports)
    stop = stop or interrupt.StopRequest()
    try:
        state, stopped = _train_chunks(
            runner, state, hparams, eval_keys, options, progress, logs, console, save, stop,
            num_chunks=num_chunks, steps_per_chunk=steps_per_chunk, num_agents=num_agents,
            print_every=print_every, total_steps=total_steps, main=main,
        )
    except BaseException:
        logs.close()
        checkpointer.close()  # lets a started save finish; the run resumes from it
        raise
    logs.close()
    if stopped:
        checkpointer.close()
        steps = progress.chunks * steps_per_chunk
        command = command or f"python -m {type(config).__module__}"
        resume = f"{command} --run-dir {shlex.quote(str(run_dir))} --resume"
        if jax.process_count() > 1:
            resume += " (every process, with its own --process-id)"
        done = f"after {steps:,} of {total_steps:,} env steps"
        if not stop.requested:
            line = f"stopped {done} (checkpoint saved); continue with: {resume}"
        elif steps == 0:
            line = (f"interrupted ({stop.name}) before the first chunk finished: nothing was "
                    f"trained; start it with: {resume}")
        elif options.checkpoints:
            line = f"interrupted ({stop.name}) {done}, checkpoint saved; resume with: {resume}"
        else:
            line = (f"interrupted ({stop.name}) {done}; checkpoints are off (--no-checkpoints), "
                    f"so this run's {steps:,} env steps ({progress.train_seconds:.1f} s of "
                    "training) are lost; start again with a new --run-dir")
        console.print(line, markup=False, highlight=False, soft_wrap=True)
        return {"stopped": True, "env_steps": steps, "run_dir": str(run_dir),
                "interrupted": stop.name or None, "exit_code": stop.exit_code if stop.requested
                else 0}

    t_eval = time.perf_counter()
    eval_returns, eval_lengths = interrupt.wait(runner.evaluate, state, eval_keys)  # [A, E]
    per_agent = np.mean(eval_returns, axis=1)
    eval_seconds = time.perf_counter() - t_eval
    params = jax.device_get(runner.agent_state(state).params)
    checkpointer.close()  # waits for the final checkpoint
    wall_seconds = wall_before + time.perf_counter() - start
    train_seconds = progress.train_seconds
    last = progress.last_row or {}
    summary = {
        "algo": getattr(config, "algo", type(config).__name__),
        "env": config.env,
        "seed": config.seed,
        "num_seeds": int(num_seeds),
        "num_settings": int(num_settings),
        "env_steps": int(total_steps),
        "aggregate_env_steps": int(aggregate_steps),
        "num_updates": int(config.num_updates),
        "wall_seconds": round(wall_seconds, 3),
        "compile_seconds": round(progress.compile_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "periodic_eval_seconds": round(progress.eval_seconds, 3),
        "steps_per_second": round(aggregate_steps / max(train_seconds, 1e-9), 1),
        "final_train_return": _json_float(last.get("episode_return")),
        "eval_return_mean": float(np.mean(per_agent)),
        "eval_return_std": float(np.std(eval_returns)),
        "eval_return_median": float(np.median(per_agent)),
        "eval_return_min": float(np.min(per_agent)),
        "eval_return_max": float(np.max(per_agent)),
        "eval_return_per_seed": [float(x) for x in per_agent],
        "eval_length_mean": float(np.mean(eval_lengths)),
        "eval_episodes": int(options.eval_episodes),
        "params_fingerprint": params_fingerprint(params),
        "resumes": int(progress.resumes),
        "checkpoints": checkpointer.steps(),
        "device": str(jax.devices()[0].device_kind),
        "num_devices": int(layout.num_devices),
        "num_processes": int(layout.num_processes),
        "device_split": layout.split,
        "run_dir": str(run_dir),
    }
    curves = progress.curves
    by_setting = per_agent.reshape(num_settings, num_seeds)
    labels = sweep.setting_labels(configs, sweep_fields)
    if num_settings > 1:
        table = []
        if main:
            table = sweep.write_table(
                run_dir / "sweep.csv", configs, sweep_fields, by_setting,
                final_train_returns=curves[:, -1].reshape(num_settings, num_seeds),
            )
            steps = (np.arange(num_chunks) + 1) * steps_per_chunk
            sweep.plot_learning_curves(
                run_dir / "sweep.png", steps, curves.reshape(num_settings, num_seeds, -1),
                labels, title=f"{summary['algo'].upper()} on {config.env}",
            )
        summary["sweep"] = [_json_row(r) for r in table]
    suffix = "" if main else f"-process{jax.process_index()}"
    with _atomic_path(run_dir / f"params{suffix}.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **_flat_params(params))
    _write_text_atomic(run_dir / f"summary{suffix}.json", json.dumps(summary, indent=2))
    best = ""
    if num_settings > 1:
        medians = np.median(by_setting, axis=1)
        best = f"; best setting {labels[int(np.argmax(medians))]} (median {medians.max():.2f})"
    console.print(
        f"[bold]done[/] in {wall_seconds:.1f} s (compile {progress.compile_seconds:.1f} s, "
        f"{summary['steps_per_second']:,.0f} steps/s); greedy eval over "
        f"{options.eval_episodes} episodes: {summary['eval_return_mean']:.2f} "
        f"+- {summary['eval_return_std']:.2f}"
        + (
            f" (agents: median {summary['eval_return_median']:.2f}, "
            f"min {summary['eval_return_min']:.2f})" if num_agents > 1 else ""
        )
        + best
    )
    return summary


def _checked_resume_step(checkpointer, identity, meta_layout) -> int | None:
    """The step to resume from (None: no checkpoint yet), checked against this run.

    Raises `CheckpointError` when its meta names another configuration or layout; only JSON
    is read, so this happens before anything compiles.
    """
    from acjax import checkpoint

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


def _restore(checkpointer, step, runner, state, num_agents, num_chunks):
    """Restores checkpoint `step` into the layout of `state` (a fresh `runner.init` output).

    Returns `(state, progress, step)`; with no checkpoint (`step` None), the fresh `state`,
    empty progress and step 0. Raises `CheckpointError` when the arrays do not fit `state`
    (naming the first leaf that differs) or are corrupted.
    """
    import jax
    import numpy as np

    from acjax import checkpoint, parallel

    if step is None:
        empty = _Progress(chunks=0, curves=np.full((num_agents, num_chunks), np.nan), resumes=1)
        return state, empty, 0
    raw, impls = checkpoint.unwrap_keys(state)
    like_host = parallel.state_to_host(runner.layout, raw)
    paths, leaves = checkpoint.host_leaves(like_host)
    expected = checkpoint.leaf_manifest(paths, leaves, impls, digests=False)
    restored = checkpointer.restore(step, expected)
    host = jax.tree.unflatten(jax.tree.structure(like_host), restored.leaves)
    state = checkpoint.wrap_keys(parallel.state_from_host(runner.layout, host, raw), impls)
    progress = _Progress.from_meta(restored.meta["host"], num_agents, num_chunks)
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


def _train_chunks(
    runner, state, hparams, eval_keys, options, progress, logs, console, save, stop, *,
    num_chunks, steps_per_chunk, num_agents, print_every, total_steps, main,
) -> tuple[Any, bool]:
    """The chunk loop from `progress.chunks` on; returns the state and whether it stopped early.

    After each chunk: the report row (with a greedy evaluation when one is due) goes to the
    logs, then a checkpoint is started when one is due, at the end, or when stopping (at
    `options.stop_after_steps`, or on a signal recorded in `stop`; in a multi-process run every
    process stops at the first chunk after any of them got one).
    """
    import jax
    import numpy as np
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    show_bar = main and options.progress and console.is_terminal
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
        TimeRemainingColumn(),
        console=console,
        disable=not show_bar,
        transient=True,
    ) as bar:
        task = bar.add_task("training", total=total_steps,
                            completed=progress.chunks * steps_per_chunk)
        start = time.perf_counter()
        if _stop_requested(stop):  # during compilation: nothing new to save
            return state, True
        for i in range(progress.chunks, num_chunks):
            t_chunk = time.perf_counter()
            state, metrics = interrupt.wait(runner.chunk, state, hparams)
            dt = time.perf_counter() - t_chunk
            progress.train_seconds += dt
            before, env_steps = i * steps_per_chunk, (i + 1) * steps_per_chunk
            evaluation = None
            if options.eval_every is not None:
                evaluation = {}
                if _due(options.eval_every, before, env_steps):
                    t_eval = time.perf_counter()
                    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(eval_keys, i + 1)
                    returns, lengths = interrupt.wait(runner.evaluate, state, keys)
                    evaluation = _eval_columns(returns, lengths)
                    progress.eval_seconds += time.perf_counter() - t_eval
            row = _report_row(
                metrics, env_steps, (i + 1) * runner.trainer.updates_per_chunk,
                progress.wall_seconds + time.perf_counter() - start,
                num_agents * steps_per_chunk / dt, evaluation,
            )
            counts = np.sum(metrics["episode_count"], axis=-1)
            sums = np.sum(metrics["episode_return_sum"], axis=-1)
            progress.curves[:, i] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
            progress.chunks, progress.last_row = i + 1, row
            logs.write(row)
            bar.update(task, completed=env_steps)
            last = i + 1 == num_chunks
            stop_now = not last and (
                (options.stop_after_steps is not None and env_steps >= options.stop_after_steps)
                or _stop_requested(stop)
            )
            if last or stop_now or _due(options.checkpoint_every, before, env_steps):
                save(i + 1, state)
            if (i + 1) % print_every == 0 or last or stop_now or evaluation:
                # "-": no episode ended within this chunk (long episodes, short chunks)
                ret = row["episode_return"]
                ret = f"{ret:>9.2f}" if math.isfinite(ret) else f"{'-':>9}"
                line = (
                    f"steps {env_steps:>11,}  return {ret}  "
                    f"{row['steps_per_second']:>11,.0f} steps/s"
                )
                if evaluation:
                    line += f"  greedy eval {row['eval_return']:>9.2f}"
                console.print(line)
            if stop_now:
                return state, True
    return state, False


def _stop_requested(stop: interrupt.StopRequest) -> bool:
    """Whether this process, or (in a multi-process run) any process, got a stop signal."""
    import jax

    if jax.process_count() == 1:
        return stop.requested
    import numpy as np
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.int32(stop.signum or 0))
    if not stop.requested and np.any(flags):
        stop.request(int(np.max(flags)))
    return stop.requested


def _eval_columns(returns, lengths) -> dict[str, float]:
    """metrics.csv's evaluation columns from `returns[A, E]`, `lengths[A, E]`."""
    import numpy as np

    per_agent = np.mean(returns, axis=1)
    return {
        "eval_return": float(np.mean(per_agent)),
        "eval_return_seed_min": float(np.min(per_agent)),
        "eval_return_seed_max": float(np.max(per_agent)),
        "eval_length": float(np.mean(lengths)),
    }


def params_fingerprint(params) -> str:
    """SHA-256 over the parameter leaves' bytes in tree order (cheap equality of runs)."""
    import hashlib

    import jax
    import numpy as np

    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return digest.hexdigest()


def _flat_params(params) -> dict[str, Any]:
    import jax
    import numpy as np

    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def _json_row(row: dict) -> dict:
    return {k: (_json_float(v) if isinstance(v, float) else v) for k, v in row.items()}


def _write_config(path, config, configs, sweep_fields, options, grid=None) -> None:
    data = {
        "module": type(config).__module__,
        "config_type": type(config).__name__,
        "config": config_to_dict(config),
        "num_seeds": options.num_seeds,
        "run": {name: _json_value(getattr(options, name)) for name in RESUME_DEFAULTS},
        "versions": library_versions(config.env),
    }
    if len(configs) > 1:
        data["sweep"] = {
            name: [getattr(c, name) for c in configs] for name in sweep_fields
        }
    if grid:
        data["sweep_grid"] = {name: list(values) for name, values in grid.items()}
    _write_text_atomic(path, json.dumps(data, indent=2))


def _json_value(value: Any) -> Any:
    return str(value) if isinstance(value, pathlib.Path) else value


@contextlib.contextmanager
def _atomic_path(path: pathlib.Path):
    """Yields a temporary path beside `path`, renamed onto it once the block completes.

    A process killed mid-write leaves the old file (or none), never a half-written one.
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield pathlib.Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_text_atomic(path: pathlib.Path, text: str) -> None:
    with _atomic_path(path) as tmp:
        tmp.write_text(text)


def check_resumable(run_dir: pathlib.Path) -> None:
    """Raises `ValueError` unless `run_dir` holds a run that `--resume` can continue."""
    run_dir = pathlib.Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ValueError(
            f"run_dir='{run_dir}' holds no run to resume (no config.json); drop --resume to "
            "start a new run there, or pass the directory of an existing run"
        )
    if (run_dir / "summary.json").exists():
        raise ValueError(
            f"run_dir='{run_dir}' holds a finished run (summary.json); there is nothing to "
            "resume. To train longer, start a new run with a new --run-dir"
        )


def _report_row(
    metrics, env_steps: int, updates: int, wall: float, sps: float,
    evaluation: dict[str, float] | None = None,
) -> dict:
    import numpy as np

    # Metrics are [seeds, updates]: totals per seed give both the mean over all finished
    # episodes and the spread of the training return across seeds.
    seed_counts = np.sum(metrics["episode_count"], axis=-1)
    seed_return_sums = np.sum(metrics["episode_return_sum"], axis=-1)
    count = float(np.sum(seed_counts))
    nan = float("nan")
    row = {
        "env_steps": env_steps,
        "updates": updates,
        "wall_seconds": round(wall, 3),
        "steps_per_second": round(sps, 1),
        "episode_return": float(np.sum(seed_return_sums)) / count if count else nan,
        "episode_length": float(np.sum(metrics["episode_length_sum"])) / count if count else nan,
        "episodes": int(count),
    }
    finite = seed_return_sums[seed_counts > 0] / seed_counts[seed_counts > 0]
    row["episode_return_seed_min"] = float(finite.min()) if finite.size else nan
    row["episode_return_seed_max"] = float(finite.max()) if finite.size else nan
    if evaluation is not None:  # the columns exist on every row; blank where none was due
        for name in ("eval_return", "eval_return_seed_min", "eval_return_seed_max",
                     "eval_length"):
            row[name] = evaluation.get(name, "")
    skip = {"episode_return_sum", "episode_length_sum", "episode_count"}
    for name in sorted(metrics):
        if name not in skip:
            row[name] = float(np.mean(metrics[name]))
    return row


def _preparse(argv: list[str], config_cls) -> tuple[str, str | None]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--env", default=config_cls.env)
    parser.add_argument("--algo", default=None)
    known, _ = parser.parse_known_args(argv)
    return known.env, known.algo


def _peek_flags(argv: list[str], **flags: type) -> argparse.Namespace | None:
    """Reads a few typed flags (either spelling, unset: None) before the full parse.

    Returns None when one is malformed; the full parse then reports it properly.
    """
    specs = [(name, dict(type=kind, default=None)) for name, kind in flags.items()]
    return _parse_peek(argv, specs)


def peek_config_flags(argv: list[str], base, *names: str) -> argparse.Namespace | None:
    """Reads some fields of a configuration from the flags before the full parse.

    Unset flags keep `base`'s values; dotted names are nested fields (`network.hidden_sizes`,
    read into the attribute `hidden_sizes`), tuple fields take several integers. Nothing is
    built and JAX is not started (used for the execution-thread rule, `step_flops`). Returns
    None when a flag is malformed; the full parse then reports it properly.
    """
    specs = []
    for name in names:
        value = functools.reduce(getattr, name.split("."), base)
        kind = dict(type=int, nargs="*", default=list(value)) if isinstance(value, tuple) else (
            dict(type=type(value), default=value))
        specs.append((name, dict(kind, dest=name.rsplit(".", 1)[-1])))
    return _parse_peek(argv, specs)


def _parse_peek(argv: list[str], specs: list[tuple[str, dict]]) -> argparse.Namespace | None:
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    for name, kwargs in specs:
        parser.add_argument(flag(name), "--" + name, **kwargs)
    try:
        known, _ = parser.parse_known_args(argv)
    except (argparse.ArgumentError, SystemExit):
        return None
    return known


def _configure_cpu_devices(
    argv: list[str], num_settings: int, defaults: dict[str, Any] | None = None,
    *, lone_agent_devices: int = 1,
) -> int | None:
    """Splits the host CPU into XLA devices (before JAX starts) per `--cpu-devices`.

    One XLA CPU device runs a program's small operations on about one core; several devices
    run their agents' programs side by side, so independent agents keep every core busy.
    A single agent gets `lone_agent_devices` (the algorithm's choice for its SGD step size,
    see `acjax.backend.data_parallel_devices`): its environments are then split over them.
    `defaults` (a resumed run's saved options) fill the flags that `argv` does not give.

    Returns the device count it chose for a lone agent's split environments (to be recorded
    as the run's `cpu_devices`, so that a resumed run gets the same layout), else None.
    """
    known = _peek_flags(argv, cpu_devices=int, num_seeds=int, num_devices=int,
                        num_processes=int, device_split=str)
    if known is None:
        return None
    lone = None
    for name, value in (defaults or {}).items():
        if getattr(known, name, 0) is None:
            setattr(known, name, value)
    if known.cpu_devices is not None and known.cpu_devices < 1:
        raise ValueError(
            f"cpu_devices={known.cpu_devices} must be >= 1; pass e.g. --cpu-devices 2"
        )
    count = known.cpu_devices
    if count is None:
        # Small per-agent programs leave a core partly idle, so up to 4 devices per core pay
        # off (measured on 2 cores: 64 agents on 1/2/4/8 devices ran at ~57k/77k/100k/116k
        # steps/s); the count must divide the agents so whole agents go to each device.
        agents, cores = num_settings * max(known.num_seeds or 1, 1), os.cpu_count() or 1
        count = max(d for d in range(1, min(agents, 4 * cores) + 1) if agents % d == 0)
        if (agents == 1 and known.num_devices is None and (known.num_processes or 1) == 1
                and known.device_split != "agents"):
            count = max(lone_agent_devices, 1)
            lone = count if count > 1 else None
        if known.num_devices is not None:
            count = max(count, known.num_devices)
    flags = os.environ.get("XLA_FLAGS", "")
    if count > 1 and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
        return lone
    return None


def _configure_cpu_threads(
    argv: list[str], step_flops: int | None, defaults: dict[str, Any] | None = None
) -> int | None:
    """Starts JAX's CPU backend with a one-thread execution pool when that runs faster.

    `--cpu-threads N` (or a resumed run's saved value) asks for N; without it, a run on one
    device and one process whose SGD step costs at most `backend.SMALL_STEP_FLOPS`
    (`step_flops`, the algorithm's estimate) gets one thread. Must run before anything starts
    JAX's backend. Returns the pool size it set, or None (JAX's default: one per core).
    """
    from acjax import backend

    known = _peek_flags(argv, cpu_threads=int, num_processes=int)
    if known is None:
        return None
    threads = known.cpu_threads
    if threads is None and defaults:
        threads = defaults.get("cpu_threads")
    if threads is not None and threads < 1:
        raise ValueError(f"cpu_threads={threads} must be >= 1; pass e.g. --cpu-threads 1")
    if threads is None:
        flags = os.environ.get("XLA_FLAGS", "")
        devices = [int(n) for n in
                   re.findall(r"xla_force_host_platform_device_count=(\d+)", flags)]
        single = (not devices or devices[-1] == 1) and (known.num_processes or 1) == 1
        if not (single and step_flops is not None and step_flops <= backend.SMALL_STEP_FLOPS):
            return None
        threads = 1
    return backend.start_cpu_backend(threads)


def _preparse_distributed(argv: list[str]):
    from acjax.parallel import DistributedOptions

    known = _peek_flags(argv, coordinator_address=str, num_processes=int, process_id=int)
    if known is None:
        return DistributedOptions()
    return DistributedOptions(known.coordinator_address, known.num_processes, known.process_id)


def parse_args(
    config_cls,
    preset: Callable[[str, str | None], Any],
    argv: list[str],
    description: str,
    *,
    default=None,
    run_default: RunOptions | None = None,
    prog: str | None = None,
):
    """Parses `argv` into `(config, RunOptions)`.

    `--env` (and `--algo`) pick a preset first; every other flag then overrides a field of it,
    and `--help` shows the chosen preset's values as defaults. `default` / `run_default`
    replace the preset and the default options (a resumed run starts from its saved ones).
    """
    if default is None:
        env, algo = _preparse(argv, config_cls)
        default = preset(env, algo)

    def entry(config, run):
        return config, run

    entry.__annotations__ = {
        "config": Annotated[config_cls, tyro.conf.arg(name="")],
        "run": Annotated[RunOptions, tyro.conf.arg(name="")],
    }
    entry.__defaults__ = (default, run_default or RunOptions())
    return tyro.cli(entry, args=argv, description=description, prog=prog)


def _resume_requested(argv: list[str]) -> bool:
    flags = [a for a in argv if a in ("--resume", "--no-resume")]
    return bool(flags) and flags[-1] == "--resume"


@dataclasses.dataclass(frozen=True)
class _SavedRun:
    """What a run directory's config.json says about the run (for `--resume`)."""

    run_dir: pathlib.Path
    config: Any
    options: dict[str, Any]
    grid: dict[str, tuple[float, ...]]


def _load_saved_run(argv: list[str], config_cls) -> _SavedRun:
    from acjax.checkpoint import load_config

    known = _peek_flags(argv, run_dir=str)
    if known is None or known.run_dir is None:
        raise ValueError(
            "resume=True needs the run to continue: pass --run-dir RUN_DIR with --resume"
        )
    run_dir = pathlib.Path(known.run_dir)
    check_resumable(run_dir)
    config, data = load_config(run_dir)
    if type(config) is not config_cls:
        raise ValueError(
            f"run_dir='{run_dir}' holds a {data['module']} run ({data['config_type']}); resume "
            f"it with python -m {data['module']}"
        )
    saved = dict(data.get("run", {}))
    saved.setdefault("num_seeds", data.get("num_seeds", 1))
    fields = {f.name for f in dataclasses.fields(RunOptions)}
    options = {k: v for k, v in saved.items() if k in fields}
    grid = {k: tuple(v) for k, v in data.get("sweep_grid", {}).items()}
    return _SavedRun(run_dir, config, options, grid)


def _check_same_run(saved: _SavedRun, config, grid, options: RunOptions) -> None:
    """Raises `ValueError` naming every field where the flags contradict the saved run."""
    from acjax.checkpoint import config_differences

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


def _check_run_options(options: RunOptions) -> None:
    """Raises `ValueError` naming the option, its value and the fix."""
    from acjax import loggers

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


def run_main(
    *,
    description: str,
    config_cls,
    preset: Callable[[str, str | None], Any],
    make_train: Callable[..., Any],
    argv: list[str] | None = None,
    step_flops: Callable[[list[str], Any], int | None] | None = None,
    lone_agent_devices: Callable[[list[str], Any], int] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Parses flags, validates, trains, evaluates; a bad flag exits with status 2, no traceback.

    `command` is how a user starts it (default `python -m MODULE` of `config_cls`): `--help`'s
    usage line and the resume line show it. SIGINT (Ctrl-C) or SIGTERM stops the run at the
    next chunk boundary with a checkpoint and a resume line, and the process exits with 130 or
    143 without a traceback (a second signal stops it at once; `acjax.interrupt`).

    `step_flops(argv, saved_config)` estimates one SGD step's matmul FLOPs from the flags (or
    a resumed run's saved configuration) before JAX starts, without building anything; small
    steps then run on a one-thread execution pool (see `_configure_cpu_threads`).
    `lone_agent_devices(argv, saved_config)` gives, the same way, the CPU devices a single
    agent's environments are split over when `--cpu-devices` is not given (default 1).

    `--sweep.FIELD v1 v2 ...` (any traced field; `lr` for learning_rate) runs the grid of all
    combinations x `--num-seeds` in one compiled program and writes `sweep.csv`/`sweep.png`.
    `--run-dir RUN_DIR --resume` continues a run from its latest complete checkpoint with the
    configuration saved in RUN_DIR/config.json; flags that contradict it are an error.
    """
    command = command or f"python -m {config_cls.__module__}"
    with interrupt.StopRequest() as stop:
        summary = _run_main(
            description, config_cls, preset, make_train, argv, step_flops, lone_agent_devices,
            command, stop,
        )
    if summary.get("exit_code"):
        raise SystemExit(summary["exit_code"])
    return summary


def _run_main(
    description, config_cls, preset, make_train, argv, step_flops, lone_agent_devices, command,
    stop,
) -> dict[str, Any]:
    from acjax import parallel, sweep
    from acjax.checkpoint import CheckpointError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # Joining a multi-process run must come before anything touches JAX's backend
        # (importing gymnax does), hence before the presets are even looked at.
        parallel.initialize_distributed(_preparse_distributed(argv))
        saved = _load_saved_run(argv, config_cls) if _resume_requested(argv) else None
        argv, grid = sweep.split_sweep_args(argv, config_cls)
        if saved is not None and not grid:
            grid = dict(saved.grid)
        lone_split = _configure_cpu_devices(
            argv, math.prod(len(v) for v in grid.values()),
            defaults=saved.options if saved is not None else None,
            lone_agent_devices=lone_agent_devices(
                argv, saved.config if saved is not None else None) if lone_agent_devices else 1,
        )
        _configure_cpu_threads(
            argv,
            step_flops(argv, saved.config if saved is not None else None) if step_flops
            else None,
            defaults=saved.options if saved is not None else None,
        )
        run_default = None
        if saved is not None:
            run_default = dataclasses.replace(RunOptions(), **saved.options)
        config, options = parse_args(
            config_cls, preset, argv, description,
            default=saved.config if saved is not None else None, run_default=run_default,
            prog=command,
        )
        if lone_split and options.cpu_devices is None:
            # Recorded in config.json: a resumed run then splits the same way.
            options = dataclasses.replace(options, cpu_devices=lone_split)
        config.validate()
        if saved is not None:
            _check_same_run(saved, config, grid, options)
        configs = sweep.expand_grid(config, grid)
        _check_run_options(options)
        run_dir = options.run_dir or default_run_dir(config)
        if options.process_id in (None, 0) and not options.resume:
            prepare_run_dir(run_dir)
        layout = parallel.choose_layout(
            num_agents=len(configs) * options.num_seeds, num_envs=config.num_envs,
            num_devices=options.num_devices, split=options.device_split,
        )
        check_layout = getattr(config, "check_layout", None)
        if check_layout is not None:  # a configuration that cannot use every layout says so
            check_layout(layout)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if options.compilation_cache:
        enable_compilation_cache()
    try:
        return train_and_report(
            make_train, configs, options, run_dir=run_dir, sweep_fields=tuple(grid), grid=grid,
            stop=stop, command=command,
        )
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def entry(main: Callable[[], Any]) -> None:
    """Runs a command line's `main()`; a Ctrl-C before training starts (while libraries are
    imported or flags parsed) exits with 130 without a traceback, like one during training."""
    try:
        main()
    except KeyboardInterrupt:
        print("\ninterrupted (SIGINT) before training started", file=sys.stderr)
        raise SystemExit(130) from None
