"""Reading the command line: a few flags before the full parse, and the full parse itself.

`preparse` and `peek_flags` read single flags (`--env`, `--algo`, `--run-dir`, the multi-process
flags) before the configuration is built, where they decide which preset or saved run the full
parse (`parse_args`, tyro) starts from, or must act before JAX starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Annotated, Any

import tyro

from acjax.core.config import flag
from acjax.run.options import RunOptions

__all__ = ["parse_args", "peek_flags", "preparse", "preparse_distributed"]


def preparse(argv: list[str], config_cls) -> tuple[str, str | None, str | None]:
    """`(env, algo, preset)` as the flags give them (`algo`, `preset` None when unset): they
    pick the configuration the full parse starts from."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--env", default=config_cls.env)
    parser.add_argument("--algo", default=None)
    parser.add_argument("--preset", default=None)
    known, _ = parser.parse_known_args(argv)
    return known.env, known.algo, known.preset


def peek_flags(argv: list[str], **flags: type) -> argparse.Namespace | None:
    """Reads a few typed flags (either spelling, unset: None) before the full parse.

    Returns None when one is malformed; the full parse then reports it properly.
    """
    specs = [(name, dict(type=kind, default=None)) for name, kind in flags.items()]
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


def preparse_distributed(argv: list[str]):
    """The multi-process flags, read before JAX starts (`acjax.run.parallel`)."""
    from acjax.run.parallel import DistributedOptions

    known = peek_flags(argv, coordinator_address=str, num_processes=int, process_id=int)
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

    `--env` (and `--algo`, `--preset`) pick a preset first; every other flag then overrides a
    field of it, and `--help` shows the chosen preset's values as defaults. `default` / `run_default`
    replace the preset and the default options (a resumed run starts from its saved ones).
    """
    if default is None:
        env, algo, name = preparse(argv, config_cls)
        default = preset(env, algo) if name is None else preset(env, algo, name)

    def entry(config, run):
        return config, run

    entry.__annotations__ = {
        "config": Annotated[config_cls, tyro.conf.arg(name="")],
        "run": Annotated[RunOptions, tyro.conf.arg(name="")],
    }
    entry.__defaults__ = (default, run_default or RunOptions())
    return tyro.cli(entry, args=argv, description=description, prog=prog)
