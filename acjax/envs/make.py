"""`make_env` and `check_env_name` for every kind of environment acjax steps.

A name `brax/<name>` selects a Brax environment (`acjax.envs.brax`; Brax is imported only for
such names, and its absence is reported with the install command); every other name is a
gymnax id (`acjax.envs.gymnax`).
"""

from __future__ import annotations

from typing import Any

from acjax.envs.brax import is_brax_name
from acjax.envs.gymnax import (
    ClipAction,
    EpisodeStatistics,
    check_gymnax_env_name,
    make_gymnax_env,
)

__all__ = ["check_env_name", "make_env"]


def check_env_name(name: str) -> None:
    """Raise a `ValueError` naming close matches when `name` is not a known environment."""
    if is_brax_name(name):
        from acjax.envs.brax import check_brax_env_name

        check_brax_env_name(name)
        return
    check_gymnax_env_name(name)


def make_env(name: str, **kwargs) -> tuple[Any, Any]:
    """Builds a wrapped environment and its default parameters.

    Args:
      name: any gymnax-registered id, e.g. "CartPole-v1", "Pendulum-v1", "Breakout-MinAtar",
        or "brax/<name>" for a Brax environment, e.g. "brax/ant" (needs `acjax[brax]`).
      **kwargs: forwarded to `gymnax.make` (environment constructor arguments), or for Brax
        to `acjax.envs.brax.BraxEnv` (`backend=`, `episode_length=`, constructor arguments).

    Returns:
      `(env, env_params)`; `env.step` follows gymnax's 6-tuple API and adds episode statistics.
    """
    if is_brax_name(name):
        from acjax.envs.brax import BraxEnv

        brax_env = BraxEnv(name, **kwargs)
        return EpisodeStatistics(ClipAction(brax_env)), brax_env.default_params
    return make_gymnax_env(name, **kwargs)
