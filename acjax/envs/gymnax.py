"""gymnax environments: construction, wrappers and running normalisers.

`make_gymnax_env(name)` (and `acjax.envs.make_env` for every kind) returns a gymnax
environment wrapped so that

* every `step` also reports the return and length of the episode that ended at that step
  (`info["episode_return"]`, `info["episode_length"]`, valid where `terminated | truncated`);
* continuous actions are clipped to the action space before they reach the dynamics (the
  learner keeps the unclipped sample, so its log-probability stays exact).

Observation and reward normalisation act on a *batch* of environments and keep their running
statistics in the training state (`RunningMeanStd`, `RewardScaleState`), never inside a wrapper
object, so the whole state stays one pytree that can be checkpointed and vmapped.

gymnax >= 1.0.1's `step` returns `obs, state, reward, terminated, truncated, info` and auto-resets:
`obs` is already the first observation of the next episode when the step ended one, and
`info["final_observation"]` holds the true last observation of the episode that ended.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import struct

from acjax.core import collectives

__all__ = [
    "ClipAction",
    "EnvSpec",
    "EpisodeStatistics",
    "RewardScaleState",
    "RunningMeanStd",
    "check_gymnax_env_name",
    "env_spec",
    "import_gymnax",
    "make_gymnax_env",
    "normalize",
    "registered_envs",
    "reward_scale_init",
    "reward_scale_update",
    "running_mean_std_init",
    "running_mean_std_update",
]


_PLOTTING_MODULES = ("matplotlib.pyplot", "seaborn")


def import_gymnax():
    """Imports gymnax (on first use: importing it starts JAX's backend) and returns it.

    gymnax imports matplotlib.pyplot and seaborn (with pandas and scipy) at module level for a
    few environments' renderers, which costs about 2 s of every start. Unless they are
    already loaded, each is first registered as a stand-in module that imports the real one on
    its first attribute access, i.e. only when a renderer (or the user) actually uses it.
    """
    if "gymnax" not in sys.modules:
        for name in _PLOTTING_MODULES:
            if name not in sys.modules:
                _register_lazy_module(name)
    import gymnax

    return gymnax


class _DeferredModule(types.ModuleType):
    """Stands in for a module until one of its attributes is used, then imports it."""

    def __getattr__(self, attr: str):
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        module = importlib.import_module(name)
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)


def _register_lazy_module(name: str) -> None:
    spec = importlib.util.find_spec(name)
    if spec is None:
        return  # not installed: gymnax's own import then reports it
    module = _DeferredModule(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name] = module


def registered_envs() -> list[str]:
    """Every environment gymnax registers (`make_env` also builds acjax's own, see
    `acjax.envs.make.ACJAX_ENVS`)."""
    return list(import_gymnax().registered_envs)


def check_gymnax_env_name(name: str, *, others: Sequence[str] = ()) -> None:
    """Raise a `ValueError` naming close matches when `name` is not a gymnax environment.

    `others`: names of further environments with gymnax's API (acjax's own) to accept too and
    to offer among the close matches and the list of known names.
    """
    gymnax_names = registered_envs()
    known = gymnax_names + [n for n in others if n not in gymnax_names]
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else (
        f"choose one of: {', '.join(known)}"
    )
    raise ValueError(f"env={name!r} is not a gymnax environment; {hint}")


class _Wrapper:
    """Forwards everything it does not override to the wrapped environment."""

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)


@struct.dataclass
class EpisodeStatisticsState:
    env_state: Any
    episode_return: jax.Array  # [] float32, running return of the current episode
    episode_length: jax.Array  # [] int32, steps taken in the current episode


class EpisodeStatistics(_Wrapper):
    """Records the undiscounted return and length of each episode.

    `info["episode_return"]` / `info["episode_length"]` carry the finished episode's totals at
    steps where `terminated | truncated`, and the running totals elsewhere.
    """

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params=None):
        obs, env_state = self._env.reset(key, params)
        return obs, EpisodeStatisticsState(env_state, jnp.float32(0.0), jnp.int32(0))

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, params
        )
        done = jnp.logical_or(terminated, truncated)
        episode_return = state.episode_return + reward.astype(jnp.float32)
        episode_length = state.episode_length + 1
        info = {**info, "episode_return": episode_return, "episode_length": episode_length}
        state = EpisodeStatisticsState(
            env_state,
            jnp.where(done, 0.0, episode_return),
            jnp.where(done, 0, episode_length),
        )
        return obs, state, reward, terminated, truncated, info


class ClipAction(_Wrapper):
    """Clips continuous actions to the bounds of a `Box` action space."""

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        space = self._env.action_space(params if params is not None else self.default_params)
        action = jnp.clip(action, space.low, space.high)
        return self._env.step(key, state, action, params)


class EnvSpec(NamedTuple):
    """Static facts about an environment that fix shapes and heads."""

    name: str
    obs_shape: tuple[int, ...]
    discrete: bool
    num_actions: int  # discrete: number of actions; continuous: action dimension
    action_low: tuple[float, ...] | None  # continuous only
    action_high: tuple[float, ...] | None
    max_episode_steps: int

    def describe_action_space(self) -> str:
        if self.discrete:
            return f"Discrete({self.num_actions})"
        return f"Box(shape=({self.num_actions},), low={self.action_low}, high={self.action_high})"


def make_gymnax_env(name: str, **kwargs) -> tuple[Any, Any]:
    """Builds a wrapped gymnax environment and its default parameters.

    Args:
      name: any gymnax-registered id, e.g. "CartPole-v1", "Pendulum-v1", "Breakout-MinAtar".
      **kwargs: forwarded to `gymnax.make` (environment constructor arguments).

    Returns:
      `(env, env_params)`; `env.step` follows gymnax's 6-tuple API and adds episode statistics.
    """
    gymnax = import_gymnax()
    from gymnax.environments import spaces

    check_gymnax_env_name(name)
    env, env_params = gymnax.make(name, **kwargs)
    if isinstance(env.action_space(env_params), spaces.Box):
        env = ClipAction(env)
    env = EpisodeStatistics(env)
    return env, env_params


def env_spec(env, env_params, name: str = "") -> EnvSpec:
    """Reads shapes and action-space facts from an environment (no tracing)."""
    import_gymnax()  # with its deferred plotting modules, for environments gymnax did not build
    from gymnax.environments import spaces

    obs_shape = tuple(int(d) for d in env.observation_space(env_params).shape)
    space = env.action_space(env_params)
    max_steps = int(env_params.max_steps_in_episode)
    if isinstance(space, spaces.Discrete):
        return EnvSpec(name, obs_shape, True, int(space.n), None, None, max_steps)
    if isinstance(space, spaces.Box):
        if len(space.shape) != 1:
            raise ValueError(
                f"env={name!r} has a Box action space of shape {space.shape}; acjax supports "
                "flat (1-D) continuous actions"
            )
        dim = int(space.shape[0])
        low = tuple(float(x) for x in jnp.broadcast_to(jnp.asarray(space.low), (dim,)))
        high = tuple(float(x) for x in jnp.broadcast_to(jnp.asarray(space.high), (dim,)))
        return EnvSpec(name, obs_shape, False, dim, low, high, max_steps)
    raise ValueError(
        f"env={name!r} has action space {space!r}; acjax supports Discrete and 1-D Box spaces"
    )


# ----------------------------------------------------------------------------------------------
# Running statistics (batched, functional; state lives in the training state)
# ----------------------------------------------------------------------------------------------


class RunningMeanStd(NamedTuple):
    """Running mean and variance of a stream of batches (Chan et al. parallel update)."""

    mean: jax.Array  # [*shape] float32
    var: jax.Array  # [*shape] float32
    count: jax.Array  # [] float32, number of samples seen (starts at a tiny epsilon)


def running_mean_std_init(shape: tuple[int, ...]) -> RunningMeanStd:
    return RunningMeanStd(
        jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.float32(1e-4)
    )


def running_mean_std_update(
    stats: RunningMeanStd, batch: chex.Array, axis_name: str | None = None
) -> RunningMeanStd:
    """Merges a batch `[N, *shape]` into the statistics.

    With `axis_name`, the batch is one shard of a global batch split along that mapped axis
    (equal-sized shards); the statistics then describe the whole global batch on every shard.
    """
    chex.assert_rank(batch, stats.mean.ndim + 1)
    batch = batch.astype(jnp.float32)
    batch_mean, batch_var = collectives.batch_moments(batch, axis_name)
    batch_count = jnp.float32(batch.shape[0] * collectives.shard_count(axis_name))
    delta = batch_mean - stats.mean
    total = stats.count + batch_count
    mean = stats.mean + delta * batch_count / total
    m2 = (
        stats.var * stats.count
        + batch_var * batch_count
        + delta**2 * stats.count * batch_count / total
    )
    return RunningMeanStd(mean, m2 / total, total)


def normalize(stats: RunningMeanStd, x: chex.Array, clip: float = 10.0) -> chex.Array:
    """`clip((x - mean) / sqrt(var + 1e-8), -clip, clip)`, broadcasting over leading axes."""
    x = x.astype(jnp.float32)
    mean = jnp.broadcast_to(stats.mean, x.shape)
    scale = jnp.broadcast_to(jax.lax.rsqrt(stats.var + 1e-8), x.shape)
    return jnp.clip((x - mean) * scale, -clip, clip)


class RewardScaleState(NamedTuple):
    """Reward scaling by the running std of the discounted return (as in PPO's reference code)."""

    discounted_return: jax.Array  # [num_envs] float32, running discounted return per env
    stats: RunningMeanStd  # scalar statistics of `discounted_return`


def reward_scale_init(num_envs: int) -> RewardScaleState:
    return RewardScaleState(jnp.zeros((num_envs,), jnp.float32), running_mean_std_init(()))


def reward_scale_update(
    state: RewardScaleState, reward: chex.Array, done: chex.Array, gamma: chex.Numeric,
    clip: float = 10.0, axis_name: str | None = None,
) -> tuple[RewardScaleState, chex.Array]:
    """Updates the return statistics with one step `[num_envs]` and returns scaled rewards.

    With `axis_name`, the environments are one shard of a batch split along that axis and the
    statistics are shared by all shards.
    """
    chex.assert_rank([reward, done], 1)
    discounted = state.discounted_return * gamma + reward.astype(jnp.float32)
    stats = running_mean_std_update(state.stats, discounted, axis_name)
    scaled = jnp.clip(reward / jnp.sqrt(stats.var + 1e-8), -clip, clip)
    discounted = jnp.where(done, 0.0, discounted)
    return RewardScaleState(discounted, stats), scaled
