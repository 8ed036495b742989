"""gymnasium ids as acjax names them: `gymnasium:<id>`, their checks and their `EnvSpec`.

The names part of `acjax.envs.gymnasium` (which re-exports these): `check_gymnasium_name`
refuses an unknown id (naming close matches), a missing gymnasium (naming the install command)
and spaces acjax does not support; `host_env_spec` reads an environment's static description.
Importing this module imports neither gymnasium nor JAX itself.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

import numpy as np

from acjax.envs.gymnax import EnvSpec

__all__ = ["PREFIX", "check_gymnasium_name", "gymnasium_id", "host_env_spec",
           "is_gymnasium_name"]

PREFIX = "gymnasium:"
"""Environment names `gymnasium:<id>` select gymnasium's registered environment `<id>`."""

INSTALL = "pip install 'acjax[gymnasium]'"

def is_gymnasium_name(env: str) -> bool:
    """Whether `env` selects a gymnasium environment (`gymnasium:<id>`)."""
    return isinstance(env, str) and env.startswith(PREFIX)


def gymnasium_id(env: str) -> str:
    """The gymnasium id in `env`: "gymnasium:CartPole-v1" -> "CartPole-v1"."""
    if not is_gymnasium_name(env):
        raise ValueError(
            f"env={env!r} is not a gymnasium name; write it as '{PREFIX}<id>', e.g. "
            f"'{PREFIX}CartPole-v1'"
        )
    return env[len(PREFIX):]


def check_gymnasium_name(env: str) -> None:
    """Raise a `ValueError` unless acjax can step `env` ("gymnasium:<id>") on the host.

    It is refused when gymnasium is not installed (the message gives the install command), when
    `<id>` is not registered (the message names close matches), when the environment cannot be
    built (e.g. a missing optional dependency of gymnasium's), or when its observation space is
    not a `Box` or its action space neither a `Discrete` starting at 0 nor a 1-D `Box`. This
    builds (and closes) one instance of the environment.
    """
    host_env_spec(env)


def host_env_spec(env: str, **make_kwargs: Any) -> EnvSpec:
    """Builds one instance of `env` ("gymnasium:<id>"), reads its spaces and closes it.

    Args:
      env: "gymnasium:<id>", e.g. "gymnasium:CartPole-v1".
      **make_kwargs: forwarded to `gymnasium.make` (e.g. `max_episode_steps=100`).

    Returns:
      The `EnvSpec`: `name=env` (with the prefix), `obs_shape`, `discrete`, `num_actions` (`n`
      for `Discrete`, the dimension for `Box`), `action_low`/`action_high` (tuples of floats, for
      `Box` only), `max_episode_steps` (the time limit, 0 where the environment has none).

    Raises:
      ValueError: see `check_gymnasium_name`.
    """
    gym, registered = _registered(env)
    instance = _make(gym, env, registered, make_kwargs)
    try:
        return _read_spec(gym, env, instance)
    finally:
        instance.close()


def _import_gymnasium(env: str):
    try:
        import gymnasium
    except ImportError as e:
        raise ValueError(
            f"env={env!r} needs gymnasium, which is not installed; install it with: {INSTALL}"
        ) from e
    return gymnasium


def _registered(env: str):
    """(gymnasium, the registered `gymnasium.envs.registration.EnvSpec` of `env`)."""
    env_id = gymnasium_id(env)
    gym = _import_gymnasium(env)
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ValueError(
                f"env={env!r} names module {module!r}, which cannot be imported ({e}); make it "
                "importable or drop the 'module:' part for an id registered already"
            ) from e
    registered = gym.registry.get(name)
    if registered is None:
        close = difflib.get_close_matches(name, list(gym.registry), n=3)
        hint = (
            f"close matches: {', '.join(repr(c) for c in close)}" if close
            else "gymnasium.pprint_registry() lists the registered ids"
        )
        raise ValueError(f"env={env!r} is not a registered gymnasium id; {hint}")
    return gym, registered


def _make(gym, env: str, registered, make_kwargs: dict[str, Any]):
    try:
        return gym.make(registered, **make_kwargs)
    except Exception as e:  # every way construction fails is a ValueError here
        kwargs = "".join(f", {k}={v!r}" for k, v in make_kwargs.items())
        raise ValueError(
            f"env={env!r} could not be built: gymnasium.make({registered.id!r}{kwargs}) raised "
            f"{type(e).__name__}: {e}"
        ) from e


def _read_spec(gym, env: str, instance) -> EnvSpec:
    spaces = gym.spaces
    obs_space, act_space = instance.observation_space, instance.action_space
    if not isinstance(obs_space, spaces.Box):
        # A ValueError, as for every environment acjax cannot step (the type is the env's).
        raise ValueError(  # noqa: TRY004
            f"env={env!r} has observation space {obs_space}; acjax supports Box observation "
            "spaces only (register an id whose entry point wraps the environment in "
            "gymnasium.wrappers.FlattenObservation, which turns Discrete, Tuple and Dict "
            "observations into a flat Box)"
        )
    obs_shape = tuple(int(d) for d in obs_space.shape)
    limit = instance.spec.max_episode_steps if instance.spec is not None else None
    max_steps = int(limit) if limit is not None else 0
    if isinstance(act_space, spaces.Discrete):
        if int(act_space.start) != 0:
            raise ValueError(
                f"env={env!r} has action space {act_space}, which starts at "
                f"{int(act_space.start)}; acjax supports Discrete action spaces starting at 0 "
                "(wrap the environment in a gymnasium.ActionWrapper that adds the start)"
            )
        return EnvSpec(env, obs_shape, True, int(act_space.n), None, None, max_steps)
    if isinstance(act_space, spaces.Box):
        if len(act_space.shape) != 1:
            raise ValueError(
                f"env={env!r} has a Box action space of shape {act_space.shape}; acjax supports "
                "flat (1-D) continuous actions"
            )
        dim = int(act_space.shape[0])
        low = tuple(float(x) for x in np.broadcast_to(act_space.low, (dim,)))
        high = tuple(float(x) for x in np.broadcast_to(act_space.high, (dim,)))
        return EnvSpec(env, obs_shape, False, dim, low, high, max_steps)
    raise ValueError(
        f"env={env!r} has action space {act_space}; acjax supports Discrete (starting at 0) "
        "and 1-D Box action spaces"
    )
