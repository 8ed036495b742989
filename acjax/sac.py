"""Soft Actor-Critic (SAC) on gymnax environments with continuous actions.

    python -m acjax.sac --env Pendulum-v1 [--help]

The public face of `acjax.agents.offpolicy.sac` (the algorithm and its documentation) and its
presets; the command line is `acjax.run.cli`'s.
"""

from __future__ import annotations

from acjax.agents.offpolicy import sac as _sac
from acjax.agents.offpolicy.presets import sac_preset
from acjax.agents.offpolicy.sac import *

__all__ = _sac.__all__ + ["main", "sac_preset"]


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point: `python -m acjax.sac --env Pendulum-v1`."""
    from acjax.run.cli import run_main

    return run_main("acjax.sac", argv)


if __name__ == "__main__":
    from acjax.run.cli import entry

    entry(main)
