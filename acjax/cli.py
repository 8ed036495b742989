"""The host side of a run: command-line parsing, the report loop, the run directory.

Every algorithm module's `main()` calls `run_main`, so all of them share the same flags for the
run (`--run-dir`, `--eval-episodes`, ...), the same progress display and the same files:

* `config.json`: the full configuration plus library versions;
* `metrics.csv`: one row per report (between jitted chunks of updates);
* `summary.json`: `algo`, `env`, `seed`, `env_steps`, `wall_seconds`, `compile_seconds`,
  `steps_per_second`, `eval_return_mean`, `eval_return_std`, `eval_episodes`, and more.

Training runs as jitted chunks of updates; the host only touches the device between chunks, so
reporting costs nothing measurable.
"""

import argparse
import contextlib
import csv
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import sys
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import tyro

from acjax.config import config_to_dict, flag


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How to run and report (not part of the algorithm's configuration)."""

    run_dir: pathlib.Path | None = None
    """Directory for config.json, metrics.csv and summary.json (default: runs/ENV-ALGO-seedS-TIME).
    An existing run directory is never overwritten."""
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
    threads (default: the largest divisor of the number of agents up to 4 per core; 1 for a
    single agent). Ignored when XLA_FLAGS already sets a host device count."""
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


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("acjax", "jax", "jaxlib", "flax", "optax", "gymnax", "chex", "orbax-checkpoint"):
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
    return pathlib.Path("runs") / f"{config.env}-{algo}-seed{config.seed}-{stamp}"


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


def train_and_report(
    make_train: Callable[..., Any],
    configs,
    options: RunOptions,
    *,
    run_dir: pathlib.Path | None = None,
    sweep_fields: tuple[str, ...] = (),
    console=None,
) -> dict[str, Any]:
    """Trains in jitted chunks, reports between them, evaluates, writes the run directory.

    Every setting in `configs` runs with `options.num_seeds` seeds; all of these agents train in
    one compiled program, laid out on `options.num_devices` devices (see `acjax.parallel`).

    Args:
      make_train: an algorithm's `make_train(config, *, num_reports, axis_name)`.
      configs: one configuration, or several that differ only in traced fields (a sweep).
      options: run options (seeds, devices, evaluation episodes, progress display).
      run_dir: where to write; created fresh (default: `default_run_dir(config)`).
      sweep_fields: the traced fields that vary across `configs` (for the sweep table).
      console: a `rich.console.Console` (default: stdout).

    Returns:
      The summary dict also written to `summary.json`.
    """
    import jax
    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from acjax import parallel, sweep

    configs = list(configs) if isinstance(configs, (list, tuple)) else [configs]
    config = configs[0]
    main = parallel.is_main_process()
    console = console or Console(quiet=not main)
    start = time.perf_counter()
    run_dir = pathlib.Path(run_dir or default_run_dir(config))
    if main:
        prepare_run_dir(run_dir)
        _write_config(run_dir / "config.json", config, configs, sweep_fields, options)
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

    t0 = time.perf_counter()
    state = runner.init(train_keys, hparams)
    runner.compile(state, hparams)
    compile_seconds = time.perf_counter() - t0

    updates_per_chunk = runner.trainer.updates_per_chunk
    steps_per_update = config.num_envs * config.num_steps
    num_chunks = config.num_updates // updates_per_chunk
    total_steps = config.num_updates * steps_per_update
    aggregate_steps = total_steps * num_agents
    rows: list[dict[str, Any]] = []
    curves = np.full((num_agents, num_chunks), np.nan)  # training return per agent and chunk
    print_every = max(1, num_chunks // options.num_reports)
    train_seconds = 0.0
    who = f"seed {config.seed}{f'..{seeds[num_seeds - 1]}' if num_seeds > 1 else ''}"
    if num_settings > 1:
        who = f"{num_settings} settings x {num_seeds} seed(s)"
    console.print(
        f"[bold]{getattr(config, 'algo', '').upper()}[/] on {config.env}, {who} "
        f"({layout.describe()}): {total_steps:,} env steps per agent in {num_chunks} chunks of "
        f"{updates_per_chunk} updates x {steps_per_update} steps "
        f"(compiled in {compile_seconds:.1f} s) -> {run_dir}"
    )
    show_bar = main and options.progress and console.is_terminal
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
        TimeRemainingColumn(),
        console=console,
        disable=not show_bar,
        transient=True,
    ) as progress, _open_metrics(run_dir, main) as csv_file:
        task = progress.add_task("training", total=total_steps)
        writer = None
        for i in range(num_chunks):
            t_chunk = time.perf_counter()
            state, metrics = runner.chunk(state, hparams)
            dt = time.perf_counter() - t_chunk
            train_seconds += dt
            env_steps = (i + 1) * updates_per_chunk * steps_per_update
            row = _report_row(metrics, env_steps, (i + 1) * updates_per_chunk,
                              time.perf_counter() - start,
                              num_agents * updates_per_chunk * steps_per_update / dt)
            counts = np.sum(metrics["episode_count"], axis=-1)
            sums = np.sum(metrics["episode_return_sum"], axis=-1)
            curves[:, i] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
            rows.append(row)
            if csv_file is not None:
                if writer is None:
                    writer = csv.DictWriter(csv_file, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
                csv_file.flush()
            progress.update(task, completed=env_steps)
            if (i + 1) % print_every and i + 1 != num_chunks:
                continue
            console.print(
                f"steps {env_steps:>11,}  return {row['episode_return']:>9.2f}  "
                f"{row['steps_per_second']:>11,.0f} steps/s"
            )

    t_eval = time.perf_counter()
    eval_returns, eval_lengths = runner.evaluate(state, eval_keys)  # [agents, episodes]
    per_agent = np.mean(eval_returns, axis=1)
    eval_seconds = time.perf_counter() - t_eval
    params = jax.device_get(runner.agent_state(state).params)
    wall_seconds = time.perf_counter() - start
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
        "compile_seconds": round(compile_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "steps_per_second": round(aggregate_steps / train_seconds, 1),
        "final_train_return": _json_float(rows[-1]["episode_return"]) if rows else None,
        "eval_return_mean": float(np.mean(per_agent)),
        "eval_return_std": float(np.std(eval_returns)),
        "eval_return_median": float(np.median(per_agent)),
        "eval_return_min": float(np.min(per_agent)),
        "eval_return_max": float(np.max(per_agent)),
        "eval_return_per_seed": [float(x) for x in per_agent],
        "eval_length_mean": float(np.mean(eval_lengths)),
        "eval_episodes": int(options.eval_episodes),
        "params_fingerprint": params_fingerprint(params),
        "device": str(jax.devices()[0].device_kind),
        "num_devices": int(layout.num_devices),
        "num_processes": int(layout.num_processes),
        "device_split": layout.split,
        "run_dir": str(run_dir),
    }
    by_setting = per_agent.reshape(num_settings, num_seeds)
    labels = sweep.setting_labels(configs, sweep_fields)
    if num_settings > 1:
        table = []
        if main:
            table = sweep.write_table(
                run_dir / "sweep.csv", configs, sweep_fields, by_setting,
                final_train_returns=curves[:, -1].reshape(num_settings, num_seeds),
            )
            steps = (np.arange(num_chunks) + 1) * updates_per_chunk * steps_per_update
            sweep.plot_learning_curves(
                run_dir / "sweep.png", steps, curves.reshape(num_settings, num_seeds, -1),
                labels, title=f"{summary['algo'].upper()} on {config.env}",
            )
        summary["sweep"] = [_json_row(r) for r in table]
    suffix = "" if main else f"-process{jax.process_index()}"
    np.savez(run_dir / f"params{suffix}.npz", **_flat_params(params))
    (run_dir / f"summary{suffix}.json").write_text(json.dumps(summary, indent=2))
    best = ""
    if num_settings > 1:
        medians = np.median(by_setting, axis=1)
        best = f"; best setting {labels[int(np.argmax(medians))]} (median {medians.max():.2f})"
    console.print(
        f"[bold]done[/] in {wall_seconds:.1f} s (compile {compile_seconds:.1f} s, "
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


def _write_config(path, config, configs, sweep_fields, options) -> None:
    data = {
        "module": type(config).__module__,
        "config_type": type(config).__name__,
        "config": config_to_dict(config),
        "num_seeds": options.num_seeds,
        "versions": library_versions(),
    }
    if len(configs) > 1:
        data["sweep"] = {
            name: [getattr(c, name) for c in configs] for name in sweep_fields
        }
    path.write_text(json.dumps(data, indent=2))


def _open_metrics(run_dir: pathlib.Path, main: bool):
    return open(run_dir / "metrics.csv", "w", newline="") if main else contextlib.nullcontext()


def _report_row(metrics, env_steps: int, updates: int, wall: float, sps: float) -> dict:
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
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    for name, kind in flags.items():
        parser.add_argument(flag(name), "--" + name, type=kind, default=None)
    try:
        known, _ = parser.parse_known_args(argv)
    except (argparse.ArgumentError, SystemExit):
        return None
    return known


def _configure_cpu_devices(argv: list[str], num_settings: int) -> None:
    """Splits the host CPU into XLA devices (before JAX starts) per `--cpu-devices`.

    One XLA CPU device runs a program's small operations on about one core; several devices
    run their agents' programs side by side, so independent agents keep every core busy.
    """
    known = _peek_flags(argv, cpu_devices=int, num_seeds=int, num_devices=int)
    if known is None:
        return
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
        if known.num_devices is not None:
            count = max(count, known.num_devices)
    flags = os.environ.get("XLA_FLAGS", "")
    if count > 1 and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def _preparse_distributed(argv: list[str]):
    from acjax.parallel import DistributedOptions

    known = _peek_flags(argv, coordinator_address=str, num_processes=int, process_id=int)
    if known is None:
        return DistributedOptions()
    return DistributedOptions(known.coordinator_address, known.num_processes, known.process_id)


def parse_args(
    config_cls, preset: Callable[[str, str | None], Any], argv: list[str], description: str
):
    """Parses `argv` into `(config, RunOptions)`.

    `--env` (and `--algo`) pick a preset first; every other flag then overrides a field of it,
    and `--help` shows the chosen preset's values as defaults.
    """
    env, algo = _preparse(argv, config_cls)
    default = preset(env, algo)

    def entry(config, run):
        return config, run

    entry.__annotations__ = {
        "config": Annotated[config_cls, tyro.conf.arg(name="")],
        "run": Annotated[RunOptions, tyro.conf.arg(name="")],
    }
    entry.__defaults__ = (default, RunOptions())
    return tyro.cli(entry, args=argv, description=description)


def run_main(
    *,
    description: str,
    config_cls,
    preset: Callable[[str, str | None], Any],
    make_train: Callable[..., Any],
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """Parses flags, validates, trains, evaluates; a bad flag exits with status 2, no traceback.

    `--sweep.FIELD v1 v2 ...` (any traced field; `lr` for learning_rate) runs the grid of all
    combinations x `--num-seeds` in one compiled program and writes `sweep.csv`/`sweep.png`.
    """
    from acjax import parallel, sweep

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # Joining a multi-process run must come before anything touches JAX's backend
        # (importing gymnax does), hence before the presets are even looked at.
        parallel.initialize_distributed(_preparse_distributed(argv))
        argv, grid = sweep.split_sweep_args(argv, config_cls)
        _configure_cpu_devices(argv, math.prod(len(v) for v in grid.values()))
        config, options = parse_args(config_cls, preset, argv, description)
        config.validate()
        configs = sweep.expand_grid(config, grid)
        for name, example in (("num_seeds", 8), ("eval_episodes", 10), ("num_reports", 20)):
            value = getattr(options, name)
            if value < 1:
                raise ValueError(
                    f"{name}={value} must be >= 1; pass e.g. {flag(name)} {example}"
                )
        run_dir = options.run_dir or default_run_dir(config)
        if options.process_id in (None, 0):
            prepare_run_dir(run_dir)
        parallel.choose_layout(
            num_agents=len(configs) * options.num_seeds, num_envs=config.num_envs,
            num_devices=options.num_devices, split=options.device_split,
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if options.compilation_cache:
        enable_compilation_cache()
    return train_and_report(
        make_train, configs, options, run_dir=run_dir, sweep_fields=tuple(grid)
    )
