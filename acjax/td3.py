"""TD3 and DDPG on gymnax environments with continuous actions.

    python -m acjax.td3 --env Pendulum-v1 [--algo ddpg] [--help]

The public face of `acjax.agents.offpolicy.td3` (the algorithms and their documentation) and
their presets; the command line is `acjax.run.cli`'s.
"""

from __future__ import annotations

from acjax.agents.offpolicy import td3 as _td3
from acjax.agents.offpolicy.presets import td3_preset
from acjax.agents.offpolicy.td3 import *

__all__ = _td3.__all__ + ["main", "td3_preset"]


def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point: `python -m acjax.td3 --env Pendulum-v1 [--algo ddpg]`."""
    from acjax.run.cli import run_main

    return run_main("acjax.td3", argv)


if __name__ == "__main__":
    from acjax.run.cli import entry

    entry(main)
