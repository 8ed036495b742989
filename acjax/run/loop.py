"""The host side of a run: jitted chunks of updates with reports, evaluations and checkpoints
between them, then the final evaluation and the run directory's files.

`train_and_report` drives any family's `Trainer` (through `acjax.run.parallel`'s runner) and
writes:

* `config.json`: the full configuration, the run options and library versions;
* `metrics.csv`: one row per report (between jitted chunks of updates), with greedy evaluation
  columns under `--eval-every`; TensorBoard event files (`--tensorboard`) and a Weights & Biases
  run (`--wandb`) get the same rows (`acjax.run.loggers`);
* `checkpoints/`: Orbax checkpoints of the whole training state, written asynchronously every
  `--checkpoint-every` env steps and at the end (`acjax.run.checkpoint`); `--resume` continues
  from the latest complete one, bit-identically to a run that was never interrupted;
* `summary.json`: `algo`, `env`, `seed`, `env_steps`, `wall_seconds`, `compile_seconds`,
  `steps_per_second`, `eval_return_mean`, `eval_return_std`, `eval_episodes`,
  `params_fingerprint`, and more.

The host only touches the device between chunks, so reporting, evaluating and checkpointing
never interrupt the compiled loop; a SIGINT or SIGTERM (`acjax.run.interrupt`) stops the run at
the next chunk boundary with a checkpoint.
"""

from __future__ import annotations

import json
import math
import pathlib
import shlex
import time
from collections.abc import Callable
from typing import Any

from acjax.run import interrupt
from acjax.run.options import RunOptions
from acjax.run.registry import public_module
from acjax.run.resume import Progress, checked_resume_step, restore, run_identity
from acjax.run.rundir import (
    atomic_path,
    check_resumable,
    default_run_dir,
    flat_params,
    json_float,
    library_versions,
    params_fingerprint,
    prepare_run_dir,
    write_config,
    write_text_atomic,
)

__all__ = ["report_row", "train_and_report"]


def _due(every: int | None, before: int, after: int) -> bool:
    """Whether a multiple of `every` env steps lies in (before, after]."""
    return every is not None and after // every > before // every


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
    one compiled program, laid out on `options.num_devices` devices (see `acjax.run.parallel`).
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
      stop: set by SIGINT / SIGTERM (`acjax.run.interrupt.StopRequest`): the run stops at the next
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

    from acjax.run import checkpoint, loggers, parallel, sweep

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
        write_config(run_dir / "config.json", config, configs, sweep_fields, options, grid)
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
    resume_step = checked_resume_step(checkpointer, identity, meta_layout) if options.resume \
        else None
    t0 = time.perf_counter()
    state = runner.init(train_keys, hparams)
    progress = Progress(chunks=0, curves=np.full((num_agents, num_chunks), np.nan))
    resumed_from = None
    if options.resume:
        state, progress, resumed_from = restore(
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
        command = command or f"python -m {public_module(type(config))}"
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
    report = None
    if getattr(runner.trainer, "report", None) is not None:  # e.g. AlphaZero's matches
        t_report = time.perf_counter()
        extra = interrupt.wait(jax.jit(jax.vmap(runner.trainer.report)),
                               runner.agent_state(state), eval_keys)
        report = {k: [json_float(float(x)) for x in np.asarray(v)]
                  for k, v in sorted(jax.device_get(extra).items())}
        eval_seconds += time.perf_counter() - t_report
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
        "final_train_return": json_float(last.get("episode_return")),
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
    if report is not None:
        summary["report"] = report
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
        summary["sweep"] = [json_row(r) for r in table]
    suffix = "" if main else f"-process{jax.process_index()}"
    with atomic_path(run_dir / f"params{suffix}.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **flat_params(params))
    write_text_atomic(run_dir / f"summary{suffix}.json", json.dumps(summary, indent=2))
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
        + best,
        soft_wrap=True,
    )
    if report is not None:
        console.print("report (per agent): " + "; ".join(
            f"{k} {', '.join(f'{x:g}' for x in v)}" for k, v in report.items()),
            soft_wrap=True, highlight=False)
    return summary


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
    from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as ProgressBar

    show_bar = main and options.progress and console.is_terminal
    with ProgressBar(
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
            row = report_row(
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


def json_row(row: dict) -> dict:
    return {k: (json_float(v) if isinstance(v, float) else v) for k, v in row.items()}


def report_row(
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
