"""The command line `python -m acjax.impala`: an actor-learner run with its run directory.

`run_main(argv)` parses the flags into an `ImpalaConfig` and `RunOptions` (the same flags,
run directory, metrics.csv, progress display, greedy evaluation, checkpoints and `--resume` as
the other command lines; bad input exits with 2 and one line before anything compiles), splits
the CPU into a learner device and an actor device when it runs on the CPU, then runs the
learner's loop (`acjax.agents.impala.loop`) over the actor threads
(`acjax.agents.impala.runtime`).

Checkpoints hold the learner's state (parameters, optimizer, version, key); a resumed run
starts fresh actors from the restored parameters, so it continues the run but, acting
asynchronously, does not repeat an uninterrupted one bit for bit. A SIGINT / SIGTERM, a dead
actor or environment worker, or actors that send nothing within `--timeout` seconds stop the
run with a checkpoint of the last update and a line saying why and how to resume.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import sys
import time
import types
from typing import Any

from acjax import cpu
from acjax.agents.impala.config import ImpalaConfig
from acjax.agents.impala.presets import impala_preset
from acjax.cpu import host
from acjax.run import interrupt
from acjax.run.checkpoint import CheckpointError
from acjax.run.flags import parse_args
from acjax.run.options import RunOptions, check_run_options
from acjax.run.resume import check_same_run, load_saved_run, resume_requested
from acjax.run.rundir import default_run_dir, prepare_run_dir

__all__ = ["DESCRIPTION", "check_options", "restore_learner_state", "run_main", "train_and_report"]

MODULE = "acjax.impala"
DESCRIPTION = ("Asynchronous actor-learner: IMPALA (V-trace) and A3C (--mode a3c) on gymnax "
               "environments or gymnasium ones on the host (--env gymnasium:ID).")
_COMMAND = types.SimpleNamespace(config_cls=ImpalaConfig, module=MODULE)


def check_options(options: RunOptions) -> None:
    """Refuses the run options the actor-learner has no use for, naming the fix."""
    check_run_options(options)
    if options.num_seeds != 1:
        raise ValueError(f"num_seeds={options.num_seeds}: python -m {MODULE} trains one agent per "
                         "process; start one run per seed (--seed 0, --seed 1, ...)")
    for name in ("num_devices", "coordinator_address", "num_processes", "process_id"):
        if getattr(options, name) is not None:
            raise ValueError(f"--{name.replace('_', '-')} is not supported by python -m {MODULE} "
                             "(one learner and its actors in one process); drop it")
    if options.device_split != "auto":
        raise ValueError(f"device_split={options.device_split!r}: python -m {MODULE} places the "
                         "learner on the first device and the actors on the others; drop "
                         "--device-split")
    if options.preset is not None:
        raise ValueError(f"preset={options.preset!r}: python -m {MODULE} has no named presets; "
                         "drop --preset")


def run_main(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs `python -m acjax.impala` with `argv` (default `sys.argv[1:]`); returns the summary.

    Exits (`SystemExit`) with 2 on bad input, 1 when an actor failed (after its checkpoint),
    130 / 143 after SIGINT / SIGTERM.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    with interrupt.StopRequest() as stop:
        summary = _run(argv, stop)
    if summary.get("exit_code"):
        raise SystemExit(summary["exit_code"])
    return summary


def _run(argv: list[str], stop) -> dict[str, Any]:
    try:
        cpu.apply()
        sweeps = [a for a in argv if a.startswith("--sweep")]
        if sweeps:
            raise ValueError(f"{sweeps[0]}: python -m {MODULE} trains one agent per process and "
                             "has no sweeps; start one run per setting")
        saved = load_saved_run(argv, _COMMAND) if resume_requested(argv) else None
        run_default = None
        if saved is not None:
            import dataclasses

            run_default = dataclasses.replace(RunOptions(), **saved.options)
        config, options = parse_args(
            ImpalaConfig, impala_preset, argv, DESCRIPTION,
            default=saved.config if saved is not None else None, run_default=run_default,
            prog=f"python -m {MODULE}",
        )
        check_options(options)
        # Learner on one CPU device, the actors on another (before JAX starts).
        host.configure_devices(cpu_devices=options.cpu_devices or min(2, os.cpu_count() or 1),
                               num_agents=1)
        host.configure_threads(cpu_threads=options.cpu_threads)
        config.validate()
        if saved is not None:
            check_same_run(saved, config, {}, options)
        run_dir = options.run_dir or default_run_dir(config)
        if not options.resume:
            prepare_run_dir(run_dir)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if config.async_envs:
        import warnings

        # AsyncVectorEnv forks its workers from this (multithreaded) process; they run only
        # gymnasium and numpy, never JAX, which is what JAX's fork warning is about.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called",
                                category=RuntimeWarning)
    try:
        return train_and_report(config, options, run_dir=pathlib.Path(run_dir), stop=stop)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def restore_learner_state(checkpointer, template, identity: dict[str, Any]):
    """`(state, meta)` of the latest complete checkpoint (None: there is none yet).

    `template` is a learner state of the run's configuration (its leaves' shapes and dtypes
    are checked against the checkpoint's manifest); `identity` the run's configuration as
    saved in the checkpoint's meta.

    Raises:
      CheckpointError: the checkpoint belongs to another configuration, or is corrupted.
    """
    import jax

    from acjax.run import checkpoint

    step = checkpointer.latest_step()
    if step is None:
        return None
    paths, leaves = checkpoint.host_leaves(jax.device_get(template))
    restored = checkpointer.restore(step, checkpoint.leaf_manifest(paths, leaves))
    if restored.meta.get("identity") != identity:
        raise CheckpointError(f"checkpoint {checkpointer.directory / str(step)} belongs to "
                              "another configuration; start a new --run-dir")
    state = jax.tree.unflatten(jax.tree.structure(template), restored.leaves)
    return state, restored.meta


def train_and_report(config: ImpalaConfig, options: RunOptions, *, run_dir: pathlib.Path,
                     stop: interrupt.StopRequest | None = None, console=None,
                     observer=None) -> dict[str, Any]:
    """Trains `config` with its actors and writes the run directory.

    Args:
      config: a validated configuration.
      options: run options (evaluation, checkpoints, logs, progress, --resume).
      run_dir: the run directory (new, or the run to continue with `options.resume`).
      stop: set by SIGINT / SIGTERM; the run stops after the current update with a checkpoint.
      console: a `rich.console.Console` (default: stdout).
      observer: called as `observer(actor_learner, step_result)` after every update (tests
        read the consumed items and counters through it).

    Returns:
      The summary written to `summary.json`, or `{"stopped": True, ...}` for a run stopped early
      (with `exit_code` 1 after an actor failed, 130 / 143 after a signal).
    """
    import jax
    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as ProgressBar

    from acjax.agents.impala import loop
    from acjax.agents.impala.learner import make_learner
    from acjax.agents.impala.runtime import ActorError, ActorLearner, devices_for
    from acjax.core.config import config_to_dict
    from acjax.run import checkpoint, loggers
    from acjax.run.loop import report_row
    from acjax.run.rundir import (
        atomic_path,
        check_resumable,
        flat_params,
        json_float,
        library_versions,
        params_fingerprint,
        write_config,
        write_text_atomic,
    )

    console = console or Console()
    stop = stop or interrupt.StopRequest()
    start = time.perf_counter()
    if options.resume:
        check_resumable(run_dir)
    else:
        prepare_run_dir(run_dir)
        write_config(run_dir / "config.json", config, [config], (), options)
    spec = config.validate()
    learner = make_learner(config, spec)
    learner_device, actor_devices = devices_for(config.num_actors)
    state = loop.initial_state(learner, config, learner_device)
    identity = {"config": config_to_dict(config)}
    checkpointer = checkpoint.Checkpointer(run_dir, keep=options.keep_checkpoints)
    host_progress: dict[str, Any] = {"updates": 0, "wall_seconds": 0.0, "train_seconds": 0.0,
                                     "resumes": 0, "metrics_bytes": None, "lag_sum": 0,
                                     "lag_max": 0, "lag_count": 0, "last_row": None}
    resumed_from = None
    if options.resume:
        restored = restore_learner_state(checkpointer, state, identity)
        if restored is not None:
            state, meta = restored
            state = jax.device_put(state, learner_device)
            host_progress.update(meta["host"])
            host_progress["resumes"] += 1
            resumed_from = meta["step"]
    num_updates = config.num_updates
    per_report = max(1, num_updates // options.num_reports)  # the last report takes the rest
    total_steps = num_updates * config.steps_per_update
    wall_before = host_progress["wall_seconds"]

    def env_steps(updates: int) -> int:
        return updates * config.steps_per_update

    def save(updates: int, state) -> None:
        if not options.checkpoints:
            return
        host_progress["updates"] = updates
        host_progress["wall_seconds"] = wall_before + time.perf_counter() - start
        host_progress["metrics_bytes"] = logs.csv_bytes
        meta = {"identity": identity, "host": host_progress,
                "progress": {"updates": updates, "env_steps": env_steps(updates),
                             "total_env_steps": total_steps},
                "versions": library_versions(config.env)}
        checkpointer.save(env_steps(updates), jax.device_get(state), meta)

    logs = loggers.open_loggers(
        run_dir, tensorboard=options.tensorboard,
        wandb_project=options.wandb_project if options.wandb else None,
        config=identity["config"],
        resume_bytes=(host_progress["metrics_bytes"] or 0) if options.resume else None,
        resume_step=env_steps(host_progress["updates"]),
    )
    evaluate = loop.make_evaluate(config, learner, spec)
    step_fn = loop.make_step(config, learner, learner_device)
    where = "host (gymnasium" + (", worker processes)" if config.async_envs else ")") \
        if config.on_host else f"{actor_devices[0].platform} device"
    console.print(
        f"[bold]{config.mode.upper()}[/] on {config.env}, seed {config.seed}: {config.num_actors} "
        f"actors x {config.num_envs} envs ({where}), learner on {learner_device}; "
        f"{total_steps:,} env steps in {num_updates:,} updates of {config.steps_per_update} "
        f"steps -> {run_dir}", soft_wrap=True, markup=True, highlight=False)
    if options.resume:
        console.print(f"resumed from the checkpoint at {resumed_from:,} env steps" if resumed_from
                      else "no complete checkpoint yet: starting from the beginning")

    al = ActorLearner(config, learner, state, learner_device=learner_device,
                      actor_devices=actor_devices)
    updates = host_progress["updates"]
    version = int(state.version)
    failure = None
    window: list[dict] = []
    lags: list[int] = []
    occupancy_from = 0
    t_window = time.perf_counter()
    compile_seconds = None  # the first update: the actors' and the learner's compiles
    stopped = False
    bar = ProgressBar(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
                      TimeRemainingColumn(), console=console, transient=True,
                      disable=not (options.progress and console.is_terminal))
    task = bar.add_task("training", total=total_steps, completed=env_steps(updates))
    try:
        bar.start()
        al.start()
        while updates < num_updates:
            try:
                result = step_fn(al, state, version)
            except ActorError as err:
                failure = err
                break
            state, version, updates = result.state, version + 1, updates + 1
            if compile_seconds is None:
                jax.block_until_ready(state.version)
                compile_seconds = time.perf_counter() - t_window
                host_progress["compile_seconds"] = (host_progress.get("compile_seconds", 0.0)
                                                    + compile_seconds)
                t_window = time.perf_counter()  # rates count from here
            window.append(result.metrics)
            lags.extend(result.lags)
            if observer is not None:
                observer(al, result)
            if updates % 16 == 0:
                bar.update(task, completed=env_steps(updates))
            last = updates == num_updates
            stop_now = not last and (stop.requested or (
                options.stop_after_steps is not None
                and env_steps(updates) >= options.stop_after_steps))
            if updates % per_report and not (last or stop_now):
                continue
            dt = time.perf_counter() - t_window
            metrics = loop.to_host_metrics(window)
            occupancy = al.occupancy[occupancy_from:]
            occupancy_from = len(al.occupancy)
            host_progress["lag_sum"] += int(sum(lags))
            host_progress["lag_count"] += len(lags)
            host_progress["lag_max"] = max(host_progress["lag_max"], max(lags, default=0))
            evaluation = None
            before = env_steps(updates - len(window))
            if options.eval_every is not None:
                evaluation = {}
                if env_steps(updates) // options.eval_every > before // options.eval_every:
                    returns, lengths = evaluate(state.policy, config.seed + 10_000 + updates,
                                                options.eval_episodes)
                    evaluation = {"eval_return": float(np.mean(returns)),
                                  "eval_return_seed_min": float(np.mean(returns)),
                                  "eval_return_seed_max": float(np.mean(returns)),
                                  "eval_length": float(np.mean(lengths))}
            row = report_row({k: v[None] for k, v in metrics.items()}, env_steps(updates),
                             updates, wall_before + time.perf_counter() - start,
                             env_steps(len(window)) / dt, evaluation)
            row.update(updates_per_second=round(len(window) / dt, 2),
                       policy_lag_mean=float(np.mean(lags)) if lags else 0.0,
                       policy_lag_max=int(max(lags, default=0)),
                       queue_occupancy=float(np.mean(occupancy)) if occupancy else 0.0)
            logs.write(row)
            host_progress["last_row"] = row
            host_progress["train_seconds"] += dt
            ret = row["episode_return"]
            ret = f"{ret:>9.2f}" if np.isfinite(ret) else f"{'-':>9}"
            line = (f"steps {env_steps(updates):>11,}  return {ret}  "
                    f"{row['steps_per_second']:>9,.0f} steps/s  {row['updates_per_second']:>6.1f} "
                    f"updates/s  lag {row['policy_lag_mean']:.2f} (max {row['policy_lag_max']})  "
                    f"queue {row['queue_occupancy']:.1f}/{config.queue_size}")
            if evaluation:
                line += f"  greedy eval {row['eval_return']:>9.2f}"
            console.print(line, highlight=False, soft_wrap=True)
            window, lags, t_window = [], [], time.perf_counter()
            due = (options.checkpoint_every is not None and env_steps(updates)
                   // options.checkpoint_every > before // options.checkpoint_every)
            if due or last or stop_now:
                save(updates, state)
            if stop_now:
                stopped = True
                break
    except BaseException:
        bar.stop()
        al.close()
        logs.close()
        checkpointer.close()
        raise
    bar.stop()
    stuck = al.close()
    resume = f"python -m {MODULE} --run-dir {shlex.quote(str(run_dir))} --resume"
    if failure is not None or stopped:
        if options.checkpoints and updates > 0 and failure is not None:
            save(updates, state)
        logs.close()
        checkpointer.close()
        done = f"after {env_steps(updates):,} of {total_steps:,} env steps"
        saved_note = "checkpoint saved" if options.checkpoints and updates else "nothing saved"
        if failure is not None:
            line = f"error: {failure}; stopped {done} ({saved_note}); resume with: {resume}"
            print(line, file=sys.stderr)
            code = 1
        elif stop.requested:
            line = f"interrupted ({stop.name}) {done}, {saved_note}; resume with: {resume}"
            console.print(line, markup=False, highlight=False, soft_wrap=True)
            code = stop.exit_code
        else:
            line = f"stopped {done} ({saved_note}); continue with: {resume}"
            console.print(line, markup=False, highlight=False, soft_wrap=True)
            code = 0
        if stuck:
            print(f"warning: actor threads {', '.join(stuck)} did not stop in time",
                  file=sys.stderr)
        return {"stopped": True, "env_steps": env_steps(updates), "run_dir": str(run_dir),
                "interrupted": stop.name or None, "error": str(failure) if failure else None,
                "exit_code": code}
    logs.close()
    t_eval = time.perf_counter()
    eval_returns, eval_lengths = evaluate(state.policy, config.seed + 1, options.eval_episodes)
    eval_seconds = time.perf_counter() - t_eval
    params = jax.device_get(state.params)
    checkpointer.close()
    wall = wall_before + time.perf_counter() - start
    train_total = host_progress["train_seconds"]
    last_row = host_progress["last_row"] or {}
    lag_count = max(host_progress["lag_count"], 1)
    summary = {
        "algo": "impala", "mode": config.mode, "env": config.env, "seed": config.seed,
        "env_steps": int(total_steps), "num_updates": int(num_updates),
        "num_actors": config.num_actors, "num_envs": config.num_envs,
        "wall_seconds": round(wall, 3), "train_seconds": round(train_total, 3),
        "compile_seconds": round(host_progress.get("compile_seconds", 0.0), 3),
        "eval_seconds": round(eval_seconds, 3),
        "steps_per_second": round(total_steps / max(train_total, 1e-9), 1),
        "updates_per_second": round(num_updates / max(train_total, 1e-9), 2),
        "policy_lag_mean": host_progress["lag_sum"] / lag_count,
        "policy_lag_max": int(host_progress["lag_max"]),
        "final_train_return": json_float(last_row.get("episode_return")),
        "eval_return_mean": float(np.mean(eval_returns)),
        "eval_return_std": float(np.std(eval_returns)),
        "eval_return_median": float(np.mean(eval_returns)),
        "eval_return_per_seed": [float(np.mean(eval_returns))],
        "eval_length_mean": float(np.mean(eval_lengths)),
        "eval_episodes": int(options.eval_episodes),
        "params_fingerprint": params_fingerprint(params),
        "resumes": int(host_progress["resumes"]),
        "checkpoints": checkpointer.steps(),
        "device": str(jax.devices()[0].device_kind),
        "run_dir": str(run_dir),
    }
    with atomic_path(run_dir / "params.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **flat_params(params))
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
    console.print(
        f"[bold]done[/] in {wall:.1f} s (first update with compiles "
        f"{summary['compile_seconds']:.1f} s; {summary['steps_per_second']:,.0f} steps/s, "
        f"{summary['updates_per_second']:.1f} updates/s, policy lag {summary['policy_lag_mean']:.2f}"
        f" mean, {summary['policy_lag_max']} max); greedy eval over {options.eval_episodes} "
        f"episodes: {summary['eval_return_mean']:.2f} +- {summary['eval_return_std']:.2f}",
        soft_wrap=True, highlight=False)
    return summary
