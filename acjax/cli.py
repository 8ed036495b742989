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
from typing import Annotated, Any

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
    trainer,
    options: RunOptions,
    *,
    run_dir: pathlib.Path | None = None,
    console=None,
) -> dict[str, Any]:
    """Trains `trainer` in jitted chunks, reports between them, evaluates, writes the run dir.

    Args:
      trainer: what an algorithm's `make_train(config, num_reports=...)` returns.
      options: run options (evaluation episodes, progress display).
      run_dir: where to write; created fresh (default: `default_run_dir(config)`).
      console: a `rich.console.Console` (default: stdout).

    Returns:
      The summary dict also written to `summary.json`.
    """
    import jax
    import numpy as np
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    config = trainer.config
    console = console or Console()
    start = time.perf_counter()
    run_dir = prepare_run_dir(run_dir or default_run_dir(config))
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "module": type(config).__module__,
                "config_type": type(config).__name__,
                "config": config_to_dict(config),
                "versions": library_versions(),
            },
            indent=2,
        )
    )
    hparams = config.hyperparams()
    num_seeds = options.num_seeds
    seeds = np.arange(config.seed, config.seed + num_seeds)
    # Seed s gets the same keys whether it runs alone or beside others.
    keys = jax.vmap(lambda s: jax.random.split(jax.random.PRNGKey(s)))(seeds)
    train_keys, eval_keys = keys[:, 0], keys[:, 1]

    t0 = time.perf_counter()
    state = jax.jit(jax.vmap(trainer.init, in_axes=(0, None)))(train_keys, hparams)
    chunk = (
        jax.jit(jax.vmap(trainer.train_chunk, in_axes=(0, None)), donate_argnums=0)
        .lower(state, hparams)
        .compile()
    )
    compile_seconds = time.perf_counter() - t0

    steps_per_update = config.num_envs * config.num_steps
    num_chunks = config.num_updates // trainer.updates_per_chunk
    total_steps = config.num_updates * steps_per_update
    aggregate_steps = total_steps * num_seeds
    rows: list[dict[str, Any]] = []
    print_every = max(1, num_chunks // options.num_reports)
    train_seconds = 0.0
    console.print(
        f"[bold]{getattr(config, 'algo', '').upper()}[/] on {config.env}, "
        f"seed {config.seed}{f'..{seeds[-1]}' if num_seeds > 1 else ''}: "
        f"{total_steps:,} env steps in {num_chunks} chunks of {trainer.updates_per_chunk} updates "
        f"x {steps_per_update} steps (compiled in {compile_seconds:.1f} s) -> {run_dir}"
    )
    show_bar = options.progress and console.is_terminal
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
        TimeRemainingColumn(),
        console=console,
        disable=not show_bar,
        transient=True,
    ) as progress, open(run_dir / "metrics.csv", "w", newline="") as csv_file:
        task = progress.add_task("training", total=total_steps)
        writer = None
        for i in range(num_chunks):
            t_chunk = time.perf_counter()
            state, metrics = chunk(state, hparams)
            metrics = jax.device_get(metrics)
            dt = time.perf_counter() - t_chunk
            train_seconds += dt
            env_steps = (i + 1) * trainer.updates_per_chunk * steps_per_update
            row = _report_row(metrics, env_steps, (i + 1) * trainer.updates_per_chunk,
                              time.perf_counter() - start,
                              num_seeds * trainer.updates_per_chunk * steps_per_update / dt)
            rows.append(row)
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
    evaluate = jax.jit(
        jax.vmap(lambda st, k: trainer.evaluate(st, k, options.eval_episodes))
    )
    eval_returns, eval_lengths = jax.device_get(evaluate(state, eval_keys))  # [seeds, episodes]
    per_seed = np.mean(eval_returns, axis=1)
    eval_seconds = time.perf_counter() - t_eval
    wall_seconds = time.perf_counter() - start
    summary = {
        "algo": getattr(config, "algo", type(config).__name__),
        "env": config.env,
        "seed": config.seed,
        "num_seeds": int(num_seeds),
        "env_steps": int(total_steps),
        "aggregate_env_steps": int(aggregate_steps),
        "num_updates": int(config.num_updates),
        "wall_seconds": round(wall_seconds, 3),
        "compile_seconds": round(compile_seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3),
        "steps_per_second": round(aggregate_steps / train_seconds, 1),
        "final_train_return": _json_float(rows[-1]["episode_return"]) if rows else None,
        "eval_return_mean": float(np.mean(per_seed)),
        "eval_return_std": float(np.std(eval_returns)),
        "eval_return_median": float(np.median(per_seed)),
        "eval_return_min": float(np.min(per_seed)),
        "eval_return_max": float(np.max(per_seed)),
        "eval_return_per_seed": [float(x) for x in per_seed],
        "eval_length_mean": float(np.mean(eval_lengths)),
        "eval_episodes": int(options.eval_episodes),
        "device": str(jax.devices()[0].device_kind),
        "run_dir": str(run_dir),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    console.print(
        f"[bold]done[/] in {wall_seconds:.1f} s (compile {compile_seconds:.1f} s, "
        f"{summary['steps_per_second']:,.0f} steps/s); greedy eval over "
        f"{options.eval_episodes} episodes: {summary['eval_return_mean']:.2f} "
        f"+- {summary['eval_return_std']:.2f}"
        + (
            f" (seeds: median {summary['eval_return_median']:.2f}, "
            f"min {summary['eval_return_min']:.2f})" if num_seeds > 1 else ""
        )
    )
    return summary


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
    """Parses flags, validates, trains, evaluates; a bad flag exits with status 2, no traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config, options = parse_args(config_cls, preset, argv, description)
        config.validate()
        for name, example in (("num_seeds", 8), ("eval_episodes", 10), ("num_reports", 20)):
            value = getattr(options, name)
            if value < 1:
                raise ValueError(
                    f"{name}={value} must be >= 1; pass e.g. {flag(name)} {example}"
                )
        run_dir = options.run_dir or default_run_dir(config)
        prepare_run_dir(run_dir)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if options.compilation_cache:
        enable_compilation_cache()
    trainer = make_train(config, num_reports=options.num_reports)
    return train_and_report(trainer, options, run_dir=run_dir)
