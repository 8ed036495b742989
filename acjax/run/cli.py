"""The command lines: `python -m acjax.ppo_a2c`, `acjax.sac`, `acjax.td3`.

`run_main(module, argv)` parses the flags of the command line `module` (`acjax.run.registry`)
into a configuration and `RunOptions`, sizes the CPU before JAX starts (`acjax.cpu`), checks
everything (a bad flag exits with status 2 and one line naming the flag, its value and the
fix, before anything compiles), then trains and reports (`acjax.run.loop`).

Flags: `--env` (and `--algo`) pick a preset; every other flag overrides one field of it.
`--sweep.FIELD v1 v2 ...` (any traced field; `lr` for learning_rate) runs the grid of all
combinations x `--num-seeds` in one compiled program and writes `sweep.csv`/`sweep.png`.
`--run-dir RUN_DIR --resume` continues a run from its latest complete checkpoint with the
configuration saved in RUN_DIR/config.json; flags that contradict it are an error. SIGINT
(Ctrl-C) or SIGTERM stops a run at the next chunk boundary with a checkpoint and a resume line,
and the process exits with 130 or 143 without a traceback (`acjax.run.interrupt`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from collections.abc import Callable
from typing import Any

from acjax import cpu
from acjax.cpu import dense as cpu_dense
from acjax.cpu import host
from acjax.run import interrupt, parallel, registry, sweep
from acjax.run.checkpoint import CheckpointError
from acjax.run.flags import parse_args, preparse_distributed
from acjax.run.loop import train_and_report
from acjax.run.options import RunOptions, check_run_options
from acjax.run.programs import enable_compilation_cache
from acjax.run.resume import check_same_run, load_saved_run, resume_requested
from acjax.run.rundir import default_run_dir, prepare_run_dir

__all__ = ["entry", "run_main"]


def run_main(module: str, argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the command line `python -m MODULE` with `argv` (default: `sys.argv[1:]`).

    Returns:
      The run's summary (`summary.json`); a run stopped by `--stop-after-steps` returns
      `{"stopped": True, ...}`. Exits (`SystemExit`) with 2 on bad input, and with 130 / 143
      after a SIGINT / SIGTERM stopped the run.
    """
    command = registry.command_line(module)
    with interrupt.StopRequest() as stop:
        summary = _run(command, sys.argv[1:] if argv is None else list(argv), stop)
    if summary.get("exit_code"):
        raise SystemExit(summary["exit_code"])
    return summary


def _run(command: registry.CommandLine, argv: list[str], stop) -> dict[str, Any]:
    try:
        cpu.apply()  # before JAX's backend starts: its XLA flags and threefry lowering
        # Joining a multi-process run must come before anything touches JAX's backend.
        parallel.initialize_distributed(preparse_distributed(argv))
        saved = load_saved_run(argv, command) if resume_requested(argv) else None
        argv, grid = sweep.split_sweep_args(argv, command.config_cls)
        if saved is not None and not grid:
            grid = dict(saved.grid)
        run_default = None
        if saved is not None:
            run_default = dataclasses.replace(RunOptions(), **saved.options)
        # Presets and parsing are plain Python: JAX has not started yet.
        config, options = parse_args(
            command.config_cls, command.preset, argv, command.description,
            default=saved.config if saved is not None else None, run_default=run_default,
            prog=f"python -m {command.module}",
        )
        algo = registry.algorithm(config.algo, command.module)
        lone_split = host.configure_devices(
            cpu_devices=options.cpu_devices,
            num_agents=math.prod(len(v) for v in grid.values()) * max(options.num_seeds, 1),
            num_devices=options.num_devices, num_processes=options.num_processes,
            device_split=options.device_split,
            lone_agent_devices=algo.lone_agent_devices(config) if algo.lone_agent_devices
            else 1,
        )
        host.configure_threads(cpu_threads=options.cpu_threads,
                               num_processes=options.num_processes,
                               step_flops=algo.step_flops(config))
        if lone_split and options.cpu_devices is None:
            # Recorded in config.json: a resumed run then splits the same way.
            options = dataclasses.replace(options, cpu_devices=lone_split)
        algo.validate(config)
        if saved is not None:
            check_same_run(saved, config, grid, options)
        configs = sweep.expand_grid(config, grid)
        check_run_options(options)
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
    make_train = functools.partial(algo.make_train, dense=cpu_dense.for_backend())
    try:
        return train_and_report(
            make_train, configs, options, run_dir=run_dir, sweep_fields=tuple(grid), grid=grid,
            stop=stop, command=f"python -m {command.module}",
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
