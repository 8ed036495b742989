"""Reward shaping as an environment wrapper.

`TerminationReward(env, value)` replaces the reward of every step that *terminates* an episode
by `value` (DA2C's -10 on CartPole: falling over is penalised instead of paid +1). A truncated
step (the time limit) keeps its reward: the episode did not fail there. Wrapped around an
environment from `acjax.envs.make_env`, it leaves `info["episode_return"]` as the environment's
own (those statistics are recorded inside), so reported returns stay comparable.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

__all__ = ["TerminationReward"]


class TerminationReward:
    """`step` returns `value` as the reward where `terminated`, the env's reward elsewhere."""

    def __init__(self, env, value: float):
        if not math.isfinite(value):
            raise ValueError(f"termination_reward={value!r} must be a finite number, e.g. -10")
        self._env = env
        self.value = float(value)

    def __getattr__(self, name):
        return getattr(self._env, name)

    def reset(self, key, params=None):
        return self._env.reset(key, params)

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(
            key, state, action, params
        )
        reward = jnp.where(terminated, jnp.asarray(self.value, reward.dtype), reward)
        return obs, state, reward, terminated, truncated, info
