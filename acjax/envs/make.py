"""`make_env` and `check_env_name` for every kind of environment acjax steps.

A name `brax/<name>` selects a Brax environment (`acjax.envs.brax`; Brax is imported only for
such names, and its absence is reported with the install command); a name in `ACJAX_ENVS`
selects one of acjax's own environments (`acjax.envs.regulator`: "Regulator1D-v0"); every other
name is a gymnax id (`acjax.envs.gymnax`).
"""

from __future__ import annotations

from typing import Any

from acjax.envs import regulator
from acjax.envs.brax import is_brax_name
from acjax.envs.gymnax import (
    ClipAction,
    EpisodeStatistics,
    check_gymnax_env_name,
    make_gymnax_env,
)

__all__ = ["check_env_name", "make_env"]

ACJAX_ENVS = {regulator.ENV_ID: regulator.Regulator1D}
"""acjax's own environments with gymnax's API, by name: each is built as `cls(**kwargs)`."""


def check_env_name(name: str) -> None:
    """Raise a `ValueError` naming close matches when `name` is not a known environment."""
    if is_brax_name(name):
        from acjax.envs.brax import check_brax_env_name

        check_brax_env_name(name)
        return
    check_gymnax_env_name(name, others=tuple(ACJAX_ENVS))


def make_env(name: str, **kwargs) -> tuple[Any, Any]:
    """Builds a wrapped environment and its default parameters.

    Args:
      name: any gymnax-registered id, e.g. "CartPole-v1", "Pendulum-v1", "Breakout-MinAtar";
        one of acjax's own, "Regulator1D-v0" (`acjax.envs.regulator`); or "brax/<name>" for a
        Brax environment, e.g. "brax/ant" (needs `acjax[brax]`).
      **kwargs: forwarded to `gymnax.make` (environment constructor arguments); for
        "Regulator1D-v0" to `Regulator1D` (fields of its `RegulatorParams`, e.g.
        `action_cost=0.1`); for Brax to `acjax.envs.brax.BraxEnv` (`backend=`,
        `episode_length=`, constructor arguments).

    Returns:
      `(env, env_params)`; `env.step` follows gymnax's 6-tuple API and adds episode statistics.
    """
    if is_brax_name(name):
        from acjax.envs.brax import BraxEnv

        brax_env = BraxEnv(name, **kwargs)
        return EpisodeStatistics(ClipAction(brax_env)), brax_env.default_params
    if name in ACJAX_ENVS:
        own = ACJAX_ENVS[name](**kwargs)
        return EpisodeStatistics(ClipAction(own)), own.default_params
    check_env_name(name)  # an unknown name's error lists acjax's own names too
    return make_gymnax_env(name, **kwargs)
